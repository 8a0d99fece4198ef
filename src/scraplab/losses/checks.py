"""Input validation shared by the audio losses: clear ``ValueError``s instead of shape errors deep in an FFT."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def check_pair(x_hat: torch.Tensor, x: torch.Tensor, n_samples: Optional[int] = None,
               dtype: Optional[torch.dtype] = None):
    """Validate a (prediction, target) pair and flatten it to (B·C, N).

    With ``dtype`` (the loss's filter dtype), inputs of lower precision (float16/bfloat16 from autocast, float32 into
    a float64 loss) are cast up to it; a float64 input to a float32 loss is refused rather than silently rounded.
    Raises ``ValueError`` for non-tensors, non-float dtypes, mismatched shapes, a wrong length, an empty batch or
    non-finite values.
    """
    for name, t in (("x_hat", x_hat), ("x", x)):
        if not torch.is_tensor(t):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
        if t.dim() not in (2, 3):
            raise ValueError(f"{name} must be (B, N) or (B, C, N), got shape {tuple(t.shape)}")
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat and x shapes differ: {tuple(x_hat.shape)} vs {tuple(x.shape)}")
    if x.shape[0] == 0 or x.numel() == 0:
        raise ValueError("empty batch")
    if n_samples is not None and x.shape[-1] != n_samples:
        raise ValueError(f"the loss was built for {n_samples} samples, got signals of {x.shape[-1]}")
    for name, t in (("x_hat", x_hat), ("x", x)):
        if not torch.isfinite(t.detach()).all():
            raise ValueError(f"{name} contains NaN or Inf")
    if dtype is not None:
        for name, t in (("x_hat", x_hat), ("x", x)):
            if t.dtype != dtype and t.dtype not in _LOW_PRECISION and torch.finfo(t.dtype).bits > torch.finfo(dtype).bits:
                raise ValueError(f"{name} is {t.dtype} but the loss computes in {dtype}: convert the loss "
                                 f"(loss.to({t.dtype})) or the input (.to({dtype}))")
        x_hat, x = x_hat.to(dtype), x.to(dtype)
    n = x.shape[-1]
    return x_hat.reshape(-1, n), x.reshape(-1, n)


def as_paths(paths: Any) -> list[int]:
    """Path indices from an int, a NumPy integer, a 0-d/1-d integer tensor or array, or a sequence of integers.

    Refused with ``ValueError``: bools, floats, strings and anything else that ``int()`` would silently turn into
    some other path (``'12'``, ``1.7``, ``True``).
    """
    def bad(detail: str) -> ValueError:
        return ValueError(f"paths must be a path index (int) or a sequence of them, got {paths!r} ({detail})")

    if isinstance(paths, (torch.Tensor, np.ndarray)):
        kind = paths.dtype
        is_int = (not kind.is_floating_point and not kind.is_complex and kind != torch.bool) \
            if isinstance(paths, torch.Tensor) else np.issubdtype(kind, np.integer)
        if not is_int:
            raise bad(f"dtype {kind}")
        if paths.ndim > 1:
            raise bad(f"{paths.ndim}-d")
        return [int(p) for p in paths.reshape(-1).tolist()]
    if isinstance(paths, (bool, np.bool_)) or not isinstance(paths, (int, np.integer, list, tuple, range)):
        raise bad(type(paths).__name__)
    if isinstance(paths, (int, np.integer)):
        return [int(paths)]
    out = []
    for p in paths:
        if isinstance(p, torch.Tensor) and p.dim() == 0:
            out.extend(as_paths(p))
        elif isinstance(p, (int, np.integer)) and not isinstance(p, (bool, np.bool_)):
            out.append(int(p))
        else:
            raise bad(f"entry {p!r} of type {type(p).__name__}")
    return out
