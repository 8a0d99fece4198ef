"""experiments/twin_table.py on fake twin run folders: the issue's JSON shape, targets, and the one-commit rule."""
import json
import sys
from pathlib import Path

import pytest
import yaml

from experiment_scripts import EXPERIMENTS, load_experiment

sys.path.insert(0, str(EXPERIMENTS))  # twin_table imports twin_granular (the arm names) from its own folder
twin_table = load_experiment("twin_table")

CFG = {"synth": {"_target_": "scraplab.synths.granular.GranularSynth", "n_samples": 8192, "sample_rate": 8192,
                 "n_grains": 16, "grain_n_samples": 2048, "jtfs": {"J": 9}},
       "trainer": {"max_steps": 400, "val_check_interval": 100}, "data": {"batch_size": 8, "regime": "meso"},
       "optim": {"_target_": "scraplab.optim.factories.p_saga", "lr": 3e-4}, "synthetic": {"n_per_axis": 16,
       "n_seeds_per_theta": 2}, "loss": {"_target_": "scraplab.losses.SCRAPLLoss"},
       "sampler": {"mode": "uniform", "budget": 1}}


def _run(root, arm, seed, test, curve, commit="abc", mode="uniform"):
    folder = root / arm / f"seed{seed}"
    folder.mkdir(parents=True)
    cfg = {**CFG, "seed": seed, "sampler": {"mode": mode, "budget": 1}}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    metrics = {"status": "ok", "test/theta_l1_permille": test, "test/theta_l1_permille/density": test - 10,
               "test/theta_l1_permille/slope": test + 10, "wall_s": 100.0, "steps": 400, "scrapl/n_paths": 49,
               "theta_is/warmup_s": 4.0 if mode == "fixed" else None}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "history.json").write_text(json.dumps({"step": [100, 200, 300, 400], "val/theta_l1_permille": curve}))
    (folder / "twin_run.json").write_text(json.dumps({"name": f"{arm}/seed{seed}", "commit": commit, "dirty": False,
                                                      "command": "python train.py ...", "rc": 0}))


def test_table_shape_targets_and_paired_tests(tmp_path):
    out, res = tmp_path / "runs", tmp_path / "results"
    for seed in range(3):
        _run(out, "mss_random", seed, 170.0 + seed, [200, 180, 170, 170])
        _run(out, "scrapl_psaga", seed, 90.0 + seed, [200, 140, 95, 90])
        _run(out, "scrapl_thetais", seed, 60.0 + 2 * seed, [140, 90, 70, 60], mode="fixed")
    doc = twin_table.write_tables(out, res, "python experiments/twin_granular.py table")
    arm = doc["arms"]["scrapl_thetais"]
    assert arm["theta_l1_permille"]["mean"] == pytest.approx(62.0) and arm["n_seeds"] == 3
    assert set(arm["theta_l1_permille"]) >= {"mean", "ci95", "density", "slope"}
    assert arm["conv_steps"]["mean"] == pytest.approx(200.0) and doc["arms"]["scrapl_psaga"]["conv_steps"]["mean"] == 300
    assert doc["settings"]["P"] == 49 and doc["settings"]["steps"] == 400 and doc["settings"]["batch"] == 8
    t = doc["targets"]
    assert t["scrapl_below_half_best_mss"]["met"] is True  # 62 < 170.x / 2
    assert t["ablation_improves_each_step"]["met"] is True
    assert t["thetais_30pct_fewer_steps"]["met"] is True  # 200 vs 300 steps: 33 % fewer
    assert doc["paired"]["scrapl_psaga→scrapl_thetais θ L1"]["delta_mean"] == pytest.approx(-29.0)
    assert doc["provenance"]["commit"] == "abc"
    assert json.loads((res / "twin_granular.json").read_text())["arms"].keys() == doc["arms"].keys()
    assert (res / "twin_granular.md").read_text().count("\n| ") == 4 and (res / "twin_granular.png").exists()


def test_runs_of_two_commits_are_refused(tmp_path):
    _run(tmp_path / "runs", "mss_random", 0, 170.0, [200, 180, 170, 170], commit="abc")
    _run(tmp_path / "runs", "scrapl_psaga", 0, 90.0, [200, 140, 95, 90], commit="def")
    with pytest.raises(RuntimeError, match="several commits"):
        twin_table.write_tables(tmp_path / "runs", tmp_path / "results", "cmd")


