"""experiments/direct_aggregate.py on fake raw arm files: per-parameter CI, steps to an error, refusal of mixed code."""
import json
import sys

import numpy as np
import pytest

from scraplab.metrics.stats import mean_ci95

from experiment_scripts import EXPERIMENTS, load_experiment

sys.path.insert(0, str(EXPERIMENTS))  # direct_aggregate imports its sibling script by name, as when run from there
agg = load_experiment("direct_aggregate")


def _raw(arm, errs, commit="abc", dirty=False, steps=(0, 5, 10)):
    """errs: (n_seeds, n_rec, T, U) ‰."""
    seeds = {str(s): {"record_steps": list(steps), "err_permille": np.asarray(e).tolist(), "cpu_s": 2.0,
                      "final_theta": [], "final_loss": [], "steps": steps[-1]} for s, e in enumerate(errs)}
    n_t = np.asarray(errs).shape[2]
    return {"synth": "granular", "arm": arm, "param_names": ["density", "slope"], "seeds": seeds,
            "warmup_cpu_s": 1.0 if arm == "scrapl_thetais" else 0.0,
            "settings": {"steps": steps[-1], "n_targets": n_t, "seeds": list(range(len(errs)))},
            "provenance": {"commit": commit, "dirty": dirty, "command": "x", "versions": {}}}


def _errs(final, start=300.0, n_seeds=2, T=4):
    e = np.zeros((n_seeds, 3, T, 2))
    e[:, 0], e[:, 1], e[:, 2] = start, (start + final) / 2, final
    return e


def test_summary_statistics_and_steps_to_error():
    e = _errs(0.0)
    e[:, 2, :, 1] = np.arange(4) * 10.0  # slope errors differ per target
    s = agg.summarise(_raw("scrapl_thetais", e))
    m, c = mean_ci95(np.arange(4) * 10.0)
    assert s["theta_l1_permille"]["slope"] == pytest.approx({"mean": m, "ci95": c})
    assert s["theta_l1_permille"]["density"]["mean"] == 0.0
    assert s["steps_to_error"] == 10  # (300 + ~0)/2 = 150 at step 5 is above 100 ‰; the last record is below
    assert s["cpu_s"] == pytest.approx(2 * 2.0 + 1.0) and s["n_targets"] == 4 and s["n_seeds"] == 2


def test_aggregate_writes_tables_and_compares_on_the_jtfs_targets(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "granular_scrapl_psaga.json").write_text(json.dumps(_raw("scrapl_psaga", _errs(60.0))))
    (raw / "granular_mss_linear.json").write_text(json.dumps(_raw("mss_linear", _errs(250.0))))
    jt = _raw("jtfs", _errs(40.0, n_seeds=1, T=2))
    (raw / "granular_jtfs.json").write_text(json.dumps(jt))
    out = agg.aggregate("granular", raw, tmp_path / "res", ["direct_optimization.py", "aggregate"])
    res = json.loads(out.read_text())
    assert set(res["arms"]) == {"scrapl_psaga", "mss_linear", "jtfs"}
    assert res["arms"]["scrapl_psaga"]["on_jtfs_targets"]["n_targets"] == 2
    assert res["arms"]["mss_linear"]["steps_to"]["scrapl_psaga"] is None  # never reaches 60 ‰
    assert res["arms"]["jtfs"]["steps_to"]["scrapl_psaga"] == 10
    md = (tmp_path / "res" / "direct_granular.md").read_text()
    assert "SCRAPL + 𝒫-Adam + 𝒫-SAGA" in md and "60.0 ± 0.0" in md
    assert (tmp_path / "res" / "direct_granular.png").stat().st_size > 0


@pytest.mark.parametrize("second", [dict(commit="def"), dict(dirty=True)])
def test_aggregate_refuses_raw_files_of_other_code(tmp_path, second):
    (tmp_path / "granular_mss_linear.json").write_text(json.dumps(_raw("mss_linear", _errs(250.0))))
    (tmp_path / "granular_scrapl_padam.json").write_text(json.dumps(_raw("scrapl_padam", _errs(90.0), **second)))
    with pytest.raises(ValueError, match="different or uncommitted code"):
        agg.aggregate("granular", tmp_path, tmp_path / "res", ["x"])


def _twin(raw: dict, n_grains: int) -> dict:
    return {**raw, "preset": "twin_granular", "synth_kw": {"n_grains": n_grains}, "n_samples": 8192,
            "jtfs": {"J": 9, "Q": [8, 1], "J_fr": 2, "Q_fr": 1}}


def test_a_twin_table_gets_its_own_files_and_names_its_problem(tmp_path):
    (tmp_path / "granular_scrapl_adam.json").write_text(json.dumps(_twin(_raw("scrapl_adam", _errs(80.0)), 32)))
    (tmp_path / "granular_scrapl_psaga.json").write_text(json.dumps(_twin(_raw("scrapl_psaga", _errs(90.0)), 32)))
    out = agg.aggregate("granular", tmp_path, tmp_path / "res", ["x"], tag="twin_g32")
    assert out.name == "direct_granular_twin_g32.json" and not (tmp_path / "res" / "direct_granular.json").exists()
    res = json.loads(out.read_text())
    assert res["problem"]["synth_kw"] == {"n_grains": 32} and res["problem"]["n_samples"] == 8192
    assert "scrapl_psaga - scrapl_adam" in res["paired"]
    md = (tmp_path / "res" / "direct_granular_twin_g32.md").read_text()
    assert "twin `twin_granular`" in md and "SCRAPL (Adam)" in md


def test_aggregate_refuses_arms_that_solved_different_problems(tmp_path):
    (tmp_path / "granular_scrapl_adam.json").write_text(json.dumps(_twin(_raw("scrapl_adam", _errs(80.0)), 32)))
    (tmp_path / "granular_scrapl_psaga.json").write_text(json.dumps(_twin(_raw("scrapl_psaga", _errs(90.0)), 16)))
    with pytest.raises(ValueError, match="different problems"):
        agg.aggregate("granular", tmp_path, tmp_path / "res", ["x"], tag="t")


def test_the_direct_experiment_builds_a_twins_synth():
    import direct_optimization as direct
    synth = direct.build_synth("granular", "twin_granular", {"n_grains": 32})
    assert synth.n_samples == 8192 and synth.n_grains == 32
    assert dict(synth.jtfs_defaults)["J"] == 9  # the twin's JTFS (P = 49), not the paper's J = 12
    assert direct.build_synth("granular").n_samples == 32768
    with pytest.raises(ValueError, match="needs --preset"):
        direct.build_synth("granular", None, {"n_grains": 32})
