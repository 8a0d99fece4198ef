"""``scraplab distance A B``: JTFS and MSS distances between two audio files or two folders of pairs.

    scraplab distance targets/ matches/ [--paths all|K] [--seed S] [--log1p] [--json]
        [--J 12] [--Q 8,2] [--J-fr 3] [--Q-fr 2] [--T N] [--F N] [--sr HZ] [--n-samples N] [--batch-size 1]
        [--threads T] [--no-mss] [--report DIR]

Folders are paired by relative file name without extension. ``--paths all`` (default) gives the exact JTFS distance;
``--paths K`` the SCRAPL estimate from K random paths (drawn without replacement with ``--seed``, the same paths for
every pair) with its standard error. ``--report DIR`` also writes ``DIR/report.html``
(:func:`scraplab.report.write_report`: players, scalograms and the distances of every pair). The library behind it is :mod:`scraplab.metrics.distance`.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from scraplab.data.wav_folder import WavLoadError
from scraplab.metrics.distance import JTFSSettings, compare

MSS_NAMES = ("mss_lin", "mss_log_lin", "mss_rev")


def _q_pair(text: str) -> tuple[int, int]:
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        q = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--Q must be 'Q1' or 'Q1,Q2' integers, got {text!r}") from None
    if len(q) == 1:
        q = (q[0], 1)
    if len(q) != 2:
        raise argparse.ArgumentTypeError(f"--Q must be 'Q1' or 'Q1,Q2', got {text!r}")
    return q


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scraplab distance",
                                description="JTFS (exact or K-path SCRAPL estimate ± SE) and MSS distances.")
    p.add_argument("a", help="audio file or folder (reference / target)")
    p.add_argument("b", help="audio file or folder (compared / match), paired with A by relative name")
    p.add_argument("--paths", default="all", help="'all' (exact, default) or K random paths")
    p.add_argument("--seed", type=int, default=0, help="seed of the path draw (default 0)")
    p.add_argument("--log1p", action="store_true", help="compare log1p(S / 1e-3) (the paper's TR-808 ρ)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--J", type=int, default=12)
    p.add_argument("--Q", type=_q_pair, default=(8, 2), help="Q1,Q2 (default 8,2)")
    p.add_argument("--J-fr", dest="J_fr", type=int, default=3)
    p.add_argument("--Q-fr", dest="Q_fr", type=int, default=2)
    p.add_argument("--T", type=int, default=None, help="temporal averaging support in samples (default 2**J)")
    p.add_argument("--F", type=int, default=None, help="frequential averaging support in rows (default 2**J_fr)")
    p.add_argument("--sr", type=int, default=None, help="sample rate in Hz (default: the first file's)")
    p.add_argument("--n-samples", dest="n_samples", type=int, default=None,
                   help="pad/crop every file to this length (default: the longest file)")
    # Default 1: on a CPU at 1 s / 44.1 kHz larger batches only add allocation (page-fault) time, see compare().
    p.add_argument("--batch-size", dest="batch_size", type=int, default=1, help="pairs per JTFS call (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-mss", dest="mss", action="store_false", help="skip the MSS distances")
    p.add_argument("--report", default=None, help="also write a listening report (report.html) into this folder")
    return p


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.6g}"


def table(result: dict) -> str:
    """Human-readable table of a :func:`compare` result."""
    j = result["jtfs"]
    s = result["settings"]
    rho = "log1p(S/1e-3)" if s["log1p"] else "identity"
    how = (f"exact, all {j['n_paths']} paths" if j["exact"] else
           f"SCRAPL estimate, {j['k']} of {j['n_paths']} paths drawn without replacement (seed {j['seed']}), "
           "± standard error")
    lines = [f"JTFS J={s['J']} Q={tuple(s['Q'])} J_fr={s['J_fr']} Q_fr={s['Q_fr']} T={s['T']} F={s['F']}, "
             f"rho={rho}, {s['scaling']} scaling: {how}",
             f"{result['sample_rate']} Hz, {result['n_samples']} samples"]
    mss = [k for k in MSS_NAMES if k in result["mean"]]
    head = ["pair", "jtfs", "±se"] + mss
    rows = [[r["name"], _fmt(r["jtfs"]), _fmt(r["jtfs_se"])] + [_fmt(r[k]) for k in mss] for r in result["pairs"]]
    m = result["mean"]
    rows.append([f"mean of {len(result['pairs'])}", _fmt(m["jtfs"]), _fmt(m["jtfs_se"])] + [_fmt(m[k]) for k in mss])
    widths = [max(len(str(row[i])) for row in [head] + rows) for i in range(len(head))]
    for row in [head] + rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def write_pair_report(result: dict, out_dir: str) -> str:
    """report.html of the compared pairs (A as target, B as match) with their distances; returns its path."""
    from scraplab.data.wav_folder import load_audio
    from scraplab.report import write_report

    sr, n = result["sample_rate"], result["n_samples"]
    records = []
    for row in result["pairs"]:
        dist = {"jtfs": row["jtfs"]}
        if row["jtfs_se"]:
            dist["jtfs standard error"] = row["jtfs_se"]
        dist.update({k: row[k] for k in MSS_NAMES if k in row})
        records.append({"name": row["name"], "target": load_audio(row["a"], sr, n)[0],
                        "match": load_audio(row["b"], sr, n)[0], "distances": dist})
    return str(write_report(out_dir, records, sample_rate=sr, title=f"{result['a']} vs {result['b']}"))


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    settings = JTFSSettings(J=args.J, Q=args.Q, J_fr=args.J_fr, Q_fr=args.Q_fr, T=args.T, F=args.F,
                            log1p=args.log1p)
    try:
        result = compare(args.a, args.b, paths=args.paths, seed=args.seed, settings=settings, sample_rate=args.sr,
                         n_samples=args.n_samples, batch_size=args.batch_size, mss=args.mss)
    except (ValueError, FileNotFoundError, WavLoadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else table(result))
    if args.report:
        path = write_pair_report(result, args.report)
        print(f"report: {path}", file=sys.stderr)  # stderr: keeps --json output parseable
    return 0


if __name__ == "__main__":
    sys.exit(main())