def test_diagnosis_pairs_with_the_table_and_checks_the_anchor(tmp_path):
    out, res = tmp_path / "diag", tmp_path / "results"
    table_runs = tmp_path / "table"
    for seed in range(2):
        _run(table_runs, "scrapl_adamw", seed, 100.0 + seed, [200, 150, 120, 100])
        _run(table_runs, "scrapl_padam", seed, 170.0 + seed, [258.5, 230, 200, 170])
        _run(out, "scrapl_padam_sharedv", seed, 110.0 + 3 * seed, [220, 150, 120, 110])
        _run(out, "scrapl_psaga_sharedv", seed, 100.0, [220, 140, 120, 100])
    _run(out, "anchor_scrapl_padam", 0, 250.0, [258.5, 240, 230, 220])
    _run(out, "anchor_scrapl_padam", 1, 250.0, [999.0, 240, 230, 220])  # a rerun that does not reproduce its table run
    table = twin_table.write_tables(table_runs, res, "python experiments/twin_granular.py table")
    runs = [{"name": f"{a}/seed{s}"} for a in ("anchor_scrapl_padam", "scrapl_padam_sharedv", "scrapl_psaga_sharedv")
            for s in range(2)]
    summary = {"runs": runs, "commit": "def", "dirty": False, "command": "python experiments/twin_granular.py diagnose",
               "versions": {}, "wall_s": 600.0, "load_before": 0.1, "load_after": 2.0, "jobs": 2}
    doc = twin_table.write_diagnosis(out, res, summary)
    assert doc["arms"]["scrapl_padam_sharedv"]["theta_l1_permille"]["mean"] == pytest.approx(111.5)
    assert doc["paired"]["scrapl_padam->scrapl_padam_sharedv"]["delta_mean"] == pytest.approx(-59.0)
    assert doc["paired"]["scrapl_adamw->scrapl_padam_sharedv"]["delta_mean"] == pytest.approx(11.0)
    assert doc["paired"]["scrapl_padam_sharedv->scrapl_psaga_sharedv"]["delta_mean"] == pytest.approx(-11.5)
    assert doc["arms"]["scrapl_psaga_sharedv"]["steps_to_150"] == [200, 200]
    assert doc["anchors"]["anchor_scrapl_padam/seed0"]["identical"] is True
    assert doc["anchors"]["anchor_scrapl_padam/seed1"]["identical"] is False
    assert doc["table_commit"] == table["provenance"]["commit"]
    md = (res / "twin_diagnose.md").read_text()
    assert "DIFFERENT" in md and "scrapl_padam_sharedv" in md


def test_a_sweep_table_is_written_under_its_own_name(tmp_path):
    out, res = tmp_path / "pilot", tmp_path / "results"
    _run(out, "scrapl_adamw_lr1e-4", 0, 130.0, [250, 200, 150, 130])
    _run(out, "scrapl_padam_lr1e-4", 0, 210.0, [250, 240, 230, 210])
    (out / "scrapl_adamw_lr1e-4").rename(out / "a")  # sweep runs live at out/<name>, not out/<arm>/seed<k>
    (out / "scrapl_padam_lr1e-4").rename(out / "b")
    (out / "a" / "seed0").rename(out / "scrapl_adamw_lr1e-4")
    (out / "b" / "seed0").rename(out / "scrapl_padam_lr1e-4")
    summary = {"runs": [{"name": "scrapl_adamw_lr1e-4"}, {"name": "scrapl_padam_lr1e-4"}], "commit": "def",
               "dirty": False, "command": "python experiments/twin_granular.py pilot", "versions": {}, "wall_s": 900.0,
               "load_before": 0.1, "load_after": 2.0, "jobs": 2}
    doc = twin_table.write_sweep(out, res, summary, name="twin_pilot")
    assert sorted(p.name for p in res.iterdir()) == ["twin_pilot.json", "twin_pilot.md"]  # not the last run's name
    assert doc["runs"]["scrapl_padam_lr1e-4"]["theta_l1_permille"] == 210.0
    md = (res / "twin_pilot.md").read_text()
    assert md.startswith("# Granular twin: 𝒫-Adam staleness pilot") and "| scrapl_adamw_lr1e-4 | 49 | 130.0 |" in md
    assert str(tmp_path) not in (res / "twin_pilot.json").read_text()  # folders relative to the runs


