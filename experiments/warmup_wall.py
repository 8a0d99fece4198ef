"""The whole θ-IS warm-up, wall clock, as a user runs it: ``scraplab warmup`` shards in parallel, then merge (issue 14).

    python experiments/warmup_wall.py --json experiments/results/warmup_wall.json

For each solver (default: the configured one and the paper's 20 power iterations, the reference), runs
``scraplab warmup shard=K n_shards=S`` for K = 0..S-1 at once (one BLAS thread each, each shard in its own data
folder), times the slowest, merges, and compares every solver's π on all P paths with the reference's by Spearman
rank correlation. Shards give exactly the values of one unsharded run (``tests/test_warmup_cli.py``), so the
reference is the unsharded π. ``--solvers subspace power20 lanczos40`` adds a converged solver and records the
Spearman of every pair, to tell which of the two disagreeing ones is off.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

PROBLEM = ["synth=granular", "loss=scrapl", "optim=p_saga", "sampler=theta_is", "sampler.warmup.n_examples=8",
           "sampler.warmup.batch_size=8"]
SOLVERS = {"subspace": ["sampler.warmup.solver=subspace"],
           "power20": ["sampler.warmup.solver=power", "sampler.warmup.n_iter=20"],
           # converged check on the reference (not run by default): on the worst paths 40 Lanczos steps agree with
           # 200 power iterations to 0.6 %, where 20 power iterations are off by up to 1600x
           "lanczos40": ["sampler.warmup.solver=lanczos", "sampler.warmup.n_iter=40"]}
DEFAULT_SOLVERS = ["subspace", "power20"]


def _warmup(args: list[str], data: Path) -> subprocess.Popen:
    """``scraplab warmup ARGS`` with its own data folder and one BLAS thread."""
    env = {**os.environ, "SCRAPLAB_DATA_DIR": str(data), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "scraplab.cli", "warmup", *args], env=env,
                            stdout=subprocess.DEVNULL)


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--overrides", nargs="*", default=PROBLEM)
    ap.add_argument("--solvers", nargs="+", default=DEFAULT_SOLVERS, choices=list(SOLVERS))
    ap.add_argument("--reference", default="power20", choices=list(SOLVERS),
                    help="the solver the target's Spearman is taken against (every pair is also recorded)")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchmark_warmup import spearman
    from runplan import finish_measurement, measurement_provenance

    prov = measurement_provenance("experiments/warmup_wall.py", argv)
    rows, probs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.solvers:
            data = Path(tmp) / name
            over = [*args.overrides, *SOLVERS[name]]
            t0 = time.perf_counter()
            codes = [p.wait() for p in [_warmup([f"shard={k}", f"n_shards={args.shards}", *over], data)
                                        for k in range(args.shards)]]
            shards_s = time.perf_counter() - t0
            if any(codes):
                raise RuntimeError(f"{name}: a shard failed (exit codes {codes})")
            t0 = time.perf_counter()
            if _warmup(["merge=true", f"n_shards={args.shards}", *over], data).wait():
                raise RuntimeError(f"{name}: the merge failed")
            merge_s = time.perf_counter() - t0
            (pt,) = [f for f in (data / "theta_is").glob("*.pt") if not f.name.endswith(".vals.pt")]
            probs[name] = torch.load(pt, weights_only=True)
            vals = torch.load(pt.with_name(pt.stem + ".vals.pt"), weights_only=True)  # C (P, U), for diagnosis
            rows[name] = {"overrides": over, "shards_wall_s": shards_s, "merge_s": merge_s,
                          "total_min": (shards_s + merge_s) / 60, "C": vals.tolist(), "pi": probs[name].tolist()}
            print(f"{name:<10} {args.shards} shards {shards_s:6.1f} s + merge {merge_s:4.1f} s = "
                  f"{rows[name]['total_min']:.2f} min", flush=True)
    ref = args.reference if args.reference in probs else args.solvers[0]
    for name in rows:
        rows[name]["spearman_pi_vs_" + ref] = spearman(probs[name], probs[ref])
        rows[name]["max_rel_pi_vs_" + ref] = float(((probs[name] - probs[ref]).abs() / probs[ref]).max())
        print(f"{name:<10} Spearman π vs {ref} on all {probs[name].numel()} paths "
              f"{rows[name]['spearman_pi_vs_' + ref]:.4f}, max |Δπ|/π {rows[name]['max_rel_pi_vs_' + ref]:.3g}")
        rows[name]["spearman_pi"] = {other: spearman(probs[name], probs[other]) for other in rows}
    if len(rows) > 2:
        print("Spearman π, every pair: " + "; ".join(f"{a}/{b} {rows[a]['spearman_pi'][b]:.4f}"
                                                       for i, a in enumerate(rows) for b in list(rows)[i + 1:]))
    doc = {"shards": args.shards, "reference": ref, "n_paths": int(probs[ref].numel()), "rows": rows,
           "target_min_2_cores": 5.0, "target_spearman": 0.99}
    return finish_measurement(doc, prov, args.json)


if __name__ == "__main__":
    main()
