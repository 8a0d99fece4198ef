"""experiments/state_pair_tr808.py on fake run folders: the paired table of compact − fp32 θ error, one commit."""
import json
from pathlib import Path

import pytest
import yaml

from experiment_scripts import load_experiment

state_pair = load_experiment("state_pair_tr808")


def _run(root, arm, seed, test, commit="abc"):
    folder = root / arm / f"seed{seed}"
    folder.mkdir(parents=True)
    cfg = {"synth": {"_target_": "scraplab.synths.tr808.TR808Synth"}, "seed": seed,
           "loss": {"_target_": "scraplab.losses.SCRAPLLoss"}, "optim": {"_target_": "scraplab.optim.factories.p_saga"}}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "metrics.json").write_text(json.dumps({"status": "ok", "test/theta_l1_permille": test,
                                                     "test/theta_l1_permille/osc1_freq": test + 5,
                                                     "test/theta_l1_permille/noise_gain": test - 5}))
    (folder / "twin_run.json").write_text(json.dumps({"name": f"{arm}/seed{seed}", "commit": commit, "dirty": False,
                                                      "command": "python train.py ...", "rc": 0, "wall_s": 60.0}))


def test_paired_table_and_one_commit(tmp_path):
    out, res = tmp_path / "runs", tmp_path / "results"
    for seed, (a, b) in enumerate([(200.0, 201.0), (210.0, 209.0), (190.0, 193.0)]):
        _run(out, "fp32", seed, a)
        _run(out, "compact", seed, b)
    (out / "state_pair_provenance.json").write_text(json.dumps({"command": "python experiments/state_pair_tr808.py",
                                                                "versions": {}, "wall_s": 600.0}))
    doc = state_pair.table(out, res, "python experiments/state_pair_tr808.py table")
    assert doc["seeds"] == [0, 1, 2] and doc["provenance"]["commit"] == "abc"
    assert doc["arms"]["compact"]["theta_l1_permille"]["mean"] == pytest.approx(201.0)
    assert doc["paired"]["theta_l1_permille"]["delta_mean"] == pytest.approx(1.0)
    assert set(doc["paired"]) == {"theta_l1_permille", "osc1_freq", "noise_gain"}
    md = (res / "state_pair_tr808.md").read_text()
    assert "| compact | 201.0 ±" in md and "compact − fp32: +1.0" in md
    _run(out, "fp32", 3, 200.0, commit="def")
    with pytest.raises(state_pair.RunPlanError, match="several commits"):
        state_pair.table(out, res, "table")


def test_the_arms_differ_only_in_the_state():
    plan = state_pair.plan([0], Path("/x"))
    fp32, compact = plan["fp32/seed0"][1], plan["compact/seed0"][1]
    assert set(compact) - set(fp32) == {"optim.state_dtype=bfloat16", "optim.factored_v=true"} and set(fp32) <= set(compact)
