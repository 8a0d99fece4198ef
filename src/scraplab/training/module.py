"""The sound-matching LightningModule: x → encoder → θ̂ → synth(θ̂, seed') → x̂ → loss(x̂, x).

It only wires parts handed to it (synth, encoder, loss, optimizer factory, optional path sampler), as in the
paper's training loop (Mitcheltree et al. 2026, Algorithm 1):

* target x: rendered by the synth from the batch's (θ, seed) under no_grad (synthetic data), or the batch's audio;
* prediction seed: the target's seed (``micro``) or a fresh one mixed from (seed, step) (``meso``, the paper's
  "random seed hat"); evaluation always uses one fixed mix, so validation and test are deterministic;
* path losses (anything with ``n_paths``): each training step draws ``paths = sampler.draw(global_step)``, passes them
  to the loss and to ``optimizer.set_paths`` (path-aware optimizers act in ``optimizer.step()``, after backward and
  after DDP's all-reduce), and feeds ``sampler.observe`` the all-reduced gradient norm before the step;
* P-loss (``loss.on_params``): the supervised baseline on θ;
* metrics: θ-L1 in ‰ per parameter and mean (``{stage}/theta_l1_permille``), the checkpoint-selection score
  ``val/score`` (θ-L1 ‰, or a deterministic MSS distance when the data has no θ);
* a non-finite loss or gradient stops training with :class:`NonFiniteLossError` naming the step and paths.
"""
from __future__ import annotations

import inspect
import random
import time
from typing import Any, Callable

import lightning as L
import numpy as np
import torch
from torch import nn

from scraplab.losses.scrapl import weighted_path_loss
from scraplab.losses.spectral import MSSLoss
from scraplab.metrics.spread import COLLAPSE_RATIO, is_collapsed, theta_spread
from scraplab.metrics.theta import theta_l1_permille
from scraplab.models.encoder import encoder_weights

