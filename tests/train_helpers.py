"""Shared helpers for the training-app tests: compose the train config LHT-style and shrink it for CPU."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from scraplab.cli.build import compose_train
from scraplab.locations import config_dir

# Short synth lengths keep every synth fast on CPU while staying valid for its CQT (and JTFS) settings.
SHORT = {"granular": ["synth.n_samples=8192"], "chirplet": ["synth.n_samples=8192", "synth.max_shift=256"],
         "tr808": ["experiment=cpu_tr808_synthetic", "synth.n_samples=8192"]}  # the bare tr808 preset needs make drums
# host_memory=default: the in-process runs leave the pytest process's allocator as it is (tests/test_host_memory.py
# checks the setting itself, each in a fresh interpreter).
TINY = ["debug=tiny", "logger=csv", "eval_init=false", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "host_memory=default"]


def compose_cfg(overrides: list[str], out_dir: Path | str, config_name: str = "train") -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` with overrides as its command would (train: the app's own
    :func:`scraplab.cli.build.compose_train`, the synth's CPU preset included); ``paths.output_dir`` points at
    ``out_dir``."""
    if config_name == "train":
        return compose_train(list(overrides), str(out_dir))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out_dir)
    return cfg


def tiny_cfg(synth: str, loss: str, out_dir: Path | str, extra: list[str] = ()) -> DictConfig:
    return compose_cfg([f"synth={synth}", f"loss={loss}", *SHORT[synth], *TINY, *extra], out_dir)


def write_wav(path: Path, x: np.ndarray, sr: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr)
    return path


def tone(sr: int, seconds: float, freq: float = 440.0, channels: int = 1, decay: float = 8.0) -> np.ndarray:
    """A decaying sine one-shot, (frames,) or (frames, channels)."""
    t = np.arange(int(sr * seconds)) / sr
    x = (0.5 * np.sin(2 * np.pi * freq * t) * np.exp(-decay * t)).astype(np.float32)
    return x if channels == 1 else np.stack([x * (1 - 0.3 * c) for c in range(channels)], axis=1)


class NaNAfterLoss(torch.nn.Module):
    """Audio loss that turns NaN from call ``after`` on (a stand-in for a diverging loss, for the failure test)."""

    def __init__(self, after: int = 2) -> None:
        super().__init__()
        self.after, self.calls = int(after), 0
        self.anchor = torch.nn.Parameter(torch.zeros(()), requires_grad=False)

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        loss = (x_hat - x).pow(2).mean()
        return loss * float("nan") if self.calls > self.after else loss


def nan_scrapl(after: int = 2):
    """A real SCRAPLLoss whose output turns NaN from call ``after`` on (for the failure test); partial over shape."""
    from functools import partial

    from scraplab.losses import SCRAPLLoss

    class NaNSCRAPL(SCRAPLLoss):
        def forward(self, x_hat, x, paths=None, generator=None):
            self.calls = getattr(self, "calls", 0) + 1
            out = super().forward(x_hat, x, paths=paths, generator=generator)
            return out * float("nan") if self.calls > after else out

    return partial(NaNSCRAPL)


class SigtermAt:
    """A Lightning callback that sends this process SIGTERM after training step ``step`` (a scheduler's kill)."""

    def __new__(cls, step: int = 2):
        import os
        import signal

        import lightning as L

        class _Kill(L.Callback):
            def on_train_batch_end(self, trainer, *args):
                if trainer.global_step == step:
                    os.kill(os.getpid(), signal.SIGTERM)

        return _Kill()
