"""Path-sampling schedules π for SCRAPL (paper §3.1, §3.4, Algorithm 1; digest §1.9).

``draw(step)`` is a pure function of (seed, global step, sampler state): each step uses a fresh CPU
``torch.Generator`` seeded from a 64-bit mix of (seed, step), so every DDP rank draws the same paths without
communication and a resumed run draws the same sequence as an uninterrupted one.

Modes:
* ``uniform``    π_p = 1/P (paper default).
* ``fixed``      π from ``probs`` / ``probs_path`` (θ-IS output, §3.4); ``needs_warmup`` until ``set_probs`` is called.
* ``all_first``  the first ⌈P/B⌉ steps visit every path once in a seeded random order (the package's
                 ``sample_all_paths_first``), then draw from π (given probs, else uniform).
* ``adaptive``   beyond the paper: π_p ∝ (running mean of observed gradient norm of path p)^power, mixed with a
                 uniform floor: π = (1 − floor)·π_stat + floor/P. Unvisited paths count as the largest observed value,
                 so exploration comes first (Schmidt et al.'s Lipschitz-proportional SAG sampling, gradient norm as the
                 proxy). Statistics arrive through ``observe``; feed it all-reduced values so ranks stay identical.
``importance_weighted=True`` returns w_p = 1/(P·π_p) from ``weights`` so that E[w_p·L_p] = (1/P)Σ_p L_p
(unbiased; exact for budget 1 — with budget B > 1 drawn without replacement it is exact only for uniform π).
``min_prob_frac`` f mixes any non-uniform π with uniform: π ← (1 − f)·π + f/P.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from scraplab.sampling.probs import check_probs

MODES = ("uniform", "fixed", "all_first", "adaptive")
_MASK = (1 << 64) - 1


def _mix_seed(seed: int, step: int) -> int:
    """splitmix64 of (seed, step): decorrelated per-step generator seeds, identical on every machine."""
    z = (int(seed) * 0x9E3779B97F4A7C15 + int(step) + 0x632BE59BD9B4E019) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) & ((1 << 63) - 1)


class PathSampler:
    """Draws ``budget`` distinct paths per step from π; see the module docstring for the modes.

    Args:
        n_paths: P.   mode: one of ``MODES``.   budget: paths per step (1 ≤ budget ≤ P).   seed: draw seed.
        probs / probs_path: π (P,) for 'fixed' (also the post-phase π of 'all_first'); a ``.pt`` tensor file.
        importance_weighted: unbiased 1/(P·π_p) weights.   min_prob_frac: uniform mixing f ∈ [0, 1).
        adaptive_decay: EMA decay of the per-path statistic.   adaptive_floor: uniform share in adaptive π.
        adaptive_power: exponent on the statistic.   adaptive_stat: key read from ``observe``'s ``stats``.
        warmup: free-form θ-IS settings for the training app (kept as ``warmup_settings``).
    """

    def __init__(self, n_paths: int, mode: str = "uniform", budget: int = 1, seed: int = 0, probs=None,
                 probs_path: str | None = None, importance_weighted: bool = False, min_prob_frac: float = 0.0,
                 adaptive_decay: float = 0.9, adaptive_floor: float = 0.2, adaptive_power: float = 1.0,
                 adaptive_stat: str = "grad_norm", warmup: dict | None = None):
        if mode == "theta_is":
            mode = "fixed"
        if mode not in MODES:
            raise ValueError(f"unknown sampler mode {mode!r}; choose one of {MODES}")
        if int(n_paths) < 1:
            raise ValueError(f"n_paths must be >= 1, got {n_paths}")
        if not 1 <= int(budget) <= int(n_paths):
            raise ValueError(f"budget must be in [1, n_paths={n_paths}], got {budget}")
        if not 0.0 <= min_prob_frac < 1.0:
            raise ValueError(f"min_prob_frac must be in [0, 1), got {min_prob_frac}")
        if not (0.0 <= adaptive_decay < 1.0 and 0.0 < adaptive_floor <= 1.0):
            raise ValueError("adaptive_decay must be in [0, 1) and adaptive_floor in (0, 1]")
        if probs is not None and probs_path is not None:
            raise ValueError("give probs or probs_path, not both")
        self.n_paths, self.mode, self.budget, self.seed = int(n_paths), mode, int(budget), int(seed)
        self.importance_weighted, self.min_prob_frac = bool(importance_weighted), float(min_prob_frac)
        self.adaptive_decay, self.adaptive_floor = float(adaptive_decay), float(adaptive_floor)
        self.adaptive_power, self.adaptive_stat = float(adaptive_power), adaptive_stat
        self.warmup_settings = dict(warmup or {})
        self.probs_source: str | None = None
        self._base = torch.full((self.n_paths,), 1.0 / self.n_paths, dtype=torch.float64)
        self._has_probs = mode not in ("fixed",)
        self._stat = torch.zeros(self.n_paths, dtype=torch.float64)
        self._count = torch.zeros(self.n_paths, dtype=torch.int64)
        if probs_path is not None:
            path = Path(probs_path)
            if not path.is_absolute() and not path.exists():  # Hydra changes the CWD: try the data folder
                from scraplab.locations import data_dir
                path = data_dir() / path
            if not path.exists():
                raise ValueError(f"probs_path {probs_path} not found (also looked under the data folder)")
            probs = torch.load(path, weights_only=True)
            self.probs_source = str(path)
        if probs is not None:
            self.set_probs(probs, source=self.probs_source)
        if self.importance_weighted and self.budget > 1 and mode != "uniform":
            warnings.warn("importance weights 1/(P·π_p) are exactly unbiased only for budget 1 (or uniform π)")
        perm_gen = torch.Generator().manual_seed(_mix_seed(self.seed, -1))
        self._perm = torch.randperm(self.n_paths, generator=perm_gen)  # all_first visiting order

    # --------------------------------------------------------------------------------------------------- π
    def set_probs(self, probs, source: str | None = None) -> None:
        """Install π (validated; ``min_prob_frac`` applied), e.g. the θ-IS result."""
        p = check_probs(probs, self.n_paths)
        f = self.min_prob_frac
        self._base = (1.0 - f) * p + f / self.n_paths
        self._has_probs, self.probs_source = True, source

    @property
    def needs_warmup(self) -> bool:
        """True for 'fixed' (θ-IS) sampling while no π has been loaded or computed."""
        return not self._has_probs

    @property
    def probs(self) -> torch.Tensor:
        """Current π, float64 (P,)."""
        if self.mode != "adaptive":
            return self._base.clone()
        seen = self._count > 0
        if not bool(seen.any()):
            return torch.full((self.n_paths,), 1.0 / self.n_paths, dtype=torch.float64)
        stat = self._stat.clamp_min(0.0) ** self.adaptive_power
        stat = torch.where(seen, stat, stat[seen].max())
        total = float(stat.sum())
        share = stat / total if total > 0 else torch.full_like(stat, 1.0 / self.n_paths)
        return (1.0 - self.adaptive_floor) * share + self.adaptive_floor / self.n_paths

    # --------------------------------------------------------------------------------------------------- draw
    def _generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed(_mix_seed(self.seed, step))

    def draw(self, step: int) -> list[int]:
        """The ``budget`` distinct path indices of global step ``step`` (0-based)."""
        if self.needs_warmup:
            raise RuntimeError("sampler mode 'fixed' has no π yet: run the θ-IS warm-up or give probs/probs_path")
        step = int(step)
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        gen, B, P = self._generator(step), self.budget, self.n_paths
        if self.mode == "uniform":
            return torch.randperm(P, generator=gen)[:B].tolist()
        if self.mode == "all_first" and step * B < P:
            first = self._perm[step * B:(step + 1) * B].tolist()
            if len(first) == B:
                return first
            rest = self._base.clone()
            rest[first] = 0.0  # fill the last, partial chunk from π without repeats
            return first + torch.multinomial(rest, B - len(first), replacement=False, generator=gen).tolist()
        probs = self.probs
        if int((probs > 0).sum()) < B:
            raise ValueError(f"π has fewer than budget={B} paths with non-zero probability")
        return torch.multinomial(probs, B, replacement=False, generator=gen).tolist()

    def weights(self, paths) -> list[float]:
        """Loss weights of the drawn paths: 1/(P·π_p) in importance-weighted mode, else 1.0."""
        paths = [int(p) for p in paths]
        if not self.importance_weighted:
            return [1.0] * len(paths)
        probs = self.probs
        return [1.0 / (self.n_paths * float(probs[p])) for p in paths]

    def observe(self, paths, stats: dict) -> None:
        """Feed per-path statistics (adaptive mode; a no-op otherwise). ``stats[adaptive_stat]`` is a float or a
        list aligned with ``paths`` (e.g. the all-reduced gradient norm of the step)."""
        if self.mode != "adaptive":
            return
        if self.adaptive_stat not in stats:
            raise ValueError(f"observe needs stats[{self.adaptive_stat!r}], got keys {sorted(stats)}")
        vals = torch.as_tensor(stats[self.adaptive_stat]).detach().to("cpu", torch.float64).flatten()
        idx = torch.as_tensor([int(p) for p in paths], dtype=torch.int64)
        if vals.numel() == 1:
            vals = vals.expand(len(idx))
        if vals.numel() != len(idx) or not torch.isfinite(vals).all():
            raise ValueError("observe: stats must be finite and one value per path (or one for all)")
        first = self._count[idx] == 0
        d = self.adaptive_decay
        self._stat[idx] = torch.where(first, vals, d * self._stat[idx] + (1 - d) * vals)
        self._count[idx] += 1

    # --------------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {"n_paths": self.n_paths, "mode": self.mode, "seed": self.seed, "budget": self.budget,
                "base": self._base.clone(), "has_probs": self._has_probs, "stat": self._stat.clone(),
                "count": self._count.clone(), "probs_source": self.probs_source}

    def load_state_dict(self, sd: dict) -> None:
        if int(sd["n_paths"]) != self.n_paths or sd["mode"] != self.mode:
            raise ValueError(f"sampler state is for n_paths={sd['n_paths']}, mode={sd['mode']!r}; this sampler has "
                             f"n_paths={self.n_paths}, mode={self.mode!r}")
        self.seed, self.budget = int(sd["seed"]), int(sd["budget"])
        self._base, self._has_probs = sd["base"].clone().to(torch.float64), bool(sd["has_probs"])
        self._stat, self._count = sd["stat"].clone().to(torch.float64), sd["count"].clone().to(torch.int64)
        self.probs_source = sd["probs_source"]
        self._perm = torch.randperm(self.n_paths, generator=torch.Generator().manual_seed(_mix_seed(self.seed, -1)))
