"""θ-importance sampling for direct optimisation (paper §3.4 with the logits z as the "encoder weights").

The paper's π_p is proportional to the largest Hessian eigenvalue of path p's loss w.r.t. the encoder weights, per
synth parameter u (then normalised over paths and averaged over u). With no encoder the trainable weights are the
logits z of θ = σ(z), so the same warm-up runs through :class:`ThetaLogits`, at the starting θ of a few targets,
with the synth rendered at fixed seeds (the operator must be deterministic).
"""
from __future__ import annotations

import time
import torch
from torch import nn

from scraplab.matching.optimize import ThetaLogits
from scraplab.sampling.importance import probs_from_values, theta_importance
from scraplab.sampling.sampler import PathSampler


def direct_theta_is(synth: nn.Module, loss: nn.Module, targets: torch.Tensor, theta0: torch.Tensor,
                    n_iter: int = 20, seed: int = 0, render_seed: int = 0, min_prob_frac: float = 0.0,
                    progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, float]:
    """π (P,) float64, the per-path values C (P, U) and the CPU seconds spent.

    Args:
        synth, loss: a path loss (``loss(x_hat, x, paths=[p])``, e.g. SCRAPL) and its synth.
        targets: (B, 1, N) warm-up targets.   theta0: (B, U) the θ the optimisation starts from.
        n_iter: power iterations (paper 20).   seed: start vectors.   render_seed: the fixed synth seed.
        min_prob_frac: uniform floor mixed into π.
    """
    if not hasattr(loss, "n_paths"):
        raise ValueError(f"θ-IS needs a path loss (with n_paths), got {type(loss).__name__}")
    if theta0.shape != (targets.shape[0], synth.n_params):
        raise ValueError(f"theta0 must be (B, U) = ({targets.shape[0]}, {synth.n_params}), got {tuple(theta0.shape)}")
    cpu0 = time.process_time()
    logits = ThetaLogits(theta0.to(targets.dtype)).to(targets.device)
    seeds = torch.full((targets.shape[0],), int(render_seed), dtype=torch.int64, device=targets.device)
    vals = theta_importance(logits, lambda th, seed: synth(th, seed), lambda xh, x, p: loss(xh, x, paths=[p]),
                            targets, int(loss.n_paths), synth_kwargs={"seed": seeds}, n_iter=n_iter, seed=seed,
                            progress=progress)
    return probs_from_values(vals, min_prob_frac), vals, time.process_time() - cpu0


def theta_is_sampler(synth: nn.Module, loss: nn.Module, targets: torch.Tensor, theta0: torch.Tensor,
                     sampler_seed: int = 0, **kw) -> tuple[PathSampler, float]:
    """A fixed-π :class:`PathSampler` from :func:`direct_theta_is` and the warm-up's CPU seconds."""
    probs, _, cpu_s = direct_theta_is(synth, loss, targets, theta0, **kw)
    return PathSampler(int(loss.n_paths), mode="fixed", probs=probs, seed=sampler_seed), cpu_s

