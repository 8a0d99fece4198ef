"""Read a training checkpoint back: its stored run config, and the synth + encoder it was trained for.

Checkpoints are untrusted input (shared runs, downloads): they are unpickled with ``weights_only=True``, which
refuses any Python object outside torch's tensor/container set plus :data:`SAFE_GLOBALS`.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from scraplab.cli.build import build_encoder, build_synth
from scraplab.cli.presets import apply_overrides
from scraplab.models.encoder import encoder_weights

# Globals allowed beyond torch's weights-only set. The app writes checkpoints of tensors, numbers, strings and
# plain containers only (module.on_save_checkpoint stores the RNG states as tensors and tuples), so none is needed;
# tests/test_checkpoint_safety.py checks that every checkpoint kind the app writes loads with this list.
SAFE_GLOBALS: list[Any] = []


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, truncated or holds objects outside the allow-list; names the file."""


def safe_load(path: str | Path) -> dict:
    """``torch.load`` of a checkpoint with ``weights_only=True`` and :data:`SAFE_GLOBALS`; one clear
    :class:`CheckpointError` naming the file for anything that is not a loadable checkpoint."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines()]
        found = next((line for line in lines if "GLOBAL" in line), None)  # torch names the refused global
        if found is None:  # any other unpickling failure is a damaged file
            raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({lines[0] if lines else err})") from None
        raise CheckpointError(f"checkpoint {path} was refused: it holds Python objects that a scraplab checkpoint "
                              f"never contains ({found})") from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else 'no detail'})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"checkpoint {path} is not a training checkpoint (no state_dict)")
    return ckpt


def load_checkpoint(path: str | Path) -> dict:
    return safe_load(path)


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
        cfg = apply_overrides(cfg, list(overrides))
    return cfg  # type: ignore[return-value]


def load_encoder(ckpt_path: str | Path, device: str = "cpu") -> tuple[Any, Any, DictConfig]:
    """(synth, encoder in eval mode, run config) from a checkpoint."""
    ckpt = load_checkpoint(ckpt_path)
    cfg = run_config(ckpt, ckpt_path)
    synth = build_synth(cfg)
    encoder = build_encoder(cfg.encoder, synth)
    state, bad = encoder_weights(ckpt["state_dict"], encoder)
    if bad:
        raise ValueError(f"checkpoint {ckpt_path} does not fit the encoder of its own config ({', '.join(bad[:3])})")
    encoder.load_state_dict(state)
    return synth.to(device).eval(), encoder.to(device).eval(), cfg
