"""Validation of path distributions π, shared by the samplers and the SCRAPL loss."""
from __future__ import annotations

import torch


def check_probs(probs, n_paths: int, tol: float = 1e-6) -> torch.Tensor:
    """π as a float64 (P,) CPU tensor renormalised exactly to sum 1; uniform when ``probs`` is None.

    Raises ``ValueError`` naming the problem: wrong length, negative or non-finite entries, or a sum off 1 by > tol.
    """
    if probs is None:
        return torch.full((n_paths,), 1.0 / n_paths, dtype=torch.float64)
    p = torch.as_tensor(probs, dtype=torch.float64).detach().cpu().flatten()
    if p.numel() != n_paths:
        raise ValueError(f"π must have one entry per path (n_paths={n_paths}), got {p.numel()}")
    if not torch.isfinite(p).all() or (p < 0).any():
        raise ValueError("π is not a probability vector: entries must be finite and non-negative")
    if abs(float(p.sum()) - 1.0) > tol:
        raise ValueError(f"π is not a probability vector: it must sum to 1, sums to {float(p.sum()):.8f}")
    return p / p.sum()
