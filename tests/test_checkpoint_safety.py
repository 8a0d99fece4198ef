"""Checkpoints are untrusted input: every kind the app writes loads weights-only; pickled code never runs."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scraplab.cli.checkpoint import CheckpointError, load_encoder, safe_load
from scraplab.cli.eval import evaluate
from scraplab.cli.train import train
from scraplab.locations import repo_root
from train_helpers import compose_cfg, tiny_cfg

SCHEDULER = ("scheduler={_target_: torch.optim.lr_scheduler.LinearLR, _partial_: true, start_factor: 1.0, "
             "end_factor: 0.1, total_iters: 4}")


class _Payload:
    """Unpickling this calls open(marker, "w"): the file appears only if pickled code runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    runs = {"saga": tiny_cfg("granular", "scrapl", root / "saga", ["optim=p_saga", "optim.state_dtype=bfloat16",
                                                                    "optim.factored_v=true", "sampler=adaptive"]),
            "sched": tiny_cfg("tr808", "param", root / "sched", [SCHEDULER])}
    for cfg in runs.values():
        assert train(cfg)["status"] == "ok"
    return root


@pytest.mark.parametrize("run", ["saga", "sched"])
def test_every_checkpoint_the_app_writes_loads_weights_only(trained, run):
    for name in ("last.ckpt", "best.ckpt"):
        path = trained / run / "checkpoints" / name
        assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == []
        ckpt = safe_load(path)
        assert ckpt["global_step"] > 0 and any(k.startswith("encoder.") for k in ckpt["state_dict"])
    synth, encoder, cfg = load_encoder(trained / run / "checkpoints" / "last.ckpt")
    assert encoder.n_params == synth.n_params


def _malicious(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {}, "payload": _Payload(marker)}, path)
    return path


def test_a_malicious_pickle_is_refused_and_never_runs(tmp_path, trained):
    marker = tmp_path / "pwned"
    bad = _malicious(tmp_path / "evil.ckpt", marker)
    with pytest.raises(CheckpointError, match=r"evil.ckpt was refused"):
        safe_load(bad)
    # resuming from it and evaluating it refuse it too
    with pytest.raises(CheckpointError, match="evil.ckpt"):
        train(tiny_cfg("granular", "mss", tmp_path / "resume", [f"ckpt_path={bad}"]))
    ev = compose_cfg([f"ckpt={bad}"], tmp_path / "eval", "eval")
    with pytest.raises(CheckpointError, match="evil.ckpt was refused"):
        evaluate(ev)
    assert not marker.exists()


def test_a_truncated_or_corrupt_checkpoint_gives_one_line_naming_the_file(tmp_path, trained):
    data = (trained / "saga" / "checkpoints" / "last.ckpt").read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[: len(data) // 2])
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    for path in (cut, junk, empty):
        with pytest.raises(CheckpointError, match=f"{path.name} is corrupt or truncated"):
            safe_load(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        safe_load(tmp_path / "missing.ckpt")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(repo_root() / "eval.py"), f"ckpt={cut}",
                           f"hydra.run.dir={tmp_path / 'eval'}"], capture_output=True, text=True, env=env, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 4 and len(lines) == 1 and "cut.ckpt" in lines[0] and "Traceback" not in proc.stderr
