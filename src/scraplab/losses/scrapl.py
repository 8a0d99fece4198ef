"""SCRAPL: the JTFS distance estimated from one random path per step (paper §3.1, Proposition 3.1).

Usable from plain Python::

    loss_fn = SCRAPLLoss(shape=32768, J=12, Q=(8, 2), J_fr=3, Q_fr=2)
    loss = loss_fn(x_hat, x)                 # one path drawn from π (uniform by default)
    loss = loss_fn(x_hat, x, paths=[17])     # an explicit path (the training loop's sampler passes these)
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import nn

from ..scattering import JTFS
from ..sampling.probs import check_probs
from . import overlap
from .checks import as_paths, check_pair

SCALINGS = ("norm", "paper")


def path_distance(S_hat: torch.Tensor, S: torch.Tensor, scaling: str, n_paths: int) -> torch.Tensor:
    """Per-example, per-path distance.

    Args:
        S_hat, S: (B, k, F', T') coefficients (after ρ).
        scaling: ``"norm"`` — ‖S_hat − S‖₂ per path (the authors' code); ``"paper"`` — P·‖S_hat − S‖₂² (the
            paper's per-path loss, whose mean over paths is the plain squared JTFS distance).
    Returns:
        (B, k).
    """
    d2 = (S_hat - S).square().flatten(2).sum(-1)
    if scaling == "paper":
        return n_paths * d2
    return torch.sqrt(d2 + torch.finfo(d2.dtype).tiny)  # finite gradient at d = 0


def _check_reduction(reduction: str, x_hat: torch.Tensor) -> int:
    """The number of examples B of ``x_hat`` ((B, N) or (B, C, N)); raises on an unknown reduction."""
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return int(x_hat.shape[0]) if x_hat.dim() >= 2 else 1


def _reduce(dist: torch.Tensor, reduction: str, n_examples: int) -> torch.Tensor:
    """(B·C, k) per-row, per-path distances -> their mean, or (B,) means over channels and paths."""
    if reduction == "mean":
        return dist.mean()
    return dist.reshape(n_examples, -1).mean(1)


def weighted_path_loss(loss: nn.Module, x_hat: torch.Tensor, x: torch.Tensor, paths: Sequence[int],
                       weights: Optional[Sequence[float]] = None, reduction: str = "mean") -> torch.Tensor:
    """The loss of the drawn ``paths`` with a sampler's importance weights w_i (paper §3.4 / ``PathSampler.weights``):
    Σ_i w_i L_{p_i} / k, one call per path when the weights differ, one batched call when they are all 1. The one
    place where sampler weights meet the loss (training and optimisation both call it)."""
    kw = {} if reduction == "mean" else {"reduction": reduction}  # a custom path loss need not take `reduction`
    if weights is None or all(float(w) == 1.0 for w in weights):
        return loss(x_hat, x, paths=list(paths), **kw)
    return sum(float(w) * loss(x_hat, x, paths=[p], **kw) for p, w in zip(paths, weights)) / len(paths)


class SCRAPLLoss(nn.Module):
    """Single-path JTFS loss.

    Args:
        shape: signal length N (samples).
        J, Q, J_fr, Q_fr, T, F: JTFS settings (see ``scraplab.scattering.JTFS``).
        first_order: include the first-order paths in the path set (323 / 495 paths instead of 315 / 483).
        scaling: ``"norm"`` (default, the authors' code: non-squared L2 per path) or ``"paper"`` (P·‖·‖²).
        log1p: apply ρ(S) = log1p(S / log1p_eps) to the coefficients (paper's TR-808 setting).
        log1p_eps: ρ's scale.
        probs: path distribution π, shape (P,) (uniform if None); used when ``forward`` draws the path itself.
        importance_weighted: weight each path's distance by 1 / (P·π_p), which keeps the estimate unbiased
            under a non-uniform π (the paper's θ-IS deliberately omits it).
        seed: seed of the internal CPU generator for the loss's own draws (global RNG if None).
        eps: modulus smoothing of the JTFS.
        target_cache_mb: 0 (default) recomputes the target's coefficients for every new target tensor (the same
            tensor passed again reuses them). > 0 keeps them per target sound and path in an LRU store of that
            many MiB (``metrics.target_cache.TargetCoefficientCache``, keyed by a digest of the sound's samples, so
            a changed sound is never served stale): a fixed training set's targets are transformed once per path
            instead of once per step. The values agree with a fresh computation to float32 round-off, not bit for
            bit (rows computed in another batch). Memory-side and CPU-keyed: meant for CPU training.
        overlap_target: on CPU with ≥ 2 intra-op threads, ``forward`` computes the target's coefficients on a
            background thread while it transforms the prediction (``losses.overlap``; same values bit for bit).
            False: one thread, one after the other.

    Shapes: ``x_hat`` and ``x`` are (B, N) or (B, C, N) float; channels are treated as extra examples.
    Returns a scalar: the batch mean of the (weighted, path-averaged) distances; with ``reduction="none"`` the
    per-example values (B,) (path- and channel-averaged), whose mean is that scalar.
    The target ``x`` is never differentiated: its coefficients are computed without autograd and cached while a
    target with the same values comes back (θ-IS power iterations, evaluations over all paths).
    Inputs of lower precision than the filters (float16/bfloat16, float32 into a float64 loss) are cast up; a
    float64 input to a float32 loss is refused. ``paths``: an int, a NumPy integer, a 0-d/1-d integer tensor or a
    sequence of ints; bools, floats and strings are refused.
    """

    def __init__(self, shape: int, J: int = 12, Q=(8, 2), J_fr: int = 3, Q_fr: int = 2,
                 T: Optional[int] = None, F: Optional[int] = None, first_order: bool = False,
                 scaling: str = "norm", log1p: bool = False, log1p_eps: float = 1e-3,
                 probs: Optional[Sequence[float]] = None, importance_weighted: bool = False,
                 seed: Optional[int] = None, eps: float = 1e-12, target_cache_mb: float = 0.0,
                 overlap_target: bool = True):
        super().__init__()
        if scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
        if log1p_eps <= 0:
            raise ValueError(f"log1p_eps must be positive, got {log1p_eps}")
        self.jtfs = JTFS(shape, J, Q, J_fr, Q_fr, T, F, first_order=first_order, eps=eps)
        self.scaling, self.log1p, self.log1p_eps = scaling, log1p, log1p_eps
        self.importance_weighted = importance_weighted
        self.overlap_target = bool(overlap_target)
        self.register_buffer("probs", check_probs(probs, self.n_paths), persistent=True)
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.last_paths: list[int] = []
        self._cache_key = None
        self._cache: dict[int, torch.Tensor] = {}
        if target_cache_mb < 0:
            raise ValueError(f"target_cache_mb must be >= 0, got {target_cache_mb!r}")
        self.target_store = None
        if target_cache_mb > 0:
            from ..metrics.target_cache import TargetCoefficientCache  # (metrics imports this module lazily)
            self.target_store = TargetCoefficientCache(max_mb=target_cache_mb)

    @property
    def n_paths(self) -> int:
        return self.jtfs.n_paths

    @property
    def paths(self):
        return self.jtfs.paths

    def set_probs(self, probs) -> None:
        """Replace π (validated: length P, non-negative, sums to 1)."""
        self.probs = check_probs(probs, self.n_paths).to(self.probs.device)

    def draw(self, k: int = 1, generator: Optional[torch.Generator] = None) -> list[int]:
        """k distinct paths drawn from π (on CPU, so the draw does not depend on the device)."""
        if not 1 <= k <= self.n_paths:
            raise ValueError(f"number of paths must be in [1, {self.n_paths}], got {k}")
        gen = generator if generator is not None else self.generator
        return torch.multinomial(self.probs.detach().cpu(), k, replacement=False, generator=gen).tolist()

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor, paths: Union[None, int, Sequence[int]] = None,
                generator: Optional[torch.Generator] = None, reduction: str = "mean") -> torch.Tensor:
        n_examples = _check_reduction(reduction, x_hat)
        x_hat, x = check_pair(x_hat, x, self.jtfs.shape, dtype=self.jtfs.psi1.dtype)
        paths = self.draw(1, generator) if paths is None else self._checked_paths(paths)
        self.last_paths = paths
        S_hat, S = self._both(lambda a: self.jtfs.forward_paths(a, paths), x_hat,
                              lambda b: self._target_coefficients(b, paths), x)
        return self._distance(S_hat, S, paths, reduction, n_examples)

    def _both(self, prediction, x_hat, target, x):
        """(prediction(x_hat), target(x)), the target without autograd: on the overlap worker while the prediction
        is computed where ``overlap_target`` and ``overlap.can_overlap`` allow it, else after it on this thread."""
        if self.overlap_target and overlap.can_overlap(x_hat, x):
            pending = overlap.submit(target, x)
            return overlap.beside(pending, prediction, x_hat), pending.result()
        S_hat = prediction(x_hat)
        with torch.no_grad():
            return S_hat, target(x)

    def first_layer(self, x_hat: torch.Tensor) -> list[torch.Tensor]:
        """The prediction's first JTFS layer (all rows; see ``JTFS.first_layer``), differentiable. With
        :meth:`from_first_layer` it splits ``forward`` in two, so that one first layer (or a model of it) serves
        many paths: θ-IS differentiates the synth and the scalogram once per batch instead of once per path."""
        if not torch.is_tensor(x_hat) or x_hat.dim() not in (2, 3) or x_hat.shape[-1] != self.jtfs.shape:
            raise ValueError(f"x_hat must be (B, {self.jtfs.shape}) or (B, C, {self.jtfs.shape}), got "
                             f"{tuple(getattr(x_hat, 'shape', ()))}")
        return self.jtfs.first_layer(x_hat.to(self.jtfs.psi1.dtype))

    def from_first_layer(self, U1: list[torch.Tensor], x: torch.Tensor, paths: Union[int, Sequence[int]],
                         reduction: str = "mean") -> torch.Tensor:
        """``forward(x_hat, x, paths)`` from ``first_layer(x_hat)`` (equal to it up to rounding order: the same
        operations). ``x`` is the target, (B, N) or (B, C, N)."""
        n_examples = _check_reduction(reduction, x)
        paths = self._checked_paths(paths)
        x = x.reshape(-1, x.shape[-1]).to(self.jtfs.psi1.dtype)
        if U1[0].shape[0] != x.shape[0]:
            raise ValueError(f"the first layer has {U1[0].shape[0]} rows, the target {x.shape[0]}")
        S_hat = self.jtfs.paths_from_first_layer(U1, paths)
        return self._distance(S_hat, self._target_coefficients(x, paths), paths, reduction, n_examples)

    def _checked_paths(self, paths) -> list[int]:
        paths = as_paths(paths)
        if not paths:
            raise ValueError("paths must not be empty")
        bad = [p for p in paths if not 0 <= p < self.n_paths]
        if bad:
            raise ValueError(f"path indices {bad} out of range [0, {self.n_paths})")
        return paths

    def _distance(self, S_hat, S, paths, reduction, n_examples):
        dist = path_distance(self._rho(S_hat), S, self.scaling, self.n_paths)  # (B, k)
        if self.importance_weighted:
            w = 1.0 / (self.n_paths * self.probs[paths].to(dist.dtype))
            dist = dist * w
        return _reduce(dist, reduction, n_examples)

    def full(self, x_hat: torch.Tensor, x: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """The exact full loss: mean over all P paths of the per-path distance (= the expectation of
        ``forward`` under uniform π). One first layer per signal, shared by every path. ``reduction`` as in
        ``forward``; with ``overlap_target`` the target is transformed on the worker thread, as in ``forward``."""
        n_examples = _check_reduction(reduction, x_hat)
        x_hat, x = check_pair(x_hat, x, self.jtfs.shape, dtype=self.jtfs.psi1.dtype)
        def coefficients(signal):
            return self._rho(self.jtfs(signal))

        S_hat, S = self._both(coefficients, x_hat, coefficients, x)
        return _reduce(path_distance(S_hat, S, self.scaling, self.n_paths), reduction, n_examples)

    def _rho(self, S):
        return torch.log1p(S / self.log1p_eps) if self.log1p else S

    def _target_coefficients(self, x, paths):
        # Reused while the target's values are those the cached coefficients were computed from: compared against a
        # private copy, so no way of refilling the tensor (in place, through .data or a NumPy view) goes unnoticed.
        # The copy costs B·N samples; the comparison one pass over them.
        x = x.detach()
        if self.target_store is not None:
            return self.target_store.get_per_path(self, x, paths)
        if self._cache_key is None or not _same(self._cache_key, x):
            self._cache_key, self._cache = x.clone(), {}
        missing = [p for p in dict.fromkeys(paths) if p not in self._cache]
        if missing:
            with torch.no_grad():
                S = self._rho(self.jtfs.forward_paths(x, missing))
            for k, p in enumerate(missing):
                self._cache[p] = S[:, k]
        return torch.stack([self._cache[p] for p in paths], dim=1)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)
