"""Sound-matching encoder: log-CQT → 5 conv blocks → global mean → one sigmoid head per synth parameter.

Shape of the paper's ``Spectral2DCNN`` (Mitcheltree et al. 2026, §4 and App. E): each block is LayerNorm over the
block's (bins, frames) map without affine parameters, a 3×3 "same" convolution, max-pooling, and a PReLU with one
shared slope. With 128 channels the paper presets have 604,106 weights (2 outputs, latent 64, pools 5×(2,2)) and
724,642 weights (14 outputs, latent 128, pools (2,2),(2,2),(2,3),(3,3),(3,3)).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from scraplab.models.frontend import LogCQT

# Synth ``cqt_defaults`` keys we understand, with their aliases (the authors' configs used several spellings).
_CQT_KEYS = {"J": ("J", "J_cqt", "n_octaves"), "Q": ("Q", "Q_cqt", "bins_per_octave"),
             "hop_length": ("hop_length", "hop_len", "hop"), "fmin": ("fmin", "f_min"), "eps": ("eps", "cqt_eps")}


def cqt_settings(defaults: dict[str, Any] | None) -> dict[str, Any]:
    """Normalise a synth's ``cqt_defaults`` dict to :class:`LogCQT` keyword names (unknown keys are ignored)."""
    out: dict[str, Any] = {}
    for name, aliases in _CQT_KEYS.items():
        for alias in aliases:
            if defaults and alias in defaults and defaults[alias] is not None:
                out[name] = defaults[alias]
                break
    return out


class ConvBlock(nn.Module):
    """LayerNorm(bins, frames; no affine) → Conv2d 3×3 same → MaxPool2d(pool) → PReLU. ``(B, C_in, F, T) → (B, C, F', T')``."""

    def __init__(self, in_ch: int, out_ch: int, in_hw: tuple[int, int], pool: tuple[int, int]) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(list(in_hw), elementwise_affine=False)
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding="same")
        # A pool larger than the map would produce an empty map: clamp it (matters only for very short inputs).
        self.pool = nn.MaxPool2d(tuple(min(p, s) for p, s in zip(pool, in_hw)))
        self.act = nn.PReLU()
        self.out_hw = tuple(s // min(p, s) for p, s in zip(pool, in_hw))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.pool(self.conv(self.norm(x))))


class Spectral2DCNN(nn.Module):
    """CNN over a scalogram ``(B, n_bins, n_frames)`` → θ̂ ``(B, n_params)`` in (0, 1).

    Args:
        in_hw: (n_bins, n_frames) of the input scalogram (LayerNorm shapes follow from it).
        n_params: number of sigmoid heads (synth parameters U).
        channels: conv channels of every block (paper: 128).
        pool_sizes: one (freq, time) max-pool per block; its length sets the number of blocks (paper: 5).
        latent_dim: width after the global mean (paper: 64 for 2 outputs, 128 for 14).
        dropout: dropout after the shared layer and inside each head.
    """

    def __init__(self, in_hw: tuple[int, int], n_params: int, channels: int = 128,
                 pool_sizes: Sequence[Sequence[int]] = ((2, 2),) * 5, latent_dim: int = 64,
                 dropout: float = 0.5) -> None:
        super().__init__()
        if n_params < 1:
            raise ValueError(f"Spectral2DCNN needs n_params >= 1, got {n_params}")
        blocks, hw, ch = [], tuple(int(s) for s in in_hw), 1
        for pool in pool_sizes:
            block = ConvBlock(ch, channels, hw, tuple(int(p) for p in pool))
            blocks.append(block)
            hw, ch = block.out_hw, channels
        self.blocks = nn.Sequential(*blocks)
        self.shared = nn.Sequential(nn.Linear(channels, latent_dim), nn.PReLU(), nn.Dropout(dropout))
        half = max(latent_dim // 2, 1)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(latent_dim, half), nn.PReLU(), nn.Dropout(dropout), nn.Linear(half, 1))
            for _ in range(n_params))

    def features(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two feature depths of ``u (B, n_bins, n_frames)``: the conv blocks' global mean over freq and time
        ``(B, channels)`` and the shared layer's output ``(B, latent_dim)``."""
        conv = self.blocks(u.unsqueeze(1)).mean(dim=(-2, -1))
        return conv, self.shared(conv)

    def predict(self, latent: torch.Tensor) -> torch.Tensor:
        """The sigmoid heads on the shared features: ``(B, latent_dim) → (B, n_params)`` in (0, 1)."""
        return torch.sigmoid(torch.cat([head(latent) for head in self.heads], dim=-1))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.predict(self.features(u)[1])


class Encoder(nn.Module):
    """Audio ``x (B, 1, N)`` or ``(B, N)`` → θ̂ ``(B, n_params)`` in (0, 1): :class:`LogCQT` then :class:`Spectral2DCNN`.

    The front end has no weights and runs without autograd (the encoder input is data, never a graph leaf).
    """

    def __init__(self, sample_rate: int, n_samples: int, n_params: int, J: int = 5, Q: int = 12,
                 hop_length: int = 256, fmin: float | None = None, eps: float = 1e-3, channels: int = 128,
                 pool_sizes: Sequence[Sequence[int]] = ((2, 2),) * 5, latent_dim: int = 64,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.n_params = int(n_params)
        self.frontend = LogCQT(sample_rate, n_samples, J=J, Q=Q, hop_length=hop_length, fmin=fmin, eps=eps)
        self.cnn = Spectral2DCNN((self.frontend.n_bins, self.frontend.n_frames), n_params, channels,
                                 pool_sizes, latent_dim, dropout)

    @classmethod
    def for_synth(cls, synth: Any, **kwargs: Any) -> "Encoder":
        """Build the encoder that fits ``synth``: heads from ``n_params``, CQT from ``sample_rate``, ``n_samples`` and
        the synth's ``cqt_defaults`` (explicit ``kwargs`` that are not None win)."""
        settings = cqt_settings(getattr(synth, "cqt_defaults", None))
        settings.update({k: v for k, v in kwargs.items() if v is not None})
        return cls(sample_rate=synth.sample_rate, n_samples=synth.n_samples, n_params=synth.n_params, **settings)

    def scalogram(self, x: torch.Tensor) -> torch.Tensor:
        """log1p-CQT ``(B, n_bins, n_frames)`` of ``x`` (no autograd)."""
        with torch.no_grad():
            return self.frontend(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cnn(self.scalogram(x))


def encoder_weights(state_dict: dict[str, torch.Tensor], encoder: nn.Module,
                    prefix: str = "encoder.") -> tuple[dict[str, torch.Tensor], list[str]]:
    """The ``prefix``-ed entries of a training checkpoint's ``state_dict`` as ``encoder``'s own keys, and what keeps
    them from fitting it: keys one has and the other lacks, and keys whose shapes differ (empty when they fit)."""
    weights = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    ours = encoder.state_dict()
    bad = sorted(set(ours) ^ set(weights))
    bad += [k for k in ours if k in weights and weights[k].shape != ours[k].shape]
    return weights, bad


def n_weights(module: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
