"""Test-time audio distances logged by the training app (``module.test_audio`` in ``configs/train.yaml``).

Per example, averaged over the test split by Lightning (weighted by batch size):

* ``audio/mss_lin``, ``audio/mss_log_lin``, ``audio/mss_rev`` — :class:`scraplab.metrics.audio.MSSDistances`,
  and ``audio/logmel_l1`` (:func:`scraplab.metrics.audio.logmel_l1`), all with ``mss: true``;
* ``audio/jtfs_<k>of<P>`` — the JTFS distance (:func:`scraplab.metrics.audio.jtfs_distance`) with the synth's
  default JTFS settings (second-order paths, ``norm`` scaling — the same metric for every training loss), on ``k``
  evenly spaced paths of ``P`` (``jtfs_paths: null`` = all paths, exact; the key then reads ``jtfs_all<P>``). The
  chosen path indices are written to ``metrics.json`` under ``audio/jtfs_paths`` (see :meth:`describe`);
* for the TR-808 synth (``features: auto``), the transient/decay feature errors of
  :func:`scraplab.metrics.features.transient_decay_errors` as ``audio/<feature>_<transient|decay>`` and
  ``audio/temporal_centroid``.

The targets' JTFS coefficients do not depend on the model: ``target_cache`` keeps them (``"memory"``: for this
process, e.g. the untrained and the best checkpoint's test passes; a folder: also for later runs on the same sounds;
``"off"``). See :mod:`scraplab.metrics.target_cache`.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from scraplab.losses.scrapl import SCRAPLLoss
from scraplab.metrics.audio import MSSDistances, describe_paths, jtfs_distance, logmel_l1, select_paths
from scraplab.metrics.features import transient_decay_errors
from scraplab.metrics.target_cache import TargetCoefficientCache


class EvalAudioMetrics(nn.Module):
    """``forward(x_hat, x) -> {name: (B,)}``; names without the stage prefix (``audio/...``).

    Args:
        synth: the run's synth (signal length, sample rate, ``jtfs_defaults``; TR-808 → features).
        mss: log the three MSS distances.
        jtfs_paths: int k → k evenly spaced paths; None → all paths; 0 → no JTFS distance.
        features: ``"auto"`` (TR-808 synth only), True or False.
        target_cache: ``"memory"``, ``"off"`` (or None), or a folder that keeps the targets' JTFS coefficients for
            later runs (keyed by audio content, metric settings and engine source: never stale).
    """

    __test__ = False  # not a pytest class

    def __init__(self, synth: nn.Module, mss: bool = True, jtfs_paths: Optional[int] = 16,
                 features: Union[str, bool] = "auto", target_cache: Optional[str] = "memory") -> None:
        super().__init__()
        self.sample_rate = int(synth.sample_rate)
        self.mss = MSSDistances() if mss else None
        self.jtfs, self.paths, self.jtfs_key = None, [], None
        if jtfs_paths is None or int(jtfs_paths) > 0:
            defaults = dict(getattr(synth, "jtfs_defaults", {}) or {})
            self.jtfs = SCRAPLLoss(shape=int(synth.n_samples), **defaults)
            n = self.jtfs.n_paths
            self.paths = select_paths(n, None if jtfs_paths is None else min(int(jtfs_paths), n))
            self.jtfs_key = f"audio/jtfs_all{n}" if len(self.paths) == n else f"audio/jtfs_{len(self.paths)}of{n}"
        if features == "auto":
            from scraplab.synths import TR808Synth
            features = isinstance(synth, TR808Synth)
        self.features = bool(features)
        if target_cache in (None, "off", False):
            self.target_cache = None
        else:
            self.target_cache = TargetCoefficientCache(None if target_cache == "memory" else target_cache)

    @torch.no_grad()
    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if self.mss is not None:
            out.update({f"audio/{k}": v for k, v in self.mss(x_hat, x).items()})
            out["audio/logmel_l1"] = logmel_l1(x_hat, x, self.sample_rate)
        if self.jtfs is not None:
            out[self.jtfs_key] = jtfs_distance(self.jtfs, x_hat, x, self.paths, target_cache=self.target_cache)
        if self.features:
            errs = transient_decay_errors(x_hat, x, self.sample_rate)
            out.update({f"audio/{k}": v for k, v in errs.items()})
        return out

    def describe(self) -> dict:
        """Non-scalar notes for ``metrics.json``: which JTFS paths the distance used."""
        if self.jtfs is None:
            return {}
        return {"audio/jtfs_paths": list(self.paths),
                "audio/jtfs_note": f"{self.jtfs_key}: {describe_paths(self.jtfs.n_paths, self.paths)}, "
                                   "evenly spaced, synth's default JTFS settings"}
