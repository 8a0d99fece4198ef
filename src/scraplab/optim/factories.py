"""Optimizer constructors for Hydra configs (``_partial_: true``); the training code calls
``factory(params, n_paths=P)``. Plain optimizers accept and ignore ``n_paths``.

Ablation ladder of the paper (Table 2): ``sgd`` (with ``grad_mult``) / ``adamw`` → ``p_adam`` → ``p_saga``
(θ-IS is a sampler choice, not an optimizer one).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

from scraplab.optim.path_adam_saga import PathAdamSaga


def _betas(betas: Sequence[float]) -> tuple[float, float]:
    b = tuple(float(x) for x in betas)  # Hydra passes a ListConfig
    if len(b) != 2:
        raise ValueError(f"betas must have two entries, got {list(betas)}")
    return b  # type: ignore[return-value]


def adamw(params: Iterable, n_paths: int | None = None, lr: float = 1e-4, weight_decay: float = 0.01,
          betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8) -> torch.optim.AdamW:
    """torch.optim.AdamW (path-agnostic baseline); ``n_paths`` is ignored."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=_betas(betas), eps=eps)


def sgd(params: Iterable, n_paths: int | None = None, lr: float = 1e-4, weight_decay: float = 0.01,
        momentum: float = 0.0, grad_mult: float = 1.0) -> torch.optim.Optimizer:
    """Plain SGD. With ``grad_mult != 1`` (the authors' SGD ablation arm multiplies gradients by 1e8) it is a
    ``PathAdamSaga`` with both stabilisers off, which needs no ``set_paths``."""
    if grad_mult == 1.0:
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum)
    if momentum:
        raise ValueError("sgd with grad_mult != 1 supports momentum=0 only")
    return PathAdamSaga(params, n_paths=n_paths or 1, lr=lr, weight_decay=weight_decay, p_adam=False,
                        p_saga=False, grad_mult=grad_mult)


def p_adam(params: Iterable, n_paths: int, lr: float = 1e-4, weight_decay: float = 0.01,
           betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8, grad_mult: float | None = None,
           eps_inside_sqrt: bool = True, state_dtype: str | None = None, shared_v: bool = False) -> PathAdamSaga:
    """𝒫-Adam + SGD (paper §3.2), no SAGA. ``grad_mult=None`` means 1 (the training app fills the synth's
    value). ``shared_v`` (beyond the paper, a diagnostic): per-path m, one second moment for all paths."""
    return PathAdamSaga(params, n_paths=n_paths, lr=lr, weight_decay=weight_decay, betas=_betas(betas), eps=eps,
                        p_adam=True, p_saga=False, grad_mult=1.0 if grad_mult is None else grad_mult,
                        eps_inside_sqrt=eps_inside_sqrt, state_dtype=state_dtype, shared_v=shared_v)


def p_saga(params: Iterable, n_paths: int, lr: float = 1e-4, weight_decay: float = 0.01,
           betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8, grad_mult: float | None = None,
           eps_inside_sqrt: bool = True, saga_divisor: str = "paper", saga_memory: str = "auto",
           state_dtype: str | None = None, use_p_adam: bool = True, factored_v: bool = False,
           shared_v: bool = False) -> PathAdamSaga:
    """𝒫-Adam + 𝒫-SAGA + SGD (paper §3.3, Algorithm 1); ``use_p_adam=False`` gives SAGA on raw gradients.
    ``grad_mult=None`` means 1 (the training app fills the synth's value). ``factored_v`` (beyond the paper):
    row/column second moments per path for matrices, the memory option that brings the 808 state under 1 GB.
    ``shared_v`` (beyond the paper, a diagnostic): per-path m, one second moment for all paths (ĝ stored)."""
    return PathAdamSaga(params, n_paths=n_paths, lr=lr, weight_decay=weight_decay, betas=_betas(betas), eps=eps,
                        p_adam=use_p_adam, p_saga=True, grad_mult=1.0 if grad_mult is None else grad_mult,
                        eps_inside_sqrt=eps_inside_sqrt, saga_divisor=saga_divisor, saga_memory=saga_memory,
                        state_dtype=state_dtype, factored_v=factored_v, shared_v=shared_v)
