"""experiments/tr808_real.py's table on fake run folders: metrics with CIs, paired tests, the one-commit rule."""
import json

import pytest

from experiment_scripts import EXPERIMENTS, load_experiment

tr808_real = load_experiment("tr808_real")


def _run(root, arm, seed, jtfs, spread, commit="abc", status="ok", **extra):
    folder = root / arm / f"seed{seed}"
    folder.mkdir(parents=True)
    metrics = {"status": status, "test/audio/jtfs_all483": jtfs, "test/audio/logmel_l1": 2.0 + seed,
               "test/theta_spread_ratio": spread, **{f"test/audio/{k}": v for k, v in extra.items()}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "twin_run.json").write_text(json.dumps({"commit": commit, "rc": 0}))


def test_table_has_the_issue_shape_cis_and_paired_tests(tmp_path):
    for s in range(3):
        _run(tmp_path, "scrapl", s, 1.0 + 0.1 * s, 0.5)
        _run(tmp_path, "mss_log_lin", s, 2.0 + 0.1 * s, 0.1)
    _run(tmp_path, "mss_linear", 0, 9.0, 0.2, status="non-finite")  # failed runs are left out
    doc = tr808_real.build_table(tmp_path)
    assert set(doc["arms"]) == {"scrapl", "mss_loglin"}  # the result file's arm name
    jt = doc["arms"]["scrapl"]["jtfs_distance"]
    assert jt["mean"] == pytest.approx(1.1) and jt["n"] == 3 and jt["ci95"] > 0
    assert doc["arms"]["scrapl"]["n_seeds"] == 3 and "transient_err" not in doc["arms"]["scrapl"]  # not measured
    paired = doc["arms"]["mss_loglin"]["paired_scrapl_minus_arm"]["jtfs_distance"]
    assert paired["delta_mean"] == pytest.approx(-1.0) and paired["n"] == 3
    assert doc["default_recipe"] is None  # the ranked metrics are incomplete: no choice
    doc["provenance"] = {"command": "python experiments/tr808_real.py table"}
    md = tr808_real.to_markdown(doc)
    assert md.count("\n| ") == 5 and "1.1 ±" in md  # two arms + header, then the paired table: one arm + header
    assert "| MSS Log + Linear | -1 (p = " in md


def test_the_default_recipe_is_the_best_mean_rank(tmp_path):
    feats = dict(mss_lin=1.0, loudness_transient=1.0, loudness_decay=1.0)
    for s in range(2):
        # scrapl best on JTFS and transient, worst on the rest; mss_random best on three of five
        _run(tmp_path, "scrapl", s, 1.0, 0.5, **{**feats, "mss_lin": 3.0, "loudness_decay": 3.0, "logmel_l1": 9.0})
        _run(tmp_path, "mss_random", s, 2.0, 0.1, **{**feats, "loudness_transient": 2.0, "logmel_l1": 1.0})
    doc = tr808_real.build_table(tmp_path)
    assert doc["default_recipe"] == "mss_random"
    assert doc["mean_rank"]["scrapl"] == pytest.approx((1 + 2 + 2 + 1 + 2) / 5)
    assert doc["mean_rank"]["mss_random"] == pytest.approx((2 + 1 + 1 + 2 + 1) / 5)


def test_equal_mean_ranks_go_to_the_lower_jtfs_distance():
    # three arms whose mean ranks are equal (10 / 5 each; as sums of fifths, floats need not add up alike)
    vals = {"a": [3, 1, 2, 1, 3], "b": [1, 2, 3, 3, 1], "c": [2, 3, 1, 2, 2]}
    arms = {a: {k: {"mean": float(v)} for k, v in zip(tr808_real.RANKED, vs)} for a, vs in vals.items()}
    best, ranks = tr808_real.default_recipe(arms)
    assert best == "b" and ranks["a"] == ranks["b"] == ranks["c"] == 2.0


def test_mixed_commits_are_refused(tmp_path):
    _run(tmp_path, "scrapl", 0, 1.0, 0.5, commit="a")
    _run(tmp_path, "mss_random", 0, 2.0, 0.1, commit="b")
    with pytest.raises(tr808_real.RunPlanError, match="several commits"):
        tr808_real.build_table(tmp_path)