def test_a_comparison_table_without_the_full_recipe_names_its_best_scrapl_arm(tmp_path):
    # the g32 table runs param, the MSS arms and SCRAPL with AdamW only: its own files, its best SCRAPL arm's ratio
    out, res = tmp_path / "runs", tmp_path / "results"
    for seed in range(3):
        _run(out, "param", seed, 70.0 + seed, [90, 80, 75, 70])
        _run(out, "mss_random", seed, 170.0 + seed, [200, 180, 170, 170])
        _run(out, "scrapl_adamw", seed, 90.0 - seed, [200, 140, 95, 90])
    doc = twin_table.write_tables(out, res, "cmd", name="twin_granular_g32")
    t = doc["targets"]
    assert "scrapl_below_half_best_mss" not in t and "ablation_improves_each_step" not in t
    best = t["best_scrapl_arm_below_half_best_mss"]
    assert best["arm"] == "scrapl_adamw" and best["best_mss"] == "mss_random" and best["met"] is False  # 89 > 85.5
    assert best["ratio_to_best_mss"] == pytest.approx(89.0 / 171.0)
    assert doc["settings"]["P"] == 49  # taken from the SCRAPL run, not the P-loss one
    assert doc["paired"]["mss_random→scrapl_adamw θ L1"]["delta_mean"] == pytest.approx(-82.0)
    md = (res / "twin_granular_g32.md").read_text()
    assert md.startswith("# Granular CPU twin at 32 grains") and (res / "twin_granular_g32.png").exists()
    assert not (res / "twin_granular.json").exists()
    text = (res / "twin_granular_g32.json").read_text()
    assert str(tmp_path) not in text and '"folder": "scrapl_adamw/seed0"' in text  # folders relative to the runs


def test_the_g32_twin_adds_its_grain_count_to_every_run():
    import twin_granular

    plan = twin_granular.table_plan([0, 1], ["mss_random", "scrapl_adamw"], Path("out"), "g32")
    assert sorted(plan) == ["mss_random/seed0", "mss_random/seed1", "scrapl_adamw/seed0", "scrapl_adamw/seed1"]
    assert all("synth.n_grains=32" in o for _, o in plan.values())
    assert not any("synth.n_grains=32" in o for _, o in twin_granular.table_plan([0], ["param"], Path("o")).values())


def test_the_finetune_plan_starts_each_seed_from_its_own_adamw_checkpoint():
    import twin_granular

    plan = twin_granular.finetune_plan([0, 2], Path("out"))
    assert sorted(plan) == ["scrapl_adamw_from_adamw/seed0", "scrapl_adamw_from_adamw/seed2",
                            "scrapl_psaga_from_adamw/seed0", "scrapl_psaga_from_adamw/seed2"]
    folder, ov = plan["scrapl_psaga_from_adamw/seed2"]
    assert folder == Path("out/scrapl_psaga_from_adamw/seed2") and "optim=p_saga" in ov and "seed=2" in ov
    assert "init_weights=outputs/twin_granular_g32/scrapl_adamw/seed2/checkpoints/best.ckpt" in ov


def test_the_finetune_table_pairs_the_two_optimizers_by_seed(tmp_path):
    out, res = tmp_path / "outputs" / "twin_finetune", tmp_path / "results"
    for seed in range(2):
        for arm, end in (("scrapl_adamw_from_adamw", 95.0 + seed), ("scrapl_psaga_from_adamw", 110.0 + 3 * seed)):
            _run(out, arm, seed, end, [100, 100, 100, end])
            f = out / arm / f"seed{seed}" / "metrics.json"
            m = json.loads(f.read_text())
            m.update({"init/theta_l1_permille": 100.0 + seed, "init/theta_l1_permille/density": 90.0,
                      "init/theta_l1_permille/slope": 110.0, "init/theta_spread_ratio/slope": 0.7,
                      "test/theta_spread_ratio/slope": 0.6})
            f.write_text(json.dumps(m))
    names = [f"{a}/seed{s}" for s in range(2) for a in ("scrapl_adamw_from_adamw", "scrapl_psaga_from_adamw")]
    summary = {"runs": [{"name": n} for n in names], "commit": "abc", "dirty": False, "command": "cmd",
               "versions": {}, "wall_s": 1.0, "load_before": 0.1, "load_after": 0.2, "jobs": 2}
    doc = twin_table.write_finetune(out, res, summary)
    d = doc["paired_psaga_minus_adamw"]["theta_l1_permille"]
    assert d["n"] == 2 and d["delta_mean"] == pytest.approx(16.0)  # (110 − 95 + 113 − 96) / 2
    assert doc["paired_psaga_minus_adamw"]["slope"]["delta_mean"] == pytest.approx(16.0)  # test + 10 on both sides
    md = (res / "twin_finetune.md").read_text()
    assert "| 1 | 101.0 (90.0 / 110.0) | 0.70 | + 𝒫-SAGA | 113.0 (103.0 / 123.0) | 0.60 |" in md
    assert str(tmp_path) not in (res / "twin_finetune.json").read_text()
