"""``python train.py synth=tr808``: build from the composed config, evaluate the untrained encoder, fit, test.

The run folder (``${hydra:runtime.output_dir}``) receives the resolved ``config.yaml``, ``checkpoints/``
(``best.ckpt`` on val/score and ``last.ckpt``), logged audio and images, and ``metrics.json`` with at least
``test/theta_l1_permille``, ``init/theta_l1_permille`` (same split, the untrained encoder or ``init_weights``),
``wall_s``, ``steps`` and, with a path-aware optimizer, ``scrapl/state_bytes``; the step cost of ``scraplab.metrics.cost.StepCostCallback``
(``cost/...``, when that callback is configured); the test audio distances (``test/audio/...``, final test
only, with ``module.test_audio``, plus ``audio/jtfs_paths``: the JTFS path subset used). ``history.json`` holds the
validation θ-L1 curve (``{"step": [...], "val/theta_l1_permille": [...]}``; not written under ddp_spawn).
"""
from __future__ import annotations

import hashlib
import json
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from scraplab.cli.build import ConfigError, build_all, check_config, resolved_grad_mult, to_container
from scraplab.cli import run_folder
from scraplab.cli.checkpoint import SAFE_GLOBALS, safe_load
from scraplab.cli.presets import check_cpu_preset, with_cpu_preset
from scraplab.cli.status import RunInterrupted, classify, is_known
from scraplab.host_memory import set_host_memory
from scraplab.metrics.cost import StepCostCallback
from scraplab.models.encoder import encoder_weights
from scraplab.locations import config_dir
from scraplab.training.callbacks import latest_last_checkpoints


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


def load_init_weights(module, cfg: DictConfig) -> None:
    """``init_weights=PATH``: the encoder weights of a checkpoint, nothing else (a fresh optimizer, sampler, step
    count and RNG). Refused with ``ckpt_path`` (a resume restores everything), for a checkpoint of another synth,
    and for one whose encoder does not fit this one, each naming the file."""
    path = str(cfg.init_weights)
    if cfg.get("ckpt_path"):
        raise ConfigError(f"init_weights={path} and ckpt_path={cfg.ckpt_path}: a resume restores the weights "
                          "already; give one of them")
    ckpt = safe_load(path)
    run_folder.check_same_synth(ckpt, cfg, path)
    weights, bad = encoder_weights(ckpt.get("state_dict", {}), module.encoder)
    if bad:
        raise ConfigError(f"init_weights={path}: its encoder does not fit this one ({', '.join(bad[:3])}); was it "
                          "trained with another encoder config?")
    module.encoder.load_state_dict(weights)


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
    if cfg.get("init_weights"):  # the encoder at the start is the checkpoint's (absent otherwise: stored π keep their names)
        settings["init_weights_sha1"] = hashlib.sha1(Path(str(cfg.init_weights)).read_bytes()).hexdigest()
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
    loss = objs["loss"]
    # One first layer per batch, modelled to second order in float64, instead of one per path (θ-IS `front`)
    front = None
    if bool(w.get("share_first_layer", False)) and hasattr(loss, "from_first_layer"):
        from scraplab.sampling.importance import shared_first_layer
        front = shared_first_layer(loss)
    return {"name": f"{type(synth).__name__.lower()}_{digest}", "settings": settings, "encoder": objs["encoder"],
            "synth_fn": synth, "path_loss_fn": lambda x_hat, x, p: loss(x_hat, x, paths=[p]), "x": xs,
            "n_paths": sampler.n_paths, "synth_kwargs": kws, "n_iter": int(w.get("n_iter", 20)),
            "tol": float(w.get("tol", 1e-4)), "seed": int(w.get("seed", 0)), "solver": str(w.get("solver", "power")),
            "front": front, "front_dtype": torch.float64 if front is not None else None,
            "vectorize": bool(w.get("vectorize", False)),
            "subspace_rank": int(w.get("subspace_rank", 32)), "subspace_power": int(w.get("subspace_power", 1))}


