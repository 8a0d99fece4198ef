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
        max_shift, pre_delay, validate, jtfs: see :class:`Synth` (the paper uses no shift for this synth).

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
                 pre_delay: int = 0, validate: bool = True, jtfs=None) -> None:
        super().__init__(sample_rate, n_samples, max_shift, pre_delay, validate, jtfs)
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
        y = overlap_add_grains(f0, curve, scale, window, onset, n)
        return y / y.norm(dim=1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)


# Elements of one (examples, grains, M) block on CPU: small enough that the few block-sized temporaries stay in the
# L2 cache (a whole (B, G, M) float32 batch is 32 MB at the paper's sizes and runs memory-bound). Other devices run
# the whole batch as one block.
CPU_BLOCK_ELEMS = 1 << 17
# The blocked CPU path can be switched off (tests run the other devices' whole-batch path on the CPU with it).
CPU_BLOCKED = True


def _blocked(t: torch.Tensor) -> bool:
    return CPU_BLOCKED and t.device.type == "cpu"


def overlap_add_grains(f0: torch.Tensor, curve: torch.Tensor, scale: torch.Tensor, window: torch.Tensor,
                       onset: torch.Tensor, n: int) -> torch.Tensor:
    """y[b, onset[b, i] + m] += scale[b, i]·window[m]·sin(f0[b, i]·curve[b, m]), summed over grains i: (B, n).

    f0, scale, onset: (B, G); curve: (B, M); window: (M,); onset + M ≤ n. Differentiable in curve, scale and f0
    (window is treated as a constant). Forward and backward run in cache-sized blocks without keeping any
    (B, G, M) tensor between them: backward recomputes sin/cos of the phase and reduces with two matrix-vector
    products. Second derivatives (``create_graph=True``, θ-importance warm-up) go through
    :func:`overlap_add_grains_reference`, which gives the same values with plain autograd ops.
    """
    if window.requires_grad:
        raise ValueError("overlap_add_grains treats window as a constant; pass a tensor without requires_grad")
    return _GrainOLA.apply(f0, curve, scale, window, onset, n)


def overlap_add_grains_reference(f0, curve, scale, window, onset, n):
    """Same as :func:`overlap_add_grains`, one vectorised autograd expression over the whole (B, G, M) batch."""
    bsz, m = curve.shape[0], curve.shape[1]
    grains = torch.sin(f0[:, :, None] * curve[:, None, :]) * (scale[:, :, None] * window)
    idx = onset[:, :, None] + torch.arange(m, device=curve.device)
    y = torch.zeros(bsz, n, dtype=curve.dtype, device=curve.device)
    return y.scatter_add(1, idx.reshape(bsz, -1), grains.reshape(bsz, -1))


