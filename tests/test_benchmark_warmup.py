"""experiments/benchmark_warmup.py on a tiny warm-up problem: every solver row, its extrapolation and rank checks."""
import json

import pytest

from experiment_scripts import load_experiment

benchmark_warmup = load_experiment("benchmark_warmup")


def test_spearman_is_a_rank_correlation():
    import torch
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert benchmark_warmup.spearman(a, a ** 3) == pytest.approx(1.0)
    assert benchmark_warmup.spearman(a, -a) == pytest.approx(-1.0)


def test_warmup_benchmark_rows_and_provenance(tmp_path):
    out = tmp_path / "w.json"
    doc = benchmark_warmup.main(["--overrides", "experiment=twin_granular", "debug=tiny", "sampler.warmup.n_examples=2",
                                 "sampler.warmup.batch_size=2", "sampler.warmup.n_iter=4", "--paths", "3",
                                 "--lanczos", "2", "--converged", "6", "--subspace", "4", "--json", str(out)])
    assert set(doc["rows"]) == {"power", "lanczos2", "shared_power", "shared_lanczos2", "shared_lanczos2_loop",
                                "shared_subspace4", "converged", "exact"}
    assert doc["rows"]["shared_lanczos2_loop"]["vectorize"] is False and doc["rows"]["shared_lanczos2"]["vectorize"]
    assert doc["P"] == 49 and len(doc["sampled_paths"]) == 3 and doc["front_build_s"] > 0
    for name, row in doc["rows"].items():
        build = doc["front_build_s"] if row["shared_first_layer"] else 0.0  # once per shard
        build += row.get("projection_build_s", 0.0)
        assert row["shared_first_layer"] == name.startswith("shared_")
        assert row["est_total_min_1_core"] == pytest.approx((build + row["s_per_path"] * 49) / 60)
        assert row["est_total_min_2_cores"] == pytest.approx((build + row["s_per_path"] * 49 / 2) / 60)
        assert -1.0 <= row["spearman_pi_vs_power"] <= 1.0
    assert doc["rows"]["exact"]["median_rel_err_C_vs_exact"] == 0.0
    # same solver and steps: sharing the first layer changes C only by rounding (float32 vs a float64 model)
    for a, b in (("power", "shared_power"), ("lanczos2", "shared_lanczos2")):
        assert doc["rows"][b]["spearman_pi_vs_exact"] >= doc["rows"][a]["spearman_pi_vs_exact"] - 0.5
    assert doc["rows"]["converged"]["median_rel_err_C_vs_exact"] < 0.05
    assert doc["rows"]["shared_subspace4"]["projection_build_s"] > 0
    assert doc["rows"]["shared_subspace4"]["median_rel_err_C_vs_exact"] < 0.05
    assert json.loads(out.read_text())["provenance"]["command"].startswith("python experiments/benchmark_warmup.py")


def test_rows_selects_a_subset_with_the_references(tmp_path):
    doc = benchmark_warmup.main(["--overrides", "experiment=twin_granular", "debug=tiny", "sampler.warmup.n_examples=2",
                                 "sampler.warmup.batch_size=2", "sampler.warmup.n_iter=4", "--paths", "2",
                                 "--lanczos", "2", "--converged", "6", "--subspace", "4",
                                 "--rows", "shared_subspace4"])
    assert set(doc["rows"]) == {"power", "shared_subspace4", "converged", "exact"}
    with pytest.raises(SystemExit, match="unknown rows"):
        benchmark_warmup.main(["--overrides", "experiment=twin_granular", "debug=tiny", "--rows", "nope"])
