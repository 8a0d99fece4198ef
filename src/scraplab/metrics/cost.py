"""Cost of a training step: wall time per step (median and IQR, paper Table 5's statistics) and peak memory.

* :class:`StepTimer` — collects per-step durations (``time.perf_counter``; CUDA is synchronised before each reading
  when the device is a GPU, so asynchronous kernels are counted in the step that launched them).
* :class:`PeakMemory` — peak memory over a block. On CUDA: ``torch.cuda.max_memory_allocated`` after
  ``reset_peak_memory_stats`` (the paper's measure; tensors only, not the caching allocator's reserve). On CPU:
  growth of the process's resident-set high-water mark, ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after − before
  (Linux reports KiB). That is a **lower bound** on the block's own peak: the OS keeps one high-water mark per
  process, so a block that stays under an earlier peak reports 0, and it counts every allocation (Python, BLAS
  buffers), not tensors only. No tracemalloc: it misses torch's allocator and slows the step.
* :class:`StepCostCallback` — a Lightning callback timing ``on_train_batch_start`` → ``on_train_batch_end``
  (forward, backward and optimizer step, without data loading) and exposing :meth:`StepCostCallback.metrics`
  (``cost/ms_per_step_median``, ``cost/ms_per_step_iqr``, ``cost/peak_mem_mb``, ``cost/peak_mem_source``,
  ``cost/n_steps``) — the keys ``experiments/aggregate.py`` prefers over ``wall_s / steps``.
"""
from __future__ import annotations

import resource
import sys
import time
from typing import Optional

import lightning as L
import torch


def _sync(device: Optional[torch.device]) -> None:
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(device)


def time_summary(durations_s: list[float], skip: int = 0) -> dict[str, float]:
    """``{"median_ms", "iqr_ms", "n"}`` of durations in seconds, ignoring the first ``skip`` (warm-up) entries.

    IQR = q75 − q25 with linear interpolation (numpy's default).
    """
    d = torch.as_tensor(durations_s[skip:], dtype=torch.float64) * 1000.0
    if d.numel() == 0:
        raise ValueError(f"no durations to summarise ({len(durations_s)} recorded, {skip} skipped)")
    q = torch.quantile(d, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    return {"median_ms": float(q[1]), "iqr_ms": float(q[2] - q[0]), "n": int(d.numel())}


class StepTimer:
    """``with timer: step()`` records one duration; ``timer.summary(skip)`` gives median / IQR in ms."""

    def __init__(self, device: Optional[torch.device] = None) -> None:
        self.device = device
        self.durations: list[float] = []
        self._t0: Optional[float] = None

    def start(self) -> None:
        _sync(self.device)
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        if self._t0 is None:
            raise RuntimeError("StepTimer.stop() called without start()")
        _sync(self.device)
        dt = time.perf_counter() - self._t0
        self._t0 = None
        self.durations.append(dt)
        return dt

    def __enter__(self) -> "StepTimer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def summary(self, skip: int = 0) -> dict[str, float]:
        return time_summary(self.durations, skip)


def max_rss_bytes() -> int:
    """Process resident-set high-water mark in bytes (Linux: KiB × 1024; macOS reports bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


class PeakMemory:
    """``with PeakMemory(device) as pm: ...`` then ``pm.peak_bytes`` and ``pm.source`` (see module docstring)."""

    def __init__(self, device: Optional[torch.device] = None) -> None:
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.peak_bytes: Optional[int] = None
        self.source = ("cuda.max_memory_allocated" if self.device.type == "cuda"
                       else "ru_maxrss growth (lower bound)")

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._rss0 = max_rss_bytes()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = int(torch.cuda.max_memory_allocated(self.device))
        else:
            self.peak_bytes = max(0, max_rss_bytes() - self._rss0)


class StepCostCallback(L.Callback):
    """Times every training batch (forward + backward + optimizer step) and tracks peak memory over training.

    Args:
        skip: warm-up steps excluded from the time statistics (first steps pay for allocation / compilation).
        every_n_steps: time one training step in n. On a GPU a timed step costs two device synchronisations, so
            the default (None) times every step on a CPU and one in 50 elsewhere.
    """

    def __init__(self, skip: int = 5, every_n_steps: Optional[int] = None) -> None:
        if every_n_steps is not None and int(every_n_steps) < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.skip = int(skip)
        self.every_n_steps = every_n_steps
        self.timer: Optional[StepTimer] = None
        self.memory: Optional[PeakMemory] = None
        self._timing = False

    def on_train_start(self, trainer, pl_module) -> None:
        self.timer = StepTimer(pl_module.device)
        self.memory = PeakMemory(pl_module.device)
        self.memory.__enter__()
        if self.every_n_steps is None:
            self.every_n_steps = 1 if torch.device(pl_module.device).type == "cpu" else 50

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._timing = trainer.global_step % self.every_n_steps == 0
        if self._timing:
            self.timer.start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._timing:
            self.timer.stop()

    def on_train_end(self, trainer, pl_module) -> None:
        self.memory.__exit__(None, None, None)

    def metrics(self) -> dict:
        """Summary for ``metrics.json``; empty if no step was timed."""
        if self.timer is None or not self.timer.durations:
            return {}
        skip = self.skip if len(self.timer.durations) > self.skip else 0
        s = self.timer.summary(skip)
        out = {"cost/ms_per_step_median": s["median_ms"], "cost/ms_per_step_iqr": s["iqr_ms"], "cost/n_steps": s["n"]}
        if self.memory is not None and self.memory.peak_bytes is not None:
            out["cost/peak_mem_mb"] = self.memory.peak_bytes / 2 ** 20
            out["cost/peak_mem_source"] = self.memory.source
        return out