def _prepare_theta_is(objs: dict, cfg: DictConfig) -> Optional[float]:
    """θ-IS: a 'fixed' sampler without π gets it from the stored file or computes it once (see theta_is_problem).
    Returns the seconds this took (the warm-up's cost, or the load of a stored π), None without θ-IS."""
    sampler = objs["sampler"]
    if sampler is None or not getattr(sampler, "needs_warmup", False):
        return None
    t0 = time.time()
    from scraplab.sampling.importance import load_or_compute  # only needed for θ-IS

    problem = theta_is_problem(objs, cfg)
    name = problem.pop("name")
    if rank_zero_only.rank != 0:  # DDP: rank 0 computes and stores π, the other ranks wait for the file
        problem["wait_s"] = float(sampler.warmup_settings.get("wait_s", 6 * 3600))
    probs = load_or_compute(name, problem.pop("settings"), **problem)
    sampler.set_probs(probs, source=f"theta_is/{name}")
    return time.time() - t0


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one training job; returns the metrics written to ``metrics.json``.

    Any failure also writes ``metrics.json`` (``status``: see :mod:`scraplab.cli.status`, ``error``, ``steps``,
    ``last_good_checkpoint``) before the exception propagates; SIGTERM raises :class:`RunInterrupted`.
    """
    start = time.time()
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run: dict[str, Any] = {"trainer": None}
    # Checked before anything is written: the folder may belong to another run (no metrics.json of ours there).
    lock = run_folder.claim(out_dir) if rank_zero_only.rank == 0 else None
    try:
        run_folder.check_reuse(out_dir, cfg.get("ckpt_path"))
    except ConfigError:
        run_folder.release(lock)
        raise
    previous = _install_sigterm()
    try:
        return _train(cfg, out_dir, start, run)
    except SystemExit as err:  # Lightning ends an interrupted fit with sys.exit (SIGTERMException, Ctrl-C)
        signum = signal.SIGTERM if isinstance(err, SIGTERMException) else signal.SIGINT
        raise _failed(RunInterrupted(signum), out_dir, start, run) from err
    except KeyboardInterrupt as err:
        raise _failed(RunInterrupted(signal.SIGINT), out_dir, start, run) from err
    except Exception as err:
        failure = _failed(err, out_dir, start, run)
        if failure is err:
            raise
        raise failure from err
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        run_folder.release(lock)


def _install_sigterm():
    """SIGTERM → :class:`RunInterrupted` (Lightning alone turns it into a clean exit 0). Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise RunInterrupted(signum)

    return signal.signal(signal.SIGTERM, handler)


def _failed(err: BaseException, out_dir: Path, start: float, run: dict) -> BaseException:
    """Write the failure's metrics.json (rank zero) and return the exception to raise (the message of a known
    failure gains the last good checkpoint and the run folder)."""
    status, _ = classify(err)
    trainer = run.get("trainer")
    ckpt = _checkpoint_callback(trainer) if trainer is not None else None
    last = getattr(ckpt, "last_model_path", "") if ckpt else ""
    metrics = {"run_dir": str(out_dir), "status": status, "error": f"{type(err).__name__}: {err}",
               "last_good_checkpoint": last or None,
               "steps": int(trainer.global_step) if trainer is not None else 0, "wall_s": time.time() - start}
    _write_metrics(out_dir, {**run.get("metrics", {}), **metrics})
    if status != "non-finite":
        return err
    return type(err)(f"{err}. Training stopped; last good checkpoint: {last or 'none yet'}; run folder: {out_dir}")


def _write_metrics(out_dir: Path, metrics: dict) -> None:
    if rank_zero_only.rank == 0:  # DDP: every rank runs this function, one file
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))


