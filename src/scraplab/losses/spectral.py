"""Multi-scale spectral (MSS) baselines of the paper (Mitcheltree et al. 2026, §4.1 and Table 1).

All take ``x_hat`` and ``x`` of shape ``(B, 1, N)`` or ``(B, N)`` and return a scalar. The configurations that
reproduce the paper's baselines are the defaults:

* :class:`MSSLoss` — "MSS Linear": L1 between linear STFT magnitudes at FFT sizes 64…2048 (hop n/4, Hann), averaged
  over resolutions (auraloss ``MultiResolutionSTFTLoss``). ``w_log_mag=1`` gives "MSS Log + Linear" (Engel et al.).
* :class:`RevisitedMSSLoss` — "MSS Revisited" (Schwär & Müller 2023): flat-top windows of 67…2053 samples, hop
  window//2, ``log1p(|X|)``, Frobenius distance per scale, summed over scales.
* :class:`RandomMSSLoss` — "MSS Random": 3 resolutions redrawn every call (FFT 16…8192, hop ∈ [0.1, 1)·FFT, window
  length FFT·{1, ½, ¼}, window type random), spectral convergence + log magnitude; drawn from its own
  ``torch.Generator`` so a run is reproducible (auraloss draws from numpy's global RNG).
"""
from __future__ import annotations

from typing import Sequence

import torch
from auraloss.freq import MultiResolutionSTFTLoss, STFTLoss
from scipy.signal import windows as sp_windows
from torch import nn


def _as_bcn(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dim() == 2:
        x = x.unsqueeze(1)
    if x.dim() != 3:
        raise ValueError(f"{name} must be (B, N) or (B, C, N), got shape {tuple(x.shape)}")
    return x


def _check_pair(x_hat: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x_hat, x = _as_bcn(x_hat, "x_hat"), _as_bcn(x, "x")
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat {tuple(x_hat.shape)} and x {tuple(x.shape)} must have the same shape")
    return x_hat, x


class MSSLoss(nn.Module):
    """Multi-resolution STFT magnitude distance (auraloss), paper defaults = "MSS Linear".

    Args:
        fft_sizes: FFT sizes (window length = FFT size).
        hop_ratio: hop = int(fft * hop_ratio).
        w_lin_mag: weight of the L1 distance of linear magnitudes.
        w_log_mag: weight of the L1 distance of natural-log magnitudes (floor 1e-8 on |X|²).
        w_sc: weight of spectral convergence.
    """

    def __init__(self, fft_sizes: Sequence[int] = (64, 128, 256, 512, 1024, 2048), hop_ratio: float = 0.25,
                 w_lin_mag: float = 1.0, w_log_mag: float = 0.0, w_sc: float = 0.0) -> None:
        super().__init__()
        ffts = [int(n) for n in fft_sizes]
        self.loss = MultiResolutionSTFTLoss(fft_sizes=ffts, hop_sizes=[max(1, int(n * hop_ratio)) for n in ffts],
                                            win_lengths=ffts, w_sc=w_sc, w_log_mag=w_log_mag, w_lin_mag=w_lin_mag,
                                            w_phs=0.0, mag_distance="L1")

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x_hat, x = _check_pair(x_hat, x)
        return self.loss(x_hat, x)


class RevisitedMSSLoss(nn.Module):
    """Schwär & Müller's log-compressed multi-scale loss with flat-top windows (the paper's "MSS Revisited").

    Per scale: ``‖log1p(γ|STFT(x̂)|) − log1p(γ|STFT(x)|)‖_F`` over (bins, frames) per example; summed over scales;
    averaged over the batch (and channels).
    """

    def __init__(self, win_lengths: Sequence[int] = (67, 127, 257, 509, 1021, 2053), gamma: float = 1.0) -> None:
        super().__init__()
        self.win_lengths = [int(n) for n in win_lengths]
        self.gamma = float(gamma)
        for n in self.win_lengths:  # periodic flat-top windows, as buffers so .to(device) moves them
            self.register_buffer(f"win_{n}", torch.as_tensor(sp_windows.flattop(n, sym=False), dtype=torch.float32),
                                 persistent=False)

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x_hat, x = _check_pair(x_hat, x)
        both = torch.cat([x_hat, x]).reshape(-1, x.shape[-1])
        total = both.new_zeros(())
        for n in self.win_lengths:
            win = getattr(self, f"win_{n}").to(both.dtype)
            spec = torch.stft(both, n_fft=n, hop_length=n // 2, win_length=n, window=win, center=True,
                              return_complex=True).abs()
            y_hat, y = torch.log1p(self.gamma * spec).chunk(2)
            total = total + torch.linalg.norm((y_hat - y).flatten(1), dim=-1).mean()
        return total


class RandomMSSLoss(nn.Module):
    """Random-resolution STFT loss (the paper's "MSS Random", after auraloss ``RandomResolutionSTFTLoss``).

    Args:
        n_resolutions: resolutions drawn per call (averaged).
        min_fft_pow, max_fft_pow: FFT size is ``2**k`` with k uniform in [min, max] (paper: 4…13 → 16…8192).
        seed: seed of the private generator (resolutions are reproducible and independent of global RNG state).
    """

    WINDOWS = ("hann_window", "bartlett_window", "blackman_window", "hamming_window", "kaiser_window")

    def __init__(self, n_resolutions: int = 3, min_fft_pow: int = 4, max_fft_pow: int = 13, seed: int = 0) -> None:
        super().__init__()
        if not 1 <= min_fft_pow <= max_fft_pow:
            raise ValueError(f"need 1 <= min_fft_pow <= max_fft_pow, got {min_fft_pow}, {max_fft_pow}")
        self.n_resolutions, self.min_pow, self.max_pow = int(n_resolutions), int(min_fft_pow), int(max_fft_pow)
        self.generator = torch.Generator().manual_seed(int(seed))

    def draw(self) -> list[tuple[int, int, int, str]]:
        """Next resolutions as (fft, hop, win_length, window name)."""
        g, out = self.generator, []
        for _ in range(self.n_resolutions):
            fft = 2 ** int(torch.randint(self.min_pow, self.max_pow + 1, (1,), generator=g))
            hop = max(1, int(fft * (0.1 + 0.9 * float(torch.rand(1, generator=g)))))
            win = fft // 2 ** int(torch.randint(0, 3, (1,), generator=g))
            window = self.WINDOWS[int(torch.randint(len(self.WINDOWS), (1,), generator=g))]
            out.append((fft, hop, win, window))
        return out

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x_hat, x = _check_pair(x_hat, x)
        total = x.new_zeros(())
        resolutions = self.draw()
        for fft, hop, win, window in resolutions:
            fft = min(fft, 2 ** (x.shape[-1].bit_length() - 2))  # an STFT frame must fit the signal
            stft = STFTLoss(fft_size=fft, hop_size=min(hop, fft), win_length=min(win, fft), window=window,
                            w_sc=1.0, w_log_mag=1.0)
            total = total + stft(x_hat, x)
        return total / len(resolutions)

    def state_dict(self, *args, **kwargs):  # keep the resolution stream in checkpoints (resume = same draws)
        sd = super().state_dict(*args, **kwargs)
        sd[kwargs.get("prefix", "") + "generator_state"] = self.generator.get_state()
        return sd

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "generator_state"
        if key in state_dict:
            self.generator.set_state(state_dict.pop(key))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
