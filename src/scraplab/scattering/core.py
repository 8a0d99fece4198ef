"""JTFS computations on tensors (no module state): first layer, one ψ2 "rate", frequential filtering, averaging.

All signals are complex spectra or real envelopes with a leading batch axis. The maths is kymatio main's
``joint_timefrequency_scattering`` + ``jtfs_average_and_format`` (joint format): the same products, the same
Fourier-domain subsampling (periodisation by averaging) and the same unpadding, batched over filters so that one
call serves a single path (SCRAPL) or every path of a rate (full JTFS) with identical arithmetic.
"""
from __future__ import annotations

import torch


def modulus(z: torch.Tensor, eps: float) -> torch.Tensor:
    """|z| smoothed as sqrt(|z|² + eps²): equal to |z| up to eps²/(2|z|), with a finite gradient (0) and finite
    second derivative at z = 0, which silent inputs and the double backward of θ-IS need."""
    r = torch.view_as_real(z)
    return torch.sqrt(r.square().sum(-1) + eps * eps)


def subsample_fourier(X: torch.Tensor, k: int, dim: int = -1) -> torch.Tensor:
    """Decimate by ``2**k`` in the signal domain by periodising the spectrum (mean of the 2**k folds)."""
    if k == 0:
        return X
    dim = dim % X.dim()
    n = X.shape[dim]
    shape = X.shape[:dim] + (2**k, n // 2**k) + X.shape[dim + 1:]
    return X.reshape(shape).mean(dim)


def first_layer(x_hat: torch.Tensor, psi1: torch.Tensor, groups: list[tuple[int, int, int]], eps: float):
    """Scalogram spectra U1_hat for rows grouped by subsampling.

    Args:
        x_hat: (B, Npad) complex spectrum of the padded input.
        psi1: (n1_total, Npad) first-order filters (level 0).
        groups: (start, stop, k1) row ranges sharing the subsampling 2**k1.
    Returns:
        list of (B, stop - start, Npad / 2**k1) complex spectra of |x ∗ ψ1|, one per group.
    """
    out = []
    for start, stop, k1 in groups:
        Y = subsample_fourier(mul_real(x_hat[:, None, :], psi1[start:stop]), k1)
        U = modulus(torch.fft.ifft(Y), eps)
        out.append(torch.fft.fft(U))
    return out


def second_layer(U1_hat: list[torch.Tensor], groups, psi2_levels: list[torch.Tensor], n2: int, j2: int,
                 n1_max: int, log2_stride: int) -> torch.Tensor:
    """Y2 = U1 ∗ ψ2[n2] for the scalogram rows with j1 < j2, all at time resolution 2**j2.

    Returns:
        (B, n1_max, Npad / 2**j2) complex.
    """
    parts = []
    for (start, stop, k1), U in zip(groups, U1_hat):
        if start >= n1_max:
            break
        stop = min(stop, n1_max)
        k2 = min(j2 - k1, log2_stride)
        Y = subsample_fourier(mul_real(U[:, : stop - start], psi2_levels[k1][n2]), k2)
        parts.append(torch.fft.ifft(Y))
    lengths = {p.shape[-1] for p in parts}
    if len(lengths) != 1:  # kymatio stacks these rows too; it needs j1 + log2 T >= j2
        raise ValueError(f"second-order rows at mixed resolutions {sorted(lengths)}; T is too small for J")
    return torch.cat(parts, dim=1)


def mul_real(z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """z · h for complex z and a real filter h (broadcast), on the real view: a complex-by-real product
    in torch promotes h to complex and runs several times slower on CPU."""
    return torch.view_as_complex((torch.view_as_real(z) * h.unsqueeze(-1)).contiguous())


def frequential_scattering(X: torch.Tensor, W: torch.Tensor, eps: float) -> torch.Tensor:
    """Filter along log-frequency and take the modulus.

    The zero-padding to N_fr, FFT, product with ψ_fr, Fourier subsampling and inverse FFT of kymatio form one
    linear map per filter, precomputed as the complex matrix ``W`` (exactly the same operator).

    Args:
        X: (B, n1, T) complex or real, rows = scalogram channels.
        W: (K, n1, F_out) complex, one matrix per frequential filter (rows truncated to n1).
    Returns:
        (B, K, T, F_out) real modulus, time before frequency.
    """
    Xt = X.transpose(-1, -2)
    if not Xt.is_complex():
        Xt = Xt.to(W.dtype)
    return modulus(torch.matmul(Xt.unsqueeze(1), W), eps)


def average_and_unpad(U: torch.Tensor, time_avg, fr_avg) -> torch.Tensor:
    """Time averaging with stride T and unpadding (order 2 only: ``time_avg`` None at order 1), frequency
    averaging with stride F (spinned paths only: ``fr_avg`` None for spin 0), joint layout.

    ``time_avg`` (T', T) maps a T-frame envelope to the T' kept frames of (U ∗ φ_T)[m·stride]; ``fr_avg``
    (F_out, F') does the same along log-frequency with φ_F. Both are the Fourier-domain products of kymatio
    written as their (exactly equal) circulant-and-decimate matrices.

    Args:
        U: (B, K, T, F_out) real modulus.
    Returns:
        (B, K, F', T').
    """
    if time_avg is not None:
        U = torch.matmul(time_avg, U)
    if fr_avg is not None:
        U = torch.matmul(U, fr_avg)
    return U.transpose(-1, -2)
