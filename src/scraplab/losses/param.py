"""Supervised parameter loss ("P-loss", the paper's oracle baseline, Mitcheltree et al. 2026 Table 1).

Unlike the audio losses it compares parameter vectors: ``forward(theta_hat (B, U), theta (B, U)) -> scalar``, the
sum over parameters of the per-parameter MSE (the authors sum one ``MSELoss`` per parameter), optionally weighted.
The training module recognises it by ``on_params = True`` and feeds it θ instead of audio.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class ParamLoss(nn.Module):
    """Σ_u w_u · mean_b (θ̂_bu − θ_bu)² over unit-range parameters θ ∈ [0, 1]^U.

    Args:
        weights: optional per-parameter weights (length U); default all 1.
    """

    on_params = True

    def __init__(self, weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.weights = None if weights is None else torch.as_tensor(list(weights), dtype=torch.float32)

    def forward(self, theta_hat: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        if theta_hat.shape != theta.shape or theta.dim() != 2:
            raise ValueError(f"ParamLoss expects theta_hat and theta of the same (B, U) shape, got "
                             f"{tuple(theta_hat.shape)} and {tuple(theta.shape)}")
        per_param = ((theta_hat - theta) ** 2).mean(dim=0)  # (U,)
        if self.weights is not None:
            if self.weights.numel() != per_param.numel():
                raise ValueError(f"ParamLoss has {self.weights.numel()} weights for {per_param.numel()} parameters")
            per_param = per_param * self.weights.to(per_param)
        return per_param.sum()
