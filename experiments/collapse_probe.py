"""Why do 808 matchers trained on real drums predict one preset for everything (issue 16)? The learning signal at
the untrained encoder, measured per example.

    python experiments/collapse_probe.py --json experiments/results/collapse_probe_tr808.json

The untrained encoder predicts nearly the same θ̂ for every sound (its spread is ~1 % of the targets'), so what the
encoder can learn first is in the gradients g_b = ∂L/∂θ̂_b (B, U) of a batch of real one-shots: the part shared by
all examples moves every prediction together (one preset), the part that differs between examples is what makes
predictions depend on the sound. Per loss (and per SCRAPL path) this reports

* ``coherence`` = ‖mean_b g_b‖ / mean_b ‖g_b‖: 1 when every example pushes θ̂ the same way, ~1/√B for unrelated
  directions;
* ``sign_agreement``: the fraction of (example, parameter) entries whose sign equals the batch mean's;
* for SCRAPL: the median over paths and the coherence of the path-mean gradient, the spread of per-path gradient
  sizes, and the same for other ρ scales ε (ρ(S) = log1p(S/ε); ``none`` = identity).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

PRESET = ["experiment=cpu_tr808_real"]
MSS = {"mss_linear": "loss=mss", "mss_log_lin": "loss=mss_log", "mss_revisited": "loss=mss_revisited",
       "mss_random": "loss=mss_random"}


def coherence(g: torch.Tensor) -> dict:
    """g (B, U) per-example gradients → coherence and sign agreement (float64)."""
    g = g.double()
    mean = g.mean(0)
    norms = g.norm(dim=1)
    coh = float(mean.norm() / norms.mean().clamp_min(1e-300))
    agree = float((torch.sign(g) == torch.sign(mean)).double().mean())
    return {"coherence": coh, "sign_agreement": agree, "grad_norm_mean": float(norms.mean())}


def _objs(overrides: list[str]):
    import lightning as L

    from scraplab.cli.build import build_all, compose_train
    cfg = compose_train(overrides)
    L.seed_everything(int(cfg.seed), workers=True)
    return build_all(cfg)


def _batch(objs, n: int):
    dm = objs["datamodule"]
    dm.setup("fit")
    ds = dm.splits["train"]
    g = torch.Generator().manual_seed(0)
    rows = [ds[int(i)] for i in torch.randperm(len(ds), generator=g)[:n]]
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


def per_example_grads(module, synth, loss_fn, batch) -> torch.Tensor:
    """(B, U) gradients of the batch loss w.r.t. the untrained encoder's θ̂ (× B: per-example terms)."""
    x, _ = module._targets(batch)
    with torch.no_grad():
        theta0 = module.encoder.eval()(x)
    th = theta0.clone().requires_grad_(True)
    x_hat = synth(th, module._seed_hat(batch["seed"], "train"))
    (g,) = torch.autograd.grad(loss_fn(x_hat, x), th)
    return g * x.shape[0], theta0


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--overrides", nargs="*", default=PRESET)
    ap.add_argument("--examples", type=int, default=16)
    ap.add_argument("--paths", type=int, default=24, help="evenly spaced SCRAPL paths")
    ap.add_argument("--eps", nargs="+", default=["1e-3", "1e-2", "1e-1", "none"], help="ρ scales (none = identity)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from runplan import finish_measurement, measurement_provenance

    from scraplab.metrics.audio import select_paths
    from scraplab.metrics.spread import theta_spread
    prov = measurement_provenance("experiments/collapse_probe.py", argv)
    rows: dict[str, dict] = {}
    base = _objs(list(args.overrides))
    batch = _batch(base, args.examples)
    module, synth = base["module"], base["synth"]
    for name, ov in MSS.items():
        loss = _objs(list(args.overrides) + [ov])["loss"]
        g, theta0 = per_example_grads(module, synth, lambda a, b: loss(a, b), batch)
        rows[name] = coherence(g)
        print(name, rows[name], flush=True)
    spread = theta_spread(theta0)["theta_spread_ratio"]  # the training app's collapse measure, against θ uniform
    for eps in args.eps:
        ov = ["loss.log1p=false"] if eps == "none" else ["loss.log1p=true", f"loss.log1p_eps={eps}"]
        loss = _objs(list(args.overrides) + ["loss=scrapl", *ov])["loss"]
        paths = select_paths(loss.n_paths, args.paths)
        per_path, grads = [], []
        for p in paths:
            g, _ = per_example_grads(module, synth, lambda a, b: loss(a, b, paths=[p]), batch)
            grads.append(g)
            per_path.append(coherence(g))
        mean_g = torch.stack(grads).mean(0)
        norms = [r["grad_norm_mean"] for r in per_path]
        key = f"scrapl_eps{eps}"
        rows[key] = {"coherence_median_over_paths": statistics.median(r["coherence"] for r in per_path),
                     "sign_agreement_median_over_paths": statistics.median(r["sign_agreement"] for r in per_path),
                     "path_mean": coherence(mean_g),
                     "grad_norm_max_over_median": max(norms) / max(statistics.median(norms), 1e-300),
                     "paths": paths, "per_path": per_path}
        print(key, {k: v for k, v in rows[key].items() if k not in ("per_path", "paths")}, flush=True)
    doc = {"overrides": args.overrides, "examples": args.examples, "init_theta_spread_ratio": spread, "rows": rows,
           "random_coherence": 1 / args.examples ** 0.5}
    return finish_measurement(doc, prov, args.json)


if __name__ == "__main__":
    main()
