"""experiments/aggregate.py and plots.py on fake run folders: method naming, CI, paired tests, history, errors."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from scraplab.metrics.runs import RunFolderError, method_name
from scraplab.metrics.stats import mean_ci95, paired_test

from experiment_scripts import load_experiment

aggregate, plots = load_experiment("aggregate"), load_experiment("plots")

SYNTH = {"_target_": "scraplab.synths.granular.GranularSynth"}
SCRAPL = {"_target_": "scraplab.losses.SCRAPLLoss"}
UNIFORM = {"_target_": "scraplab.sampling.PathSampler", "mode": "uniform", "budget": 1}
THETA_IS = {"_target_": "scraplab.sampling.PathSampler", "mode": "fixed", "budget": 1}
ARMS = {"scrapl_adamw": ("adamw", UNIFORM), "scrapl_padam": ("p_adam", UNIFORM),
        "scrapl_psaga": ("p_saga", UNIFORM), "scrapl_psaga_thetais": ("p_saga", THETA_IS)}


def write_run(root, name, seed, loss, test, optim="adamw", sampler=UNIFORM, per=None, history=None, status="ok",
              wall_s=10.0, steps=100):
    folder = root / name / str(seed)
    folder.mkdir(parents=True)
    cfg = {"seed": seed, "synth": SYNTH, "loss": loss, "sampler": sampler,
           "optim": {"_target_": f"scraplab.optim.factories.{optim}"}}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    metrics = {"status": status, "test/theta_l1_permille": test, "init/theta_l1_permille": 250.0,
               "wall_s": wall_s, "steps": steps}
    for k, v in (per or {}).items():
        metrics[f"test/theta_l1_permille/{k}"] = v
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if history is not None:  # Lightning CSVLogger layout: interleaved train rows without the val column value
        (folder / "csv").mkdir()
        rows = ["epoch,step,train/loss,val/theta_l1_permille"]
        for i, (s, v) in enumerate(history):
            rows += [f"{i},{s - 1},0.5,", f"{i},{s},,{v}"]
        (folder / "csv" / "metrics.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_method_names():
    assert method_name({"loss": SCRAPL, "optim": {"_target_": "x.p_saga"}, "sampler": THETA_IS}) == \
        "scrapl_psaga_thetais"
    assert method_name({"loss": SCRAPL, "optim": {"_target_": "x.adamw"}, "sampler": UNIFORM}) == "scrapl_adamw"
    assert method_name({"loss": SCRAPL, "optim": {"_target_": "x.p_adam"}}) == "scrapl_padam"
    assert method_name({"loss": {"_target_": "scraplab.losses.spectral.MSSLoss", "w_log_mag": 1.0}}) == "mss_log_lin"
    assert method_name({"loss": {"_target_": "scraplab.losses.spectral.MSSLoss", "w_log_mag": 0.0}}) == "mss_lin"
    assert method_name({"loss": {"_target_": "scraplab.losses.param.ParamLoss"}}) == "param"
    assert method_name({"loss": {"_target_": "scraplab.losses.JTFSLoss"}, "method": "custom"}) == "custom"
    with pytest.raises(RunFolderError, match="loss._target_"):
        method_name({"loss": None}, "run/config.yaml")


def test_ci_formula_by_hand():
    mean, ci = mean_ci95([60.0, 70.0, 65.0, 71.0])
    # mean 66.5; deviations −6.5, 3.5, −1.5, 4.5 → Σd² = 42.25+12.25+2.25+20.25 = 77 → std0 = √(77/4)
    assert mean == pytest.approx(66.5) and ci == pytest.approx(1.96 * math.sqrt(77 / 4) / 2, rel=1e-12)
    assert mean_ci95([5.0]) == (5.0, 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        mean_ci95([1.0, float("nan")])


def test_paired_test_matches_scipy():
    a, b = [99.0, 105.0, 90.0, 101.0, 95.0], [88.0, 97.0, 85.0, 99.0, 80.0]
    res = paired_test(a, b)
    d = np.subtract(b, a)
    assert res["delta_mean"] == pytest.approx(d.mean())
    assert res["p_value"] == pytest.approx(stats.ttest_rel(b, a).pvalue, rel=1e-12)
    assert res["t_ci95"] == pytest.approx(stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5), rel=1e-12)
    assert paired_test([1.0], [2.0])["p_value"] is None
    with pytest.raises(ValueError, match="equal lengths"):
        paired_test([1.0, 2.0], [1.0])


def test_comparison_table(tmp_path):
    runs = tmp_path / "runs"
    tests = {"scrapl": [60.0, 70.0, 65.0], "param": [20.0, 21.0, 20.5], "mss_rand": [190.0, 200.0, 195.0]}
    for seed in range(3):
        write_run(runs, "s", seed, SCRAPL, tests["scrapl"][seed], "p_saga", THETA_IS,
                  per={"density": 70.0 + seed, "slope": 50.0}, wall_s=30.0, steps=100)
        write_run(runs, "p", seed, {"_target_": "scraplab.losses.param.ParamLoss"}, tests["param"][seed],
                  wall_s=10.0, steps=100)
        write_run(runs, "m", seed, {"_target_": "scraplab.losses.spectral.RandomMSSLoss"}, tests["mss_rand"][seed],
                  wall_s=12.0, steps=100)
    write_run(runs, "failed", 9, SCRAPL, 1.0, "p_saga", status="non-finite")
    out = tmp_path / "results"
    table = aggregate.main([str(runs), "--name", "granular_cpu", "--out", str(out), "--plot"])
    data = json.loads((out / "granular_cpu.json").read_text())
    assert set(data) == {"scrapl", "param", "mss_rand"} and data["scrapl"]["arm"] == "scrapl_psaga_thetais"
    for m, vals in tests.items():
        assert data[m]["n_seeds"] == 3
        assert data[m]["theta_l1_permille_mean"] == pytest.approx(np.mean(vals))
        assert data[m]["ci95"] == pytest.approx(1.96 * np.std(vals) / math.sqrt(3))
        assert "experiments/aggregate.py" in data[m]["command"] and "granular_cpu" in data[m]["command"]
    assert data["scrapl"]["ms_per_step"] == pytest.approx(300.0) and data["param"]["ms_per_step"] == 100.0
    assert data["scrapl"]["per_param_mean"] == {"density": pytest.approx(71.0), "slope": pytest.approx(50.0)}
    md = (out / "granular_cpu.md").read_text()
    assert "| SCRAPL | 65.0 ± " in md and "Excluded runs" in md and "non-finite" in md
    assert (out / "granular_cpu_pareto.png").stat().st_size > 1000
    pts = plots.pareto_points(table)
    assert pts["param"][:2] == (1.0, 1.0) and pts["scrapl"][0] == pytest.approx(3.0)
    assert pts["mss_rand"][1] == pytest.approx(195.0 / 20.5)


def test_ablation_paired_tests_and_history(tmp_path):
    runs = tmp_path / "runs"
    rng = np.random.default_rng(0)
    level = {"scrapl_adamw": 100.0, "scrapl_padam": 88.0, "scrapl_psaga": 74.0, "scrapl_psaga_thetais": 66.0}
    values = {a: level[a] + rng.normal(0, 5, size=4) for a in ARMS}
    for arm, (opt, sampler) in ARMS.items():
        for seed in range(4):
            # validation curve every 96 steps, falling 160/(5 − k) ‰ per validation (k = arm index), offset by seed
            k = list(ARMS).index(arm)
            curve = [(96 * (i + 1), 250.0 - i * 160.0 / (5 - k) + seed) for i in range(6)]
            write_run(runs, arm, seed, SCRAPL, float(values[arm][seed]), opt, sampler, history=curve)
    out = tmp_path / "res"
    aggregate.main([str(runs), "--name", "granular_cpu_ablation", "--out", str(out)])
    data = json.loads((out / "granular_cpu_ablation.json").read_text())
    assert list(data) == list(ARMS) and "paired_vs_previous" not in data["scrapl_adamw"]
    for prev, cur in zip(list(ARMS), list(ARMS)[1:]):
        res = data[cur]["paired_vs_previous"]
        assert res["previous"] == prev and res["seeds"] == [0, 1, 2, 3]
        ref = stats.ttest_rel(values[cur], values[prev])
        assert res["theta_l1_permille"]["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
        assert res["theta_l1_permille"]["delta_mean"] == pytest.approx(np.mean(values[cur] - values[prev]))
    # history from csv/metrics.csv: convergence and TV per run, computed by hand for seed 0 of the AdamW arm
    run0 = data["scrapl_adamw"]["runs"][0]
    curve0 = [250.0 - i * 32.0 for i in range(6)]  # 250, 218, 186, 154, 122, 90 → converges at step 576
    assert run0["conv_steps"] == 576 and run0["total_variation"] == pytest.approx(160.0 / 6)
    assert data["scrapl_adamw"]["convergence_rate"] == 1.0 and data["scrapl_adamw"]["n_history"] == 4
    assert curve0[-1] < 100 <= curve0[-2]
    md = (out / "granular_cpu_ablation.md").read_text()
    assert "| SCRAPL + 𝒫-Adam | ✓ |  |  |" in md and "Δ test θ L1" in md


def test_errors_name_the_file(tmp_path):
    runs = tmp_path / "runs"
    folder = write_run(runs, "a", 0, SCRAPL, 60.0, "p_saga")
    write_run(runs, "b", 0, SCRAPL, 61.0, "p_saga")
    with pytest.raises(RunFolderError, match="two runs of method 'scrapl_psaga' with seed 0"):
        aggregate.main([str(runs), "--name", "x", "--out", str(tmp_path / "o")])
    (folder / "metrics.json").write_text("{not json")
    with pytest.raises(RunFolderError, match=r"a/0/metrics.json: cannot read JSON"):
        aggregate.main([str(runs), "--name", "x", "--out", str(tmp_path / "o")])
    (folder / "config.yaml").unlink()
    with pytest.raises(RunFolderError, match="without config.yaml"):
        aggregate.main([str(runs), "--name", "x", "--out", str(tmp_path / "o")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunFolderError, match="no usable run folders"):
        aggregate.main([str(tmp_path / "empty"), "--name", "x", "--out", str(tmp_path / "o")])
    with pytest.raises(RunFolderError, match="no such folder"):
        aggregate.main([str(tmp_path / "missing"), "--name", "x", "--out", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="no 'param'"):
        plots.pareto_points({"scrapl": {"ms_per_step": 1.0, "theta_l1_permille_mean": 1.0}})
