"""Granular chirp-texture synth (paper §4.2; reference_experiments.md §1.1).

64 Hann-windowed exponential-chirp grains of 0.5 s at random log-uniform pitches and random onsets, summed into 4 s
at 8192 Hz and L2-normalised. Two controls: θ_density (a soft cut-off over the grain index: how many grains sound)
and θ_slope (the chirp rate shared by all grains, tan-mapped to about ±8.5 oct/s).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import dsp, rng
from .base import Param, Synth

STREAM_F0, STREAM_ONSET = 0, 1


@dataclass(frozen=True)
class TanMap:
    """u ∈ [0, 1] -> scale·tan(half_angle·(2u − 1)) and back (a picklable custom curve, unlike a lambda)."""

    half_angle: float
    scale: float

    def to_phys(self, u: torch.Tensor) -> torch.Tensor:
        return torch.tan(self.half_angle * (2.0 * u - 1.0)) * self.scale

    def to_u(self, g: torch.Tensor) -> torch.Tensor:
        return (torch.atan(g / self.scale) / self.half_angle + 1.0) / 2.0


class GranularSynth(Synth):
    """Chirp texture. ``forward(theta (B, 2), seed (B,)) -> (B, 1, n_samples)``, unit L2 norm per example.

    Parameters (θ order): ``density`` (dimensionless, linear) and ``slope`` (chirp rate in oct/s, custom curve
    γ = tan(max_theta_slope·(2θ − 1)·π/2)·chirp_rate_scale).

    Args:
        sample_rate: Hz (paper 8192).
        n_samples: output length (paper 32768, 4 s).
        n_grains: grains per example (paper 64).
        grain_n_samples: grain length (paper 4096, 0.5 s).
        f0_min_hz, f0_max_hz: log-uniform range of the grain centre frequency (paper 256–2048 Hz).
        max_theta_slope: keeps the tan map away from its pole (paper 0.95).
        chirp_rate_scale: oct/s per unit of tan; default sr/(Q·hop)/4 with the CQT's Q = 12, hop = 256 (0.667 at
            8192 Hz), the authors' coupling of chirp rate to the encoder's time-frequency resolution.
        max_shift, pre_delay, validate: see :class:`Synth` (the paper uses no shift for this synth).

    Randomness: per grain, f0 (stream 0) and onset (stream 1, integer in [0, n_samples − grain_n_samples]) come from
    the seed. Unlike the authors' code, grain phase is the exact integral of the instantaneous frequency (zero at the
    grain centre) rather than a cumulative sum; the two differ only by a constant phase per grain.
    """

    jtfs_defaults = dict(J=12, Q=(8, 2), J_fr=3, Q_fr=2, T=None, F=None)
    scrapl_grad_mult = 1.0e8  # authors' gradient multiplier for the path-aware optimizers (identity ρ)
    cqt_defaults = dict(n_octaves=5, bins_per_octave=12, hop=256)

    def __init__(self, sample_rate: int = 8192, n_samples: int = 32768, n_grains: int = 64,
                 grain_n_samples: int = 4096, f0_min_hz: float = 256.0, f0_max_hz: float = 2048.0,
                 max_theta_slope: float = 0.95, chirp_rate_scale: float | None = None, max_shift: int = 0,
                 pre_delay: int = 0, validate: bool = True) -> None:
        super().__init__(sample_rate, n_samples, max_shift, pre_delay, validate)
        if not 0 < grain_n_samples <= n_samples:
            raise ValueError(f"need 0 < grain_n_samples <= n_samples, got {grain_n_samples}, {n_samples}")
        if n_grains < 1:
            raise ValueError(f"n_grains must be >= 1, got {n_grains}")
        if not 0 < f0_min_hz <= f0_max_hz:
            raise ValueError(f"need 0 < f0_min_hz <= f0_max_hz, got {f0_min_hz}, {f0_max_hz}")
        if not 0 < max_theta_slope < 1:
            raise ValueError(f"max_theta_slope must be in (0, 1), got {max_theta_slope}")
        self.n_grains, self.grain_n_samples = int(n_grains), int(grain_n_samples)
        self.f0_min_hz, self.f0_max_hz = float(f0_min_hz), float(f0_max_hz)
        self.max_theta_slope = float(max_theta_slope)
        if chirp_rate_scale is None:
            c = self.cqt_defaults
            chirp_rate_scale = sample_rate / (c["bins_per_octave"] * c["hop"]) / 4.0
        self.chirp_rate_scale = float(chirp_rate_scale)
        half_angle = self.max_theta_slope * math.pi / 2.0
        gamma_max = math.tan(half_angle) * self.chirp_rate_scale
        tan_map = TanMap(half_angle, self.chirp_rate_scale)
        self.params = (
            Param("density", 0.0, 1.0, "linear", "", "soft cut-off over grain index: 0 ≈ 1 grain, 1 = all grains"),
            Param("slope", -gamma_max, gamma_max, "custom", "oct/s", "chirp rate shared by all grains",
                  to_phys=tan_map.to_phys, to_u=tan_map.to_u),
        )

    def grain_amplitudes(self, density: torch.Tensor) -> torch.Tensor:
        """density (B,) in [0, 1] -> (B, n_grains) amplitudes 1 − σ(2(1−d)·G·(i/G − offset)), max-normalised."""
        g = self.n_grains
        i = torch.arange(g, dtype=density.dtype, device=density.device)[None, :] / g
        d = density[:, None]
        offset = 0.25 * d + 0.75 * d * d
        a = 1.0 - torch.sigmoid(2.0 * (1.0 - d) * g * (i - offset))
        return a / a.amax(dim=1, keepdim=True)

    def render(self, phys: dict[str, torch.Tensor], seed: torch.Tensor) -> torch.Tensor:
        """phys {density (B,), slope (B,) oct/s}, seed (B,) -> (B, n_samples) with unit L2 norm."""
        density, gamma = phys["density"], phys["slope"]
        dtype, dev = gamma.dtype, gamma.device
        bsz, g, m, n = gamma.shape[0], self.n_grains, self.grain_n_samples, self.n_samples
        u_f0 = rng.uniform(seed, STREAM_F0, g, dtype=torch.float64)
        f0 = (self.f0_min_hz * (self.f0_max_hz / self.f0_min_hz) ** u_f0).to(dtype)  # (B, G) log-uniform
        onset = rng.randint(seed, STREAM_ONSET, g, 0, n - m)  # (B, G)

        # Grain time axis with t = 0 at the centre sample; the chirp curve is shared by all grains of an example,
        # so the phase of grain (b, i) is f0[b, i] times a per-example (B, M) curve: one product per sample.
        t = (torch.arange(m, dtype=dtype, device=dev) - m // 2) / self.sample_rate
        curve = 2.0 * math.pi * dsp.exp_chirp_cycles(1.0, gamma[:, None], t[None, :])  # (B, M) rad per Hz of f0
        scale = self.grain_amplitudes(density) * torch.rsqrt(f0)  # (B, G)
        window = dsp.periodic_hann(m, dtype=dtype, device=dev)
        # Two full-size (B, G, M) products: the rest is folded into per-example or per-grain factors.
        grains = torch.sin(f0[:, :, None] * curve[:, None, :]) * (scale[:, :, None] * window)

        # Overlap-add at the onsets by index arithmetic (scatter_add; its backward is a gather).
        idx = onset[:, :, None] + torch.arange(m, device=dev)
        y = torch.zeros(bsz, n, dtype=dtype, device=dev).scatter_add(1, idx.reshape(bsz, -1), grains.reshape(bsz, -1))
        return y / y.norm(dim=1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
