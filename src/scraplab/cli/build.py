"""Turn a composed config into objects: synth → loss, sampler, encoder, data, module; plus start-up checks.

Hydra only instantiates. Objects that depend on the synth (loss shape and JTFS settings, encoder heads and CQT,
data θ dimension and sample rate) are ``_partial_`` in the configs and completed here from the synth's attributes
(``n_samples``, ``sample_rate``, ``n_params``, ``jtfs_defaults``, ``cqt_defaults``), so ``synth=NAME`` is the only
switch a user needs. Every check that can fail before training runs here, with a message that names the setting.
"""
from __future__ import annotations

import functools
import inspect
import math
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from scraplab.cli.typecheck import check_int, check_node
from scraplab.data.datamodule import build_datamodule
from scraplab.models.encoder import Encoder
from scraplab.training.module import path_count


class ConfigError(ValueError):
    """A config value is invalid; raised at start-up, before any training."""


def _accepted(factory: Any) -> set[str] | None:
    """Keyword names accepted by a partial's target (None when it takes **kwargs that reach no named parameter).
    A class whose ``__init__`` forwards ``**kwargs`` to its base (``JTFSLoss`` → ``SCRAPLLoss``) accepts the union
    of the named parameters along its MRO."""
    target = factory.func if isinstance(factory, functools.partial) else factory
    fns = [c.__init__ for c in target.__mro__ if "__init__" in vars(c) and c is not object] \
        if isinstance(target, type) else [target]
    names: set[str] = set()
    for fn in fns:
        params = inspect.signature(fn).parameters
        names |= {n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return names
    return None


def _fill(factory: Any, supplied: dict[str, Any]) -> Any:
    """Call ``factory`` with the ``supplied`` keywords it accepts and that the config left unset (None/missing)."""
    if not isinstance(factory, functools.partial):
        return factory  # a complete config: already an object
    accepted = _accepted(factory)
    given = dict(factory.keywords) if isinstance(factory, functools.partial) else {}
    kwargs = {k: v for k, v in supplied.items()
              if (accepted is None or k in accepted) and given.get(k) is None}
    return factory(**kwargs)


def build_synth(cfg: DictConfig):
    return instantiate(cfg.synth)


def build_loss(loss_cfg: DictConfig, synth: Any):
    """The loss for ``synth``: ``shape``/``n_samples``/``sample_rate`` and unset JTFS settings from the synth."""
    factory = instantiate(loss_cfg)
    supplied = {"shape": synth.n_samples, "n_samples": synth.n_samples, "sample_rate": synth.sample_rate}
    supplied.update(dict(getattr(synth, "jtfs_defaults", {}) or {}))
    return _fill(factory, supplied)


def build_sampler(sampler_cfg: DictConfig | None, loss: Any):
    """A path sampler for path losses (``loss.n_paths``); None for every other loss."""
    n_paths = path_count(loss)
    if n_paths is None or sampler_cfg is None:
        return None
    budget = sampler_cfg.get("budget", 1)
    if budget is not None and int(budget) < 1:
        raise ConfigError(f"sampler.budget must be >= 1 (paths per step), got {budget}")
    return instantiate(sampler_cfg)(n_paths=int(n_paths))


def build_encoder(encoder_cfg: DictConfig, synth: Any) -> Encoder:
    return instantiate(encoder_cfg)(synth=synth)


def synth_grad_mult(synth: Any) -> float:
    """The synth's ``scrapl_grad_mult`` (declared on the Synth base), validated: a finite number > 0."""
    value = getattr(synth, "scrapl_grad_mult", 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{type(synth).__name__}.scrapl_grad_mult must be a finite number > 0, got {value!r}")
    return float(value)


def resolved_grad_mult(optim_cfg: DictConfig, synth: Any, loss: Any) -> float | None:
    """The ``grad_mult`` a run uses when ``optim.grad_mult`` is null (None when the optimizer has no such setting
    or it is set): the synth's ``scrapl_grad_mult`` with a path loss (SCRAPL gradients w.r.t. the encoder are
    ~1e-10…1e-7 with identity ρ, so with ``grad_mult`` 1 the 𝒫-Adam ε swamps the update: the authors use 1e8 for
    granular/chirplet, 1 for the 808's log1p ρ), else 1."""
    if "grad_mult" not in optim_cfg or optim_cfg.grad_mult is not None:
        return None
    return synth_grad_mult(synth) if path_count(loss) is not None else 1.0


def build_optim(optim_cfg: DictConfig, synth: Any, loss: Any):
    """The optimizer factory, with a null ``grad_mult`` resolved by :func:`resolved_grad_mult`."""
    factory = instantiate(optim_cfg)
    mult = resolved_grad_mult(optim_cfg, synth, loss)
    if mult is not None and isinstance(factory, functools.partial):
        factory = functools.partial(factory.func, *factory.args, **{**factory.keywords, "grad_mult": mult})
    return factory


def build_module(cfg: DictConfig, synth: Any, loss: Any, sampler: Any, encoder: Any):
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    return instantiate(cfg.module)(synth=synth, encoder=encoder, loss=loss,
                                   optim_factory=build_optim(cfg.optim, synth, loss), sampler=sampler,
                                   scheduler_factory=scheduler)


def check_config(cfg: DictConfig) -> None:
    """Start-up checks of plain values (before anything is built): types first, then ranges."""
    try:
        if "seed" in cfg:
            check_int(cfg.seed, "seed")
        for group in ("synth", "loss", "sampler", "optim", "encoder", "data", "trainer", "module"):
            check_node(cfg.get(group), group)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if cfg.get("data") is not None and "path" in cfg.data.keys() and OmegaConf.is_missing(cfg.data, "path"):
        raise ConfigError("data=wav_folder needs data.path=DIR (a folder of audio one-shots)")
    trainer = cfg.get("trainer", {})
    for key in ("max_steps", "max_epochs"):
        value = trainer.get(key)
        if value is not None and int(value) < -1:
            raise ConfigError(f"trainer.{key} must be -1 (unlimited) or >= 0, got {value}")
    if cfg.get("data") is not None and int(cfg.data.get("batch_size", 1)) < 1:
        raise ConfigError(f"data.batch_size must be >= 1, got {cfg.data.batch_size}")
    if cfg.get("sampler") is not None and cfg.sampler.get("budget") is not None and int(cfg.sampler.budget) < 1:
        raise ConfigError(f"sampler.budget must be >= 1 (paths per step), got {cfg.sampler.budget}")


def build_all(cfg: DictConfig, training: bool = True) -> dict[str, Any]:
    """Everything a run needs, built and cross-checked. Raises :class:`ConfigError` (or ValueError) on bad values.

    ``training=False`` (testing a checkpoint): a P-loss checkpoint may be tested on sounds without θ (your own
    one-shots); the loss itself is then not evaluated (``module.eval_loss`` off), only the audio metrics."""
    check_config(cfg)
    synth = build_synth(cfg)
    loss = build_loss(cfg.loss, synth)
    sampler = build_sampler(cfg.get("sampler"), loss)
    encoder = build_encoder(cfg.encoder, synth)
    try:
        datamodule = build_datamodule(instantiate(cfg.data), synth)
    except FileNotFoundError as err:  # a data.path that is missing or holds no audio
        raise ConfigError(f"data.path: {err}") from None
    module = build_module(cfg, synth, loss, sampler, encoder)
    if getattr(loss, "on_params", False) and not datamodule.has_theta:
        if training:
            raise ConfigError("loss=param (P-loss) needs ground-truth θ: it cannot train on data=wav_folder; "
                              "use an audio loss (loss=scrapl, loss=mss, ...)")
        module.eval_loss = False  # testing: no θ to compare with, the audio metrics still apply
    return {"synth": synth, "loss": loss, "sampler": sampler, "encoder": encoder, "datamodule": datamodule,
            "module": module}


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]


def compose_train(overrides: list[str], output_dir: str = ".") -> DictConfig:
    """The training config for ``overrides`` outside a Hydra run (the warm-up CLI, benchmarks, probes): the config
    ``python train.py OVERRIDES`` trains, the synth's CPU preset included when no experiment is named.

    ``paths.output_dir`` is set to ``output_dir`` (default ".": nothing is written there), which avoids resolving
    ``${hydra:...}`` without a Hydra run."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from scraplab.cli.presets import with_cpu_preset
    from scraplab.locations import config_dir
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=with_cpu_preset(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = output_dir
    return cfg

