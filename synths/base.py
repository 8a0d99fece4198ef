"""Synth base class and parameter table (the ddsp controls/signal split, torchsynth-style named ranges).

The network always speaks θ ∈ [0, 1]^U; each synth declares a table of :class:`Param` (name, range, curve, unit) that
maps θ to physical controls and back. A subclass implements :meth:`Synth.render` on the physical controls; the base
class validates inputs, maps θ, and applies the optional seed-driven time shift (paper §4.3/§4.4 "meso" setting).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Optional

import torch
from torch import nn

from . import dsp, rng

# Keys a synth's JTFS settings may hold (the SCRAPL/JTFS loss keywords the training app fills from the synth).
JTFS_KEYS = frozenset({"J", "Q", "J_fr", "Q_fr", "T", "F", "log1p"})

CURVES = ("linear", "log", "dB", "custom")


@dataclass(frozen=True)
class Param:
    """One synth control.

    ``curve`` maps u ∈ [0, 1] to the physical value x:

    - ``linear``: x = min + u·(max − min);
    - ``log``: log-uniform, x = min·(max/min)^u (min > 0); the authors' "log2-linear" AM/FM ranges;
    - ``dB``: a level in decibels, linear in dB (so exponential in amplitude); x is reported in dB and synths
      convert with :func:`dsp.db_to_amp`;
    - ``custom``: ``to_phys`` / ``to_u`` callables (vectorised, inverse of each other); min/max are x at u = 0 / 1.
    """

    name: str
    min: float
    max: float
    curve: str = "linear"
    unit: str = ""
    description: str = ""
    to_phys: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False, compare=False)
    to_u: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.curve not in CURVES:
            raise ValueError(f"param {self.name!r}: curve must be one of {CURVES}, got {self.curve!r}")
        if not self.min < self.max:
            raise ValueError(f"param {self.name!r}: need min < max, got {self.min} .. {self.max}")
        if self.curve == "log" and self.min <= 0:
            raise ValueError(f"param {self.name!r}: a log curve needs min > 0, got {self.min}")
        if self.curve == "custom" and (self.to_phys is None or self.to_u is None):
            raise ValueError(f"param {self.name!r}: a custom curve needs both to_phys and to_u")

    def to_physical(self, u: torch.Tensor) -> torch.Tensor:
        """u in [0, 1] (any shape) -> physical value, same shape and dtype."""
        if self.curve == "log":
            return torch.exp(math.log(self.min) + u * (math.log(self.max) - math.log(self.min)))
        if self.curve == "custom":
            return self.to_phys(u)
        return self.min + u * (self.max - self.min)

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_physical`."""
        if self.curve == "log":
            return (torch.log(x) - math.log(self.min)) / (math.log(self.max) - math.log(self.min))
        if self.curve == "custom":
            return self.to_u(x)
        return (x - self.min) / (self.max - self.min)

    def as_dict(self) -> dict:
        return dict(name=self.name, min=self.min, max=self.max, curve=self.curve, unit=self.unit,
                    description=self.description)


