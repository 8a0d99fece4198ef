"""Config-group options outside a Hydra app: the CPU-preset check of the bare command, and ``GROUP=OPTION``
overrides of a stored run config (``eval.py overrides=["data=wav_folder","data.path=DIR"]``)."""
from __future__ import annotations

from typing import Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from scraplab.cli.build import ConfigError
from scraplab.locations import config_dir


def check_cpu_preset(cfg: DictConfig, choices: Mapping[str, str | None], task_overrides: Sequence[str]) -> None:
    """Refuse the bare CPU command of a synth without ``experiment/cpu_<synth>.yaml``.

    ``train.yaml`` selects ``cpu_${synth}`` optionally; when that file is missing the run silently falls back to the
    GPU-sized ``trainer.max_steps`` (20,000 steps). That is only accepted when the user chose the length themselves.
    """
    choice = choices.get("experiment")
    if not choice or not str(choice).startswith("cpu_") or (config_dir() / "experiment" / f"{choice}.yaml").is_file():
        return
    if any(o.lstrip("+~").split("=", 1)[0] in ("trainer.max_steps", "trainer.fast_dev_run", "experiment")
           for o in task_overrides):
        return
    if str(cfg.trainer.get("accelerator")) != "cpu":
        return
    raise ConfigError(
        f"synth={choices.get('synth')} has no CPU preset (configs/experiment/{choice}.yaml), so this run would "
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
