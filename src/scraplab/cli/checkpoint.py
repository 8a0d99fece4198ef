"""Read a training checkpoint back: its stored run config, and the synth + encoder it was trained for."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from scraplab.cli.build import build_encoder, build_synth


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    # weights_only=False: the checkpoint holds RNG states and plain config containers written by this app.
    return torch.load(path, map_location="cpu", weights_only=False)


def run_config(ckpt: dict, ckpt_path: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The resolved config the checkpoint was trained with (stored in it, else ``RUN/config.yaml`` beside
    ``RUN/checkpoints/``), with dotlist ``overrides`` merged on top."""
    if "scraplab_config" in ckpt:
        cfg = OmegaConf.create(ckpt["scraplab_config"])
    else:
        candidate = Path(ckpt_path).resolve().parent.parent / "config.yaml"
        if not candidate.is_file():
            raise FileNotFoundError(f"checkpoint {ckpt_path} holds no run config and {candidate} does not exist")
        cfg = OmegaConf.load(candidate)
    if overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    return cfg  # type: ignore[return-value]


def load_encoder(ckpt_path: str | Path, device: str = "cpu") -> tuple[Any, Any, DictConfig]:
    """(synth, encoder in eval mode, run config) from a checkpoint."""
    ckpt = load_checkpoint(ckpt_path)
    cfg = run_config(ckpt, ckpt_path)
    synth = build_synth(cfg)
    encoder = build_encoder(cfg.encoder, synth)
    prefix = "encoder."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    try:
        encoder.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"checkpoint {ckpt_path} does not fit the encoder of its own config: {err}") from err
    return synth.to(device).eval(), encoder.to(device).eval(), cfg
