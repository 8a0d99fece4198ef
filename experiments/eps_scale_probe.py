"""How much of 𝒫-Adam's first step does ε take, path by path? (issue 12: does the twin keep the paper's ratio of
gradient size to ε?)

𝒫-Adam's step for weight w on path p is m̂/√(ε + v̂) (paper Algorithm 1); on a path's first visit m̂ = g, v̂ = g², so
the step is g/√(ε + g²): ±1 (a sign step) where |g| ≫ √ε, g/√ε (proportional to the gradient) where |g| ≪ √ε. With
the authors' ``grad_mult`` the gradient is g·grad_mult. Where most coordinates of the weakly informative paths sit
below √ε, ε restores the size weighting that the per-path scale invariance removes (the twin's diagnosis,
docs/reproducing.md §9a); where they sit above it, every path takes a full sign step.

For one training batch of a preset at the untrained encoder, every path's weight gradient (× grad_mult) is reduced
to: its norm, the fraction of coordinates with g² < ε, and the mean |step| = mean |g|/√(ε + g²).

    python experiments/eps_scale_probe.py --preset twin_granular
    python experiments/eps_scale_probe.py --preset paper_granular --overrides data.batch_size=8 trainer=cpu
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runplan.py (not a package)


def probe(overrides: list[str], n_paths: int | None = None) -> dict:
    import lightning as L

    from scraplab.cli.build import build_all, compose_train, resolved_grad_mult
    cfg = compose_train(overrides)
    L.seed_everything(int(cfg.seed), workers=True)  # the untrained encoder of train.py with this seed
    objs = build_all(cfg)
    module, dm, synth, loss, encoder = objs["module"], objs["datamodule"], objs["synth"], objs["loss"], objs["encoder"]
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    x, _ = module._targets(batch)
    params = [q for q in encoder.parameters() if q.requires_grad]
    grad_mult = resolved_grad_mult(cfg.optim, synth, loss)  # what the run's 𝒫-optimizer multiplies gradients by
    grad_mult = float(cfg.optim.grad_mult if grad_mult is None else grad_mult)
    eps = float(cfg.optim.eps)
    encoder.train()
    theta = encoder(x)
    x_hat = synth(theta, module._seed_hat(batch["seed"], "train"))
    P = loss.n_paths
    rows = []
    for p in range(P if n_paths is None else min(P, n_paths)):
        gs = torch.autograd.grad(loss(x_hat, x, paths=[p]), params, retain_graph=True, allow_unused=True)
        g = torch.cat([(gi if gi is not None else torch.zeros_like(q)).flatten() for gi, q in zip(gs, params)])
        g = g.double() * grad_mult
        step = g.abs() / torch.sqrt(eps + g * g)
        rows.append({"path": p, "grad_norm": float(g.norm()), "frac_below_eps": float((g * g < eps).double().mean()),
                     "mean_abs_step": float(step.mean())})
    norms = [r["grad_norm"] for r in rows]
    order = sorted(range(len(rows)), key=lambda i: norms[i])
    half = len(rows) // 2
    small, large = [rows[i] for i in order[:half]], [rows[i] for i in order[half:]]
    summary = {k: {"smaller_half": statistics.mean(r[k] for r in small), "larger_half": statistics.mean(r[k] for r in large)}
               for k in ("frac_below_eps", "mean_abs_step", "grad_norm")}
    return {"overrides": overrides, "n_paths": P, "batch": int(x.shape[0]), "n_weights": sum(q.numel() for q in params),
            "grad_mult": grad_mult, "eps": eps, "per_path": rows, "summary": summary}


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", required=True, help="an experiment preset, e.g. twin_granular or paper_granular")
    ap.add_argument("--overrides", nargs="*", default=[])
    ap.add_argument("--paths", type=int, default=None, help="only the first K paths")
    ap.add_argument("--json", default=None, help="default experiments/results/eps_scale_<preset>.json")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from runplan import finish_measurement, measurement_provenance
    prov = measurement_provenance("experiments/eps_scale_probe.py", argv)
    doc = probe([f"experiment={args.preset}", "loss=scrapl", "optim=p_saga", "sampler=uniform", *args.overrides],
                args.paths)
    s = doc["summary"]
    print(f"{args.preset}: P = {doc['n_paths']}, grad_mult {doc['grad_mult']:g}, ε {doc['eps']:g}; coordinates with "
          f"g² < ε: {s['frac_below_eps']['smaller_half']:.1%} (paths of the smaller half of gradient norms) / "
          f"{s['frac_below_eps']['larger_half']:.1%} (larger half); mean |first step| "
          f"{s['mean_abs_step']['smaller_half']:.3f} / {s['mean_abs_step']['larger_half']:.3f} of a sign step")
    out = args.json or f"experiments/results/eps_scale_{args.preset}.json"
    return finish_measurement(doc, prov, out)


if __name__ == "__main__":
    main()
