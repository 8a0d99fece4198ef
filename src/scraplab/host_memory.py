"""Keep freed host memory inside the process, so that a training step's large tensors do not page-fault anew.

With glibc's default malloc, a freed multi-MB tensor goes back to the kernel (``munmap`` above the mmap threshold,
heap trimming below it), and the next step's tensor of the same size faults its pages in again. A SCRAPL step
allocates ~50 MB of such tensors (the first layer's full-rate group: 10 rows × 65536 bins × batch 4 per pass):
12 000–15 000 minor page faults per step on the 2-core machine, where an MSS step has none. Raising both
thresholds (``mallopt``) keeps the freed memory for reuse: the process then holds its high-water mark of heap
memory instead of returning it between steps. This is a process-wide allocator setting, so it is applied only where
a command asks for it (``host_memory: keep`` in the train config, ``--host-memory`` in the benchmarks), never on
import. Measured in ``experiments/benchmark_losses.py --paired``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

MODES = ("keep", "default")

# mallopt parameter numbers (glibc malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_INT_MAX = 2**31 - 1  # mallopt takes an int: the largest thresholds it can set (2 GiB)

_applied: str | None = None


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


def set_host_memory(mode: str) -> bool:
    """Apply ``mode`` to this process's allocator and say whether it took effect.

    Args:
        mode: "keep" (freed blocks below 2 GiB stay in the process: no munmap, no heap trimming) or "default"
            (leave the allocator as it is; a process that applied "keep" keeps it).
    Returns:
        True where the allocator now keeps freed memory; False for "default", or off glibc (macOS, musl: nothing
        is changed there, and the step is only slower).
    Raises:
        ValueError: for an unknown mode.
    """
    global _applied
    if mode not in MODES:
        raise ValueError(f"host_memory must be one of {MODES}, got {mode!r}")
    if mode == "default":
        return _applied == "keep"
    if _applied == "keep":
        return True
    libc = _libc()
    if libc is None:
        return False
    ok = libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(_INT_MAX)) == 1
    ok = ok and libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(_INT_MAX)) == 1
    if ok:
        _applied = "keep"
    return ok


def host_memory_mode() -> str:
    """"keep" once :func:`set_host_memory` applied it in this process, else "default"."""
    return _applied or "default"
