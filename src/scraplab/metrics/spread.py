"""Collapse of a matcher: how much its predicted θ varies across a data set, against how much it should (issue 16).

A matcher that has collapsed to one preset predicts nearly the same θ for very different sounds. The measure is the
spread (standard deviation over examples, per parameter) of the predictions divided by a reference spread: the
targets' own spread when θ is known, else that of θ uniform on [0, 1] (1/√12 ≈ 0.289, the synthetic data's spread).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

UNIFORM_STD = 1.0 / math.sqrt(12.0)
# Below this mean ratio a matcher is reported as collapsed (the 808 SCRAPL matcher of issue 16 measured 0.03–0.3).
COLLAPSE_RATIO = 0.25


def theta_spread(theta_hat: torch.Tensor, theta: Optional[torch.Tensor] = None,
                 names: Optional[Sequence[str]] = None) -> dict[str, float]:
    """Spread of predictions ``theta_hat`` (N, U) in [0, 1], against ``theta`` (N, U) when known.

    Returns ``{"theta_spread_ratio": mean over parameters of std(θ̂_u) / ref_u, "theta_spread_ratio/<name>": ...}``
    with ref_u = std(θ_u) (or 1/√12 without targets, or when the targets do not vary). Needs N >= 2.
    """
    if theta_hat.ndim != 2 or theta_hat.shape[0] < 2:
        raise ValueError(f"theta_hat must be (N >= 2, U), got {tuple(theta_hat.shape)}")
    pred = theta_hat.detach().double().std(dim=0, unbiased=False)
    ref = torch.full_like(pred, UNIFORM_STD)
    if theta is not None:
        if theta.shape != theta_hat.shape:
            raise ValueError(f"theta {tuple(theta.shape)} and theta_hat {tuple(theta_hat.shape)} differ in shape")
        t = theta.detach().double().std(dim=0, unbiased=False)
        ref = torch.where(t > 1e-6, t, ref)
    ratio = pred / ref
    names = list(names) if names is not None else [str(u) for u in range(ratio.numel())]
    out = {"theta_spread_ratio": float(ratio.mean())}
    out.update({f"theta_spread_ratio/{n}": float(r) for n, r in zip(names, ratio)})
    return out


def is_collapsed(ratio: float, threshold: float = COLLAPSE_RATIO) -> bool:
    return ratio < threshold
