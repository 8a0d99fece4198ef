"""Sound matching by optimisation (inverse synthesis): θ found by gradient descent through the synth, no encoder.

For targets x_t (T, 1, N) and R restarts each, θ_{t,r} = σ(z_{t,r}) with free logits z (T·R, U); every step renders
all T·R trajectories at once, evaluates the loss per trajectory and steps the optimizer on Σ_{t,r} L(x̂_{t,r}, x_t).
Each trajectory's gradient depends on its own logits only and every optimizer here is element-wise (Adam, 𝒫-Adam,
𝒫-SAGA), so a batch gives exactly the trajectories of separate per-target runs (tests/test_match_optimize.py).

Path losses (SCRAPL): one path (or the sampler's budget) per step, drawn by a :class:`PathSampler` and shared by
all trajectories; importance weights, when the sampler has them, come from :func:`weighted_path_loss`. With a
path-aware optimizer (``set_paths``) the step is 𝒫-Adam / 𝒫-SAGA over the path set (paper §3.2–3.3).

Meso regime (paper §4.2–4.3): the target's seed (grain positions, noise, shift) is unknown, so every step renders
with a fresh seed, a pure function of (seed, step, trajectory id) — the same trajectory gets the same seeds whether
it runs in a batch or alone. ``meso=False`` renders every step with ``render_seed``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from scraplab.losses.scrapl import weighted_path_loss
from scraplab.sampling.sampler import PathSampler, _mix_seed
from scraplab.training.module import path_count

OptimizerFactory = Callable[..., torch.optim.Optimizer]


class ThetaLogits(nn.Module):
    """Free logits z (M, U); ``forward(x=None) -> σ(z)`` in (0, 1). The encoder-shaped stand-in that θ-IS
    (``sampling.importance.theta_importance``) differentiates when there is no encoder."""

    def __init__(self, theta0: torch.Tensor, clamp: float = 1e-4):
        super().__init__()
        t = theta0.detach().clamp(clamp, 1.0 - clamp)
        self.z = nn.Parameter(torch.log(t) - torch.log1p(-t))

    def forward(self, x: Optional[torch.Tensor] = None) -> torch.Tensor:
        return torch.sigmoid(self.z)


@dataclass
class MatchResult:
    """Outcome of :func:`optimize_theta` for T targets and R restarts (U synth parameters).

    theta (T, U): the best restart's θ per target (lowest ``loss_all``).   final_loss (T,): its loss.
    best_restart (T,) int64.   theta_all (T, R, U), loss_all (T, R): every restart's final θ and loss (see
    ``select_paths``).   curve (steps, T, R): the loss of every step as optimised (one path's value for SCRAPL).
    theta_curve (n, T, R, U) or None: θ at steps ``record_steps`` (θ before the step's update; the last entry is
    the final θ).   steps: optimizer steps taken.   stopped_early: the patience rule ended the run.
    cpu_s: process CPU seconds of the optimisation (not the final selection pass).
    """

    theta: torch.Tensor
    final_loss: torch.Tensor
    best_restart: torch.Tensor
    theta_all: torch.Tensor
    loss_all: torch.Tensor
    curve: torch.Tensor
    theta_curve: Optional[torch.Tensor]
    record_steps: list[int]
    steps: int
    stopped_early: bool
    cpu_s: float


def render_seeds(seed: int, step: int, ids: torch.Tensor) -> torch.Tensor:
    """(M,) int64 synth seeds for trajectories ``ids`` at ``step``: distinct per (seed, step, id), reproducible."""
    return torch.tensor([_mix_seed(_mix_seed(seed, step), int(i)) & 0x7FFFFFFF for i in ids.tolist()],
                        dtype=torch.int64)


def per_example_loss(loss: nn.Module, x_hat: torch.Tensor, x: torch.Tensor,
                     paths: Optional[Sequence[int]] = None, weights: Optional[Sequence[float]] = None
                     ) -> torch.Tensor:
    """(B,) loss of each (x̂_b, x_b) pair. SCRAPL / JTFS reduce per example themselves (one batched transform);
    any other loss is called once per example, so a loss that couples the batch (spectral convergence normalises
    by the whole batch) still scores each target on its own."""
    if paths is not None:
        return weighted_path_loss(loss, x_hat, x, paths, weights, reduction="none")
    if path_count(loss) is None and hasattr(loss, "n_paths"):  # JTFSLoss: every path, per example
        return loss(x_hat, x, reduction="none")
    return torch.stack([loss(x_hat[b:b + 1], x[b:b + 1]) for b in range(x.shape[0])])


def _check_inputs(synth, targets, steps, restarts, init, chunk_size):
    if not torch.is_tensor(targets) or targets.dim() != 3 or targets.shape[1] != 1:
        raise ValueError(f"targets must be a (T, 1, N) tensor, got "
                         f"{tuple(targets.shape) if torch.is_tensor(targets) else type(targets).__name__}")
    if targets.shape[0] == 0:
        raise ValueError("targets is empty: nothing to match")
    if targets.shape[-1] != synth.n_samples:
        raise ValueError(f"targets have {targets.shape[-1]} samples but the synth renders {synth.n_samples}")
    if not torch.isfinite(targets).all():
        raise ValueError("targets contain NaN or inf")
    if int(steps) < 1 or int(restarts) < 1:
        raise ValueError(f"steps and restarts must be >= 1, got steps={steps}, restarts={restarts}")
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    if init is not None:
        if not torch.is_tensor(init) or tuple(init.shape) not in ((targets.shape[0], synth.n_params),
                                                                 (targets.shape[0], int(restarts), synth.n_params)):
            raise ValueError(f"init must be (T, U) = ({targets.shape[0]}, {synth.n_params}) or (T, R, U), got "
                             f"{tuple(init.shape) if torch.is_tensor(init) else type(init).__name__}")
        if not bool(torch.isfinite(init).all()) or init.min() < 0 or init.max() > 1:
            raise ValueError("init θ must be finite and in [0, 1]")


def initial_theta(n_targets: int, restarts: int, n_params: int, seed: int, init: Optional[torch.Tensor] = None,
                  init_range: tuple[float, float] = (0.1, 0.9)) -> torch.Tensor:
    """(T, R, U) starting θ: ``init`` for restart 0 (broadcast if (T, U)) and uniform draws on ``init_range``
    (away from σ's flat tails) for the others; with no ``init`` every restart is drawn."""
    lo, hi = init_range
    gen = torch.Generator().manual_seed(_mix_seed(seed, -7))
    theta = lo + (hi - lo) * torch.rand(n_targets, restarts, n_params, generator=gen, dtype=torch.float64)
    if init is not None:
        init = init.detach().to(torch.float64).cpu()
        if init.dim() == 2:
            theta[:, 0] = init
        else:
            theta = init.clone()
    return theta


def optimize_theta(synth: nn.Module, loss: nn.Module, targets: torch.Tensor, steps: int = 200, restarts: int = 1,
                   init: Optional[torch.Tensor] = None, init_range: tuple[float, float] = (0.1, 0.9),
                   optimizer: Optional[OptimizerFactory] = None, lr: float = 0.05, lr_decay: float = 1.0,
                   sampler: Optional[PathSampler] = None, meso: bool = True, render_seed: int = 0, seed: int = 0,
                   target_ids: Optional[Sequence[int]] = None, chunk_size: Optional[int] = None,
                   patience: Optional[int] = None, min_delta: float = 1e-3, select_paths: int = 16,
                   record_every: int = 0, progress: bool = False,
                   callback: Optional[Callable[[int, torch.Tensor, torch.Tensor], None]] = None) -> MatchResult:
    """Find θ ∈ [0, 1]^U for every target by gradient descent through ``synth`` on ``loss``.

    Args:
        synth: ``synth(theta (M, U), seed (M,)) -> (M, 1, N)``.
        loss: any audio loss ``loss(x_hat, x)``; a path loss (SCRAPL) is called with the sampler's paths.
        targets: (T, 1, N) audio at the synth's rate and length.
        steps: step budget.   restarts: R trajectories per target (the best is kept).
        init: (T, U) starting θ for restart 0 (e.g. an encoder's prediction) or (T, R, U) for all; the other
            restarts start uniform on ``init_range``.
        optimizer: ``factory(params, n_paths=P)`` (the ``optim`` factories); default ``torch.optim.Adam(lr)``.
        lr_decay: the step size follows a half cosine from its initial value to ``lr_decay`` times it over
            ``steps`` (1: constant). Sign-like updates (Adam, 𝒫-Adam on rarely revisited paths) move z by about
            lr per step, which sets the final jitter of θ; the decay lets a run start fast and end precise.
        sampler: path sampler for a path loss (default: uniform, seeded by ``seed``).
        meso: fresh synth seed every step (else ``render_seed`` throughout).
        target_ids: ids that key each target's render seeds (default 0..T−1); pass a subset's ids to rerun it alone.
        chunk_size: trajectories per forward/backward (gradients accumulate; bounds memory of the full JTFS).
        patience / min_delta: stop when an exponential moving average (span 20 steps) of the mean step loss has not
            fallen by a relative ``min_delta`` for ``patience`` steps (None: run every step).
        select_paths: path losses score final θ on this many fixed paths (all if ≥ P) to pick the best restart.
        record_every: keep θ every this many steps in ``theta_curve`` (0: start and end only).
        progress: tqdm bar.   callback: ``callback(step, theta (T, R, U), step_loss (T, R))`` after every step.
    """
    _check_inputs(synth, targets, steps, restarts, init, chunk_size)
    T, U, R = targets.shape[0], synth.n_params, int(restarts)
    M, dev, dtype = T * R, targets.device, targets.dtype
    ids = torch.as_tensor(list(range(T)) if target_ids is None else [int(i) for i in target_ids], dtype=torch.int64)
    if ids.numel() != T:
        raise ValueError(f"target_ids needs {T} entries, got {ids.numel()}")
    traj_ids = (ids[:, None] * 1009 + torch.arange(R)[None, :]).reshape(-1)  # restart r of target t
    n_paths = path_count(loss)
    if n_paths is not None and sampler is None:
        sampler = PathSampler(n_paths, mode="uniform", seed=seed)
    if sampler is not None and n_paths is not None and sampler.n_paths != n_paths:
        raise ValueError(f"the sampler has {sampler.n_paths} paths but the loss has {n_paths}")
    theta0 = initial_theta(T, R, U, seed, init, init_range).reshape(M, U).to(device=dev, dtype=dtype)
    model = ThetaLogits(theta0).to(dev)
    opt = (optimizer or (lambda params, n_paths=None: torch.optim.Adam(params, lr=lr)))([model.z], n_paths=n_paths)
    if not 0.0 < lr_decay <= 1.0:
        raise ValueError(f"lr_decay must be in (0, 1], got {lr_decay}")
    span = max(1, int(steps) - 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: lr_decay + (1.0 - lr_decay) * 0.5 * (1.0 + math.cos(math.pi * min(k, span) / span)))
    target_rows = targets.repeat_interleave(R, dim=0)  # (M, 1, N): trajectory m matches target m // R
    chunk = int(chunk_size or M)
    every = int(record_every)
    record_steps, thetas, curve = [], [], []
    ema, best_ema, since_best, stopped = None, math.inf, 0, False
    fixed_seed = torch.full((M,), int(render_seed), dtype=torch.int64)
    cpu0 = time.process_time()
    bar = tqdm(range(int(steps)), desc="matching", disable=not progress)
    step = 0
    for step in bar:
        seeds = (render_seeds(seed, step, traj_ids) if meso else fixed_seed).to(dev)
        paths = [int(p) for p in sampler.draw(step)] if n_paths is not None else None
        weights = sampler.weights(paths) if paths is not None else None
        if paths is not None and hasattr(opt, "set_paths"):
            opt.set_paths(paths)
        if every and step % every == 0 or step == 0:
            record_steps.append(step)
            thetas.append(model().detach().reshape(T, R, U).cpu())
        opt.zero_grad(set_to_none=True)
        values = []
        for s in range(0, M, chunk):
            sl = slice(s, s + chunk)
            theta = torch.sigmoid(model.z[sl])
            value = per_example_loss(loss, synth(theta, seeds[sl]), target_rows[sl], paths, weights)
            value.sum().backward()  # trajectories are independent: the sum's gradient is each one's own
            values.append(value.detach())
        value = torch.cat(values)
        if not bool(torch.isfinite(value).all()) or not bool(torch.isfinite(model.z.grad).all()):
            raise FloatingPointError(f"non-finite loss or gradient at step {step}"
                                     f"{', path(s) ' + str(paths) if paths else ''}")
        opt.step()
        schedule.step()
        curve.append(value.reshape(T, R).cpu())
        mean = float(value.mean())
        ema = mean if ema is None else ema + (mean - ema) * (2.0 / 21.0)
        bar.set_postfix(loss=f"{mean:.4g}")
        if callback is not None:
            callback(step, model().detach().reshape(T, R, U), value.reshape(T, R))
        if patience is not None:
            if ema < best_ema * (1.0 - min_delta):
                best_ema, since_best = ema, 0
            else:
                since_best += 1
                if since_best >= int(patience):
                    stopped = True
                    break
    bar.close()
    cpu_s = time.process_time() - cpu0
    n_done = step + 1
    theta_all = model().detach().reshape(T, R, U)
    record_steps.append(n_done)
    thetas.append(theta_all.cpu())
    loss_all = final_losses(synth, loss, theta_all.reshape(M, U), target_rows, render_seed, select_paths, seed,
                            chunk).reshape(T, R)
    best = loss_all.argmin(dim=1)
    pick = torch.arange(T)
    return MatchResult(theta=theta_all.cpu()[pick, best], final_loss=loss_all[pick, best], best_restart=best,
                       theta_all=theta_all.cpu(), loss_all=loss_all, curve=torch.stack(curve),
                       theta_curve=torch.stack(thetas), record_steps=record_steps, steps=n_done,
                       stopped_early=stopped, cpu_s=cpu_s)


@torch.no_grad()
def final_losses(synth, loss, theta: torch.Tensor, targets: torch.Tensor, render_seed: int, select_paths: int,
                 seed: int, chunk: int) -> torch.Tensor:
    """(M,) deterministic score of final θ: rendered with ``render_seed``; a path loss averaged over
    ``select_paths`` paths drawn once (the same for every trajectory), or over all of them."""
    n_paths = path_count(loss)
    paths = None
    if n_paths is not None:
        k = min(int(select_paths), n_paths)
        paths = list(range(n_paths)) if k == n_paths else \
            torch.randperm(n_paths, generator=torch.Generator().manual_seed(_mix_seed(seed, -11)))[:k].tolist()
    seeds = torch.full((theta.shape[0],), int(render_seed), dtype=torch.int64, device=theta.device)
    out = []
    for s in range(0, theta.shape[0], chunk):
        sl = slice(s, s + chunk)
        x_hat = synth(theta[sl], seeds[sl])
        if paths is None:
            out.append(per_example_loss(loss, x_hat, targets[sl]))
        else:  # one path at a time keeps memory at a single path's coefficients
            out.append(torch.stack([loss(x_hat, targets[sl], paths=[p], reduction="none") for p in paths]).mean(0))
    return torch.cat(out).cpu()
