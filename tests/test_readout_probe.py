"""experiments/readout_probe.py: the ridge and nearest-neighbour readouts, and the probe on a trained run folder."""
import json
from pathlib import Path

import numpy as np
import pytest

from scraplab.cli.train import train
from experiment_scripts import load_experiment
from train_helpers import tiny_cfg

probe = load_experiment("readout_probe")


def _linear_data(rng, m, d=6):
    x = rng.normal(size=(m, d))
    y = np.clip(0.5 + 0.1 * x[:, :2] @ np.array([[1.0, -0.5], [0.3, 1.0]]), 0, 1)
    return x, y


def test_ridge_recovers_a_linear_map_and_a_large_lambda_forgets_it():
    rng = np.random.default_rng(0)
    x, y = _linear_data(rng, 200)
    xt, yt = _linear_data(rng, 100)
    lam = probe.choose_lambda(x, y)
    err = np.abs(probe.ridge_predict(probe.ridge_fit(x, y, lam), xt) - yt).mean()
    mean_only = np.abs(y.mean(0) - yt).mean()
    assert lam <= 10.0 and err < 0.05 * mean_only
    big = np.abs(probe.ridge_predict(probe.ridge_fit(x, y, 1e8), xt) - yt).mean()
    assert big == pytest.approx(mean_only, rel=0.05)  # λ → ∞ leaves the train mean


def test_ridge_ignores_a_constant_feature():
    rng = np.random.default_rng(1)
    x, y = _linear_data(rng, 100)
    x[:, 3] = 7.0  # a dead channel: zero spread must not divide by zero
    assert np.isfinite(probe.ridge_predict(probe.ridge_fit(x, y, 1.0), x)).all()


def test_knn_finds_a_nonlinear_relation_that_ridge_misses():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, size=(400, 1))
    y = np.clip(np.abs(x) + rng.normal(0, 0.1, size=x.shape), 0, 1)  # symmetric: no linear trend; noisy
    xt = rng.uniform(-1, 1, size=(200, 1))
    yt = np.abs(xt)
    rows = probe.probe_depth((x, y), (xt, yt), ["u"])
    assert rows["knn"]["u"] < 60 and rows["ridge"]["u"] > 200
    # noisy labels: averaging neighbours wins; a k chosen with each row among its own neighbours would be 1
    assert rows["knn"]["k"] > 1


def test_extra_folders_need_a_name():
    with pytest.raises(ValueError, match="NAME=RUN_FOLDER"):
        probe.run_folders(None, [], None, ["just/a/folder"])
    with pytest.raises(FileNotFoundError, match="seed"):
        probe.run_folders(Path("/nonexistent"), ["scrapl_adamw"], None)


@pytest.mark.slow
def test_probe_reads_a_trained_run_folder(tmp_path):
    run = tmp_path / "runs" / "scrapl_adamw" / "seed0"
    train(tiny_cfg("granular", "scrapl", run, ["trainer.max_steps=2", "trainer.limit_test_batches=1.0"]))
    doc = probe.main(["--runs", str(tmp_path / "runs"), "--arms", "scrapl_adamw", "--tag", "t",
                      "--out", str(tmp_path / "res")])
    row = doc["rows"]["scrapl_adamw"]["seed0"]
    metrics = json.loads((run / "metrics.json").read_text())
    # the probe's own-heads error is the run's test error: the same checkpoint, split and metric
    assert row["heads"]["theta_l1_permille"] == pytest.approx(metrics["test/theta_l1_permille"], rel=1e-4)
    assert set(doc["rows"]) == {"scrapl_adamw", "untrained"}
    assert (tmp_path / "res" / "readout_probe_t.md").read_text().count("| untrained |") == 1
