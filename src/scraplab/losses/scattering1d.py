"""Time scattering (kymatio 0.3.0 ``Scattering1D``) distance: a JTFS-free scattering baseline."""
from __future__ import annotations

import torch
from torch import nn

# Submodule import on purpose: `import kymatio.torch` breaks with scipy >= 1.17 (kymatio#1068).
from kymatio.scattering1d.frontend.torch_frontend import ScatteringTorch1D

from .checks import check_pair


class Scattering1DLoss(nn.Module):
    """L2 distance between order-0/1/2 time-scattering coefficients, batch mean.

    Args:
        shape: signal length N. J, Q, T: kymatio ``Scattering1D`` settings (Q = (Q1, Q2)).
        log1p: compare log1p(S / log1p_eps) instead of S.
    Shapes: (B, N) or (B, C, N) → scalar.
    """

    def __init__(self, shape: int, J: int = 12, Q=(8, 2), T=None, log1p: bool = False, log1p_eps: float = 1e-3):
        super().__init__()
        self.shape = shape
        self.scattering = ScatteringTorch1D(J, shape, Q=tuple(Q) if not isinstance(Q, int) else Q, T=T)
        self.log1p, self.log1p_eps = log1p, log1p_eps

    def _coefs(self, x):
        S = self.scattering(x)
        return torch.log1p(S / self.log1p_eps) if self.log1p else S

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x_hat, x = check_pair(x_hat, x, self.shape)
        with torch.no_grad():
            S = self._coefs(x)
        return (self._coefs(x_hat) - S).flatten(1).norm(dim=1).mean()
