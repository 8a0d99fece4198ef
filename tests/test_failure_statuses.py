"""Failures say so: a non-zero exit, one line on stderr, and a status in metrics.json (docs/failure_behaviour.md)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scraplab.cli.build import ConfigError
from scraplab.cli.status import classify, is_known
from scraplab.cli.train import train
from scraplab.optim.path_adam_saga import NonFiniteStateError
from scraplab.locations import repo_root
from scraplab.training.module import NonFiniteLossError
from train_helpers import tiny_cfg

TESTS = Path(__file__).resolve().parent


def _cli(args: list[str], run_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, str(repo_root() / "train.py"), *args, f"hydra.run.dir={run_dir}"],
                          capture_output=True, text=True, env=env, timeout=300)


def _status(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_sigterm_ends_the_run_non_zero_with_a_status(tmp_path):
    proc = _cli(["synth=granular", "debug=tiny", "loss=mss", "trainer.max_steps=50", "+callbacks.kill._target_="
                 "train_helpers.SigtermAt", "+callbacks.kill.step=2"], tmp_path / "run")
    assert proc.returncode == 128 + 15, proc.stderr[-2000:]
    assert "error: interrupted by SIGTERM" in proc.stderr and "Traceback" not in proc.stderr
    metrics = _status(tmp_path / "run")
    assert metrics["status"] == "interrupted" and metrics["steps"] == 2


def test_diverged_weights_reach_the_non_finite_guard_before_the_synth_check(tmp_path):
    cfg = tiny_cfg("granular", "param", tmp_path, ["optim.lr=1e6", "trainer.val_check_interval=1"])
    with pytest.raises(NonFiniteLossError, match="non-finite encoder output"):
        train(cfg)
    metrics = _status(tmp_path)
    assert metrics["status"] == "non-finite" and "θ̂" in metrics["error"]


def test_overflowing_optimizer_state_is_not_checkpointed_as_ok(tmp_path):
    cfg = tiny_cfg("granular", "scrapl", tmp_path, ["optim=p_saga", "optim.grad_mult=1e38"])
    with pytest.raises(NonFiniteStateError, match="grad_mult=1e\\+38"):
        train(cfg)
    metrics = _status(tmp_path)
    assert metrics["status"] == "non-finite" and metrics["last_good_checkpoint"] is None
    for ckpt in (tmp_path / "checkpoints").glob("*.ckpt"):  # nothing non-finite was written
        state = torch.load(ckpt, weights_only=True)["optimizer_states"][0]["state"]
        assert all(torch.isfinite(v).all() for s in state.values() for v in s.values() if torch.is_tensor(v))


@pytest.mark.parametrize("override, match", [("optim.lr=abc", "optim.lr must be float, got 'abc'"),
                                             ("seed=abc", "seed must be an integer, got 'abc'"),
                                             ("trainer.max_steps=1.5", "trainer.max_steps must be int, got 1.5")])
def test_wrongly_typed_overrides_fail_at_start_up(override, match, tmp_path):
    with pytest.raises(ConfigError, match=match) as err:
        train(tiny_cfg("granular", "mss", tmp_path, [override]))
    assert classify(err.value) == ("config-error", 2) and is_known(err.value)  # train.py: one line, exit code 2
    assert _status(tmp_path)["status"] == "config-error" and not (tmp_path / "checkpoints").exists()


def test_ranks_above_zero_neither_compute_theta_is_nor_write_run_files(tmp_path, monkeypatch):
    from lightning.pytorch.utilities import rank_zero_only

    monkeypatch.setenv("SCRAPLAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    cfg = tiny_cfg("granular", "scrapl", tmp_path / "run", ["sampler=theta_is", "sampler.warmup.n_examples=2",
                                                             "sampler.warmup.batch_size=2", "sampler.warmup.wait_s=0.5"])
    with pytest.raises(TimeoutError, match="computed by rank 0"):
        train(cfg)
    assert not (tmp_path / "data").exists()  # rank 1 waited for rank 0's π instead of computing its own
    assert not (tmp_path / "run" / "metrics.json").exists() and not (tmp_path / "run" / "config.yaml").exists()


def test_deferred_finiteness_checks_stop_within_n_steps_and_never_checkpoint_bad_state(tmp_path):
    # check_finite_every=3 (what a GPU gets by default, with 50): no host sync per step; the flags are read at
    # steps 3, 6, ... and before every validation and checkpoint.
    cfg = tiny_cfg("granular", "param", tmp_path / "a", ["optim.lr=1e6", "module.check_finite_every=3",
                                                         "trainer.val_check_interval=null",
                                                         "trainer.max_steps=8"])
    with pytest.raises(NonFiniteLossError, match=r"between global steps \d+ and \d+ \(checked every 3 steps\)"):
        train(cfg)
    assert _status(tmp_path / "a")["status"] == "non-finite"
    cfg = tiny_cfg("granular", "scrapl", tmp_path / "b", ["optim=p_saga", "optim.grad_mult=1e38",
                                                          "module.check_finite_every=3"])
    with pytest.raises(NonFiniteStateError, match="between"):
        train(cfg)
    for ckpt in (tmp_path / "b" / "checkpoints").glob("*.ckpt"):  # nothing non-finite was written
        state = torch.load(ckpt, weights_only=True)
        assert all(torch.isfinite(v).all() for k, v in state["state_dict"].items() if k.startswith("encoder."))


def test_deferred_checks_leave_a_healthy_run_unchanged(tmp_path):
    every = [train(tiny_cfg("granular", "scrapl", tmp_path / f"r{n}", ["optim=p_saga", f"module.check_finite_every={n}"]))
             for n in (1, 3)]
    a, b = (torch.load(tmp_path / f"r{n}" / "checkpoints" / "last.ckpt", weights_only=True) for n in (1, 3))
    assert every[0]["status"] == every[1]["status"] == "ok"
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"] if k.startswith("encoder."))