def _train(cfg: DictConfig, out_dir: Path, start: float, run: dict) -> dict[str, Any]:
    if rank_zero_only.rank == 0:
        (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    try:
        check_config(cfg)  # before the seed is used: seed=abc is a config error, not a traceback
        set_host_memory(str(cfg.get("host_memory", "keep")))  # process-wide, so set here, by the command
        L.seed_everything(int(cfg.seed), workers=True)
        objs = build_all(cfg)
    except (ValueError, TypeError, InstantiationException) as err:  # bad values: fail at start-up, naming the setting
        raise ConfigError(str(err)) from err
    module, datamodule = objs["module"], objs["datamodule"]
    mult = resolved_grad_mult(cfg.optim, objs["synth"], objs["loss"])
    if mult is not None:  # the value used, not null, in config.yaml and in checkpoints
        with open_dict(cfg):
            cfg.optim.grad_mult = mult
        if rank_zero_only.rank == 0:
            (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    module.run_config = to_container(cfg)
    if cfg.get("init_weights"):  # before θ-IS: its π is computed at the encoder the run starts from
        load_init_weights(module, cfg)
    warmup_s = _prepare_theta_is(objs, cfg)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path:  # refuses a corrupt or unsafe file with one line naming it, and a checkpoint of another synth
        run_folder.check_same_synth(safe_load(ckpt_path), cfg, ckpt_path)
    if rank_zero_only.rank == 0:
        run_folder.keep_csv_rows(cfg)
    loggers = _instantiate_dict(cfg.get("logger"))
    # last.ckpt = the latest state (Lightning 2.6 alone leaves it at the last top-k save; see ModelCheckpoint)
    callbacks = latest_last_checkpoints(_instantiate_dict(cfg.get("callbacks")))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    run["trainer"] = trainer
    for lg in loggers:
        lg.log_hyperparams(to_container(cfg))

    metrics: dict[str, Any] = {"run_dir": str(out_dir)}
    if cfg.get("init_weights"):
        metrics["init_weights"] = str(cfg.init_weights)
    if warmup_s is not None:
        metrics["theta_is/warmup_s"] = warmup_s
    run["metrics"] = metrics
    has_theta = datamodule.has_theta
    if cfg.get("eval_init", True) and not cfg.trainer.get("fast_dev_run"):
        module.metric_prefix = {"test": "init"}
        trainer.test(module, datamodule=datamodule, verbose=False)
        metrics.update(_scalars({k: v for k, v in trainer.callback_metrics.items() if k.startswith("init/")}))
        module.metric_prefix = {}

    with torch.serialization.safe_globals(SAFE_GLOBALS):
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True if ckpt_path else None)

    ckpt = _checkpoint_callback(trainer)
    best = getattr(ckpt, "best_model_path", "") if ckpt else ""
    test_ckpt = "best" if cfg.get("test_ckpt", "best") == "best" and best else None
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        if not cfg.trainer.get("fast_dev_run"):
            trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt, verbose=False,
                         weights_only=True if test_ckpt else None)
        else:
            trainer.test(module, datamodule=datamodule, verbose=False)
    metrics.update(_scalars({k: v for k, v in trainer.callback_metrics.items() if k.startswith("test/")}))
    optimizer = trainer.optimizers[0] if trainer.optimizers else None
    if optimizer is not None and hasattr(optimizer, "state_bytes"):
        metrics["scrapl/state_bytes"] = int(optimizer.state_bytes())
    if objs["sampler"] is not None:
        metrics["scrapl/n_paths"] = int(objs["sampler"].n_paths)
    store = getattr(objs["loss"], "target_store", None)
    if store is not None:  # loss.target_cache_mb > 0: how often the training targets' coefficients were reused
        metrics.update({"scrapl/target_cache_hits": store.hits, "scrapl/target_cache_misses": store.misses,
                        "scrapl/target_cache_mb": store.bytes / 2**20})
    for cb in callbacks:
        if isinstance(cb, StepCostCallback):
            metrics.update(cb.metrics())
    if module.test_audio is not None:
        metrics.update(module.test_audio.describe())
    if module.history["step"] and rank_zero_only.rank == 0:
        (out_dir / "history.json").write_text(json.dumps(module.history))
    # wall_s includes the training time of the runs this one resumed (saved in the checkpoint)
    metrics.update({"status": "ok", "steps": int(trainer.global_step),
                    "wall_s": time.time() - start + module.wall_before_s, "wall_s_this_process": time.time() - start,
                    "best_checkpoint": best or None, "tested_checkpoint": "best" if test_ckpt else "last",
                    "has_theta": has_theta})
    _write_metrics(out_dir, metrics)
    return metrics


def _summary(metrics: dict) -> str:
    lines = [f"run folder: {metrics['run_dir']}", f"steps: {metrics['steps']}  wall: {metrics['wall_s']:.1f} s"]
    if metrics.get("test/theta_l1_permille") is not None:
        init = metrics.get("init/theta_l1_permille")
        start = "init_weights encoder" if metrics.get("init_weights") else "untrained encoder"
        lines.append(f"test θ-L1: {metrics['test/theta_l1_permille']:.1f} ‰"
                     + (f"  ({start}: {init:.1f} ‰)" if init is not None else ""))
    return "\n".join(lines)


def main() -> float | None:
    """``python train.py OVERRIDES``: the Hydra app, with the synth's CPU preset when no experiment is named
    (:func:`scraplab.cli.presets.with_cpu_preset`; Hydra reads the command line from ``sys.argv``)."""
    sys.argv[1:] = with_cpu_preset(sys.argv[1:])
    return _app()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def _app(cfg: DictConfig) -> float | None:
    try:
        hydra_cfg = HydraConfig.get()
        check_cpu_preset(cfg, hydra_cfg.runtime.choices, list(hydra_cfg.overrides.task))
        metrics = train(cfg)
    except Exception as err:
        if not is_known(err):
            raise  # unexpected: the traceback is the useful part (metrics.json says status "error")
        print(f"error: {err}", file=sys.stderr)
        sys.exit(classify(err)[1])
    print(_summary(metrics))
    return metrics.get("test/theta_l1_permille")
