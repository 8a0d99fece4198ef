"""The first JTFS layer, |x ∗ ψ1| as rfft halves, fused per group of equal subsampling over contiguous bands.

Each ψ1 row is non-negligible (above ``SUPPORT_TOL`` of its peak) on one contiguous range of bins [lo, hi). When
that range is no longer than the group's output length L = N / 2**k1, periodising the product X·ψ1 to L bins (the
Fourier-domain subsampling of kymatio main) places every bin at its own position (lo..hi-1) mod L: no two bins of a
row fold onto each other, so the product is written in at most two slices instead of being summed with a scatter.
``FirstLayerGroup`` then runs band product, inverse FFT, modulus and rfft with a hand-written backward (modulus
and FFT adjoints on real views, the rfft's and ifft's 1/L and L cancelled); under create_graph (θ-IS) the
backward recomputes the same operator in differentiable ops, so derivatives of any order are those of the
composition.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .core import _abs, fold_product, modulus, rfft, rfft_adjoint_weights, vmapped


@dataclass(frozen=True)
class Bands:
    """Contiguous bands of a group's ψ1 rows.

    rows: per row (lo, hi, q0) — it reads bins [lo, hi) of the spectrum and writes them from position q0 = lo mod L
        on, wrapping once past L.
    n_in: N, the spectrum's length; n_out: L = N / 2**k.
    """

    rows: tuple
    n_in: int
    n_out: int

    @classmethod
    def from_filters(cls, rows: np.ndarray, k: int, tol: float):
        """Bands of the (R, N) filters ``rows`` at subsampling 2**k, or None if one row's band is longer than
        N / 2**k (its bins would fold onto each other: the scatter-sum of ``core.fold_product`` is needed)."""
        rows = np.atleast_2d(rows)
        n_in = rows.shape[1]
        n_out = n_in // 2**k
        out = []
        for h in rows:
            nz = np.flatnonzero(np.abs(h) > tol * np.abs(h).max())
            lo, hi = int(nz[0]), int(nz[-1]) + 1
            if hi - lo > n_out:
                return None
            out.append((lo, hi, lo % n_out))
        return cls(tuple(out), n_in, n_out)

    def weights(self, psi: torch.Tensor, k: int) -> list[torch.Tensor]:
        """Per row, the (hi - lo, 1) real taps of ``psi`` (R, N) over its band, divided by 2**k (the periodisation
        is a mean of 2**k folds)."""
        return [(psi[r, lo:hi] / 2**k).unsqueeze(-1).contiguous() for r, (lo, hi, _) in enumerate(self.rows)]

    def _pieces(self):
        """Per row: (row, lo, q0, m, n) with the first m bins of the band at [q0, q0 + m) and the other n - m at
        [0, n - m)."""
        L = self.n_out
        for r, (lo, hi, q0) in enumerate(self.rows):
            n = hi - lo
            yield r, lo, q0, min(n, L - q0), n


def fold(X: torch.Tensor, bands: Bands, w: list[torch.Tensor]) -> torch.Tensor:
    """Periodised product ``subsample_fourier(X · ψ, k)`` over the bands, written into one buffer (``out=`` ops:
    no autograd; ``fold_differentiable`` is the same product for graphs).

    Args:
        X: (B, N) complex spectrum.
    Returns:
        (B, R, L) complex.
    """
    Xr = torch.view_as_real(X)
    out = Xr.new_zeros(X.shape[0], len(bands.rows), bands.n_out, 2)
    for r, lo, q0, m, n in bands._pieces():
        torch.mul(Xr[:, lo:lo + m], w[r][:m], out=out[:, r, q0:q0 + m])
        if m < n:
            torch.mul(Xr[:, lo + m:lo + n], w[r][m:], out=out[:, r, : n - m])
    return torch.view_as_complex(out)


def fold_adjoint(G: torch.Tensor, bands: Bands, w: list[torch.Tensor]) -> torch.Tensor:
    """The adjoint of ``fold``: (B, R, L) complex -> (B, N) complex, the rows' contributions summed."""
    Gr = torch.view_as_real(G)
    out = Gr.new_zeros(G.shape[0], bands.n_in, 2)
    for r, lo, q0, m, n in bands._pieces():
        out[:, lo:lo + m].addcmul_(Gr[:, r, q0:q0 + m], w[r][:m])
        if m < n:
            out[:, lo + m:lo + n].addcmul_(Gr[:, r, : n - m], w[r][m:])
    return torch.view_as_complex(out)


