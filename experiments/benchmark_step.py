"""Per-phase profile of one training step (issue 14: everything outside the loss ≤ 30 % of the step).

    python experiments/benchmark_step.py                         # SCRAPL, granular, batch 8 (the CPU preset)
    python experiments/benchmark_step.py --json experiments/results/benchmark_step.json
    python experiments/benchmark_step.py --overrides synth=granular loss=scrapl experiment=twin_granular

Two measurements of the same configuration, in one process:
1. The step taken apart, phase by phase (median ms over ``--steps`` steps after ``--warmup``): data (next batch),
   target render (the synth on the batch's θ, no graph), encoder forward, synth forward, path draw, loss forward,
   loss backward (to ∂L/∂x̂), synth backward (to ∂L/∂θ̂), encoder backward, optimizer (gradient-norm check, sampler
   statistics, 𝒫-Adam/𝒫-SAGA step, zero_grad). The backward is split with detached leaves at x̂ and θ̂: the same
   operations as one backward, in three calls.
2. The real Lightning loop of the training app (its module, callbacks and logger, validation off) over the same
   number of steps: its median step time. Lightning + logging overhead = that minus the sum of the phases.
The figure the issue asks for: non-loss share = 1 − (loss forward + loss backward) / Lightning step.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["synth=granular", "loss=scrapl", "optim=p_saga", "sampler=uniform"]
PHASES = ["data", "target_render", "encoder_fwd", "synth_fwd", "path_draw", "loss_fwd", "loss_bwd", "synth_bwd",
          "encoder_bwd", "optimizer"]


def _now() -> float:
    return time.perf_counter()


def phases(objs: dict, n_steps: int, warmup: int) -> dict[str, list[float]]:
    """Time each phase of the training step by hand (the module's own helpers, the configured optimizer)."""
    module, dm, sampler = objs["module"], objs["datamodule"], objs["sampler"]
    synth, encoder = objs["synth"], objs["encoder"]
    dm.setup("fit")
    opt_cfg = module.configure_optimizers()
    opt = opt_cfg["optimizer"] if isinstance(opt_cfg, dict) else opt_cfg  # the scheduler's step is not timed
    module.train()
    loader = iter(dm.train_dataloader())
    times: dict[str, list[float]] = {k: [] for k in PHASES}
    for step in range(warmup + n_steps):
        t = {}
        t0 = _now()
        try:
            batch = next(loader)
        except StopIteration:
            loader = iter(dm.train_dataloader())
            batch = next(loader)
        t["data"] = _now() - t0
        t0 = _now()
        x, _ = module._targets(batch)
        t["target_render"] = _now() - t0
        t0 = _now()
        theta_hat = encoder(x)
        t["encoder_fwd"] = _now() - t0
        theta_leaf = theta_hat.detach().requires_grad_(True)
        t0 = _now()
        x_hat = synth(theta_leaf, module._seed_hat(batch["seed"], "train"))
        t["synth_fwd"] = _now() - t0
        t0 = _now()
        paths = [int(p) for p in sampler.draw(step)]
        if hasattr(opt, "set_paths"):
            opt.set_paths(paths)
        weights = sampler.weights(paths)
        t["path_draw"] = _now() - t0
        x_leaf = x_hat.detach().requires_grad_(True)
        t0 = _now()
        loss = module._path_loss(x_leaf, x, paths, weights)
        t["loss_fwd"] = _now() - t0
        t0 = _now()
        loss.backward()
        t["loss_bwd"] = _now() - t0
        t0 = _now()
        x_hat.backward(x_leaf.grad)
        t["synth_bwd"] = _now() - t0
        t0 = _now()
        theta_hat.backward(theta_leaf.grad)
        t["encoder_bwd"] = _now() - t0
        t0 = _now()
        grads = [p.grad for p in encoder.parameters() if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        if not torch.isfinite(norm):
            raise FloatingPointError(f"non-finite gradient at step {step}")
        sampler.observe(paths, {"grad_norm": norm.detach()})
        opt.step()
        opt.zero_grad(set_to_none=True)
        t["optimizer"] = _now() - t0
        if step >= warmup:
            for k, v in t.items():
                times[k].append(v)
    return times


class _StepTimer(L.Callback):
    """Wall time from one training batch's start to the next one's (data fetch included)."""

    def __init__(self):
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.starts.append(_now())

    def on_train_end(self, trainer, pl_module):
        self.starts.append(_now())


def lightning_loop(cfg, n_steps: int, warmup: int) -> list[float]:
    """Median-ready per-step wall times of the training app's own Lightning loop (validation off)."""
    from hydra.utils import instantiate

    from scraplab.cli.build import build_all
    from scraplab.cli.train import _instantiate_dict
    from scraplab.training.callbacks import latest_last_checkpoints

    L.seed_everything(int(cfg.seed), workers=True)
    objs = build_all(cfg)
    timer = _StepTimer()
    callbacks = latest_last_checkpoints(_instantiate_dict(cfg.get("callbacks"))) + [timer]
    loggers = _instantiate_dict(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, max_steps=warmup + n_steps,
                          limit_val_batches=0, num_sanity_val_steps=0, enable_progress_bar=False,
                          enable_model_summary=False)
    trainer.fit(objs["module"], datamodule=objs["datamodule"])
    s = timer.starts
    return [b - a for a, b in zip(s[warmup:-1], s[warmup + 1:])]


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--overrides", nargs="*", default=DEFAULT, help="train overrides (Hydra syntax)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="write the figures (with command, commit, versions) here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from scraplab.cli.build import build_all, compose_train
    from scraplab.host_memory import set_host_memory
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from runplan import finish_measurement, measurement_provenance  # experiments/runplan.py

    prov = measurement_provenance("experiments/benchmark_step.py", argv)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_train(list(args.overrides), tmp)
        kept = set_host_memory(str(cfg.host_memory))  # as the train command does (host_memory=default to compare)
        L.seed_everything(int(cfg.seed), workers=True)
        times = phases(build_all(cfg), args.steps, args.warmup)
        loop = lightning_loop(compose_train(list(args.overrides), os.path.join(tmp, "loop")), args.steps, args.warmup)
    med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    step_ms = 1e3 * statistics.median(loop)
    loss_ms = med["loss_fwd"] + med["loss_bwd"]
    doc = {"overrides": args.overrides, "steps": args.steps, "threads": args.threads,
           "host_memory": str(cfg.host_memory), "host_memory_kept": kept,
           "phases_ms_median": med, "sum_of_phases_ms": sum(med.values()), "lightning_step_ms_median": step_ms,
           "lightning_and_logging_overhead_ms": step_ms - sum(med.values()), "loss_ms": loss_ms,
           "non_loss_share": 1.0 - loss_ms / step_ms, "target_non_loss_share_at_most": 0.30,
           "met": 1.0 - loss_ms / step_ms <= 0.30}
    doc = finish_measurement(doc, prov, args.json)
    width = max(map(len, PHASES))
    for k in PHASES:
        print(f"{k:<{width}}  {med[k]:8.1f} ms  {100 * med[k] / step_ms:5.1f} %")
    print(f"{'sum of phases':<{width}}  {doc['sum_of_phases_ms']:8.1f} ms")
    print(f"{'Lightning step':<{width}}  {step_ms:8.1f} ms  (overhead {doc['lightning_and_logging_overhead_ms']:.1f} ms)")
    print(f"host memory: {doc['host_memory']} (freed memory kept: {kept})")
    print(f"non-loss share {100 * doc['non_loss_share']:.1f} % (target ≤ 30 %: {'met' if doc['met'] else 'NOT met'}); "
          f"load {prov['load_before']} → {doc['load_after']}")
    return doc


if __name__ == "__main__":
    main()
