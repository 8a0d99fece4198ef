"""Input validation shared by the audio losses: clear ``ValueError``s instead of shape errors deep in an FFT."""
from __future__ import annotations

from typing import Optional

import torch


def check_pair(x_hat: torch.Tensor, x: torch.Tensor, n_samples: Optional[int] = None):
    """Validate a (prediction, target) pair and flatten it to (B·C, N).

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
    n = x.shape[-1]
    return x_hat.reshape(-1, n), x.reshape(-1, n)
