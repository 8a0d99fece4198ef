"""experiments/loss_tables.py: the README's loss-benchmark tables come from the result files of one run."""
import json

import pytest

from experiment_scripts import load_experiment

loss_tables = load_experiment("loss_tables")


def _prov(commit="abc1234def", command="python experiments/benchmark_losses.py --quick"):
    return {"commit": commit, "dirty": False, "command": command, "load_before": [0.5, 0.6, 0.7]}


def _quick(commit="abc1234def"):
    rows = [dict(name="mss_linear", paths=None, mean_ms=50.0, median_ms=49.0, min_ms=45.0, max_ms=60.0, peak_mb=170.0),
            dict(name="scrapl_315", paths=315, mean_ms=90.0, median_ms=80.0, min_ms=70.0, max_ms=150.0, peak_mb=400.0),
            dict(name="jtfs_315", paths=323, mean_ms=4321.0, median_ms=4321.0, min_ms=4321.0, max_ms=4321.0,
                 peak_mb=500.0)]
    return {"rows": rows, "threads": 2, "host_memory": "keep", "provenance": _prov(commit)}


def _paired(commit="abc1234def"):
    med = dict(mss_linear_ms=50.0, scrapl_ms=85.0, scrapl_warm_ms=70.0, scrapl_serial_ms=100.0, target_ms=25.0,
               ratio=1.7, ratio_warm=1.4, ratio_serial=2.0, ratio_target=0.5, hidden=0.4)
    for k in ("ratio", "ratio_warm", "ratio_serial", "ratio_target", "hidden"):
        med.update({f"{k}_min": med[k] - 0.05, f"{k}_max": med[k] + 0.05})
    return {"median": med, "rounds": [{}, {}, {}], "paths": 315, "classes": 84, "threads": 2,
            "provenance": _prov(commit, "python experiments/benchmark_losses.py --paired 315")}


def _write(folder, **docs):
    for name, doc in docs.items():
        (folder / f"{name}.json").write_text(json.dumps(doc))


def test_tables_print_the_figures_of_the_files_with_their_source(tmp_path):
    _write(tmp_path, quick=_quick(), paired_315=_paired())
    text = loss_tables.render(tmp_path)
    assert "| **SCRAPL, P = 315** | 315 | 90.0 | 80.0 | 70.0 | 150.0 | 400 |" in text
    assert "| exact full JTFS (orders 1+2) | 323 | 4 321 | – | – | – | 500 |" in text
    assert "| SCRAPL, targets stored | 70.0 ms, **1.40×** [1.35, 1.45] |" in text
    assert "| share of it the overlap hides | 40 % [35, 45] |" in text
    assert "at abc1234" in text and "load average before it 0.50, 0.60, 0.70" in text
    assert "kymatio" not in text.lower().replace("scattering1d (kymatio 0.3.0", "")  # no comparison file, no table


def test_a_folder_mixing_commits_is_refused(tmp_path):
    _write(tmp_path, quick=_quick("abc1234def"), paired_315=_paired("fff0000aaa"))
    with pytest.raises(SystemExit, match="different commits"):
        loss_tables.render(tmp_path)


def test_an_empty_folder_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="neither quick.json nor paired_315.json"):
        loss_tables.render(tmp_path)


def test_the_kymatio_table_takes_each_sides_mean_mss_step(tmp_path):
    runs = [dict(row="kymatio_mss", mean_ms=100.0, peak_mb=100.0), dict(row="ours_mss", mean_ms=90.0, peak_mb=100.0),
            dict(row="ours_jtfs", mean_ms=4000.0, peak_mb=512.0), dict(row="kymatio_jtfs", mean_ms=100000.0,
                                                                       peak_mb=16384.0),
            dict(row="ours_mss", mean_ms=110.0, peak_mb=100.0), dict(row="kymatio_mss", mean_ms=100.0, peak_mb=100.0)]
    doc = {"runs": runs, "wall_speedup": 25.0, "speedup_vs_kymatio": 25.0, "memory_ratio": 0.03,
           "provenance": _prov(command="python experiments/compare_kymatio_jtfs.py")}
    _write(tmp_path, quick=_quick(), kymatio=doc)
    text = loss_tables.render(tmp_path)
    assert "| kymatio main | 100.00 s | 100.0 ms | 1000× | 16.00 GB |" in text
    assert "| scraplab | 4.00 s | 100.0 ms | 40× | 0.50 GB |" in text  # MSS: the mean of its two runs
    assert "**25.0× faster** (target ≥ 20×)" in text


def test_the_readme_tables_are_those_of_the_folder_it_cites():
    # the README's loss tables are pasted from one run_loss_benchmarks.sh folder: re-rendering it gives them back
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    cited = set(re.findall(r"experiments/results/(loss_benchmarks_[0-9a-f]+)/", readme))
    assert len(cited) == 1, cited
    rendered = loss_tables.render(root / "experiments" / "results" / cited.pop())
    assert rendered.strip() in readme
