"""The second JTFS layer in time: Y2 = U1 ∗ ψ2 for one ψ2 ("rate"), from the scalogram's rfft half spectra.

Each scalogram group's half spectrum is multiplied by ψ2 at that group's level and periodised to the path's rate
(kymatio main's Fourier-domain subsampling). ψ2's non-negligible bins form one circular band of the full spectrum,
[n − a, n) ∪ [0, hi) (its Gaussian correction term reaches just below zero frequency). For wide bands the product
is formed on that band by slicing (``fold_half_band``): the bins below zero are the conjugates of half-spectrum
bins a … 1, and the band is folded with one pad and one sum. That is the same sum as the gather / scatter-add of
``core.fold_product``, at about half its cost at j2 = 1–4, where the band spans thousands of bins; narrow bands
keep the gather, whose fewer operations cost less there.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .core import fold_product, half_to_full

# Bands narrower than this keep the gather / scatter-add of core.fold_product: measured fold forward + backward
# per group (batch 4, float32, 2 threads), slicing wins from about 250 bins on (2x at 4000 and more).
HALF_BAND_MIN = 256


@dataclass(frozen=True)
class HalfBand:
    """A filter of full length n non-negligible only on the bins [n − a, n) ∪ [0, hi), folded to n / 2**k bins."""

    a: int
    hi: int
    n: int
    k: int

    @classmethod
    def from_support(cls, idx: np.ndarray, n: int, k: int, min_bins: int = HALF_BAND_MIN):
        """The band covering the ascending bins ``idx`` of a length-n filter, or None where the bins above n/2 do
        not run up to n − 1 without a gap, or where the band is shorter than ``min_bins`` or more than twice as
        long as ``idx`` (slicing would then multiply more bins than the gather)."""
        neg = idx[idx > n // 2]
        pos = idx[idx <= n // 2]
        a = int(neg.size)
        if a and int(neg[0]) != n - a:
            return None
        hi = int(pos[-1]) + 1 if pos.size else 1
        if not min_bins <= a + hi <= 2 * idx.size:
            return None
        return cls(a, hi, n, k)

    @property
    def n_out(self) -> int:
        return self.n // 2**self.k

    def weights(self, h: torch.Tensor) -> torch.Tensor:
        """(a + hi,) real taps of the length-n filter ``h`` over the band, in band order, divided by 2**k (the
        periodisation is a mean of 2**k folds)."""
        return torch.cat([h[self.n - self.a:], h[: self.hi]]) / 2**self.k


def fold_half_band(U: torch.Tensor, band: HalfBand, w: torch.Tensor) -> torch.Tensor:
    """``subsample_fourier(half_to_full(U) · h, k)`` for a filter ``h`` on ``band`` (taps ``w`` = band.weights(h)).

    Args:
        U: (..., n/2 + 1) complex rfft half spectra.
    Returns:
        (..., n / 2**k) complex.
    """
    a, hi, n_out = band.a, band.hi, band.n_out
    sub = U[..., : max(hi, a + 1)]  # one slice of U: its backward zero-fills one full-size gradient, not two
    seg = torch.cat([sub[..., 1: a + 1].flip(-1).conj(), sub[..., :hi]], dim=-1) * w  # bins n − a, …, n − 1, 0, …
    m, r0 = a + hi, (band.n - a) % n_out
    K = -(-(r0 + m) // n_out)  # folds the band touches
    seg = F.pad(torch.view_as_real(seg), (0, 0, r0, K * n_out - r0 - m)).unflatten(-2, (K, n_out))
    return torch.view_as_complex(seg.sum(-3) if K > 1 else seg[..., 0, :, :])


@dataclass(frozen=True)
class BandFold:
    """A ``HalfBand`` with its taps on a device (what ``second_layer`` reads in place of a gather support)."""

    band: HalfBand
    w: torch.Tensor


def second_layer(U1_hat: list[torch.Tensor], groups, psi2_levels: list[torch.Tensor], n2: int, j2: int,
                 n1_max: int, log2_stride: int, supports=None) -> torch.Tensor:
    """Y2 = U1 ∗ ψ2[n2] for the scalogram rows with j1 < j2, all at time resolution 2**j2.

    ``supports`` maps k1 to a ``BandFold``, to the support of ``core.fold_product`` for ψ2[n2] at that level, or
    to None (the dense product).
    Returns:
        (B, n1_max, Npad / 2**j2) complex.
    """
    parts = []
    for (start, stop, k1), U in zip(groups, U1_hat):
        if start >= n1_max:
            break
        stop = min(stop, n1_max)
        k2 = min(j2 - k1, log2_stride)
        sup = supports.get(k1) if supports is not None else None
        h = psi2_levels[k1][n2]
        U = U[:, : stop - start]
        if isinstance(sup, BandFold):
            Y = fold_half_band(U, sup.band, sup.w)
        else:
            if sup is None:
                U = half_to_full(U, h.shape[-1])
            Y = fold_product(U, h, k2, sup)
        parts.append(torch.fft.ifft(Y))
    lengths = {p.shape[-1] for p in parts}
    if len(lengths) != 1:  # kymatio stacks these rows too; it needs j1 + log2 T >= j2
        raise ValueError(f"second-order rows at mixed resolutions {sorted(lengths)}; T is too small for J")
    return torch.cat(parts, dim=1)