def fold_differentiable(X: torch.Tensor, bands: Bands, w: list[torch.Tensor]) -> torch.Tensor:
    """``fold`` in out-of-place ops (the same products, no sums), for derivatives of higher order."""
    Xr, L = torch.view_as_real(X), bands.n_out
    rows = []
    for r, lo, q0, m, n in bands._pieces():
        seg = Xr[:, lo:lo + n] * w[r]
        if m == n:
            rows.append(F.pad(seg, (0, 0, q0, L - q0 - n)))
        else:  # wraps: [0, n - m) holds the band's tail, [q0, L) its head
            rows.append(torch.cat([seg[:, m:], seg.new_zeros(seg.shape[0], L - n, 2), seg[:, :m]], dim=1))
    return torch.view_as_complex(torch.stack(rows, dim=1))


class FirstLayerGroup(torch.autograd.Function):
    """rfft(|ifft(fold(X))|) for one group: (B, N) complex -> (B, R, L/2 + 1) complex."""

    @staticmethod
    def forward(ctx, X, bands, w, eps):
        z = torch.fft.ifft(fold(X, bands, w))
        r = _abs(z)
        R = torch.fft.rfft(r)
        ctx.save_for_backward(X, z, r.clamp_min_(eps), *w)  # only the backward reads r now: clamped in place
        ctx.bands, ctx.eps = bands, eps
        return R

    @staticmethod
    def backward(ctx, g):
        X, z, r_eps, *w = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the composition's own derivatives
            with torch.enable_grad():
                out = group_differentiable(X, ctx.bands, w, ctx.eps)
                (gX,) = torch.autograd.grad(out, X, g, create_graph=True)
            return gX, None, None, None
        # rfft adjoint L·irfft(g·w), modulus adjoint z/|z|, ifft adjoint fft/L: the L and 1/L cancel.
        gr = torch.fft.irfft(g * rfft_adjoint_weights(g), n=r_eps.shape[-1]).div_(r_eps)
        return fold_adjoint(torch.fft.fft(_times_real(z, gr)), ctx.bands, w), None, None, None


def _times_real(z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """z · a for complex z and real a of one shape, as two real products written into their halves: the
    broadcast (..., 2) · (..., 1) product of real views took 4-5 ms more per step at the full-rate group (batch 4,
    10 rows × 65536, 2 threads, measured within one process)."""
    zr = torch.view_as_real(z)
    if vmapped(zr, a):  # vmap (θ-IS's warm-up) has no rule for out=
        return torch.view_as_complex(zr * a.unsqueeze(-1))
    out = torch.empty_like(zr)
    torch.mul(zr[..., 0], a, out=out[..., 0])
    torch.mul(zr[..., 1], a, out=out[..., 1])
    return torch.view_as_complex(out)


def group_differentiable(X, bands, w, eps):
    """``FirstLayerGroup`` in differentiable ops (the reference of its backward)."""
    return rfft(modulus(torch.fft.ifft(fold_differentiable(X, bands, w)), eps))


def first_layer_group(X: torch.Tensor, bands: Bands, w: list[torch.Tensor], eps: float) -> torch.Tensor:
    """rfft halves of |ifft(fold(X))| for one group, (B, R, L/2 + 1): fused when X needs a gradient."""
    if torch.is_grad_enabled() and X.requires_grad:
        return FirstLayerGroup.apply(X, bands, w, eps)
    return torch.fft.rfft(_abs(torch.fft.ifft(fold(X, bands, w))))


def first_layer(x_hat: torch.Tensor, psi1: torch.Tensor, groups: list[tuple[int, int, int]], eps: float,
                bands=None, supports=None) -> list[torch.Tensor]:
    """Scalogram spectra U1_hat for rows grouped by subsampling.

    Args:
        x_hat: (B, Npad) complex spectrum of the padded input.
        psi1: (n1_total, Npad) first-order filters (level 0).
        groups: (start, stop, k1) row ranges sharing the subsampling 2**k1.
        bands: per group, None or ``(Bands, weights)`` of its rows (``Bands.from_filters``, ``Bands.weights``).
        supports: per group, None or the (idx, pos) of ``core.fold_product``, for groups without bands.
    Returns:
        list of (B, stop - start, Npad / 2**(k1 + 1) + 1) rfft half spectra of |x ∗ ψ1|, one per group.
    """
    out = []
    for g, (start, stop, k1) in enumerate(groups):
        band = bands[g] if bands is not None else None
        if band is not None:
            b, w = band
            n = stop - start
            if n < len(b.rows):
                b, w = Bands(b.rows[:n], b.n_in, b.n_out), w[:n]
            out.append(first_layer_group(x_hat, b, w, eps))
            continue
        sup = supports[g] if supports is not None else None
        if sup is not None:
            sup = (sup[0][:stop - start], sup[1][:stop - start])
        Y = fold_product(x_hat, psi1[start:stop], k1, sup)
        out.append(rfft(modulus(torch.fft.ifft(Y), eps)))  # real envelope: half the spectrum suffices
    return out
