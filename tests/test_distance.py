"""The distance tool: exact JTFS vs the K-path SCRAPL estimate and its standard error, pairing, the CLI."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from scraplab.data.wav_folder import load_audio
from scraplab.cli.distance import main
from scraplab.metrics.audio import MSSDistances
from scraplab.metrics.distance import (JTFSSettings, compare, draw_paths, pair_files, path_distances, path_estimate,
                                       resolve_paths)
from train_helpers import tone, write_wav

SR, N = 16000, 4096
SMALL = JTFSSettings(J=8)  # P = 195 second-order paths at 4096 samples, ~0.1 s per forward
SMALL_ARGS = ["--J", "8", "--n-samples", str(N)]


def _t():
    return torch.arange(N) / SR


def _pairs():
    """Two (x_hat, x) pairs with different per-path distance distributions: skewed (tones) and flat (noise)."""
    t, g = _t(), torch.Generator().manual_seed(0)
    tones = (0.5 * torch.sin(2 * math.pi * 480 * t) * torch.exp(-6 * t),
             0.5 * torch.sin(2 * math.pi * 440 * t) * torch.exp(-8 * t))
    noise = (torch.randn(N, generator=g) * torch.exp(-7 * t), torch.randn(N, generator=g) * torch.exp(-10 * t))
    return {"tones": tones, "noise": noise}


@pytest.fixture(scope="module")
def all_path_distances():
    loss = SMALL.build(N)
    out = {}
    for name, (xh, x) in _pairs().items():
        out[name] = path_distances(loss, xh[None], x[None], range(loss.n_paths))[0].double()
    return loss, out


def test_exact_distance_is_scrapl_full(all_path_distances):
    loss, d = all_path_distances
    xh, x = _pairs()["tones"]
    assert float(d["tones"].mean()) == pytest.approx(float(loss.full(xh[None], x[None])), rel=1e-5)


def test_estimate_converges_to_exact_and_equals_it_at_K_equals_P(all_path_distances):
    loss, d = all_path_distances
    P = loss.n_paths
    for name, dp in d.items():
        exact = dp.mean()
        errors = []
        for K in (4, 16, 64, P):
            err = [abs(float(path_estimate(dp[draw_paths(P, K, seed=s)], P)[0] - exact)) for s in range(40)]
            errors.append(sum(err) / len(err))
        assert errors[0] > errors[1] > errors[2] > errors[3], (name, errors)
        assert errors[3] < 1e-12 * float(exact)
        est, se = path_estimate(dp[resolve_paths(P, P)], P)
        assert float(se) == 0.0 and float(est) == pytest.approx(float(exact), rel=1e-12)


@pytest.mark.parametrize("name", ["tones", "noise"])
@pytest.mark.parametrize("K", [32, 97])
def test_standard_error_covers_the_exact_value(all_path_distances, name, K):
    """200 repetitions of K random paths: about 95 % of |estimate − exact| ≤ 1.96·SE."""
    loss, d = all_path_distances
    dp, P = d[name], loss.n_paths
    exact = dp.mean()
    hits = 0
    for rep in range(200):
        est, se = path_estimate(dp[draw_paths(P, K, seed=1000 + rep)], P)
        hits += bool(abs(est - exact) <= 1.96 * se)
    assert 0.90 <= hits / 200 <= 0.99, hits / 200


@pytest.mark.parametrize("K", [8, 97])
def test_squared_standard_error_is_unbiased_for_the_estimate_variance(all_path_distances, K):
    """E[SE²] = Var(estimate) = S²/K·(1 − K/P) under sampling without replacement; without the finite-population
    correction SE² would be 1/(1 − K/P) = 1.99× too large at K = 97 of 195."""
    loss, d = all_path_distances
    dp, P = d["tones"], loss.n_paths
    theory = dp.var() / K * (1 - K / P)
    est, se = path_estimate(torch.stack([dp[draw_paths(P, K, seed=s)] for s in range(2000)]), P)
    assert float((se ** 2).mean() / theory) == pytest.approx(1.0, abs=0.06)
    assert float(est.var() / theory) == pytest.approx(1.0, abs=0.1)


def test_path_estimate_edge_cases():
    d = torch.tensor([[1.0, 3.0, 5.0]])
    est, se = path_estimate(d, 10)
    assert float(est) == 3.0 and float(se) == pytest.approx(math.sqrt(4.0 / 3 * 0.7))
    assert math.isnan(float(path_estimate(d[:, :1], 10)[1]))  # K = 1: no variance estimate
    with pytest.raises(ValueError, match="K <= P"):
        path_estimate(d, 2)
    with pytest.raises(ValueError, match="'all' or a positive integer"):
        resolve_paths(10, "some")
    assert len(set(draw_paths(195, 16, seed=3))) == 16 and draw_paths(195, 16, 3) == draw_paths(195, 16, 3)


def _folders(tmp_path: Path, n: int = 3, sr: int = SR):
    a, b = tmp_path / "a", tmp_path / "b"
    for i in range(n):
        write_wav(a / f"sub/s{i}.wav", tone(sr, 0.2, freq=300 + 150 * i), sr)
        write_wav(b / f"sub/s{i}.flac", tone(sr, 0.3, freq=320 + 150 * i, decay=5), sr)  # longer: cropped
    return a, b


def test_compare_batches_and_subsets_consistently(tmp_path):
    a, b = _folders(tmp_path)
    exact = compare(a, b, "all", settings=SMALL, n_samples=N, batch_size=2, mss=False)
    est = compare(a, b, 16, seed=5, settings=SMALL, n_samples=N, batch_size=3, mss=False)
    assert exact["jtfs"]["exact"] and exact["jtfs"]["k"] == 195 and not est["jtfs"]["exact"]
    assert est["jtfs"]["paths"] == draw_paths(195, 16, seed=5)
    x = torch.cat([load_audio(a / f"sub/s{i}.wav", SR, N) for i in range(3)])
    x_hat = torch.cat([load_audio(b / f"sub/s{i}.flac", SR, N) for i in range(3)])
    loss = SMALL.build(N)
    full = path_distances(loss, x_hat, x, range(195))
    for i, row in enumerate(exact["pairs"]):
        assert row["name"] == f"sub/s{i}" and row["jtfs_se"] == 0.0
        assert row["jtfs"] == pytest.approx(float(full[i].mean()), rel=1e-5)
        sub = full[i, est["jtfs"]["paths"]].double()
        assert est["pairs"][i]["jtfs"] == pytest.approx(float(sub.mean()), rel=1e-5)
        assert est["pairs"][i]["jtfs_se"] == pytest.approx(float(path_estimate(sub, 195)[1]), rel=1e-4)
    assert exact["mean"]["jtfs"] == pytest.approx(float(full.double().mean()), rel=1e-5)


def test_cli_json_on_two_folders(tmp_path, capsys):
    a, b = _folders(tmp_path)
    assert main([str(a), str(b), "--paths", "195", "--json", *SMALL_ARGS]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["jtfs"]["exact"] and out["n_samples"] == N and out["sample_rate"] == SR and len(out["pairs"]) == 3
    x = torch.cat([load_audio(a / f"sub/s{i}.wav", SR, N) for i in range(3)])
    x_hat = torch.cat([load_audio(b / f"sub/s{i}.flac", SR, N) for i in range(3)])
    loss = SMALL.build(N)
    mss = MSSDistances()(x_hat.unsqueeze(1), x.unsqueeze(1))
    for i, row in enumerate(out["pairs"]):
        assert row["jtfs"] == pytest.approx(float(loss.full(x_hat[i:i + 1], x[i:i + 1])), rel=1e-5)
        for k in ("mss_lin", "mss_log_lin", "mss_rev"):
            assert row[k] == pytest.approx(float(mss[k][i]), rel=1e-5)
    assert out["mean"]["mss_rev"] == pytest.approx(float(mss["mss_rev"].mean()), rel=1e-5)
    assert main([str(a), str(b), "--paths", "8", "--log1p", "--no-mss", "--seed", "2", *SMALL_ARGS]) == 0
    text = capsys.readouterr().out
    assert "8 of 195 paths" in text and "log1p" in text and "mss_lin" not in text and text.count("sub/s") == 3


def test_default_length_is_the_longest_file_at_the_first_files_rate(tmp_path):
    a, b = tmp_path / "x.wav", tmp_path / "y.wav"
    write_wav(a, tone(SR, 0.25), SR)
    write_wav(b, tone(2 * SR, 0.5), 2 * SR)
    out = compare(a, b, 4, settings=JTFSSettings(J=8), mss=False)
    assert out["sample_rate"] == SR and out["n_samples"] == int(0.5 * SR) and len(out["pairs"]) == 1


def test_unpaired_and_bad_files_give_clear_errors(tmp_path, capsys):
    a, b = _folders(tmp_path, n=2)
    write_wav(a / "extra.wav", tone(SR, 0.1), SR)
    assert main([str(a), str(b), *SMALL_ARGS]) == 2
    err = capsys.readouterr().err
    assert "unpaired" in err and str(a / "extra.wav") in err
    (a / "extra.wav").unlink()
    write_wav(b / "other.wav", tone(SR, 0.1), SR)
    with pytest.raises(ValueError, match="only in .*other.wav"):
        pair_files(a, b)
    (b / "other.wav").unlink()
    (b / "sub" / "s1.flac").write_bytes(b"not audio at all")
    assert main([str(a), str(b), *SMALL_ARGS]) == 2
    assert str(b / "sub" / "s1.flac") in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a file and a folder"):
        pair_files(a / "sub" / "s0.wav", b)
    with pytest.raises(FileNotFoundError, match="missing"):
        pair_files(a, tmp_path / "missing")
    write_wav(a / "sub" / "s0.flac", tone(SR, 0.1), SR)
    with pytest.raises(ValueError, match="same name"):
        pair_files(a, b)


def test_too_short_signal_names_the_settings(tmp_path, capsys):
    a, b = tmp_path / "x.wav", tmp_path / "y.wav"
    write_wav(a, tone(SR, 0.05), SR)
    write_wav(b, np.zeros(800, dtype=np.float32), SR)
    assert main([str(a), str(b)]) == 2  # J = 12 needs 4096 samples, the files have 800
    assert "invalid JTFS settings for 800-sample signals" in capsys.readouterr().err


def test_module_entry_point(tmp_path):
    a, b = tmp_path / "x.wav", tmp_path / "y.wav"
    write_wav(a, tone(SR, 0.25), SR)
    write_wav(b, tone(SR, 0.25, freq=500), SR)
    proc = subprocess.run([sys.executable, "-m", "scraplab.cli", "distance", str(a), str(b), "--paths", "4", "--no-mss",
                           "--json", *SMALL_ARGS], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["jtfs"]["k"] == 4 and out["pairs"][0]["jtfs_se"] > 0


def test_cli_report_has_one_row_per_pair(tmp_path, capsys):
    from html.parser import HTMLParser

    a, b = _folders(tmp_path)
    assert main([str(a), str(b), "--paths", "8", "--no-mss", "--report", str(tmp_path / "rep"), *SMALL_ARGS]) == 0
    assert "report.html" in capsys.readouterr().err
    srcs, rows = [], []

    class Page(HTMLParser):
        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            rows.extend([1] if tag == "tr" and a.get("class") == "record" else [])
            srcs.extend([a["src"]] if tag in ("audio", "img") else [])

    page = (tmp_path / "rep" / "report.html").read_text()
    Page().feed(page)
    assert len(rows) == 3 and len(srcs) == 9 and all((tmp_path / "rep" / s).is_file() for s in srcs)
    assert "jtfs standard error" in page and "sub/s2" in page
