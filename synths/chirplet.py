"""AM/FM chirplet synth (paper §4.3, after Vahidi et al. 2023; reference_experiments.md §1.2).

One exponential chirp around a fixed 512 Hz carrier, sweeping at ``fm_rate`` octaves/s under a Gaussian window of
constant octave bandwidth, ring-modulated at ``am_rate``, then shifted by a random ±2048 samples. The paper's four
range presets live in ``configs/synth/chirplet_*.yaml``.
"""
from __future__ import annotations

import math

import torch

from .base import Param, Synth


class ChirpletSynth(Synth):
    """Chirplet. ``forward(theta (B, 2), seed (B,)) -> (B, 1, n_samples)``.

    Parameters (θ order), both log-uniform on their configured ranges:
    ``am_rate`` (Hz; the envelope |sin(π·am·t)| repeats at am Hz) and ``fm_rate`` (octaves/s).

    Signal, with t = (n − N/2)/sr seconds:
    ``sin(2π·φ(t)) · fm · exp(−(sr·t)²/(2σ²)) · sin(2π·(am/2)·t)`` where φ is the exponential chirp phase with
    frequency f0·2^(fm·t) and σ = sigma0·bw_oct·sr/fm samples (constant bandwidth in octaves). The ·fm amplitude
    factor follows the authors (peak level grows with fm). Unlike their code, σ stays differentiable in fm and the
    window peaks exactly at t = 0 (theirs sits half a sample early).

    Args:
        sample_rate, n_samples: Hz and samples (paper 8192, 32768).
        f0_hz: carrier frequency at t = 0 (paper 512 Hz).
        am_hz_min, am_hz_max: AM range in Hz.
        fm_oct_s_min, fm_oct_s_max: FM range in octaves/s.
        bw_oct: window bandwidth in octaves (paper 2); sigma0: window width factor (paper 0.1).
        max_shift: random shift range in samples (paper 2048); pre_delay, validate, jtfs: see :class:`Synth`.
    """

    jtfs_defaults = dict(J=12, Q=(8, 2), J_fr=3, Q_fr=2, T=None, F=None)
    scrapl_grad_mult = 1.0e8  # authors' gradient multiplier for the path-aware optimizers (identity ρ)
    cqt_defaults = dict(n_octaves=5, bins_per_octave=12, hop=256)

    def __init__(self, sample_rate: int = 8192, n_samples: int = 32768, f0_hz: float = 512.0,
                 am_hz_min: float = 0.9899, am_hz_max: float = 1.9799, fm_oct_s_min: float = 0.5,
                 fm_oct_s_max: float = 1.0, bw_oct: float = 2.0, sigma0: float = 0.1, max_shift: int = 2048,
                 pre_delay: int = 0, validate: bool = True, jtfs=None) -> None:
        super().__init__(sample_rate, n_samples, max_shift, pre_delay, validate, jtfs)
        if f0_hz <= 0 or bw_oct <= 0 or sigma0 <= 0:
            raise ValueError(f"f0_hz, bw_oct and sigma0 must be positive, got {f0_hz}, {bw_oct}, {sigma0}")
        self.f0_hz, self.bw_oct, self.sigma0 = float(f0_hz), float(bw_oct), float(sigma0)
        # Param checks min < max and min > 0 for the log curves.
        self.params = (
            Param("am_rate", float(am_hz_min), float(am_hz_max), "log", "Hz", "amplitude-modulation rate"),
            Param("fm_rate", float(fm_oct_s_min), float(fm_oct_s_max), "log", "oct/s", "chirp rate"),
        )

    def render(self, phys: dict[str, torch.Tensor], seed: torch.Tensor) -> torch.Tensor:
        """phys {am_rate (B,) Hz, fm_rate (B,) oct/s}; seed unused here (only the base-class shift uses it)."""
        am, fm = phys["am_rate"][:, None], phys["fm_rate"][:, None]
        dtype, dev = am.dtype, am.device
        n_rel = torch.arange(self.n_samples, dtype=dtype, device=dev)[None, :] - self.n_samples // 2
        t = n_rel / self.sample_rate
        # fm > 0 (log range), so the chirp phase f0·expm1(fm·ln2·t)/(fm·ln2) needs no rate-0 branch, and every
        # per-example factor is folded into a (B, 1) coefficient: few full-size (B, N) operations per call.
        k = fm * math.log(2.0)
        carrier = torch.sin(torch.expm1(k * t) * (2.0 * math.pi * self.f0_hz / k))
        sigma = self.sigma0 * self.bw_oct * self.sample_rate / fm  # samples
        window_times_fm = torch.exp(torch.addcmul(torch.log(fm), n_rel * n_rel, -0.5 / (sigma * sigma)))
        modulator = torch.sin((math.pi * am) * t)
        return carrier * window_times_fm * modulator
