"""Fourier-domain filter banks of the joint time-frequency scattering transform (NumPy, float64).

The Morlet/Gauss primitives and the constant-Q parameter schedule come from kymatio 0.3.0
(``kymatio.scattering1d.filter_bank``); the multi-resolution "levels", the padding rule and the frequential
(spinned) filter bank follow kymatio main's ``TimeFrequencyScattering`` so that our transform matches it
coefficient for coefficient (paper §4.1). Everything here is plain NumPy: the ``nn.Module`` front end turns the
arrays into registered buffers.

Conventions: a filter is a dict with ``levels`` (list of 1-D float64 arrays; ``levels[k]`` is the filter
periodised for a signal subsampled by ``2**k``), ``xi`` (centre frequency in cycles/sample, signed for the
frequential filters: the sign is the spin), ``sigma`` (bandwidth in cycles/sample) and ``j`` (the largest
dyadic subsampling the filter tolerates).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Submodule import on purpose: `import kymatio.torch` breaks with scipy >= 1.17 (kymatio#1068).
from kymatio.scattering1d.filter_bank import (
    compute_params_filterbank,
    compute_temporal_support,
    gauss_1d,
    morlet_1d,
)

SIGMA0 = 0.1  # width of the low-pass relative to its support (kymatio's default)
ALPHA = 5.0  # aliasing tolerance for the maximal subsampling
R_PSI = math.sqrt(0.5)  # redundancy of adjacent wavelets


def max_dyadic_subsampling(xi: float, sigma: float, alpha: float = ALPHA) -> int:
    """Largest j such that the filter stays (nearly) alias-free after subsampling by 2**j (|xi| for spins)."""
    upper = min(abs(xi) + alpha * sigma, 0.5)
    return int(math.floor(-math.log2(upper)) - 1)


def periodize(h_f: np.ndarray, level: int) -> np.ndarray:
    """Fold a length-N Fourier filter onto N / 2**level bins by *summation* (kymatio main, bug #984 fixed;
    kymatio 0.3.0 averages instead, which mis-scales the second layer)."""
    return h_f.reshape(2**level, -1).sum(axis=0)


def morlet_params(J: int, Q: int) -> list[tuple[float, float]]:
    """(xi, sigma) of the band-pass filters for J octaves and Q filters per octave (constant-Q, then linear)."""
    xis, sigmas, _ = compute_params_filterbank(SIGMA0 / 2**J, Q, ALPHA, R_PSI)
    return list(zip(xis, sigmas))


def _filter(N, xi, sigma, n_levels):
    level0 = morlet_1d(N, xi, sigma) if xi else gauss_1d(N, sigma)
    levels = [level0] + [periodize(level0, k) for k in range(1, n_levels)]
    return {"levels": levels, "xi": float(xi), "sigma": float(sigma), "j": max_dyadic_subsampling(xi, sigma)}


def lowpass(N: int, T: float, n_levels: int) -> dict:
    """Gaussian low-pass of support T (sigma = SIGMA0 / T) with ``n_levels`` resolutions; j = floor(log2 T)."""
    phi = _filter(N, 0.0, SIGMA0 / T, max(n_levels, 1))
    phi["j"] = int(math.floor(math.log2(T)))
    phi["N"] = N
    return phi


def time_filterbanks(N: int, J: int, Q: tuple[int, int], T: float):
    """First- and second-order Morlet banks and the temporal low-pass, as kymatio main's
    ``scattering_filter_factory`` with ``_reduction=np.sum``.

    Returns ``(phi, psi1, psi2)``; psi1 filters have one level, psi2 filters have
    ``min(max_j1, j2, 1 + log2 T)`` levels, phi has ``max(max_j2, 1 + log2 T)`` levels.
    """
    log2_T = int(math.floor(math.log2(T)))
    psi1 = [_filter(N, xi, s, 1) for xi, s in morlet_params(J, Q[0])]
    max_j1 = max(p["j"] for p in psi1)
    psi2 = []
    for xi, s in morlet_params(J, Q[1]):
        j2 = max_dyadic_subsampling(xi, s)
        psi2.append(_filter(N, xi, s, max(1, min(max_j1, j2, 1 + log2_T))))
    max_j2 = max(p["j"] for p in psi2)
    phi = lowpass(N, T, max(max_j2, 1 + log2_T))
    return phi, psi1, psi2


def frequential_filterbanks(N_fr: int, J_fr: int, Q_fr: int, F: float):
    """Filters along the log-frequency (n1) axis.

    Returns ``(phi_F, psis)``: ``phi_F`` is the frequential averaging low-pass of width F; ``psis[0]`` is the
    spin-0 low-pass of width 2**J_fr, followed by the spin-up band-passes (xi > 0) and then the spin-down ones
    (xi < 0), J_fr·Q_fr + 1 of each for the usual settings (kymatio main's ``spin(anden_generator)``).
    """
    params = morlet_params(J_fr, Q_fr)
    up = [_filter(N_fr, xi, s, 1) for xi, s in params]
    down = [_filter(N_fr, -xi, s, 1) for xi, s in params]
    max_j = max(p["j"] for p in up + down)
    phi_spin0 = lowpass(N_fr, 2**J_fr, max(max_j, 1 + J_fr))
    log2_F = int(math.floor(math.log2(F)))
    phi_F = lowpass(N_fr, F, 1 + log2_F)
    return phi_F, [phi_spin0] + up + down


@dataclass(frozen=True)
class Padding:
    """Reflect padding of the input and the indices that remove it at each dyadic resolution."""

    n_padded: int
    left: int
    right: int
    ind_start: dict
    ind_end: dict


def time_padding(N: int, J: int, T: float) -> Padding:
    """Pad N to the next power of two that holds N plus 3 low-pass supports on each side (kymatio main),
    never more than N - 1 on a side."""
    phi_f = gauss_1d(N, SIGMA0 / T)
    min_to_pad = 3 * compute_temporal_support(phi_f.reshape(1, -1), criterion_amplitude=1e-3)
    J_pad = min(int(np.ceil(np.log2(N + 2 * min_to_pad))), int(np.floor(np.log2(3 * N - 2))))
    n_padded = 2**J_pad
    left = (n_padded - N) // 2
    right = n_padded - N - left
    if max(left, right) >= N:
        raise ValueError(f"signal length {N} is too short for T={T}: padding would exceed the signal")
    log2_T = int(math.floor(math.log2(T)))
    start, end = {0: left}, {0: left + N}
    for j in range(1, max(log2_T, J) + 1):
        start[j] = start[j - 1] // 2 + start[j - 1] % 2
        end[j] = end[j - 1] // 2 + end[j - 1] % 2
    return Padding(n_padded, left, right, start, end)


def frequential_padding(J: int, Q1: int, J_fr: int, F: float) -> int:
    """Length N_fr of the zero-padded log-frequency axis: at least (J+1)·Q1 rows plus 8·min(F, 2**J_fr),
    rounded down to a multiple of 2**J_fr (kymatio main)."""
    n_input_fr = (J + 1) * Q1
    min_to_pad = 8 * min(F, 2**J_fr)
    return ((n_input_fr + int(min_to_pad)) // 2**J_fr) * 2**J_fr


def frequential_operator(psi_f: np.ndarray, n_in: int, k: int) -> np.ndarray:
    """The matrix (n_in, N_fr / 2**k), complex, of "zero-pad n_in rows to N_fr, FFT, multiply by ψ_fr,
    subsample by 2**k in Fourier, inverse FFT" — row r is the response to the unit impulse at row r."""
    n_fr = psi_f.shape[0]
    eye = np.zeros((n_in, n_fr))
    eye[np.arange(n_in), np.arange(n_in)] = 1.0
    Y = np.fft.fft(eye, axis=1) * psi_f
    Y = Y.reshape(n_in, 2**k, n_fr // 2**k).mean(axis=1)
    return np.fft.ifft(Y, axis=1)


def decimation_operator(phi_level: np.ndarray, k: int, keep: range) -> np.ndarray:
    """The real matrix (len(keep), n) of "circular convolution with the low-pass, keep samples m·2**k for m in
    ``keep``" — kymatio's Fourier product, periodisation and inverse FFT followed by unpadding."""
    n = phi_level.shape[0]
    h = np.fft.ifft(phi_level).real  # real and even: the low-pass is a symmetric Gaussian
    m = np.asarray(keep)[:, None] * 2**k
    t = np.arange(n)[None, :]
    return h[(m - t) % n]
