"""Config-group options outside a Hydra app: the bare command's CPU preset (chosen and checked), and ``GROUP=OPTION``
overrides of a stored run config (``eval.py overrides=["data=wav_folder","data.path=DIR"]``)."""
from __future__ import annotations

from typing import Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from scraplab.cli.build import ConfigError
from scraplab.locations import config_dir


def _default_synth() -> str:
    """The synth of ``configs/train.yaml``'s defaults list (what a command without ``synth=`` trains)."""
    for entry in OmegaConf.load(config_dir() / "train.yaml").get("defaults", []):
        if isinstance(entry, DictConfig) and "synth" in entry:
            return str(entry["synth"])
    raise ConfigError("configs/train.yaml has no synth in its defaults list")


def _cpu_preset(synth: str):
    return config_dir() / "experiment" / f"cpu_{synth}.yaml"


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def with_cpu_preset(overrides: Sequence[str]) -> list[str]:
    """The bare command's preset: ``overrides`` plus ``experiment=cpu_<synth>`` when they choose no experiment and
    ``configs/experiment/cpu_<synth>.yaml`` exists, so that ``python train.py synth=tr808`` trains that synth's CPU
    recipe. Added here rather than by an interpolated default (``cpu_${synth}``) because Hydra forbids a preset
    chosen by interpolation to switch config groups (loss, optimiser, data), and a recipe needs to.

    A sweep over synths (``-m synth=a,b``) gets no preset: each job's synth differs, so the user names the
    experiment (:func:`check_cpu_preset` says so).
    """
    overrides = list(overrides)
    keyed = [o for o in overrides if not o.startswith("-") and ("=" in o or o.startswith("~"))]  # ~KEY: a deletion
    if any(_key(o) == "experiment" for o in keyed):
        return overrides
    synth = next((o.split("=", 1)[1] for o in reversed(keyed) if _key(o) == "synth" and "=" in o), None) \
        or _default_synth()
    if not synth.replace("_", "").isalnum():  # a sweep (a,b / choice(...) / glob) or an interpolation
        return overrides
    if _cpu_preset(synth).is_file():
        overrides.append(f"experiment=cpu_{synth}")
    return overrides


def check_cpu_preset(cfg: DictConfig, choices: Mapping[str, str | None], task_overrides: Sequence[str]) -> None:
    """Refuse a CPU run with no experiment preset unless the user chose its length.

    Without a preset the run falls back to the GPU-sized ``trainer.max_steps`` of ``train.yaml`` (20,000 steps). That
    happens for a synth without ``experiment/cpu_<synth>.yaml`` and for a sweep over synths (see
    :func:`with_cpu_preset`); it is accepted only with ``trainer.max_steps`` or ``fast_dev_run`` given.
    """
    if choices.get("experiment") or str(cfg.trainer.get("accelerator")) != "cpu":
        return
    if any(_key(o) in ("trainer.max_steps", "trainer.fast_dev_run") for o in task_overrides):
        return
    synth = choices.get("synth")
    if _cpu_preset(synth).is_file():
        raise ConfigError(
            f"no experiment preset chosen (a sweep over synths gets none), so this run would take "
            f"trainer.max_steps={cfg.trainer.get('max_steps')} steps on the CPU: add experiment=cpu_{synth} "
            "(or another preset), or set trainer.max_steps=N")
    raise ConfigError(
        f"synth={synth} has no CPU preset (configs/experiment/cpu_{synth}.yaml), so this run would "
        f"take trainer.max_steps={cfg.trainer.get('max_steps')} steps on the CPU. Add that preset (e.g. a copy of "
        "configs/experiment/cpu_granular.yaml), pick one with experiment=NAME, or set trainer.max_steps=N")


def _group_option(group: str, option: str) -> DictConfig:
    """``configs/<group>/<option>.yaml`` as a node, with the same-group entries of its defaults list merged in."""
    folder = config_dir() / group
    path = folder / f"{option}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise ConfigError(f"override {group}={option}: no file {path} (options: {known})")
    if path.read_text().lstrip().startswith("# @package _global_"):
        raise ConfigError(f"override {group}={option}: global presets cannot be applied to a stored run config")
    node = OmegaConf.load(path)
    defaults = node.pop("defaults", [])
    merged = OmegaConf.create({})
    self_done = False
    for entry in defaults:
        if entry == "_self_":
            merged, self_done = OmegaConf.merge(merged, node), True
        elif isinstance(entry, str):
            merged = OmegaConf.merge(merged, _group_option(group, entry))
        elif isinstance(entry, DictConfig) and all(str(k).startswith("override ") for k in entry):
            continue  # choices of other groups (data=wav_folder picks loss=scrapl): a stored run keeps its own
        else:
            raise ConfigError(f"override {group}={option}: defaults entry {entry!r} is not supported here")
    return OmegaConf.merge(merged, node) if not self_done else merged  # type: ignore[return-value]


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """``GROUP=OPTION`` entries replace that node with the group's option file (a config group is a folder of
    ``configs/``); the remaining ``a.b=value`` entries are merged as a dotlist on top, in that order."""
    groups, dotted = [], []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not KEY=VALUE")
        key, value = item.split("=", 1)
        (groups if "." not in key and (config_dir() / key).is_dir() else dotted).append((key, value))
    for key, value in groups:
        OmegaConf.update(cfg, key, _group_option(key, value), merge=False, force_add=True)
    if dotted:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([f"{k}={v}" for k, v in dotted]))  # type: ignore[assignment]
    return cfg