_EVAL_STEP = 987_654_321  # fixed "step" mixed into meso prediction seeds at validation/test


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/Inf loss or gradient; the message names the global step and the path(s)."""


def path_count(loss: nn.Module) -> int | None:
    """P for a loss that trains on sampled paths (SCRAPL), None otherwise. ``JTFSLoss`` has ``n_paths`` but always
    uses every path; a loss can state its kind with a ``path_loss`` attribute."""
    flag = getattr(loss, "path_loss", None)
    if flag is None:
        try:
            from scraplab.losses import JTFSLoss
        except ImportError:  # the scattering losses are optional for the baselines
            JTFSLoss = ()
        flag = hasattr(loss, "n_paths") and not isinstance(loss, JTFSLoss)
    return int(loss.n_paths) if flag else None


def mix_seed(seed: torch.Tensor, step: int) -> torch.Tensor:
    """Fresh per-example seeds from (seed (B,) int64, step): an affine mix kept below 2**62 (no int64 overflow)."""
    return (seed.long() * 1_000_003 + int(step) * 7_919 + 0x5DEECE66D) % (1 << 62)


class SoundMatchingModule(L.LightningModule):
    """Encoder training by sound matching.

    Args:
        synth: a ``scraplab.synths`` Synth (no trainable weights).
        encoder: audio (B, 1, N) → θ̂ (B, U) in (0, 1).
        loss: audio loss ``loss(x̂, x[, paths=...])`` or a parameter loss with ``on_params = True``.
        optim_factory: ``factory(params[, n_paths=P]) -> Optimizer``.
        sampler: path sampler (``draw``, ``weights``, ``observe``, ``state_dict``) for losses with ``n_paths``.
        scheduler_factory: optional ``factory(optimizer) -> LRScheduler`` (stepped every optimizer step).
        regime: ``micro`` or ``meso`` (see module docstring).
        n_log_examples: examples of the first validation batch kept for the audio/image callbacks.
        step_seed: if not None, the global torch RNG (dropout) is re-seeded from (step_seed, global step, rank) before
            every training step, so a resumed run repeats an uninterrupted one exactly (data-loader iterators
            draw from the global RNG at different moments in the two cases).
        test_audio: keyword arguments of :class:`scraplab.training.eval_audio.EvalAudioMetrics` (audio distances
            logged at the final test as ``test/audio/...``, not in the init pass); None disables them.
        eval_loss: log the training loss on the validation/test splits (``val/loss``, ``test/loss``); false skips
            it, e.g. for the full JTFS loss, which costs ~30–60 s per batch on a CPU.
        check_finite_every: how often the training step's finiteness checks (θ̂, loss, gradient, 𝒫-optimizer
            state) synchronise with the device. 1 = every step, raising at the step that went bad; n > 1 = they
            accumulate on the device and are read every n steps and before every validation and checkpoint (a
            checkpoint is never written unchecked); None = 1 on a CPU, 50 on an accelerator (no host sync per step).
    """

    def __init__(self, synth: nn.Module, encoder: nn.Module, loss: nn.Module, optim_factory: Callable,
                 sampler: Any = None, scheduler_factory: Callable | None = None, regime: str = "meso",
                 n_log_examples: int = 4, step_seed: int | None = 0, test_audio: dict | None = None,
                 eval_loss: bool = True, check_finite_every: int | None = None) -> None:
        super().__init__()
        if check_finite_every is not None and int(check_finite_every) < 1:
            raise ValueError(f"check_finite_every must be >= 1 or None, got {check_finite_every}")
        self.check_finite_every = None if check_finite_every is None else int(check_finite_every)
        self._nonfinite: torch.Tensor | None = None  # deferred device-side flag (see check_finite_every)
        self._unchecked_from: int | None = None
        if regime not in ("micro", "meso"):
            raise ValueError(f"regime must be 'micro' or 'meso', got {regime!r}")
        self.synth, self.encoder, self.loss = synth, encoder, loss
        for p in self.synth.parameters():
            p.requires_grad_(False)
        self.optim_factory, self.scheduler_factory = optim_factory, scheduler_factory
        self.n_paths = path_count(loss)
        self.on_params = bool(getattr(loss, "on_params", False))
        if self.n_paths is not None and sampler is None:
            raise ValueError(f"{type(loss).__name__} is a path loss (n_paths={self.n_paths}) and needs a sampler")
        self.sampler = sampler if self.n_paths is not None else None
        self.regime, self.n_log_examples = regime, int(n_log_examples)
        self.step_seed = step_seed
        self.eval_loss = bool(eval_loss)
        self.eval_distance = MSSLoss(w_log_mag=1.0)  # deterministic audio score when the data has no θ
        self.metric_prefix: dict[str, str] = {}  # e.g. {"test": "init"} to log an evaluation under another name
        self.val_examples: dict[str, torch.Tensor] | None = None
        self._paths: list[int] = []
        self.strict_loading = False  # checkpoints hold no synth/loss buffers (see on_save_checkpoint)
        self.run_config: dict | None = None  # resolved run config, stored in checkpoints for eval.py / match.py
        self.test_audio = None
        if test_audio:
            from scraplab.training.eval_audio import EvalAudioMetrics
            self.test_audio = EvalAudioMetrics(synth, **test_audio)
        self.history: dict[str, list] = {"step": [], "val/theta_l1_permille": []}  # written to history.json
        # Training wall time of the runs this one resumed (from the checkpoint), and when this fit started.
        self.wall_before_s, self._fit_t0 = 0.0, None
        self._predictions: list = []  # (θ̂, θ or None) of the current val/test epoch, for the collapse measure

    # ------------------------------------------------------------------------------------------------ helpers
    def _targets(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        if "audio" in batch:
            x, theta = batch["audio"], None
        else:
            with torch.no_grad():
                x, theta = self.synth(batch["theta"], batch["seed"]), batch["theta"]
        return x, theta

    def _seed_hat(self, seed: torch.Tensor, stage: str) -> torch.Tensor:
        if self.regime == "micro":
            return seed
        return mix_seed(seed, self.global_step if stage == "train" else _EVAL_STEP)

    def _path_loss(self, x_hat: torch.Tensor, x: torch.Tensor, paths: list[int], weights: list[float]):
        return weighted_path_loss(self.loss, x_hat, x, paths, weights)

    def _path_optimizer(self):
        opts = self.trainer.optimizers if self._trainer is not None else []
        return opts[0] if opts and hasattr(opts[0], "set_paths") else None

    def _encode(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        # Checked before the synth sees θ̂: its own θ check would report diverged weights as a bad input.
        theta_hat = self.encoder(x)
        if stage == "train" and self._deferred():
            self._defer(~torch.isfinite(theta_hat).all())
        elif not bool(torch.isfinite(theta_hat).all()):
            raise NonFiniteLossError(f"non-finite encoder output θ̂ in {stage} at global step {self.global_step} "
                                     "(the weights diverged: lower optim.lr)")
        return theta_hat

    def _name(self, stage: str, key: str) -> str:
        return f"{self.metric_prefix.get(stage, stage)}/{key}"

    # ------------------------------------------------------------------------------------------------ steps
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """θ̂ (B, U) for audio x (B, 1, N)."""
        return self.encoder(x)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        loader = self.trainer.train_dataloader if self._trainer is not None else None
        if hasattr(loader, "mark_trained"):  # the data position a mid-epoch checkpoint records (ResumableLoader)
            loader.mark_trained(batch_idx)
        if self.step_seed is not None:
            mixed = mix_seed(torch.tensor([int(self.step_seed)]), self.global_step * 4099 + self.global_rank)
            torch.manual_seed(int(mixed[0]))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x, theta = self._targets(batch)
        theta_hat = self._encode(x, "train")
        self._paths = []
        if self.on_params:
            loss = self.loss(theta_hat, theta)
        else:
            x_hat = self.synth(theta_hat, self._seed_hat(batch["seed"], "train"))
            if self.n_paths is not None:
                self._paths = [int(p) for p in self.sampler.draw(self.global_step)]
                opt = self._path_optimizer()
                if opt is not None:
                    opt.set_paths(self._paths)
                loss = self._path_loss(x_hat, x, self._paths, self.sampler.weights(self._paths))
            else:
                loss = self.loss(x_hat, x)
        if self._deferred():
            self._defer(~torch.isfinite(loss))
        elif not torch.isfinite(loss):
            raise NonFiniteLossError(f"non-finite training loss ({float(loss)}) at global step {self.global_step}"
                                     f"{', path(s) ' + str(self._paths) if self._paths else ''}")
        bs = x.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        if theta is not None:
            train_l1 = theta_l1_permille(theta_hat.detach(), theta, validate=not self._deferred())
            self.log("train/theta_l1_permille", train_l1.mean(), batch_size=bs)
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        grads = [p.grad for p in self.encoder.parameters() if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) if grads else None
        if norm is not None and self._deferred():
            self._defer(~torch.isfinite(norm))
        elif norm is not None and not torch.isfinite(norm):
            raise NonFiniteLossError(f"non-finite gradient at global step {self.global_step}"
                                     f"{', path(s) ' + str(self._paths) if self._paths else ''}")
        if self.sampler is not None and self._paths and norm is not None:
            self.sampler.observe(self._paths, {"grad_norm": norm.detach()})  # read on the host by adaptive π only

    # ------------------------------------------------------------------------------------------------ finiteness
    def _every(self) -> int:
        if self.check_finite_every is not None:
            return self.check_finite_every
        return 1 if self.device.type == "cpu" else 50

    def _deferred(self) -> bool:
        return self._every() > 1

    def _defer(self, bad: torch.Tensor) -> None:
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
        if self._unchecked_from is None:
            self._unchecked_from = int(self.global_step)

    def check_finite(self) -> None:
        """Read the deferred finiteness flags (one device sync) and raise if a training step went non-finite."""
        flag, first, self._nonfinite, self._unchecked_from = self._nonfinite, self._unchecked_from, None, None
        if flag is not None and bool(flag):
            raise NonFiniteLossError(f"non-finite encoder output, training loss or gradient between global steps "
                                     f"{first} and {self.global_step} (checked every {self._every()} steps)")
        opt = self._path_optimizer()
        if opt is not None and hasattr(opt, "raise_if_nonfinite"):
            opt.raise_if_nonfinite()

    def on_train_start(self) -> None:
        opt = self._path_optimizer()
        if opt is not None and hasattr(opt, "defer_finite_check"):
            opt.defer_finite_check = self._deferred()
        if self._deferred() and hasattr(self.synth, "validate"):
            # the synth's θ check syncs per call; θ̂ is sigmoid-bounded and its finiteness is checked (deferred)
            self.synth.validate = False

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._deferred() and self.global_step % self._every() == 0:
            self.check_finite()

    def on_validation_start(self) -> None:
        if self.trainer.training or self.trainer.state.fn == "fit":
            self.check_finite()

    def on_train_end(self) -> None:
        self.check_finite()

    def _eval_step(self, batch: dict, batch_idx: int, stage: str) -> None:
        x, theta = self._targets(batch)
        theta_hat = self._encode(x, stage)
        bs = x.shape[0]
        # final test only (not the untrained-encoder pass logged as init/...): the JTFS subset costs ~1.5 s per batch
        audio_metrics = stage == "test" and self.test_audio is not None and self._name(stage, "") == "test/"
        need_audio = not self.on_params or theta is None or (stage == "val" and batch_idx == 0) or audio_metrics
        x_hat = self.synth(theta_hat, self._seed_hat(batch["seed"], stage)) if need_audio else None
        if not self.eval_loss:
            loss = None
        elif self.on_params:
            loss = self.loss(theta_hat, theta) if theta is not None else None
        elif self.n_paths is not None:  # a deterministic path per batch (cycles through the paths), not a random one
            loss = self.loss(x_hat, x, paths=[batch_idx % self.n_paths])
        else:
            loss = self.loss(x_hat, x)
        if loss is not None:
            self.log(self._name(stage, "loss"), loss, batch_size=bs)
        self._predictions.append((theta_hat.detach().cpu(), None if theta is None else theta.detach().cpu()))
        if theta is not None:
            per_param = theta_l1_permille(theta_hat, theta)  # (U,)
            score = per_param.mean()
            if stage == "val" and hasattr(self, "_val_sum"):
                self._val_sum[0] += float(score) * bs
                self._val_sum[1] += bs
            self.log(self._name(stage, "theta_l1_permille"), score, batch_size=bs, prog_bar=stage == "val")
            for name, value in zip(self.synth.param_names, per_param):
                self.log(self._name(stage, f"theta_l1_permille/{name}"), value, batch_size=bs)
        else:
            score = self.eval_distance(x_hat, x)
            self.log(self._name(stage, "mss_log_lin"), score, batch_size=bs)
        self.log(self._name(stage, "score"), score, batch_size=bs)
        if audio_metrics:
            for key, value in self.test_audio(x_hat, x).items():
                self.log(self._name(stage, key), value.mean(), batch_size=bs)
        if stage == "val" and batch_idx == 0:
            n = self.n_log_examples
            self.val_examples = {"x": x[:n].detach().cpu(), "x_hat": x_hat[:n].detach().cpu(),
                                 "theta_hat": theta_hat[:n].detach().cpu()}
            if theta is not None:
                self.val_examples["theta"] = theta[:n].detach().cpu()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def on_validation_epoch_start(self) -> None:
        self._val_sum = [0.0, 0]
        self._predictions = []

    def on_test_epoch_start(self) -> None:
        self._predictions = []

    def on_test_epoch_end(self) -> None:
        self._log_spread("test")

    def _log_spread(self, stage: str) -> None:
        """Collapse measure (:func:`scraplab.metrics.spread.theta_spread`) over this rank's predictions of the epoch;
        warns at the final test when the matcher predicts nearly one θ for everything."""
        preds = self._predictions
        if sum(p[0].shape[0] for p in preds) < 2:
            return
        theta_hat = torch.cat([p[0] for p in preds])
        theta = torch.cat([p[1] for p in preds]) if all(p[1] is not None for p in preds) else None
        spread = theta_spread(theta_hat, theta, self.synth.param_names)
        for key, value in spread.items():
            self.log(self._name(stage, key), value, sync_dist=False)
        name = self._name(stage, "theta_spread_ratio")
        if name == "test/theta_spread_ratio" and is_collapsed(spread["theta_spread_ratio"]):
            from lightning.pytorch.utilities import rank_zero_warn
            rank_zero_warn(f"the matcher looks collapsed: its predicted θ varies {spread['theta_spread_ratio']:.2f}× "
                           f"as much as the targets across the test set (below {COLLAPSE_RATIO}); it predicts nearly "
                           "one preset for every sound")

    def on_validation_epoch_end(self) -> None:
        # this rank's batch-size-weighted mean (Lightning's own reduction runs after this hook)
        total, n = getattr(self, "_val_sum", (0.0, 0))
        if n and not self.trainer.sanity_checking:
            self.history["step"].append(int(self.global_step))
            self.history["val/theta_l1_permille"].append(total / n)
        if not self.trainer.sanity_checking:
            self._log_spread("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        x, _ = self._targets(batch)
        return self.encoder(x)

    # ------------------------------------------------------------------------------------------------ optim
    def configure_optimizers(self):
        params = [p for p in self.encoder.parameters() if p.requires_grad]
        target = getattr(self.optim_factory, "func", self.optim_factory)
        accepts_paths = "n_paths" in inspect.signature(target).parameters
        kwargs = {"n_paths": self.n_paths} if accepts_paths and self.n_paths is not None else {}
        optimizer = self.optim_factory(params, **kwargs)
        if hasattr(optimizer, "set_paths") and self.n_paths is None and getattr(optimizer, "n_paths", 1) > 1:
            raise ValueError(f"the optimizer {type(optimizer).__name__} is path-aware but the loss "
                             f"{type(self.loss).__name__} has no paths: use loss=scrapl or optim=adamw")
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}}

    # ------------------------------------------------------------------------------------------------ checkpoints
    def on_fit_start(self) -> None:
        self._fit_t0 = time.time()

    def train_wall_s(self) -> float:
        """Wall time of fitting so far, including the runs this one resumed."""
        return self.wall_before_s + (time.time() - self._fit_t0 if self._fit_t0 is not None else 0.0)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.check_finite()  # never write a checkpoint whose steps were not checked
        # The synth and the loss are rebuilt from the config: keep only their RNG state (e.g. RandomMSSLoss).
        sd = checkpoint["state_dict"]
        for key in [k for k in sd if k.startswith(("synth.", "loss.", "eval_distance.", "test_audio."))]:
            if not key.endswith("generator_state"):
                del sd[key]
        if self.sampler is not None:
            checkpoint["sampler"] = self.sampler.state_dict()
        if self.run_config is not None:
            checkpoint["scraplab_config"] = self.run_config
        # A resumed run continues the validation curve and the wall clock (history.json, metrics.json wall_s).
        checkpoint["scraplab_progress"] = {"history": {k: list(v) for k, v in self.history.items()},
                                           "train_wall_s": float(self.train_wall_s())}
        # Plain tensors and tuples only, so that checkpoints load with torch.load(weights_only=True).
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        checkpoint["rng"] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                             "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                                       float(cached))}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        _, bad = encoder_weights(checkpoint["state_dict"], self.encoder)
        if bad:
            raise ValueError(f"checkpoint does not fit this encoder: {', '.join(bad[:3])}... "
                             "(was it trained with another synth or encoder config?)")
        if self.sampler is not None and "sampler" in checkpoint:
            self.sampler.load_state_dict(checkpoint["sampler"])
        progress = checkpoint.get("scraplab_progress")
        if progress and self._trainer is not None and self.trainer.state.fn == "fit":  # not when testing best.ckpt
            self.history = {k: list(v) for k, v in progress["history"].items()}
            self.wall_before_s = float(progress["train_wall_s"])
        if "rng" in checkpoint:
            torch.set_rng_state(checkpoint["rng"]["torch"])
            kind, keys, pos, has_gauss, cached = checkpoint["rng"]["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
            random.setstate(checkpoint["rng"]["python"])
