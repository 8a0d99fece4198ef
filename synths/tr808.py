"""TR-808-style drum voice (paper §4.4, a snare architecture after Shier et al. 2024; reference_experiments.md §1.4).

Two sine oscillators sharing an exponential pitch envelope, each with its own exponential decay envelope, plus
high-passed white noise with its own decay; three dB gains and a tanh drive. 14 controls, 44.1 kHz, 1 s.
"""
from __future__ import annotations

import math

import torch

from . import dsp, rng
from .base import Param, Synth

STREAM_NOISE = 0

_DECAY = (10.0, 2000.0)
_PARAMS = (
    # name, min, max, curve, unit, description: the authors' order and (linear) ranges
    ("osc1_freq", 20.0, 2000.0, "linear", "Hz", "oscillator 1 base frequency"),
    ("osc1_mod", -1.0, 2.0, "linear", "ratio", "oscillator 1 pitch-envelope depth (peak f = f0·(1 + mod))"),
    ("osc2_freq", 20.0, 2000.0, "linear", "Hz", "oscillator 2 base frequency"),
    ("osc2_mod", -1.0, 2.0, "linear", "ratio", "oscillator 2 pitch-envelope depth"),
    ("freq_decay", *_DECAY, "linear", "ms", "shared pitch-envelope decay to −60 dB"),
    ("osc1_decay", *_DECAY, "linear", "ms", "oscillator 1 amplitude decay to −60 dB"),
    ("osc2_decay", *_DECAY, "linear", "ms", "oscillator 2 amplitude decay to −60 dB"),
    ("noise_decay", *_DECAY, "linear", "ms", "noise amplitude decay to −60 dB"),
    ("noise_freq", 20.0, 22050.0, "linear", "Hz", "noise high-pass cutoff (guarded below Nyquist)"),
    ("noise_q", 0.5, 10.0, "linear", "", "noise high-pass resonance Q"),
    ("osc1_gain", -60.0, 6.0, "dB", "dB", "oscillator 1 level"),
    ("osc2_gain", -60.0, 6.0, "dB", "dB", "oscillator 2 level"),
    ("noise_gain", -60.0, 6.0, "dB", "dB", "noise level"),
    ("tanh_gain", -24.0, 24.0, "dB", "dB", "drive into the tanh waveshaper"),
)


