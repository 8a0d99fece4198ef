"""experiments/benchmark_losses.py --paired on a short signal: SCRAPL and MSS Linear alternate, the ratios are those
of the recorded times, the JSON records provenance."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiment_scripts import load_experiment

benchmark_losses = load_experiment("benchmark_losses")


def test_paired_mode_times_every_class_and_reports_ratios_of_its_rounds(tmp_path):
    out = tmp_path / "paired.json"
    doc = benchmark_losses.main(["--paired", "315", "--rounds", "2", "--n-samples", "4096", "--batch", "1",
                                 "--host-memory", "default", "--json", str(out)])
    assert doc["paths"] == 315 and doc["classes"] > 1 and len(doc["rounds"]) == 2
    for r in doc["rounds"]:
        assert r["mss_linear_ms"] > 0 and r["scrapl_ms"] > 0 and r["scrapl_warm_ms"] > 0
        assert r["ratio"] == pytest.approx(r["scrapl_ms"] / r["mss_linear_ms"])
        assert r["ratio_warm"] == pytest.approx(r["scrapl_warm_ms"] / r["mss_linear_ms"])
        assert r["ratio_serial"] == pytest.approx(r["scrapl_serial_ms"] / r["mss_linear_ms"])  # overlap off
        assert r["target_ms"] > 0 and r["ratio_target"] == pytest.approx(r["target_ms"] / r["mss_linear_ms"])
        assert r["hidden"] == pytest.approx((r["scrapl_warm_ms"] + r["target_ms"] - r["scrapl_ms"]) / r["target_ms"])
    # the stored-target steps are served from the store: one miss per (sound, class) while filling it
    filled = doc["classes"] * doc["batch"]
    assert doc["store_misses"] == filled and doc["store_hits"] == 2 * filled
    med = doc["median"]
    assert med["ratio_min"] <= med["ratio"] <= med["ratio_max"]
    saved = json.loads(out.read_text())
    assert saved["provenance"]["command"].startswith("python experiments/benchmark_losses.py --paired 315")
    assert saved["median"] == pytest.approx(med)
    assert saved["host_memory"] == "default"  # the allocator setting the figures were taken under


def test_paired_mode_refuses_an_unknown_configuration():
    with pytest.raises(SystemExit):
        benchmark_losses.main(["--paired", "999"])


def test_its_helpers_import_without_scraplab():
    # compare_kymatio_jtfs.py imports them in the oracle venv, where scraplab cannot be installed
    experiments = Path(__file__).resolve().parents[1] / "experiments"
    code = ("import sys; sys.modules['scraplab'] = None; sys.path.insert(0, sys.argv[1]); "
            "from benchmark_losses import peak_rss_mb, rss_mb; print(rss_mb() > 0)")
    out = subprocess.run([sys.executable, "-c", code, str(experiments)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr
