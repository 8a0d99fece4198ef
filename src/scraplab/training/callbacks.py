"""Validation media: target/prediction audio pairs, scalograms, and the path-probability picture.

One callback serves every logger (rank zero only): W&B gets ``wandb.Audio``/images through ``WandbLogger.log_audio``
and ``log_image``; TensorBoard gets ``add_audio``/``add_figure``; loggers without media (CSV, or no logger) get WAV
files under ``<out_dir>/audio/epoch_XXX/`` and PNGs under ``<out_dir>/images/epoch_XXX/``. All media of one
validation epoch share the same global step.

:class:`ModelCheckpoint` is Lightning's, except that ``last.ckpt`` always holds the latest state (the resume point).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import matplotlib

matplotlib.use("Agg")  # headless: never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint as _LightningModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger  # noqa: E402
from lightning.pytorch.utilities import rank_zero_only  # noqa: E402


def _peak_safe(x: np.ndarray) -> np.ndarray:
    """Audio for listening: scaled down only if it would clip (a WAV file cannot hold |x| > 1)."""
    peak = float(np.abs(x).max()) if x.size else 0.0
    return x / peak if peak > 1.0 else x


def scalogram_figure(u: torch.Tensor, u_hat: torch.Tensor, title: str = "") -> plt.Figure:
    """Target and prediction log-CQT scalograms (bins × frames) side by side, one shared colour scale."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    vmax = float(max(u.max(), u_hat.max(), 1e-6))
    for ax, img, name in zip(axes, (u, u_hat), ("target x", "prediction x̂")):
        ax.imshow(img.numpy(), origin="lower", aspect="auto", vmin=0.0, vmax=vmax, cmap="magma")
        ax.set_title(name)
        ax.set_xlabel("frame")
    axes[0].set_ylabel("CQT bin")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def probs_figure(probs: torch.Tensor, title: str = "path sampling probabilities π") -> plt.Figure:
    """Bar plot of π over the path index, with the uniform level 1/P for reference."""
    p = probs.double().cpu().numpy()
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.bar(np.arange(p.size), p, width=1.0, color="tab:blue")
    ax.axhline(1.0 / p.size, color="k", lw=0.8, ls="--", label="uniform 1/P")
    ax.set_xlabel("path index")
    ax.set_ylabel("π")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def _caption(theta_hat: torch.Tensor, theta: torch.Tensor | None, names: list[str]) -> str:
    parts = [f"{n}: {'' if theta is None else f'{float(t):.3f}→'}{float(th):.3f}"
             for n, t, th in zip(names, theta if theta is not None else [None] * len(names), theta_hat)]
    return ", ".join(parts)


class MediaLoggingCallback(L.Callback):
    """Logs the module's ``val_examples`` (set on the first validation batch) every ``every_n_epochs`` epochs.

    Args:
        out_dir: run folder; media for loggers without media support are written under it.
        every_n_epochs: logging period in validation epochs.
        log_audio, log_scalograms, log_probs: switch each kind of media.
    """

    def __init__(self, out_dir: str, every_n_epochs: int = 1, log_audio: bool = True, log_scalograms: bool = True,
                 log_probs: bool = True) -> None:
        super().__init__()
        self.out_dir = Path(out_dir)
        self.every_n_epochs = max(1, int(every_n_epochs))
        self.log_audio, self.log_scalograms, self.log_probs = log_audio, log_scalograms, log_probs
        self.written: list[Path] = []

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        ex = getattr(pl_module, "val_examples", None)
        if trainer.sanity_checking or ex is None or trainer.current_epoch % self.every_n_epochs:
            return
        step, epoch = trainer.global_step, trainer.current_epoch
        sr = int(pl_module.synth.sample_rate)
        names = list(pl_module.synth.param_names)
        theta = ex.get("theta")
        captions = [_caption(ex["theta_hat"][i], None if theta is None else theta[i], names)
                    for i in range(ex["x"].shape[0])]
        figures: dict[str, list[plt.Figure]] = {}
        if self.log_scalograms:
            u, u_hat = pl_module.encoder.scalogram(ex["x"].to(pl_module.device)).cpu(), \
                pl_module.encoder.scalogram(ex["x_hat"].to(pl_module.device)).cpu()
            figures["val/scalogram"] = [scalogram_figure(u[i], u_hat[i], captions[i]) for i in range(u.shape[0])]
        sampler = getattr(pl_module, "sampler", None)
        if self.log_probs and sampler is not None:
            probs = sampler.probs
            if float(probs.max() - probs.min()) > 1e-12:  # only non-uniform π is worth a picture
                figures["val/path_probs"] = [probs_figure(probs, f"π at step {step}")]
        audio = {"target": ex["x"][:, 0].float().numpy(), "prediction": ex["x_hat"][:, 0].float().numpy()}
        media_loggers = [lg for lg in trainer.loggers if isinstance(lg, (WandbLogger, TensorBoardLogger))]
        for lg in media_loggers:
            self._to_logger(lg, audio, figures, captions, sr, step)
        if not media_loggers:
            self._to_files(audio, figures, sr, epoch, step)
        for figs in figures.values():
            for fig in figs:
                plt.close(fig)

    def _to_files(self, audio: dict, figures: dict, sr: int, epoch: int, step: int) -> None:
        sub = f"epoch_{epoch:03d}_step_{step:06d}"
        if self.log_audio:
            folder = self.out_dir / "audio" / sub
            folder.mkdir(parents=True, exist_ok=True)
            for kind, batch in audio.items():
                for i, wav in enumerate(batch):
                    path = folder / f"{i}_{kind}.wav"
                    sf.write(str(path), _peak_safe(wav), sr, subtype="FLOAT")
                    self.written.append(path)
        if figures:
            folder = self.out_dir / "images" / sub
            folder.mkdir(parents=True, exist_ok=True)
            for key, figs in figures.items():
                for i, fig in enumerate(figs):
                    path = folder / f"{key.split('/')[-1]}_{i}.png"
                    fig.savefig(path, dpi=80)
                    self.written.append(path)

    def _to_logger(self, lg: Any, audio: dict, figures: dict, captions: list[str], sr: int, step: int) -> None:
        if isinstance(lg, WandbLogger):
            if self.log_audio:
                for kind, batch in audio.items():
                    lg.log_audio(f"val/audio_{kind}", [_peak_safe(w) for w in batch], step=step,
                                 sample_rate=[sr] * len(batch), caption=captions)
            for key, figs in figures.items():
                lg.log_image(key, images=figs, step=step)
        else:  # TensorBoard
            for kind, batch in audio.items():
                for i, wav in enumerate(batch if self.log_audio else []):
                    lg.experiment.add_audio(f"val/{i}_{kind}", torch.from_numpy(_peak_safe(wav))[None], step, sr)
            for key, figs in figures.items():
                for i, fig in enumerate(figs):
                    lg.experiment.add_figure(f"{key}/{i}", fig, step, close=False)


class ModelCheckpoint(_LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` whose ``last.ckpt`` (``save_last=True``) is the state at the latest save point.

    Lightning 2.6 writes ``last.ckpt`` only as "a copy whenever a checkpoint file gets saved": after a validation that
    does not enter the top k on the monitored metric, ``last.ckpt`` stays at an older step. Resuming from it then
    silently restarted from the best state instead of the latest one (issue 6: "resume is not bit-identical with
    grad_mult 1e8"; with grad_mult 1 the later validations happened to improve). Here every save point of the
    parent (validation end, or train-epoch end when it saves there) and the end of training also write ``last.ckpt``
    when nothing was saved at the current step; ``save_last='link'`` and the top-k logic are unchanged.
    """

    def _save_latest(self, trainer: L.Trainer) -> None:
        if self.save_last is True and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_latest(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_latest(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._save_latest(trainer)


def latest_last_checkpoints(callbacks: list) -> list:
    """Give every plain Lightning ``ModelCheckpoint`` in ``callbacks`` the behaviour of :class:`ModelCheckpoint`
    (same attributes, one method set more), so configs that name Lightning's class still get a latest ``last.ckpt``."""
    for cb in callbacks:
        if type(cb) is _LightningModelCheckpoint:
            cb.__class__ = ModelCheckpoint
    return callbacks
