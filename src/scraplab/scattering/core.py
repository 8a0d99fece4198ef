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
        Y = subsample_fourier(x_hat[:, None, :] * psi1[start:stop], k1)
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
        Y = subsample_fourier(U[:, : stop - start] * psi2_levels[k1][n2], k2)
        parts.append(torch.fft.ifft(Y))
    lengths = {p.shape[-1] for p in parts}
    if len(lengths) != 1:  # kymatio stacks these rows too; it needs j1 + log2 T >= j2
        raise ValueError(f"second-order rows at mixed resolutions {sorted(lengths)}; T is too small for J")
    return torch.cat(parts, dim=1)


def frequential_scattering(X: torch.Tensor, n_fr_pad: int, psi_fr: torch.Tensor, k_fr: int, eps: float):
    """Filter along log-frequency and take the modulus.

    Args:
        X: (B, n1, T) complex or real, rows = scalogram channels.
        n_fr_pad: zero-padded length N_fr of the log-frequency axis.
        psi_fr: (K, N_fr) frequential filters sharing the subsampling 2**k_fr.
    Returns:
        (B, K, T, N_fr / 2**k_fr) real modulus, time before frequency.
    """
    Xt = X.transpose(-1, -2)
    if not Xt.is_complex():
        Xt = Xt.to(torch.promote_types(Xt.dtype, torch.complex64))
    Xt = torch.nn.functional.pad(Xt, (0, n_fr_pad - Xt.shape[-1]))
    X_hat = torch.fft.fft(Xt)
    Y = subsample_fourier(X_hat[:, None] * psi_fr[None, :, None, :], k_fr)
    return modulus(torch.fft.ifft(Y), eps)


def lowpass_along(U: torch.Tensor, phi: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Real part of (U ∗ φ) decimated by 2**k along ``dim`` (φ given in Fourier, already at U's resolution)."""
    U_hat = torch.fft.fft(U.to(torch.promote_types(U.dtype, torch.complex64)), dim=dim)
    shape = [1] * U.dim()
    shape[dim] = -1
    S_hat = subsample_fourier(U_hat * phi.reshape(shape), k, dim=dim)
    return torch.fft.ifft(S_hat, dim=dim).real


def average_and_unpad(U: torch.Tensor, time_phi, k_time: int, fr_phi, k_fr: int, start: int, stop: int):
    """Time averaging (order 2 only: ``time_phi`` None at order 1), frequency averaging (spinned paths only:
    ``fr_phi`` None for spin 0), temporal unpadding, and the joint layout.

    Args:
        U: (B, K, T, F) real modulus.
    Returns:
        (B, K, F', T') with F' log-frequency rows and T' unpadded frames.
    """
    if time_phi is not None:
        U = lowpass_along(U, time_phi, k_time, dim=-2)
    if fr_phi is not None:
        U = lowpass_along(U, fr_phi, k_fr, dim=-1)
    return U[..., start:stop, :].transpose(-1, -2)