def _blocks(bsz: int, g: int, m: int):
    """(b, g0, g1) CPU blocks: one example, at most CPU_BLOCK_ELEMS // M grains."""
    gc = max(1, min(g, CPU_BLOCK_ELEMS // m))
    for b in range(bsz):
        for g0 in range(0, g, gc):
            yield b, g0, min(g0 + gc, g)


class _GrainOLA(torch.autograd.Function):
    """CPU: blocks of one example × up to CPU_BLOCK_ELEMS // M grains, overlap-add by in-place adds into views of the
    output (``_foreach_add_``, sequential on CPU, so overlapping grains accumulate in grain order exactly like
    ``scatter_add``), and the backward gathers the grains' gradient windows with ``index_select`` on an unfolded view.
    Elsewhere: the whole batch as one block with scatter_add / gather (no host sync, few kernels)."""

    @staticmethod
    def forward(ctx, f0, curve, scale, window, onset, n):
        bsz, g = f0.shape
        m = curve.shape[1]
        ctx.save_for_backward(f0, curve, scale, window, onset)
        ctx.n = n
        y = torch.zeros(bsz, n, dtype=curve.dtype, device=curve.device)
        if not _blocked(curve):
            ph = f0[:, :, None] * curve[:, None, :]
            ph.sin_().mul_(scale[:, :, None] * window)  # same rounding as the reference
            idx = (onset[:, :, None] + torch.arange(m, device=curve.device)).reshape(bsz, -1)
            return y.scatter_add_(1, idx, ph.reshape(bsz, -1))
        starts = onset.tolist()
        for b, g0, g1 in _blocks(bsz, g, m):
            ph = f0[b, g0:g1, None] * curve[b]  # (gc, M) phase
            ph.sin_().mul_(scale[b, g0:g1, None] * window)
            yb = y[b]
            torch._foreach_add_([yb[o : o + m] for o in starts[b][g0:g1]], list(ph.unbind(0)))
        return y

    @staticmethod
    def backward(ctx, gy):
        f0, curve, scale, window, onset = ctx.saved_tensors
        need_f0, need_curve, need_scale = ctx.needs_input_grad[:3]
        # create_graph=True, or a vmapped backward (is_grads_batched): the reference expression's plain autograd ops
        # (the blocked path below works in place and syncs offsets to the host, neither of which vmap allows)
        if torch.is_grad_enabled() or _is_vmapped(gy):
            with torch.enable_grad():
                ins = [x if x.requires_grad else x.detach().requires_grad_() for x in (f0, curve, scale)]
                y = overlap_add_grains_reference(*ins, window, onset, ctx.n)
                grads = torch.autograd.grad(y, ins, gy, create_graph=True, allow_unused=True)
            return (*[gr if need else None for gr, need in zip(grads, (need_f0, need_curve, need_scale))],
                    None, None, None)
        bsz, g = f0.shape
        m = curve.shape[1]
        gy_frames = gy.unfold(1, m, 1)  # (B, n − M + 1, M) view: frame k is gy[:, k : k + M]
        if not _blocked(curve):
            gg = gy_frames[torch.arange(bsz, device=gy.device)[:, None], onset]  # (B, G, M)
            return (*_grain_vjp(gg, f0, curve, scale, window, need_f0, need_curve, need_scale), None, None, None)
        g_f0 = torch.zeros_like(f0) if need_f0 else None
        g_curve = torch.zeros_like(curve) if need_curve else None
        g_scale = torch.zeros_like(scale) if need_scale else None
        for b, g0, g1 in _blocks(bsz, g, m):
            gg = gy_frames[b].index_select(0, onset[b, g0:g1])  # (gc, M) upstream gradient under each grain
            d_f0, d_curve, d_scale = _grain_vjp(gg[None], f0[b : b + 1, g0:g1], curve[b : b + 1],
                                                scale[b : b + 1, g0:g1], window, need_f0, need_curve, need_scale)
            if need_f0:
                g_f0[b, g0:g1] = d_f0[0]
            if need_curve:
                g_curve[b] += d_curve[0]
            if need_scale:
                g_scale[b, g0:g1] = d_scale[0]
        return g_f0, g_curve, g_scale, None, None, None


def _is_vmapped(t: torch.Tensor) -> bool:
    """True inside vmap (torch.func) or autograd's is_grads_batched (legacy vmap)."""
    f = torch._C._functorch
    return f.is_batchedtensor(t) or f.is_legacy_batchedtensor(t)


def _grain_vjp(gg, f0, curve, scale, window, need_f0, need_curve, need_scale):
    """Gradients of Σ gg·scale·window·sin(f0·curve) for a (bb, gc, M) block: (bb, gc), (bb, M), (bb, gc) or None."""
    d_f0 = d_curve = d_scale = None
    ph = f0[:, :, None] * curve[:, None, :]
    if need_scale:  # Σ_m gg·window·sin(phase)
        d_scale = torch.matmul(torch.sin(ph).mul_(gg), window)
    if need_curve or need_f0:
        gcos = ph.cos_().mul_(gg)  # gg·cos(phase), in place of the phase
        if need_curve:  # window · Σ_i scale_i·f0_i·gg·cos(phase)
            d_curve = torch.matmul((scale * f0)[:, None, :], gcos)[:, 0] * window
        if need_f0:  # scale_i · Σ_m gg·window·cos(phase)·curve
            d_f0 = scale * torch.matmul(gcos, (window * curve)[:, :, None])[..., 0]
    return d_f0, d_curve, d_scale
