"""The exact full JTFS distance (the baseline SCRAPL estimates; paper §4, Table 5)."""
from __future__ import annotations

import torch

from .scrapl import SCRAPLLoss


class JTFSLoss(SCRAPLLoss):
    """Mean over all JTFS paths of the per-path distance — the quantity whose single-path estimate is SCRAPL.

    Takes the same arguments as ``SCRAPLLoss``; ``first_order`` defaults to True as in the authors' JTFS
    baseline (orders 1 + 2: 323 / 495 paths). Shapes: (B, N) or (B, C, N) → scalar.
    """

    def __init__(self, shape: int, *args, first_order: bool = True, **kwargs):
        super().__init__(shape, *args, first_order=first_order, **kwargs)

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor, paths=None, generator=None,
                reduction: str = "mean") -> torch.Tensor:
        if paths is not None:
            raise ValueError("JTFSLoss always uses every path; use SCRAPLLoss to pick paths")
        return self.full(x_hat, x, reduction=reduction)