class Synth(nn.Module):
    """Stateless differentiable synth: ``forward(theta (B, U) in [0, 1], seed (B,) int64) -> audio (B, 1, N)``.

    Subclasses set ``self.params`` (tuple of :class:`Param`) in ``__init__`` and implement
    ``render(phys, seed) -> (B, n_samples)``. Class attributes ``jtfs_defaults`` and ``cqt_defaults`` carry the loss
    and encoder front-end settings the paper pairs with the synth, ``scrapl_grad_mult`` the path-aware optimizers'
    gradient multiplier (all read by the training app, not by the synth).

    Args:
        sample_rate: Hz.
        n_samples: output length N in samples.
        max_shift: if > 0, the output is shifted by an integer δ uniform on [−max_shift, max_shift] samples drawn from
            the seed (zero fill, no wrap-around); paper: ±2048.
        pre_delay: fixed delay in samples added to δ (the TR-808 "meso" setting pads by δ − δ_min = δ + 2048).
        validate: check θ and seed (one host sync per call); turn off only in trusted hot loops.
        jtfs: overrides of the class's ``jtfs_defaults`` for this instance (keys J, Q, J_fr, Q_fr, T, F, log1p), e.g.
            a smaller path set for a CPU twin; every consumer (training loss, θ-IS, audio metrics) then uses them.
    """

    jtfs_defaults: ClassVar[dict] = {}
    cqt_defaults: ClassVar[dict] = {}
    # Gradient multiplier of the path-aware optimizers (𝒫-Adam/𝒫-SAGA) with a path loss, used when optim.grad_mult is
    # null: SCRAPL gradients with identity ρ are ~1e-10…1e-7, which ε would swamp (authors: 1e8; 1 with log1p ρ).
    # Must be a finite number > 0 (checked by the training app, which writes the value used into the run config).
    scrapl_grad_mult: ClassVar[float] = 1.0

    def __init__(self, sample_rate: int, n_samples: int, max_shift: int = 0, pre_delay: int = 0,
                 validate: bool = True, jtfs: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        if jtfs:
            unknown = sorted(set(jtfs) - JTFS_KEYS)
            if unknown:
                raise ValueError(f"unknown jtfs setting(s) {unknown}; allowed: {sorted(JTFS_KEYS)}")
            given = {k: tuple(v) if k == "Q" and not isinstance(v, int) else v for k, v in dict(jtfs).items()}
            self.jtfs_defaults = {**type(self).jtfs_defaults, **given}  # instance value shadows the class default
        if sample_rate <= 0 or n_samples <= 0:
            raise ValueError(f"sample_rate and n_samples must be positive, got {sample_rate}, {n_samples}")
        if max_shift < 0 or pre_delay < 0:
            raise ValueError(f"max_shift and pre_delay must be >= 0, got {max_shift}, {pre_delay}")
        self.sample_rate = int(sample_rate)
        self.n_samples = int(n_samples)
        self.max_shift = int(max_shift)
        self.pre_delay = int(pre_delay)
        self.validate = bool(validate)
        self.params: tuple[Param, ...] = ()

    # -- parameter table ---------------------------------------------------------------------------------------
    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def n_params(self) -> int:
        return len(self.params)

    def check_theta(self, theta: torch.Tensor) -> None:
        """Raise ValueError unless theta is a floating (B, U) tensor with finite values in [0, 1]."""
        if not isinstance(theta, torch.Tensor) or not theta.is_floating_point():
            raise ValueError(f"theta must be a floating-point tensor, got {type(theta).__name__} "
                             f"{getattr(theta, 'dtype', '')}")
        if theta.ndim != 2 or theta.shape[1] != self.n_params:
            raise ValueError(f"theta must have shape (B, {self.n_params}) for params {self.param_names}, "
                             f"got {tuple(theta.shape)}")
        if self.validate:
            t = theta.detach()
            if not bool(torch.isfinite(t).all()):
                raise ValueError("theta contains NaN or inf")
            if not bool(((t >= 0) & (t <= 1)).all()):
                raise ValueError(f"theta must lie in [0, 1]; got range [{t.min().item():.4g}, {t.max().item():.4g}]")

    def to_physical(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """theta (B, U) in [0, 1] -> {name: (B,) tensor in physical units}, differentiable."""
        self.check_theta(theta)
        return {p.name: p.to_physical(theta[:, i]) for i, p in enumerate(self.params)}

    def to_unit(self, phys: dict[str, torch.Tensor]) -> torch.Tensor:
        """{name: (B,) physical} -> theta (B, U); raises ValueError on missing/extra names or out-of-range values."""
        if set(phys) != set(self.param_names):
            raise ValueError(f"expected physical values for {self.param_names}, got {sorted(phys)}")
        cols = []
        for p in self.params:
            x = torch.as_tensor(phys[p.name])
            lo, hi = min(p.min, p.max), max(p.min, p.max)
            tol = 1e-6 * (hi - lo)
            if self.validate and not bool(((x >= lo - tol) & (x <= hi + tol)).all()):
                raise ValueError(f"{p.name} must lie in [{p.min}, {p.max}] {p.unit}")
            cols.append(p.to_unit(x).clamp(0.0, 1.0))
        return torch.stack(cols, dim=-1)

    def random_theta(self, seed: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(B, U) θ uniform on [0, 1]^U drawn from the seeds (device-independent)."""
        return rng.uniform(seed, rng.STREAM_THETA, self.n_params, dtype=dtype)

    # -- rendering ---------------------------------------------------------------------------------------------
    def render(self, phys: dict[str, torch.Tensor], seed: torch.Tensor) -> torch.Tensor:
        """Physical controls {name: (B,)} and seeds (B,) -> audio (B, n_samples). Implemented by subclasses."""
        raise NotImplementedError

    def shifts(self, seed: torch.Tensor) -> torch.Tensor:
        """(B,) int64 total delay in samples: pre_delay + δ, δ uniform on [−max_shift, max_shift] from the seed."""
        if self.max_shift == 0:
            return torch.full_like(seed, self.pre_delay, dtype=torch.int64)
        delta = rng.randint(seed, rng.STREAM_SHIFT, 1, -self.max_shift, self.max_shift)[:, 0]
        return delta + self.pre_delay

    def forward(self, theta: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
        """theta (B, U) in [0, 1], seed (B,) int64 -> audio (B, 1, n_samples) in theta's dtype and device."""
        phys = self.to_physical(theta)
        rng.check_seed(seed)
        if seed.shape[0] != theta.shape[0]:
            raise ValueError(f"seed has {seed.shape[0]} entries but theta has batch size {theta.shape[0]}")
        seed = seed.to(theta.device)
        y = self.render(phys, seed)
        if self.max_shift or self.pre_delay:
            y = dsp.time_shift(y, self.shifts(seed))
        return y.unsqueeze(1)

    def param_table(self) -> list[dict]:
        return [p.as_dict() for p in self.params]

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_samples={self.n_samples}, max_shift={self.max_shift}, "
                f"pre_delay={self.pre_delay}, params={self.param_names}")
