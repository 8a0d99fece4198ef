"""Parameter-space metrics of the paper (Mitcheltree et al. 2026, §4.2–4.3, Tables 1–3 and 7; digest §2.6).

All θ live in [0, 1] (the synth's unit parameters), so an L1 error of 1000 ‰ is the whole range.

* :func:`theta_l1_permille` — ``1000 · mean_b |θ̂_bu − θ_bu|`` per parameter u, shape (U,); its mean over u is the
  paper's "θ_synth L1".
* :func:`steps_to_convergence` — the first validation step whose θ L1 is below 100 ‰ (Table 2 "Val Conv. Steps",
  Table 7), ``None`` if the run never gets there; :func:`convergence_rate` — the fraction of runs that do (Table 7 "CR").
* :func:`total_variation` — Table 2 "Val Total Var.": the summed absolute change between consecutive validation values
  of θ L1 (in ‰, i.e. 1000 × the change of the fraction), divided by the number of validation points.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch

CONVERGENCE_THRESHOLD_PERMILLE = 100.0


def theta_l1_permille(theta_hat: torch.Tensor, theta: torch.Tensor, validate: bool = True) -> torch.Tensor:
    """θ L1 in ‰ per parameter: ``(B, U), (B, U) -> (U,)`` (float64).

    Raises ``ValueError`` on mismatched shapes, an empty batch, non-finite values or θ outside [0, 1];
    ``validate=False`` skips the value checks (they synchronise with the device; shapes are always checked).
    """
    if theta_hat.dim() != 2 or theta_hat.shape != theta.shape:
        raise ValueError(f"theta_hat and theta must both be (B, U), got {tuple(theta_hat.shape)} and "
                         f"{tuple(theta.shape)}")
    if theta.shape[0] == 0:
        raise ValueError("theta_l1_permille needs at least one example (B = 0)")
    th, t = theta_hat.detach().double(), theta.detach().double()
    if not validate:
        return 1000.0 * (th - t).abs().mean(dim=0)
    if not (torch.isfinite(th).all() and torch.isfinite(t).all()):
        raise ValueError("theta_hat / theta contain non-finite values")
    if t.min() < 0 or t.max() > 1:
        raise ValueError(f"theta must be unit parameters in [0, 1], got range [{float(t.min())}, {float(t.max())}]")
    return 1000.0 * (th - t).abs().mean(dim=0)


def theta_l1_summary(theta_hat: torch.Tensor, theta: torch.Tensor,
                     names: Optional[Sequence[str]] = None) -> dict[str, float]:
    """``{"theta_l1_permille": mean over parameters, "theta_l1_permille/<name>": per parameter}`` (floats, ‰)."""
    per = theta_l1_permille(theta_hat, theta)
    names = list(names) if names is not None else [str(i) for i in range(per.numel())]
    if len(names) != per.numel():
        raise ValueError(f"{len(names)} names for {per.numel()} parameters")
    out = {"theta_l1_permille": float(per.mean())}
    out.update({f"theta_l1_permille/{n}": float(v) for n, v in zip(names, per)})
    return out


def _curve(steps: Sequence[float], values: Sequence[float]) -> tuple[list[int], list[float]]:
    steps, values = [int(s) for s in steps], [float(v) for v in values]
    if len(steps) != len(values):
        raise ValueError(f"steps ({len(steps)}) and values ({len(values)}) must have the same length")
    if any(b < a for a, b in zip(steps, steps[1:])):
        raise ValueError("validation steps must be non-decreasing")
    return steps, values


def steps_to_convergence(steps: Sequence[int], values_permille: Sequence[float],
                         threshold: float = CONVERGENCE_THRESHOLD_PERMILLE) -> Optional[int]:
    """First validation step whose θ L1 (‰) is strictly below ``threshold`` (paper: 100 ‰); ``None`` if never.

    Args:
        steps: global step of each validation, non-decreasing, length V.
        values_permille: validation θ L1 in ‰ at those steps, length V (NaN entries never count as converged).
    """
    steps, values = _curve(steps, values_permille)
    for s, v in zip(steps, values):
        if v < threshold:  # NaN < t is False
            return s
    return None


def convergence_rate(conv_steps: Iterable[Optional[int]]) -> float:
    """Fraction of runs (in [0, 1]) whose :func:`steps_to_convergence` is not ``None`` (Table 7 "CR")."""
    conv_steps = list(conv_steps)
    if not conv_steps:
        raise ValueError("convergence_rate needs at least one run")
    return sum(s is not None for s in conv_steps) / len(conv_steps)


def total_variation(values_permille: Sequence[float], normalize: str = "points") -> float:
    """Total variation of a validation θ-L1 curve given in ‰ (Table 2 "Val Total Var.").

    ``sum_i |v_{i+1} − v_i|`` divided by the number of validation points V (``normalize="points"``, the digest's
    reading of the authors' ``tvs_x_normed``) or by the number of differences V − 1 (``"diffs"``). Values in ‰ make
    this the paper's "1000 × mean |Δ|" of the fractional curve. A curve with fewer than 2 points has TV 0.
    """
    if normalize not in ("points", "diffs"):
        raise ValueError(f"normalize must be 'points' or 'diffs', got {normalize!r}")
    v = torch.as_tensor([float(x) for x in values_permille], dtype=torch.float64)
    if not torch.isfinite(v).all():
        raise ValueError("total_variation: the validation curve contains non-finite values")
    if v.numel() < 2:
        return 0.0
    tv = float((v[1:] - v[:-1]).abs().sum())
    return tv / (v.numel() if normalize == "points" else v.numel() - 1)
