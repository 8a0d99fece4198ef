"""Audio distances for test-time reporting (paper §4, Tables 4 and Figure 3; digest §2.6).

* :func:`jtfs_distance` — the full JTFS distance per example: mean over paths of the per-path distance of
  ``scraplab.losses.SCRAPLLoss`` (the quantity SCRAPL estimates; ``JTFSLoss`` gives the authors' order-1+2 path set).
  It is exact but slow on CPU at paper sizes (P = 323 paths at N = 32768). ``paths`` selects a subset for CPU runs:
  an int k takes k evenly spaced paths (deterministic), a list takes those paths. The subset mean is then an
  estimate of the full distance (exact for k = P); reports must say which was used (``describe_paths``).
* :func:`logmel_l1` — per-example mean absolute difference of log-mel spectrograms (128 HTK-mel bands, FFT 2048,
  hop 512, Hann; log(mel + 1e-5)), the "log-mel L1" of the 808 evaluation (issue 16).
* :class:`MSSDistances` — per-example MSS distances with the repo's baselines (``scraplab.losses.spectral``): "MSS
  Linear" (``mss_lin``), "MSS Log + Linear" (``mss_log_lin``, the 808 table's MSS column) and "MSS Revisited"
  (``mss_rev``), each with the paper's default resolutions.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch

from ..losses.scrapl import SCRAPLLoss, path_distance
from ..losses.spectral import MSSLoss, RevisitedMSSLoss

PathSpec = Union[None, int, Sequence[int]]


def select_paths(n_paths: int, paths: PathSpec = None) -> list[int]:
    """Resolve a path specification: None → all P paths; int k → k evenly spaced indices; list → validated list."""
    if paths is None:
        return list(range(n_paths))
    if isinstance(paths, int):
        if not 1 <= paths <= n_paths:
            raise ValueError(f"number of paths must be in [1, {n_paths}], got {paths}")
        return sorted({int(round(i * (n_paths - 1) / max(paths - 1, 1))) for i in range(paths)})
    out = [int(p) for p in paths]
    bad = [p for p in out if not 0 <= p < n_paths]
    if not out or bad:
        raise ValueError(f"paths must be a non-empty list of indices in [0, {n_paths}), bad: {bad or 'empty'}")
    return out


def describe_paths(n_paths: int, paths: PathSpec = None) -> str:
    """Human-readable note for reports, e.g. ``"all 323 paths (exact)"`` or ``"16 of 323 paths (subset estimate)"``."""
    k = len(select_paths(n_paths, paths))
    return f"all {n_paths} paths (exact)" if k == n_paths else f"{k} of {n_paths} paths (subset estimate)"


@torch.no_grad()
def jtfs_distance(loss: SCRAPLLoss, x_hat: torch.Tensor, x: torch.Tensor, paths: PathSpec = None,
                  chunk: int = 32, target_cache=None) -> torch.Tensor:
    """Per-example JTFS distance: (B, N) or (B, 1, N) pair → (B,), the mean over the selected paths of the loss's
    per-path distance (its ρ and scaling). With ``paths=None`` the batch mean equals ``loss.full(x_hat, x)``.

    Args:
        loss: a ``SCRAPLLoss`` / ``JTFSLoss`` built for signals of length N (its JTFS settings define the metric).
        paths: see :func:`select_paths`.
        chunk: paths computed at once (bounds memory).
        target_cache: a :class:`scraplab.metrics.target_cache.TargetCoefficientCache` that supplies (and keeps) the
            coefficients of ``x``: the targets of an evaluation set are then transformed once, not at every pass.
    """
    if not isinstance(loss, SCRAPLLoss):
        raise TypeError(f"loss must be a SCRAPLLoss or JTFSLoss, got {type(loss).__name__}")
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat {tuple(x_hat.shape)} and x {tuple(x.shape)} must have the same shape")
    if x.dim() == 3:
        if x.shape[1] != 1:
            raise ValueError(f"expected mono (B, 1, N), got {tuple(x.shape)}")
        x_hat, x = x_hat[:, 0], x[:, 0]
    if x.dim() != 2 or x.shape[-1] != loss.jtfs.shape:
        raise ValueError(f"expected (B, {loss.jtfs.shape}) signals, got {tuple(x.shape)}")
    idx = select_paths(loss.n_paths, paths)
    total = x.new_zeros(x.shape[0])
    for start in range(0, len(idx), chunk):
        part = idx[start:start + chunk]
        S_hat = loss._rho(loss.jtfs.forward_paths(x_hat, part))  # ρ of the loss itself (log1p or identity)
        if target_cache is not None:
            S = target_cache.get(loss, x, part)
        else:
            S = loss._rho(loss.jtfs.forward_paths(x, part))
        total = total + path_distance(S_hat, S, loss.scaling, loss.n_paths).sum(1)
    return total / len(idx)


def hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def mel_filterbank(sample_rate: float, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None,
                   dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Triangular HTK-mel filters (n_mels, n_fft // 2 + 1), peak 1, edges at n_mels + 2 mel-spaced frequencies."""
    fmax = sample_rate / 2 if fmax is None else fmax
    mels = torch.linspace(float(hz_to_mel(torch.tensor(fmin))), float(hz_to_mel(torch.tensor(fmax))), n_mels + 2,
                          dtype=torch.float64)
    edges = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)  # Hz
    freqs = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up, down = (freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0.0).to(dtype)


