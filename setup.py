"""Package discovery: everything under src/, plus the top-level synths/ folder as scraplab.synths."""
from setuptools import find_packages, setup

setup(
    packages=find_packages("src") + ["scraplab.synths"],
    package_dir={"": "src", "scraplab.synths": "synths"},
)
