"""The ``scraplab`` command family: one dispatcher, every subcommand's --help, clear refusals."""
import subprocess
import sys

import pytest

from scraplab.cli.main import COMMANDS, main


def _run(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "scraplab.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_help_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name}" in out for name in COMMANDS)
    assert set(COMMANDS) == {"train", "eval", "match", "render", "warmup", "distance", "export"}


def test_unknown_subcommand_is_refused(capsys):
    assert main(["trian"]) == 2
    assert "unknown subcommand 'trian'" in capsys.readouterr().err


@pytest.mark.parametrize("name, expect", [("train", "synth:"), ("eval", "ckpt"), ("match", "optimize"),
                                          ("render", "synth.KEY=VALUE"), ("warmup", "n_shards=S"),
                                          ("distance", "--paths"), ("export", "format=")])
def test_each_subcommand_help_lists_its_options(name, expect):
    proc = _run(name, "--help")
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert expect in proc.stdout


def test_every_registered_module_has_its_entry_point():
    import importlib
    for name, (module, func, _) in COMMANDS.items():
        assert callable(getattr(importlib.import_module(module), func)), name