@torch.no_grad()
def logmel_l1(x_hat: torch.Tensor, x: torch.Tensor, sample_rate: float, n_fft: int = 2048, hop: int = 512,
              n_mels: int = 128, eps: float = 1e-5) -> torch.Tensor:
    """Per-example log-mel L1 distance ``(B,)`` of ``x_hat`` and ``x`` ((B, N) or (B, 1, N), same shape)."""
    if x_hat.shape != x.shape or x.dim() not in (2, 3):
        raise ValueError(f"x_hat {tuple(x_hat.shape)} and x {tuple(x.shape)} must be equal (B, N) or (B, 1, N)")
    both = torch.cat([x_hat.reshape(x.shape[0], -1), x.reshape(x.shape[0], -1)]).float()
    window = torch.hann_window(n_fft, device=both.device)
    power = torch.stft(both, n_fft, hop, window=window, return_complex=True).abs().square()  # (2B, F, T)
    fb = mel_filterbank(sample_rate, n_fft, n_mels, dtype=power.dtype).to(power.device)
    logmel = torch.log(torch.einsum("mf,bft->bmt", fb, power) + eps)
    a, b = logmel.chunk(2)
    return (a - b).abs().mean(dim=(1, 2))


class MSSDistances(torch.nn.Module):
    """Per-example MSS distances with the paper's baseline settings: ``forward(x_hat, x) -> {name: (B,)}``."""

    def __init__(self, names: Sequence[str] = ("mss_lin", "mss_log_lin", "mss_rev")) -> None:
        super().__init__()
        makers = {"mss_lin": lambda: MSSLoss(), "mss_log_lin": lambda: MSSLoss(w_log_mag=1.0),
                  "mss_rev": lambda: RevisitedMSSLoss()}
        unknown = [n for n in names if n not in makers]
        if unknown:
            raise ValueError(f"unknown MSS distance(s) {unknown}; choose from {sorted(makers)}")
        self.losses = torch.nn.ModuleDict({n: makers[n]() for n in names})

    @torch.no_grad()
    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x_hat.shape != x.shape or x.dim() not in (2, 3):
            raise ValueError(f"x_hat {tuple(x_hat.shape)} and x {tuple(x.shape)} must be equal (B, N) or (B, 1, N)")
        return {n: torch.stack([fn(x_hat[i:i + 1], x[i:i + 1]) for i in range(x.shape[0])])
                for n, fn in self.losses.items()}
