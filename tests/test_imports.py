"""The package imports with whatever scipy/numpy pip resolved (kymatio 0.3.0's `kymatio.torch` breaks on scipy >= 1.17,
so nothing may import it) and without torchaudio."""
import importlib
import pkgutil
import subprocess
import sys

import scraplab


def test_every_module_imports_without_kymatio_torch_or_torchaudio():
    code = (
        "import importlib, pkgutil, sys, scraplab, scraplab.synths\n"
        "mods = [m.name for m in pkgutil.walk_packages(scraplab.__path__, 'scraplab.')]\n"
        "mods += ['scraplab.synths.' + m.name for m in pkgutil.iter_modules(scraplab.synths.__path__)]\n"
        "[importlib.import_module(m) for m in mods]\n"
        "bad = [m for m in ('kymatio.torch', 'torchaudio') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print(len(mods))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) > 20


def test_versions_are_the_resolved_ones():
    import numpy
    import scipy
    import torch

    assert int(torch.__version__.split(".")[0]) == 2 and int(torch.__version__.split(".")[1]) >= 8
    # Record what the suite ran against (newest scipy/numpy pip resolved on this machine).
    print("scipy", scipy.__version__, "numpy", numpy.__version__, "torch", torch.__version__)
    assert importlib.import_module("kymatio").__version__.startswith("0.3")
    assert scraplab.__version__
    assert any(m.name == "scattering" for m in pkgutil.iter_modules(scraplab.__path__))
