"""Parameter-space metrics of the paper (Mitcheltree et al. 2026, Tables 1–3: test θ L1 in ‰)."""
from __future__ import annotations

import torch


def theta_l1_permille(theta_hat: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per parameter, in per-mille of the unit range: ``(B, U), (B, U) -> (U,)``.

    θ lives in [0, 1], so 1000 ‰ is the whole range; an encoder that always outputs 0.5 on uniform θ scores 250 ‰.
    """
    if theta_hat.shape != theta.shape or theta.dim() != 2:
        raise ValueError(f"theta_hat and theta must both be (B, U), got {tuple(theta_hat.shape)} and "
                         f"{tuple(theta.shape)}")
    return 1000.0 * (theta_hat.detach().float() - theta.float()).abs().mean(dim=0)
