"""One run per folder: resume in place keeps the CSV rows, a used folder and a busy folder are refused, and a
checkpoint is resumed only with its own synth."""
import csv
import subprocess
import sys

import pytest

from scraplab.cli.build import ConfigError
from scraplab.cli.train import train
from train_helpers import tiny_cfg


def _steps(path) -> set[int]:
    with open(path, newline="") as f:
        return {int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")}


def test_resume_in_place_keeps_the_earlier_csv_rows_and_a_used_folder_is_refused(tmp_path):
    run = tmp_path / "run"
    assert train(tiny_cfg("granular", "mss", run, ["trainer.max_steps=2"]))["status"] == "ok"
    first = _steps(run / "csv" / "metrics.csv")
    assert first
    with pytest.raises(ConfigError, match="already holds checkpoints of another run"):
        train(tiny_cfg("granular", "mss", run))  # a new run into the same folder would mix checkpoints
    resumed = train(tiny_cfg("granular", "mss", run, [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"]))
    assert resumed["status"] == "ok" and resumed["steps"] == 4
    assert _steps(run / "csv" / "metrics_session1.csv") == first  # the first session's rows survive
    assert _steps(run / "csv" / "metrics.csv") and not (run / "run.lock").exists()


def test_a_folder_in_use_by_a_live_process_is_refused_and_a_stale_lock_is_taken_over(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / "run.lock").write_text(str(holder.pid))
        with pytest.raises(ConfigError, match=f"in use by another process \\(pid {holder.pid}\\)"):
            train(tiny_cfg("granular", "mss", run, ["trainer.max_steps=1"]))
        assert not (run / "config.yaml").exists()
    finally:
        holder.kill()
        holder.wait()
    assert train(tiny_cfg("granular", "mss", run, ["trainer.max_steps=1"]))["status"] == "ok"  # holder gone


def test_resuming_with_another_synth_is_refused(tmp_path):
    assert train(tiny_cfg("granular", "mss", tmp_path / "a", ["trainer.max_steps=1"]))["status"] == "ok"
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match="trained with another synth.*_target_"):
        train(tiny_cfg("chirplet", "mss", tmp_path / "b", [f"ckpt_path={ckpt}"]))
    with pytest.raises(ConfigError, match="another synth.*n_grains"):
        train(tiny_cfg("granular", "mss", tmp_path / "c", [f"ckpt_path={ckpt}", "synth.n_grains=3"]))
