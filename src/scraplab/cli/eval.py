"""``python eval.py ckpt=RUN/checkpoints/best.ckpt``: test a trained checkpoint on its run's test split.

The run's resolved config is read from the checkpoint; ``overrides=[...]`` (dotlist) change it, e.g. another data
split or ``data._target_``. Writes ``metrics.json`` (``test/*``) in the new run folder and returns the metrics.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from scraplab.cli.build import build_all
from scraplab.cli.checkpoint import load_checkpoint, run_config
from scraplab.paths import config_dir


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    ckpt_path = str(Path(cfg.ckpt).expanduser())
    run_cfg = run_config(load_checkpoint(ckpt_path), ckpt_path, list(cfg.get("overrides") or []))
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.update(run_cfg, "paths.output_dir", str(out_dir), force_add=True)
    (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(run_cfg, resolve=True))
    L.seed_everything(int(run_cfg.get("seed", 0)), workers=True)
    objs = build_all(run_cfg)
    trainer = L.Trainer(accelerator=run_cfg.trainer.get("accelerator", "auto"), devices=1, logger=False,
                        enable_checkpointing=False, default_root_dir=str(out_dir))
    trainer.test(objs["module"], datamodule=objs["datamodule"], ckpt_path=ckpt_path, verbose=False)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    metrics.update({"checkpoint": ckpt_path, "run_dir": str(out_dir)})
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="eval")
def main(cfg: DictConfig) -> None:
    metrics = evaluate(cfg)
    for key in sorted(k for k in metrics if k.startswith("test/") and k.count("/") == 1):
        print(f"{key}: {metrics[key]:.4g}")
    print(f"run folder: {metrics['run_dir']}")
