"""θ-IS warm-up benchmark (issue 14: P = 315, 8 examples, 20 iterations in ≤ 5 min on 2 cores, π equal to the
reference, Spearman ≥ 0.99).

    python experiments/benchmark_warmup.py                                  # granular, P = 315, 8 examples
    python experiments/benchmark_warmup.py --json experiments/results/benchmark_warmup.json

On ``--paths`` evenly spaced paths of the training app's own warm-up problem (``scraplab warmup``'s: the first
training rows, the untrained encoder, the evaluation seeds), each solver computes C_{u,p} and is timed per path:
the reference (power iteration, ``n_iter`` 20, the paper's and the default), Lanczos at a few step counts, and a
converged Lanczos (``--converged`` steps) that says how far each one is from the true |λ_max|. The whole warm-up's
time is the per-path mean × P on one core (two shards on two cores halve it: ``scraplab warmup shard=K``). The
``shared_*`` rows run the same solvers with the first layer shared across paths (``sampler.warmup.share_first_layer``,
the default: synth + scalogram modelled to second order in float64 once per batch); their totals add the models'
build time once per shard. The ``shared_subspace<k>`` rows use the ``subspace`` solver (the encoder's Hessians projected
once per batch on k random directions per example and u, one subspace iteration; no Hessian-vector product per path)
and add its build time too. ``--rows`` runs a subset (with the two references). π on the sampled paths (normalised over them) is compared by Spearman rank correlation
with the float32 per-path references and with ``exact``: the per-path computation in float64, converged.
"""
from __future__ import annotations

