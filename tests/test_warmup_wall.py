"""experiments/warmup_wall.py on a tiny problem: real `scraplab warmup` shards in parallel, merge, π compared."""
import json

import pytest

from experiment_scripts import load_experiment

warmup_wall = load_experiment("warmup_wall")


@pytest.mark.slow
def test_whole_warmup_both_solvers(tmp_path):
    out = tmp_path / "w.json"
    doc = warmup_wall.main(["--overrides", "experiment=twin_granular", "debug=tiny", "sampler.warmup.n_examples=2",
                            "sampler.warmup.batch_size=2", "--shards", "2", "--json", str(out)])
    assert set(doc["rows"]) == {"subspace", "power20"} and doc["reference"] == "power20" and doc["n_paths"] == 49
    assert doc["rows"]["power20"]["spearman_pi_vs_power20"] == pytest.approx(1.0)
    assert doc["rows"]["power20"]["max_rel_pi_vs_power20"] == 0.0
    row = doc["rows"]["subspace"]
    assert row["shards_wall_s"] > 0 and "sampler.warmup.solver=subspace" in row["overrides"]
    assert 0.5 < row["spearman_pi_vs_power20"] <= 1.0 and row["max_rel_pi_vs_power20"] > 0  # different solvers
    assert len(row["C"]) == 49 and len(row["C"][0]) == 2 and len(row["pi"]) == 49
    assert json.loads(out.read_text())["provenance"]["command"].startswith("python experiments/warmup_wall.py")