def test_the_synthetic_arm_is_tested_on_the_real_kits_with_the_presets_test_settings(tmp_path):
    folder, overrides, then = tr808_real.plan_entry("synthetic", 2, tmp_path)
    assert folder == tmp_path / "synthetic" / "seed2"
    assert overrides == ["experiment=cpu_tr808_synthetic", "eval_init=false", "seed=2"]
    assert then[0] == "eval.py" and "hydra.run.dir={folder}/real_test" in then
    assert f'"data.path={tr808_real.ROOT / "data" / "drums"}"' in then[-1]  # the preset's data, made absolute
    assert "module.test_audio.jtfs_paths=null" in then[-1] and "data.regime=micro" in then[-1]
    folder, overrides = tr808_real.plan_entry("mss_random", 1, tmp_path)
    assert overrides[0] == tr808_real.PRESET and "loss=mss_random" in overrides and overrides[-1] == "seed=1"
    # the table reads the synthetic arm's real-kit test, not its synthetic one
    _run(tmp_path, "scrapl", 0, 1.0, 0.5)
    real = tmp_path / "synthetic" / "seed0"
    _run(tmp_path, "synthetic", 0, 7.0, 0.01)
    (real / "real_test").mkdir()
    (real / "real_test" / "metrics.json").write_text(json.dumps({"status": "ok", "test/audio/jtfs_all483": 3.0}))
    assert tr808_real.build_table(tmp_path)["arms"]["synthetic"]["jtfs_distance"]["mean"] == 3.0


def test_the_default_entry_is_the_chosen_arms_runs(tmp_path):
    feats = dict(mss_lin=1.0, loudness_transient=1.0, loudness_decay=1.0, logmel_l1=1.0)
    for s in range(2):
        _run(tmp_path, "scrapl", s, 2.0, 0.5, **{k: 2.0 for k in feats})
        _run(tmp_path, "mss_log_lin", s, 1.0 + s, 0.3, **feats)
    doc = tr808_real.build_table(tmp_path)
    assert doc["default_recipe"] == "mss_loglin" and "default" not in doc["mean_rank"]
    default = doc["arms"]["default"]
    assert default["same_runs_as"] == "mss_loglin" and default["jtfs_distance"] == doc["arms"]["mss_loglin"]["jtfs_distance"]
    assert "python train.py synth=tr808" in default["label"] and "MSS Log + Linear" in default["label"]
    # the chosen recipe against the other arms (recipe − arm), beside SCRAPL − arm
    assert doc["arms"]["scrapl"]["paired_recipe_minus_arm"]["jtfs_distance"]["delta_mean"] == pytest.approx(-0.5)
    assert "paired_recipe_minus_arm" not in doc["arms"]["mss_loglin"]
    doc["provenance"] = {"command": "python experiments/tr808_real.py table"}
    md = tr808_real.to_markdown(doc)
    assert "**mss_loglin**, what `python train.py synth=tr808` trains" in md
    assert md.count("| default: `python train.py synth=tr808`") == 1  # a row in the table, not in the paired ones
    assert "MSS Log + Linear − arm, paired by seed" in md and "| SCRAPL (log1p, 𝒫-Adam + 𝒫-SAGA) | -0.5 (p = " in md


def test_the_bare_tr808_command_trains_the_committed_tables_choice(tmp_path):
    """`python train.py synth=tr808` composes exactly the arm experiments/results/tr808_real.json chose."""
    from train_helpers import compose_cfg
    doc = json.loads((EXPERIMENTS / "results" / "tr808_real.json").read_text())
    arm = {tr808_real.RESULT_ARM.get(a, a): a for a in tr808_real.ARMS}[doc["default_recipe"]]
    _, chosen = tr808_real.plan_entry(arm, 0, tmp_path)[:2]
    bare = [*tr808_real.BARE, "eval_init=false", "seed=0"]  # the arms' own test and seed settings
    assert compose_cfg(bare, tmp_path) == compose_cfg(chosen, tmp_path)