import argparse
import copy
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
    ap.add_argument("--subspace", type=int, nargs="+", default=[16, 32],
                    help="ranks of the 'subspace' solver rows (one subspace iteration)")
    ap.add_argument("--rows", nargs="+", default=None,
                    help="only these rows (power, converged and exact are always run: the references)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from scraplab.cli.warmup import _problem
    from scraplab.metrics.audio import select_paths
    from scraplab.sampling.importance import (build_front_models, build_projections, probs_from_values,
                                              shared_first_layer, theta_importance)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from runplan import finish_measurement, measurement_provenance

    prov = measurement_provenance("experiments/benchmark_warmup.py", argv)
    pr = _problem(list(args.overrides))
    P, n_iter, enc = pr["n_paths"], pr["n_iter"], pr["encoder"]
    paths = select_paths(P, args.paths)
    front = pr["front"] or shared_first_layer(pr["loss"])  # the shared rows also for presets that pin it off
    enc.eval()
    t0 = time.perf_counter()
    models = build_front_models(enc, pr["synth_fn"], pr["x"], pr["synth_kwargs"], front[0], compute_dtype=torch.float64)
    build_s = time.perf_counter() - t0
    print(f"shared first layer: models of {len(models)} batch(es) built in {build_s:.1f} s "
          f"({sum(m.nbytes for m in models if m is not None) / 2**20:.0f} MiB)", flush=True)
    # name -> (solver, steps, shared first layer); "converged" is the float32 per-path value run to convergence,
    # "exact" the same in float64 (encoder, loss and synth), the truth both float32 computations are compared with
    # (``_loop``: the U slices' Hessian-vector products one after another instead of batched, vectorize=False)
    runs = {"power": ("power", n_iter, False, True),
            **{f"lanczos{k}": ("lanczos", k, False, True) for k in args.lanczos},
            "shared_power": ("power", n_iter, True, True),
            **{f"shared_lanczos{k}": ("lanczos", k, True, True) for k in args.lanczos},
            **{f"shared_lanczos{k}_loop": ("lanczos", k, True, False) for k in args.lanczos},
            **{f"shared_subspace{k}": ("subspace", k, True, True) for k in args.subspace},
            "converged": ("lanczos", args.converged, False, True), "exact": ("lanczos", args.converged, False, True)}
    if args.rows is not None:
        unknown = sorted(set(args.rows) - set(runs))
        if unknown:
            raise SystemExit(f"unknown rows {unknown}; choose from {sorted(runs)}")
        runs = {n: r for n, r in runs.items() if n in set(args.rows) | {"power", "converged", "exact"}}
    # the subspace solver's projections of the encoder's Hessians: built once per shard, like the front models
    projections, proj_s = {}, {}
    for name, (solver, k, _, _) in runs.items():
        if solver == "subspace":
            t0 = time.perf_counter()
            projections[name] = build_projections(enc, pr["x"], rank=k, power=1, seed=pr["seed"])
            proj_s[name] = time.perf_counter() - t0
            print(f"{name}: encoder Hessians projected in {proj_s[name]:.1f} s "
                  f"({sum(q.nbytes for q in projections[name]) / 2**20:.0f} MiB)", flush=True)
    enc64, loss64 = copy.deepcopy(enc).double(), copy.deepcopy(pr["loss"]).double()
    x64 = [x.double() for x in pr["x"]]
    vals, per_path_s = {}, {}
    for name, (solver, k, shared, vectorize) in runs.items():
        rows, secs = [], []
        exact = name == "exact"
        kw = dict(front=front, front_models=models) if shared else {}
        if solver == "subspace":
            kw.update(projections=projections[name], subspace_rank=k)
        for p in paths:
            t0 = time.perf_counter()
            rows.append(theta_importance(
                enc64 if exact else enc, pr["synth_fn"],
                (lambda a, b, q: loss64(a, b, paths=[q])) if exact else pr["path_loss_fn"], x64 if exact else pr["x"],
                P, synth_kwargs=pr["synth_kwargs"], path_range=(p, p + 1), n_iter=k,
                tol=0.0 if name in ("converged", "exact") else pr["tol"], seed=pr["seed"], solver=solver,
                progress=False, vectorize=vectorize, **kw)[0])
            secs.append(time.perf_counter() - t0)
        vals[name], per_path_s[name] = torch.stack(rows), secs
        extra = (build_s if shared else 0.0) + proj_s.get(name, 0.0)  # each shard builds its models once
        print(f"{name:<16} {statistics.mean(secs):6.2f} s/path  → P = {P}: "
              f"{(extra + statistics.mean(secs) * P) / 60:6.1f} min on 1 core, "
              f"{(extra + statistics.mean(secs) * P / 2) / 60:6.1f} min on 2 (2 shards)", flush=True)
    pis = {n: probs_from_values(v) for n, v in vals.items()}
    rel = {n: float(((v - vals["exact"]).abs() / vals["exact"].clamp_min(1e-300)).median()) for n, v in vals.items()}
    rows = {}
    for name, (solver, k, shared, vectorize) in runs.items():
        mean_s = statistics.mean(per_path_s[name])
        extra = (build_s if shared else 0.0) + proj_s.get(name, 0.0)
        rows[name] = {"solver": solver, "steps": k, "shared_first_layer": shared, "vectorize": vectorize,
                      "s_per_path": mean_s, **({"projection_build_s": proj_s[name]} if name in proj_s else {}),
                      "est_total_min_1_core": (extra + mean_s * P) / 60,
                      "est_total_min_2_cores": (extra + mean_s * P / 2) / 60,
                      "spearman_pi_vs_power": spearman(pis[name], pis["power"]),
                      "spearman_pi_vs_converged": spearman(pis[name], pis["converged"]),
                      "spearman_pi_vs_exact": spearman(pis[name], pis["exact"]),
                      "median_rel_err_C_vs_exact": rel[name]}
        print(f"{name:<16} Spearman π vs power {rows[name]['spearman_pi_vs_power']:.4f}, vs converged "
              f"{rows[name]['spearman_pi_vs_converged']:.4f}, vs float64 {rows[name]['spearman_pi_vs_exact']:.4f}; "
              f"median |C − C64|/C64 {rel[name]:.3g}")
    doc = {"overrides": args.overrides, "P": P, "n_examples": sum(int(x.shape[0]) for x in pr["x"]), "n_iter": n_iter,
           "sampled_paths": paths, "threads": args.threads, "front_build_s": build_s, "rows": rows,
           "target_min_2_cores": 5.0, "target_spearman": 0.99}
    return finish_measurement(doc, prov, args.json)


if __name__ == "__main__":
    main()
