"""One background thread per process that computes a loss's target side while the caller computes the prediction.

A SCRAPL step on CPU transforms two signals: the prediction x̂ (with autograd, then a backward) and the target x
(without). The two forward passes are independent. At 2 intra-op threads the JTFS's many mid-sized FFTs and
elementwise passes leave the second core idle part of the time, so running the target's pass on a second Python
thread (it releases the GIL inside every ATen op) overlaps it with the prediction's. Measured in
``experiments/benchmark_losses.py --paired`` (README, Benchmarks).

When it is not used (``can_overlap``):
- a non-CPU tensor: accelerator kernels are asynchronous already, and a second thread would issue them on its own
  current stream;
- one intra-op thread (``torch.set_num_threads(1)``): the user gave torch one core (two runs side by side on
  2 cores), which the second thread would exceed;
- autocast, or a tensor inside a ``torch.func`` transform (vmap / grad): both are per-thread states that the worker
  would not see, so its result could differ from the same call made in one thread.
The values are those of the sequential computation, bit for bit (the same operations on the same thread count).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Callable

import torch

from ..scattering.core import vmapped

_lock = threading.Lock()
_worker: tuple[int, ThreadPoolExecutor] | None = None  # (pid that created it, executor)


def _executor() -> ThreadPoolExecutor:
    """The process's worker, created on first use. A forked child (a DataLoader worker) inherits the executor object
    but not its thread, so a child makes its own instead of queueing work that would never run."""
    global _worker
    with _lock:
        if _worker is None or _worker[0] != os.getpid():
            _worker = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="scraplab-target"))
        return _worker[1]


def can_overlap(*tensors: torch.Tensor) -> bool:
    """Whether a computation on ``tensors`` may run on the worker thread (see the module docstring)."""
    if torch.get_num_threads() < 2 or torch.is_autocast_enabled("cpu"):
        return False
    return all(t.device.type == "cpu" for t in tensors) and not vmapped(*tensors)


def submit(fn: Callable, *args) -> Future:
    """Run ``fn(*args)`` on the worker thread without autograd (grad mode is per thread: set there explicitly)."""
    def run():
        with torch.no_grad():
            return fn(*args)

    return _executor().submit(run)


def beside(pending: Future, fn: Callable, *args):
    """``fn(*args)`` on this thread while ``pending`` runs; if it raises, ``pending`` is waited for first, so that no
    work of a failed call is still running (and touching the loss's target cache) when the caller goes on."""
    try:
        return fn(*args)
    except BaseException:
        wait([pending])
        raise
