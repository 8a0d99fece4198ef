"""θ-IS warm-up benchmark (issue 14: P = 315, 8 examples, 20 iterations in ≤ 5 min on 2 cores, π equal to the
reference, Spearman ≥ 0.99).

    python experiments/benchmark_warmup.py                                  # granular, P = 315, 8 examples
    python experiments/benchmark_warmup.py --json experiments/results/benchmark_warmup.json

On ``--paths`` evenly spaced paths of the training app's own warm-up problem (``scraplab warmup``'s: the first
training rows, the untrained encoder, the evaluation seeds), each solver computes C_{u,p} and is timed per path:
the reference (power iteration, ``n_iter`` 20, the paper's and the default), Lanczos at a few step counts, and a
converged Lanczos (``--converged`` steps) that says how far each one is from the true |λ_max|. The whole warm-up's
time is the per-path mean × P on one core (two shards on two cores halve it: ``scraplab warmup shard=K``). π on the
sampled paths (normalised over them) is compared by Spearman rank correlation.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

DEFAULT = ["synth=granular", "loss=scrapl", "optim=p_saga", "sampler=theta_is", "sampler.warmup.n_examples=8",
           "sampler.warmup.batch_size=8", "sampler.warmup.n_iter=20"]


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two 1-D tensors (ties broken by position)."""
    ra = torch.argsort(torch.argsort(a)).double()
    rb = torch.argsort(torch.argsort(b)).double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp_min(1e-300))


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--overrides", nargs="*", default=DEFAULT)
    ap.add_argument("--paths", type=int, default=12, help="evenly spaced paths timed and compared")
    ap.add_argument("--lanczos", type=int, nargs="+", default=[6, 8, 10], help="Lanczos step counts to time")
    ap.add_argument("--converged", type=int, default=40, help="Lanczos steps of the converged value")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from scraplab.cli.warmup import _problem
    from scraplab.metrics.audio import select_paths
    from scraplab.sampling.importance import probs_from_values, theta_importance
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from runplan import finish_measurement, measurement_provenance

    prov = measurement_provenance("experiments/benchmark_warmup.py", argv)
    pr = _problem(list(args.overrides))
    P, n_iter = pr["n_paths"], pr["n_iter"]
    paths = select_paths(P, args.paths)
    runs = {"power": ("power", n_iter), **{f"lanczos{k}": ("lanczos", k) for k in args.lanczos},
            "converged": ("lanczos", args.converged)}
    vals, per_path_s = {}, {}
    for name, (solver, k) in runs.items():
        rows, secs = [], []
        for p in paths:
            t0 = time.perf_counter()
            rows.append(theta_importance(pr["encoder"], pr["synth_fn"], pr["path_loss_fn"], pr["x"], P,
                                         synth_kwargs=pr["synth_kwargs"], path_range=(p, p + 1), n_iter=k,
                                         tol=pr["tol"] if name != "converged" else 0.0, seed=pr["seed"],
                                         solver=solver, progress=False)[0])
            secs.append(time.perf_counter() - t0)
        vals[name], per_path_s[name] = torch.stack(rows), secs
        print(f"{name:<10} {statistics.mean(secs):6.2f} s/path  → P = {P}: {statistics.mean(secs) * P / 60:6.1f} min "
              f"on 1 core, {statistics.mean(secs) * P / 120:6.1f} min on 2 (2 shards)", flush=True)
    pis = {n: probs_from_values(v) for n, v in vals.items()}
    rel = {n: float(((v - vals["converged"]).abs() / vals["converged"].clamp_min(1e-300)).median()) for n, v in vals.items()}
    rows = {}
    for name in runs:
        mean_s = statistics.mean(per_path_s[name])
        rows[name] = {"solver": runs[name][0], "steps": runs[name][1], "s_per_path": mean_s,
                      "est_total_min_1_core": mean_s * P / 60, "est_total_min_2_cores": mean_s * P / 120,
                      "spearman_pi_vs_power": spearman(pis[name], pis["power"]),
                      "spearman_pi_vs_converged": spearman(pis[name], pis["converged"]),
                      "median_rel_err_C_vs_converged": rel[name]}
        print(f"{name:<10} Spearman π vs power {rows[name]['spearman_pi_vs_power']:.4f}, vs converged "
              f"{rows[name]['spearman_pi_vs_converged']:.4f}; median |C − C*|/C* {rel[name]:.3g}")
    doc = {"overrides": args.overrides, "P": P, "n_examples": sum(int(x.shape[0]) for x in pr["x"]), "n_iter": n_iter,
           "sampled_paths": paths, "threads": args.threads, "rows": rows, "target_min_2_cores": 5.0,
           "target_spearman": 0.99}
    return finish_measurement(doc, prov, args.json)


if __name__ == "__main__":
    main()
