"""Exact full-JTFS step: ours vs kymatio main's ``TimeFrequencyScattering`` (vendored in the authors' `scrapl-loss`),
each as a ratio to the MSS Linear step (auraloss) measured by the same interpreter in the same run (issue 14).

    python experiments/compare_kymatio_jtfs.py --json OUT.json [--oracle .oracle-venv/bin/python] [--repeats 3]

kymatio main cannot share an environment with kymatio 0.3.0, so each row runs in a fresh child process: ours with
this interpreter, kymatio main's with the oracle venv's (``make oracle-fixtures`` builds it, with ``auraloss``). A step is forward + backward w.r.t. x̂ of the mean
over paths of the per-path L2 distance between S(x̂) and S(x) (target under no_grad), batch 4, 32768 samples,
J=12, Q=(8, 2), J_fr=3, Q_fr=2, orders 1 + 2 (P = 315 + 8), float32, 2 threads. Peak memory: the child's peak
resident set minus its resident set before the row. The two sides' ratios to their own MSS step are compared:
``speedup = (kymatio JTFS / kymatio MSS) / (our JTFS / our MSS)``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

from benchmark_losses import peak_rss_mb, rss_mb  # this folder (no scraplab import: the oracle venv runs it)

N, BATCH = 32768, 4
# The MSS step of each interpreter is timed before and after the JTFS rows (its mean is the ratio's denominator):
# one MSS process alone moved by 1.4x between the two interpreters in a trial run.
ORDER = ("kymatio_mss", "ours_mss", "ours_jtfs", "kymatio_jtfs", "ours_mss", "kymatio_mss")
ROWS = tuple(dict.fromkeys(ORDER))


def _mss():
    from auraloss.freq import MultiResolutionSTFTLoss

    ffts = [64, 128, 256, 512, 1024, 2048]  # the paper's MSS Linear (= scraplab.losses.spectral.MSSLoss)
    loss = MultiResolutionSTFTLoss(fft_sizes=ffts, hop_sizes=[n // 4 for n in ffts], win_lengths=ffts, w_sc=0.0,
                                   w_log_mag=0.0, w_lin_mag=1.0, w_phs=0.0, mag_distance="L1")
    return lambda x_hat, x: loss(x_hat[:, None], x[:, None])


def _ours_jtfs():
    from scraplab.losses import JTFSLoss

    return JTFSLoss(N, J=12, Q=(8, 2), J_fr=3, Q_fr=2)


def _kymatio_jtfs():
    import scrapl  # noqa: F401  (puts the vendored kymatio main on sys.path; oracle venv only)
    from kymatio.scattering1d.frontend.torch_frontend import TimeFrequencyScatteringTorch

    jtfs = TimeFrequencyScatteringTorch(J=12, J_fr=3, Q=(8, 2), Q_fr=2, shape=(N,), format="joint")

    def loss(x_hat, x):
        S_hat = jtfs(x_hat)
        with torch.no_grad():
            S = jtfs(x)
        return (S_hat - S).flatten(2).norm(dim=-1).mean()  # (B, P, F', T') -> per-path L2, mean
    return loss


def run_row(row, repeats):
    torch.set_num_threads(2)
    torch.manual_seed(0)
    x = torch.randn(BATCH, N)
    rss0 = rss_mb()
    loss = {"ours_mss": _mss, "kymatio_mss": _mss, "ours_jtfs": _ours_jtfs, "kymatio_jtfs": _kymatio_jtfs}[row]()
    full = row.endswith("jtfs")
    times = []
    for i in range((1 if full else 3) + (repeats if full else 10 * repeats)):
        x_hat = torch.randn(BATCH, N).requires_grad_()
        t = time.perf_counter()
        loss(x_hat, x).backward()
        times.append((time.perf_counter() - t) * 1000)
    warm = 1 if full else 3
    peak = peak_rss_mb()
    return {"row": row, "mean_ms": sum(times[warm:]) / len(times[warm:]), "times_ms": times,
            "peak_mb": peak - rss0, "torch": torch.__version__}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--row", choices=ROWS, help="(internal) run one row in this process and print it as JSON")
    ap.add_argument("--oracle", default=".oracle-venv/bin/python", help="interpreter that has scrapl-loss")
    ap.add_argument("--repeats", type=int, default=2, help="timed full-JTFS steps per side (MSS: 10x as many)")
    ap.add_argument("--json", help="write the rows, ratios and provenance here")
    args = ap.parse_args()
    if args.row:
        print(json.dumps(run_row(args.row, args.repeats)))
        return
    if not os.path.exists(args.oracle):
        sys.exit(f"no oracle interpreter at {args.oracle}: run `make oracle-fixtures`")
    from runplan import finish_measurement, measurement_provenance  # experiments/runplan.py, next to this file

    prov = measurement_provenance("experiments/compare_kymatio_jtfs.py", sys.argv[1:])
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    runs = []
    for row in ORDER:
        exe = sys.executable if row.startswith("ours") else args.oracle
        out = subprocess.run([exe, __file__, "--row", row, "--repeats", str(args.repeats)], env=env,
                             capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"row {row} failed:\n{out.stderr[-3000:]}")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"{row}: {runs[-1]['mean_ms']:.1f} ms, peak {runs[-1]['peak_mb']:.0f} MB", flush=True)
    rows = {row: {"mean_ms": sum(r["mean_ms"] for r in runs if r["row"] == row) /
                  sum(r["row"] == row for r in runs),
                  "peak_mb": max(r["peak_mb"] for r in runs if r["row"] == row)} for row in ROWS}
    ours = rows["ours_jtfs"]["mean_ms"] / rows["ours_mss"]["mean_ms"]
    theirs = rows["kymatio_jtfs"]["mean_ms"] / rows["kymatio_mss"]["mean_ms"]
    result = {
        "rows": rows, "runs": runs,
        "ours_jtfs_vs_mss": ours, "kymatio_jtfs_vs_mss": theirs, "speedup_vs_kymatio": theirs / ours,
        "wall_speedup": rows["kymatio_jtfs"]["mean_ms"] / rows["ours_jtfs"]["mean_ms"],
        "memory_ratio": rows["ours_jtfs"]["peak_mb"] / rows["kymatio_jtfs"]["peak_mb"],
    }
    print(f"JTFS / MSS: ours {ours:.1f}x, kymatio main {theirs:.1f}x -> {theirs / ours:.1f}x faster "
          f"(wall {result['wall_speedup']:.1f}x); memory {result['memory_ratio']:.2f} of kymatio main's")
    finish_measurement(result, prov, args.json)


if __name__ == "__main__":
    main()
