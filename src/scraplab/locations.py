"""Filesystem locations: where the Hydra configs and the shipped data live (not scattering paths).

The configs sit in the repository's top-level ``configs/`` folder (LHT layout). An editable install
(``make install``) resolves it next to the sources; ``SCRAPLAB_CONFIG_DIR`` overrides it.
"""
from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]


def repo_root() -> Path:
    """The checkout this package was installed from (editable install)."""
    return _REPO_ROOT


def config_dir() -> Path:
    """Absolute path of the Hydra config folder; raises a clear error when it cannot be found."""
    env = os.environ.get("SCRAPLAB_CONFIG_DIR")
    path = Path(env) if env else _REPO_ROOT / "configs"
    if not path.is_dir():
        raise FileNotFoundError(
            f"config folder not found at {path}; install the project with `make install` (editable) "
            "or set SCRAPLAB_CONFIG_DIR"
        )
    return path


def data_dir() -> Path:
    """The repository's ``data/`` folder (θ-IS probability files and other small artefacts)."""
    env = os.environ.get("SCRAPLAB_DATA_DIR")
    return Path(env) if env else _REPO_ROOT / "data"
