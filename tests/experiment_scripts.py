"""Load a script of ``experiments/`` (not a package) as a module, for the tests of its functions."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def load_experiment(stem: str) -> ModuleType:
    """``experiments/<stem>.py`` as the module ``_exp_<stem>``, registered in ``sys.modules`` (dataclasses and
    pickling look their module up there). The scripts put their own folder on ``sys.path`` for ``runplan``."""
    name = f"_exp_{stem}"
    if name in sys.modules:
        return sys.modules[name]
    file = EXPERIMENTS / f"{stem}.py"
    if not file.is_file():
        raise FileNotFoundError(f"no experiment script {file}")
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
