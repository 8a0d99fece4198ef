"""experiments/benchmark_step.py on a tiny run: every phase is timed, the shares add up, the JSON records provenance."""
import json

import pytest

from experiment_scripts import load_experiment

benchmark_step = load_experiment("benchmark_step")


def test_step_profile_times_every_phase_and_writes_provenance(tmp_path):
    out = tmp_path / "step.json"
    doc = benchmark_step.main(["--overrides", "experiment=twin_granular", "sampler=uniform",
                               "debug=tiny", "host_memory=default", "--steps", "3", "--warmup", "1",
                               "--json", str(out)])
    assert set(doc["phases_ms_median"]) == set(benchmark_step.PHASES)
    assert all(v >= 0 for v in doc["phases_ms_median"].values()) and doc["phases_ms_median"]["loss_fwd"] > 0
    assert doc["loss_ms"] == pytest.approx(doc["phases_ms_median"]["loss_fwd"] + doc["phases_ms_median"]["loss_bwd"])
    assert doc["non_loss_share"] == pytest.approx(1 - doc["loss_ms"] / doc["lightning_step_ms_median"])
    assert doc["met"] == (doc["non_loss_share"] <= 0.30)
    saved = json.loads(out.read_text())
    assert saved["provenance"]["command"].startswith("python experiments/benchmark_step.py")
    assert len(saved["provenance"]["commit"]) == 40
    assert saved["host_memory"] == "default"
