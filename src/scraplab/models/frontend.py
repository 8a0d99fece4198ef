"""Log constant-Q front end of the encoder, in plain torch (no nnAudio, no torchaudio).

The paper's encoder (Mitcheltree et al. 2026, App. E; after nnAudio ``CQT1992v2``) reads ``log1p(U / 1e-3)`` where
``U`` is a constant-Q magnitude scalogram with ``Q`` bins per octave over ``J`` octaves, hop 256 and lowest centre
frequency ``0.4 * sr / 2**J``. Here every bin is an analytic Gaussian band-pass ("Morlet") filter applied in the
Fourier domain. Each band is demodulated to baseband and decimated by a power of two before its inverse FFT, so the
cost stays near ``O(N log N)`` per band group instead of ``n_bins`` full-length transforms; the magnitude envelope is
then averaged over each hop. A unit-amplitude sinusoid at a bin's centre frequency gives an envelope of 1.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def _largest_pow2_divisor(n: int) -> int:
    return n & -n


class LogCQT(nn.Module):
    """``x (B, N) or (B, 1, N)`` → ``log1p(|CQT| / eps)`` of shape ``(B, n_bins, n_frames)``.

    Args:
        sample_rate: Hz.
        n_samples: input length N (fixed; the filters are precomputed for it).
        J: number of octaves; ``n_bins = J * Q``.
        Q: bins per octave.
        hop_length: frame hop in samples; ``n_frames = ceil(N / hop_length)``.
        fmin: lowest centre frequency in Hz (default ``0.4 * sample_rate / 2**J`` as in the paper).
        eps: amplitude floor inside ``log1p(U / eps)`` (paper: 1e-3).
    """

    def __init__(self, sample_rate: int, n_samples: int, J: int = 5, Q: int = 12, hop_length: int = 256,
                 fmin: float | None = None, eps: float = 1e-3) -> None:
        super().__init__()
        if J < 1 or Q < 1 or hop_length < 1:
            raise ValueError(f"LogCQT needs J, Q, hop_length >= 1, got J={J}, Q={Q}, hop_length={hop_length}")
        self.sample_rate, self.n_samples, self.eps = int(sample_rate), int(n_samples), float(eps)
        self.J, self.Q, self.hop_length = int(J), int(Q), int(hop_length)
        self.fmin = float(fmin) if fmin is not None else 0.4 * sample_rate / 2 ** J
        self.n_bins = self.J * self.Q
        freqs = self.fmin * 2.0 ** (torch.arange(self.n_bins, dtype=torch.float64) / self.Q)
        if freqs[-1] >= sample_rate / 2:
            raise ValueError(f"LogCQT: top bin {freqs[-1]:.1f} Hz is above Nyquist ({sample_rate / 2} Hz); "
                             f"lower J={J} or fmin={self.fmin}")
        self.register_buffer("freqs", freqs.float(), persistent=False)
        # Pad N to a multiple of the hop so every power-of-two decimation of the hop divides the padded length.
        self.n_frames = math.ceil(n_samples / hop_length)
        self.n_pad = self.n_frames * hop_length
        df = sample_rate / self.n_pad  # Hz per FFT bin
        # Gaussian width such that adjacent bins cross at half their peak (FWHM = bin spacing), at least one FFT bin.
        sigma_hz = torch.clamp(freqs * (2 ** (1 / self.Q) - 1) / (2 * math.sqrt(2 * math.log(2))), min=df)
        max_dec = _largest_pow2_divisor(hop_length)
        self._groups = []  # (decimation, first bin, last bin) with contiguous bins sharing a decimation
        decs = []
        for k in range(self.n_bins):
            support = 2 * 5.0 * float(sigma_hz[k]) / df  # ±5σ in FFT bins
            dec = max_dec
            while dec > 1 and self.n_pad // dec < support:
                dec //= 2
            decs.append(dec)
        start = 0
        for k in range(1, self.n_bins + 1):
            if k == self.n_bins or decs[k] != decs[start]:
                self._groups.append((decs[start], start, k))
                start = k
        # Per group: the gathered rfft-bin indices (n_bins_g, L) and the filter gains on those bins.
        for g, (dec, lo, hi) in enumerate(self._groups):
            length = self.n_pad // dec
            centre = torch.round(freqs[lo:hi] / df).long()
            offsets = torch.arange(length) - length // 2
            idx = centre[:, None] + offsets[None, :]  # (n_g, L) rfft bins around each centre
            f_hz = idx.double() * df
            gain = 2.0 * torch.exp(-0.5 * ((f_hz - freqs[lo:hi, None]) / sigma_hz[lo:hi, None]) ** 2)
            valid = (idx >= 0) & (idx <= self.n_pad // 2)  # analytic filter: positive frequencies only
            gain = torch.where(valid, gain, torch.zeros_like(gain)) / dec  # 1/dec: ifft of length L, not N
            self.register_buffer(f"idx_{g}", idx.clamp(0, self.n_pad // 2), persistent=False)
            self.register_buffer(f"gain_{g}", gain.float(), persistent=False)

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:
        """Constant-Q magnitude ``U`` of ``x (B, N)`` or ``(B, 1, N)``: ``(B, n_bins, n_frames)``, linear amplitude."""
        if x.dim() == 3:
            x = x.reshape(x.shape[0], -1)
        if x.dim() != 2 or x.shape[-1] != self.n_samples:
            raise ValueError(f"LogCQT expects (B, {self.n_samples}) or (B, 1, {self.n_samples}), got {tuple(x.shape)}")
        spec = torch.fft.rfft(x, n=self.n_pad)  # zero-pad to n_pad
        out = []
        for g, (dec, _, _) in enumerate(self._groups):
            idx, gain = getattr(self, f"idx_{g}"), getattr(self, f"gain_{g}")
            band = spec[:, idx] * gain  # (B, n_g, L): baseband spectrum, decimated by dec
            env = torch.fft.ifft(torch.fft.ifftshift(band, dim=-1), dim=-1).abs()
            pool = self.hop_length // dec  # average the envelope over each hop
            out.append(env.reshape(*env.shape[:2], self.n_frames, pool).mean(-1))
        return torch.cat(out, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(self.magnitude(x) / self.eps)
