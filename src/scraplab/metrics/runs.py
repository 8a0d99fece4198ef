"""Reading finished training-run folders (written by ``scraplab.cli.train``) and naming their method.

A run folder holds ``config.yaml`` (the resolved Hydra config) and ``metrics.json`` (``test/theta_l1_permille``,
``init/theta_l1_permille``, per-parameter ``test/theta_l1_permille/<name>``, ``wall_s``, ``steps``, ``status``,
optionally ``cost/ms_per_step_median`` from :class:`scraplab.metrics.cost.StepCostCallback`). The validation history
is read, in this order, from ``history.json`` (``{"step": [...], "val/theta_l1_permille": [...]}``) or from the CSV
logger's ``csv/metrics.csv`` (Lightning ``CSVLogger``: a ``step`` column and one column per logged key; rows where
``val/theta_l1_permille`` is empty are other log events).

Method names (paper Tables 1–2): ``scrapl_<optimizer arm>[_thetais]`` for SCRAPL (arms ``adamw`` — plain SCRAPL,
``padam`` — 𝒫-Adam, ``psaga`` — 𝒫-Adam + 𝒫-SAGA, ``sgd``; ``_thetais`` when the sampler uses a fixed θ-IS π),
``jtfs``, ``mss_lin``, ``mss_log_lin``, ``mss_rev``, ``mss_rand``, ``param`` (P-loss), ``scat1d``. A string
``method:`` at the top of the config overrides the derived name.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

VAL_KEY = "val/theta_l1_permille"
OPT_ARMS = {"adamw": "adamw", "sgd": "sgd", "p_adam": "padam", "p_saga": "psaga"}
LOSS_METHODS = {"JTFSLoss": "jtfs", "RevisitedMSSLoss": "mss_rev", "RandomMSSLoss": "mss_rand", "ParamLoss": "param",
                "Scattering1DLoss": "scat1d"}


class RunFolderError(ValueError):
    """A run folder that cannot be read (the message names the file)."""


class SkippedRun(Exception):
    """A readable run that is not aggregated (failed, or without the requested metric); ``str`` gives why."""


@dataclass
class Run:
    folder: Path
    method: str
    seed: int
    synth: str
    metrics: dict[str, Any]
    config: dict[str, Any]
    history: Optional[tuple[list[int], list[float]]] = None
    history_source: Optional[str] = None
    ms_per_step: Optional[float] = None
    ms_per_step_source: Optional[str] = None
    per_param: dict[str, float] = field(default_factory=dict)


def _short(target: Any) -> str:
    return str(target).rsplit(".", 1)[-1]


def method_name(cfg: dict, where: str = "config.yaml") -> str:
    """The method key of a resolved run config (see module docstring)."""
    if isinstance(cfg.get("method"), str) and cfg["method"]:
        return cfg["method"]
    loss = cfg.get("loss")
    if not isinstance(loss, dict) or "_target_" not in loss:
        raise RunFolderError(f"{where}: no loss._target_ to name the method (add `method: NAME` to the config)")
    cls = _short(loss["_target_"])
    if cls == "SCRAPLLoss":
        optim = cfg.get("optim") or {}
        if "_target_" not in optim:
            raise RunFolderError(f"{where}: SCRAPL run without optim._target_")
        opt = _short(optim["_target_"])
        arm = OPT_ARMS.get(opt, opt)
        if opt == "p_saga" and optim.get("use_p_adam", True) is False:
            arm = "psaga_nopadam"
        sampler = cfg.get("sampler") or {}
        mode = sampler.get("mode", "uniform")
        suffix = {"uniform": "", "fixed": "_thetais", "adaptive": "_adaptive", "all_first": "_allfirst"}.get(
            mode, f"_{mode}")
        if mode == "fixed" and sampler.get("importance_weighted"):
            suffix += "_iw"
        if int(sampler.get("budget", 1) or 1) > 1:
            suffix += f"_k{int(sampler['budget'])}"
        return f"scrapl_{arm}{suffix}"
    if cls == "MSSLoss":
        name = "mss_log_lin" if float(loss.get("w_log_mag", 0) or 0) > 0 else "mss_lin"
        return name + ("_sc" if float(loss.get("w_sc", 0) or 0) > 0 else "")
    return LOSS_METHODS.get(cls, cls.lower())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise RunFolderError(f"{path}: cannot read JSON ({err})") from err


def read_history(folder: Path) -> tuple[Optional[tuple[list[int], list[float]]], Optional[str]]:
    """Validation θ-L1 curve ``(steps, values ‰)`` and the file it came from, or ``(None, None)``."""
    hist = folder / "history.json"
    if hist.exists():
        data = _read_json(hist)
        if not isinstance(data, dict) or "step" not in data or VAL_KEY not in data:
            raise RunFolderError(f"{hist}: expected an object with 'step' and '{VAL_KEY}' lists")
        if len(data["step"]) != len(data[VAL_KEY]):
            raise RunFolderError(f"{hist}: 'step' and '{VAL_KEY}' have different lengths")
        return ([int(s) for s in data["step"]], [float(v) for v in data[VAL_KEY]]), str(hist)
    path = folder / "csv" / "metrics.csv"
    if not path.exists():
        return None, None
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "step" not in reader.fieldnames:
            raise RunFolderError(f"{path}: no 'step' column (is it a Lightning CSVLogger file?)")
        if VAL_KEY not in reader.fieldnames:
            return None, None
        points = {}
        for row in reader:
            if row.get(VAL_KEY) not in (None, ""):
                points[int(float(row["step"]))] = float(row[VAL_KEY])  # last value per step wins
    if not points:
        return None, None
    steps = sorted(points)
    return (steps, [points[s] for s in steps]), str(path)


def read_run(folder: Path, metric: str = "test/theta_l1_permille") -> Run:
    """Read one run folder. Raises :class:`RunFolderError` (bad files) or :class:`SkippedRun` (failed run)."""
    folder = Path(folder)
    cfg_path, met_path = folder / "config.yaml", folder / "metrics.json"
    if not cfg_path.exists():
        raise RunFolderError(f"{folder}: metrics.json without config.yaml (not a scraplab run folder?)")
    try:
        cfg = yaml.safe_load(cfg_path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise RunFolderError(f"{cfg_path}: cannot parse YAML ({err})") from err
    if not isinstance(cfg, dict):
        raise RunFolderError(f"{cfg_path}: expected a mapping at the top level")
    metrics = _read_json(met_path)
    if not isinstance(metrics, dict):
        raise RunFolderError(f"{met_path}: expected a JSON object")
    if metrics.get("status", "ok") != "ok":
        raise SkippedRun(f"status {metrics.get('status')!r}: {metrics.get('error', 'no error message')}")
    value = metrics.get(metric)
    if value is None:
        raise SkippedRun(f"no '{metric}' in metrics.json")
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RunFolderError(f"{met_path}: '{metric}' must be a finite number, got {value!r}")
    if "seed" not in cfg:
        raise RunFolderError(f"{cfg_path}: no top-level 'seed'")
    synth = _short((cfg.get("synth") or {}).get("_target_", "unknown"))
    run = Run(folder=folder, method=method_name(cfg, str(cfg_path)), seed=int(cfg["seed"]), synth=synth,
              metrics=metrics, config=cfg)
    prefix = metric + "/"
    run.per_param = {k[len(prefix):]: float(v) for k, v in metrics.items()
                     if k.startswith(prefix) and isinstance(v, (int, float))}
    if isinstance(metrics.get("cost/ms_per_step_median"), (int, float)):
        run.ms_per_step, run.ms_per_step_source = float(metrics["cost/ms_per_step_median"]), "cost/ms_per_step_median"
    elif isinstance(metrics.get("wall_s"), (int, float)) and int(metrics.get("steps") or 0) > 0:
        run.ms_per_step = 1000.0 * float(metrics["wall_s"]) / int(metrics["steps"])
        run.ms_per_step_source = "wall_s/steps (includes evaluation and start-up)"
    run.history, run.history_source = read_history(folder)
    return run


def find_run_folders(roots: list[Path]) -> list[Path]:
    """Every folder under ``roots`` (recursively, roots included) that holds a ``metrics.json``."""
    found = []
    for root in roots:
        root = Path(root)
        if not root.exists():
            raise RunFolderError(f"{root}: no such folder")
        found += [p.parent for p in sorted(root.rglob("metrics.json"))]
    return sorted(set(found))
