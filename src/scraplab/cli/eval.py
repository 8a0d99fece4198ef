"""``python eval.py ckpt=RUN/checkpoints/best.ckpt``: test a trained checkpoint on its run's test split.

The run's resolved config is read from the checkpoint; ``overrides=[...]`` change it: ``GROUP=OPTION`` replaces a
group with one of its option files (``data=wav_folder``), ``a.b=value`` sets a value (``data.path=DIR``). Writes
``metrics.json`` (``test/*``, ``status``) in the new run folder and returns the metrics, and ``report.html``: the
first ``report_n`` test examples, target against the checkpoint's match, to listen to and look at.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from scraplab.cli.build import ConfigError, build_all
from scraplab.cli.checkpoint import SAFE_GLOBALS, load_checkpoint, run_config
from scraplab.cli.status import classify, is_known
from scraplab.locations import config_dir


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    ckpt_path = str(Path(cfg.ckpt).expanduser())
    run_cfg = run_config(load_checkpoint(ckpt_path), ckpt_path, list(cfg.get("overrides") or []))
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.update(run_cfg, "paths.output_dir", str(out_dir), force_add=True)
    try:
        (out_dir / "config.yaml").write_text(OmegaConf.to_yaml(run_cfg, resolve=True))
        L.seed_everything(int(run_cfg.get("seed", 0)), workers=True)
        objs = build_all(run_cfg, training=False)
    except (ValueError, InstantiationException, TypeError) as err:
        raise ConfigError(f"{err} (checkpoint {ckpt_path}, overrides {list(cfg.get('overrides') or [])})") from err
    except Exception as err:  # e.g. a ??? value the overrides left unset
        if type(err).__module__.startswith("omegaconf"):
            raise ConfigError(f"{err} (checkpoint {ckpt_path})") from err
        raise
    # inference_mode=False: no_grad instead, as in training (losses with target caches read tensor state that
    # inference tensors do not have).
    trainer = L.Trainer(accelerator=run_cfg.trainer.get("accelerator", "auto"), devices=1, logger=False,
                        enable_checkpointing=False, default_root_dir=str(out_dir), inference_mode=False)
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        trainer.test(objs["module"], datamodule=objs["datamodule"], ckpt_path=ckpt_path, verbose=False,
                     weights_only=True)
    metrics: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    metrics.update({"status": "ok", "checkpoint": ckpt_path, "run_dir": str(out_dir)})
    n_report = int(cfg.get("report_n", 8))
    if n_report > 0:
        metrics["report"] = str(report_test_examples(objs["module"], objs["datamodule"], out_dir, n_report))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


@torch.no_grad()
def report_test_examples(module, datamodule, out_dir: Path, n: int) -> Path:
    """``report.html`` for the first ``n`` test examples: target, the encoder's match (rendered as in the test
    step), θ̂ (and the true θ when the data has it) and the MSS distances."""
    from scraplab.metrics.audio import MSSDistances
    from scraplab.report import write_report

    module.eval()
    batch = next(iter(datamodule.test_dataloader()))
    batch = {k: v[:n] if torch.is_tensor(v) else v for k, v in batch.items()}
    x, theta = module._targets(batch)
    theta_hat = module.encoder(x)
    x_hat = module.synth(theta_hat, module._seed_hat(batch["seed"], "test"))
    mss = MSSDistances()(x_hat, x)
    names = module.synth.param_names
    records = []
    for i in range(x.shape[0]):
        dist = {k: float(v[i]) for k, v in mss.items()}
        if theta is not None:
            dist["theta_l1_permille"] = float(1000 * (theta_hat[i] - theta[i]).abs().mean())
        records.append({"name": f"test_{int(batch['index'][i]):04d}", "target": x[i, 0], "match": x_hat[i, 0],
                        "theta": {u: float(theta_hat[i, j]) for j, u in enumerate(names)}, "distances": dist})
    return write_report(out_dir, records, synth=module.synth, title="scraplab evaluation: first test examples")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        metrics = evaluate(cfg)
    except Exception as err:
        if not is_known(err):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(classify(err)[1])
    for key in sorted(k for k in metrics if k.startswith("test/") and k.count("/") == 1):
        print(f"{key}: {metrics[key]:.4g}")
    print(f"run folder: {metrics['run_dir']}")
