"""``python train.py synth=tr808``: build from the composed config, evaluate the untrained encoder, fit, test.

The run folder (``${hydra:runtime.output_dir}``) receives the resolved ``config.yaml``, ``checkpoints/``
(``best.ckpt`` on val/score and ``last.ckpt``), logged audio and images, and ``metrics.json`` with at least
``test/theta_l1_permille``, ``init/theta_l1_permille`` (same split, untrained encoder), ``wall_s``, ``steps`` and,
with a path-aware optimizer, ``scrapl/state_bytes``; the step cost of ``scraplab.metrics.cost.StepCostCallback``
(``cost/...``, when that callback is configured); the test audio distances (``test/audio/...``, final test
only, with ``module.test_audio``, plus ``audio/jtfs_paths``: the JTFS path subset used). ``history.json`` holds the
validation θ-L1 curve (``{"step": [...], "val/theta_l1_permille": [...]}``; not written under ddp_spawn).
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from scraplab.cli.build import ConfigError, build_all, to_container
from scraplab.metrics.cost import StepCostCallback
from scraplab.paths import config_dir
from scraplab.training.callbacks import latest_last_checkpoints
from scraplab.training.module import NonFiniteLossError


def _instantiate_dict(cfg: DictConfig | None) -> list[Any]:
    """Callbacks/loggers are dicts of ``_target_`` configs (LHT style); null entries are skipped."""
    if not cfg:
        return []
    return [instantiate(c) for c in cfg.values() if c is not None and "_target_" in c]


def _scalars(metrics: dict) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        value = float(v)
        out[k] = value if math.isfinite(value) else None
    return out


def _checkpoint_callback(trainer: L.Trainer):
    return getattr(trainer, "checkpoint_callback", None)


def theta_is_problem(objs: dict, cfg: DictConfig) -> dict[str, Any]:
    """The θ-IS warm-up problem of a run (paper §3.4): what ``load_or_compute`` needs, keyed by a settings digest.

    The warm-up uses the first ``sampler.warmup.n_examples`` training rows (deterministic), the untrained encoder
    (built from ``seed``) and the evaluation prediction seeds, so the stored π is reused exactly when the synth, loss,
    encoder, data and seed settings all match. Shared by the training app and ``python -m scraplab.warmup``.
    """
    module, dm, synth, sampler = objs["module"], objs["datamodule"], objs["synth"], objs["sampler"]
    w = dict(sampler.warmup_settings)
    n_ex, bs = int(w.get("n_examples", 32)), int(w.get("batch_size", 32))
    dm.setup("fit")
    train_ds = dm.splits["train"]
    rows = [train_ds[i] for i in range(min(n_ex, len(train_ds)))]
    xs, kws = [], []
    for start in range(0, len(rows), bs):
        batch = {k: torch.stack([r[k] for r in rows[start:start + bs]]) for k in rows[0]}
        x, _ = module._targets(batch)
        xs.append(x)
        kws.append({"seed": module._seed_hat(batch["seed"], "val")})
    settings = {k: to_container(cfg[k]) for k in ("synth", "loss", "encoder") if k in cfg}
    settings.update({"data": {k: v for k, v in to_container(cfg.data).items() if k not in ("num_workers",)},
                     "model_seed": int(cfg.seed)})
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
    loss = objs["loss"]
    return {"name": f"{type(synth).__name__.lower()}_{digest}", "settings": settings, "encoder": objs["encoder"],
            "synth_fn": synth, "path_loss_fn": lambda x_hat, x, p: loss(x_hat, x, paths=[p]), "x": xs,
            "n_paths": sampler.n_paths, "synth_kwargs": kws, "n_iter": int(w.get("n_iter", 20)),
            "tol": float(w.get("tol", 1e-4)), "seed": int(w.get("seed", 0))}


def _prepare_theta_is(objs: dict, cfg: DictConfig) -> None:
    """θ-IS: a 'fixed' sampler without π gets it from the stored file or computes it once (see theta_is_problem)."""
    sampler = objs["sampler"]
    if sampler is None or not getattr(sampler, "needs_warmup", False):
        return
    from scraplab.sampling.importance import load_or_compute  # only needed for θ-IS

    problem = theta_is_problem(objs, cfg)
    name = problem.pop("name")
    probs = load_or_compute(name, problem.pop("settings"), **problem)
    sampler.set_probs(probs, source=f"theta_is/{name}")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job; returns the metrics written to ``metrics.json``. Raises on bad config or NaN."""
    start = time.time()
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    L.seed_everything(int(cfg.seed), workers=True)
    try:
        objs = build_all(cfg)
    except (ValueError, InstantiationException) as err:  # bad values: fail at start-up, naming the setting
        raise ConfigError(str(err)) from err
    module, datamodule = objs["module"], objs["datamodule"]
    module.run_config = to_container(cfg)
    _prepare_theta_is(objs, cfg)
    loggers = _instantiate_dict(cfg.get("logger"))
    # last.ckpt = the latest state (Lightning 2.6 alone leaves it at the last top-k save; see ModelCheckpoint)
    callbacks = latest_last_checkpoints(_instantiate_dict(cfg.get("callbacks")))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in loggers:
        lg.log_hyperparams(to_container(cfg))

    metrics: dict[str, Any] = {"run_dir": str(out_dir)}
    has_theta = datamodule.has_theta
    if cfg.get("eval_init", True) and not cfg.trainer.get("fast_dev_run"):
        module.metric_prefix = {"test": "init"}
        trainer.test(module, datamodule=datamodule, verbose=False)
        metrics.update(_scalars({k: v for k, v in trainer.callback_metrics.items() if k.startswith("init/")}))
        module.metric_prefix = {}

    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    except NonFiniteLossError as err:
        ckpt = _checkpoint_callback(trainer)
        last = getattr(ckpt, "last_model_path", "") if ckpt else ""
        metrics.update({"status": "non-finite", "error": str(err), "last_good_checkpoint": last or None,
                        "steps": trainer.global_step, "wall_s": time.time() - start})
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        raise NonFiniteLossError(f"{err}. Training stopped; last good checkpoint: {last or 'none yet'}; "
                                 f"run folder: {out_dir}") from err

    ckpt = _checkpoint_callback(trainer)
    best = getattr(ckpt, "best_model_path", "") if ckpt else ""
    test_ckpt = "best" if cfg.get("test_ckpt", "best") == "best" and best else None
    if not cfg.trainer.get("fast_dev_run"):
        trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt, verbose=False)
    else:
        trainer.test(module, datamodule=datamodule, verbose=False)
    metrics.update(_scalars({k: v for k, v in trainer.callback_metrics.items() if k.startswith("test/")}))
    optimizer = trainer.optimizers[0] if trainer.optimizers else None
    if optimizer is not None and hasattr(optimizer, "state_bytes"):
        metrics["scrapl/state_bytes"] = int(optimizer.state_bytes())
    if objs["sampler"] is not None:
        metrics["scrapl/n_paths"] = int(objs["sampler"].n_paths)
    for cb in callbacks:
        if isinstance(cb, StepCostCallback):
            metrics.update(cb.metrics())
    if module.test_audio is not None:
        metrics.update(module.test_audio.describe())
    if module.history["step"]:
        (out_dir / "history.json").write_text(json.dumps(module.history))
    metrics.update({"status": "ok", "steps": int(trainer.global_step), "wall_s": time.time() - start,
                    "best_checkpoint": best or None, "tested_checkpoint": "best" if test_ckpt else "last",
                    "has_theta": has_theta})
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def _summary(metrics: dict) -> str:
    lines = [f"run folder: {metrics['run_dir']}", f"steps: {metrics['steps']}  wall: {metrics['wall_s']:.1f} s"]
    if metrics.get("test/theta_l1_permille") is not None:
        init = metrics.get("init/theta_l1_permille")
        lines.append(f"test θ-L1: {metrics['test/theta_l1_permille']:.1f} ‰"
                     + (f"  (untrained encoder: {init:.1f} ‰)" if init is not None else ""))
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except (ConfigError, NonFiniteLossError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    print(_summary(metrics))
    return metrics.get("test/theta_l1_permille")
