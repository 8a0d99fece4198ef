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


def check_probs(probs, n_paths: int, tol: float = 1e-6) -> torch.Tensor:
    """π as a float64 (P,) tensor; uniform when ``probs`` is None."""
    if probs is None:
        return torch.full((n_paths,), 1.0 / n_paths, dtype=torch.float64)
    p = torch.as_tensor(probs, dtype=torch.float64).detach().cpu().flatten()
    if p.numel() != n_paths:
        raise ValueError(f"π must have one entry per path ({n_paths}), got {p.numel()}")
    if not torch.isfinite(p).all() or (p < 0).any():
        raise ValueError("π must be finite and non-negative")
    if abs(float(p.sum()) - 1.0) > tol:
        raise ValueError(f"π must sum to 1, sums to {float(p.sum()):.8f}")
    return p / p.sum()