class TR808Synth(Synth):
    """Snare-architecture drum voice. ``forward(theta (B, 14), seed (B,)) -> (B, 1, n_samples)`` in (−1, 1).

    Chain (ref §1.4): envelopes e = linear 1 ms attack then exponential decay (−60 dB at the decay time);
    oscillator i: sin(φ_i)·e_i·10^(g_i/20) with instantaneous frequency f_i·(1 + mod_i·e_pitch), zero initial phase;
    noise: uniform [−1, 1) × e_noise → resonant biquad high-pass → ·10^(g_noise/20);
    output tanh(10^(g_tanh/20)·(osc1 + osc2 + noise)), then the optional shift.

    Differences from the authors' code, all deliberate:
    - the high-pass runs by the frequency-sampling method (:func:`dsp.fsm_filter`), differentiable in cutoff and Q
      without torchaudio, and its output is not clipped to [−1, 1] (their ``lfilter`` clamp zeroes gradients);
    - the cutoff passes through :func:`dsp.guard_cutoff` (identity up to 0.9·Nyquist, saturating below 0.98·Nyquist)
      because the declared range reaches 22050 Hz where tan(π·fc/sr) diverges;
    - the decay ratio is exactly 10^(−3/decay) per sample (theirs 1 − 6.91/decay) and oscillator phases use the
      closed-form running sum of the pitch envelope;
    - noise is drawn from the seed (stream 0), or, with ``fixed_noise=True``, one buffer from ``noise_seed`` shared by
      every example, the authors' deterministic ``buffer_noise`` behaviour (use it for θ-IS or micro experiments).

    Args:
        sample_rate, n_samples: Hz and samples (paper 44100, 44100).
        attack_ms: envelope attack (paper 1 ms = 44 samples).
        fixed_noise, noise_seed: see above.
        cutoff_knee, cutoff_ceiling: the Nyquist guard, as fractions of Nyquist.
        max_shift, pre_delay, validate, jtfs: see :class:`Synth`. The paper's meso setting is max_shift=2048 with
            pre_delay=2048 against targets padded by 2048 samples; micro is max_shift=0.
    """

    jtfs_defaults = dict(J=12, Q=(8, 2), J_fr=5, Q_fr=2, T=2048, F=1, log1p=True)
    scrapl_grad_mult = 1.0  # authors: no multiplier with the log1p ρ
    cqt_defaults = dict(n_octaves=9, bins_per_octave=12, hop=256)

    def __init__(self, sample_rate: int = 44100, n_samples: int = 44100, attack_ms: float = 1.0,
                 fixed_noise: bool = False, noise_seed: int = 0, cutoff_knee: float = 0.9,
                 cutoff_ceiling: float = 0.98, max_shift: int = 0, pre_delay: int = 0, validate: bool = True, jtfs=None) -> None:
        super().__init__(sample_rate, n_samples, max_shift, pre_delay, validate, jtfs)
        if attack_ms < 0:
            raise ValueError(f"attack_ms must be >= 0, got {attack_ms}")
        if not 0 < cutoff_knee < cutoff_ceiling < 1:
            raise ValueError(f"need 0 < cutoff_knee < cutoff_ceiling < 1, got {cutoff_knee}, {cutoff_ceiling}")
        self.attack = int(attack_ms * 1e-3 * sample_rate)
        self.fixed_noise, self.noise_seed = bool(fixed_noise), int(noise_seed)
        self.cutoff_knee, self.cutoff_ceiling = float(cutoff_knee), float(cutoff_ceiling)
        self.params = tuple(Param(*row) for row in _PARAMS)

    def _envelope(self, decay_ms: torch.Tensor) -> torch.Tensor:
        return dsp.exp_decay_envelope(decay_ms * 1e-3 * self.sample_rate, self.n_samples, self.attack)

    def _oscillator(self, freq_hz: torch.Tensor, mod: torch.Tensor, pitch_sum: torch.Tensor) -> torch.Tensor:
        """Phase φ[n] = 2π·f/sr·(n + mod·Σ_{k<n} e_pitch[k]) from the closed-form running sum; returns sin φ (B, N)."""
        n = torch.arange(self.n_samples, dtype=freq_hz.dtype, device=freq_hz.device)[None, :]
        cycles = (freq_hz / self.sample_rate)[:, None] * (n + mod[:, None] * pitch_sum)
        return torch.sin(2.0 * math.pi * cycles)

    def noise(self, seed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(B, n_samples) white noise uniform on (−1, 1) from the seeds (or the shared fixed buffer)."""
        if self.fixed_noise:
            one = torch.full((1,), self.noise_seed, dtype=torch.int64, device=seed.device)
            return (2.0 * rng.uniform(one, STREAM_NOISE, self.n_samples, dtype) - 1.0).expand(seed.shape[0], -1)
        return 2.0 * rng.uniform(seed, STREAM_NOISE, self.n_samples, dtype) - 1.0

    def render(self, phys: dict[str, torch.Tensor], seed: torch.Tensor) -> torch.Tensor:
        """phys {name: (B,)} in the units of the table, seed (B,) -> (B, n_samples)."""
        p = phys
        dtype = p["osc1_freq"].dtype
        sr = self.sample_rate
        pitch_sum = dsp.exp_decay_envelope_cumsum(p["freq_decay"] * 1e-3 * sr, self.n_samples, self.attack)
        osc1 = self._oscillator(p["osc1_freq"], p["osc1_mod"], pitch_sum) * self._envelope(p["osc1_decay"])
        osc2 = self._oscillator(p["osc2_freq"], p["osc2_mod"], pitch_sum) * self._envelope(p["osc2_decay"])
        b, a = dsp.biquad_highpass_coeffs(p["noise_freq"], p["noise_q"], sr, self.cutoff_knee, self.cutoff_ceiling)
        noise = dsp.fsm_filter(self.noise(seed, dtype) * self._envelope(p["noise_decay"]), b, a)
        g = {k: dsp.db_to_amp(p[k])[:, None] for k in ("osc1_gain", "osc2_gain", "noise_gain", "tanh_gain")}
        mix = g["osc1_gain"] * osc1 + g["osc2_gain"] * osc2 + g["noise_gain"] * noise
        return torch.tanh(g["tanh_gain"] * mix)
