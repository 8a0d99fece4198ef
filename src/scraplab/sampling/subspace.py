"""θ-IS eigenvalues of every path from one projection of the encoder's Hessians (Rayleigh–Ritz; paper §3.4).

With the warm-up's local model of the path loss (``importance``, method ``'local'``), the u-slice operator of path p
on one batch is a fixed set of encoder operators with path-dependent coefficients:

    H_{u,p} = Σ_b s_{b,u,p} A_{b,u} + Σ_b k_{b,u,p} j_{b,u}ᵀ,    k_{b,u,p} = Σ_{u'} K_{b,u,u',p} j_{b,u'},

where A_{b,u} = ∇²_w θ̃_{b,u} and j_{b,u} = ∇_w θ̃_{b,u} depend on the encoder and the batch only, and s, K (the
gradient and Hessian of the path loss w.r.t. θ̃) on the path. So the Hessian-vector products through the encoder
are needed once per batch, not once per path and step: an orthonormal basis Q per u spans the examples' J rows and
a randomized range of every A_{b,u} (``rank`` random directions, ``power`` subspace iterations); the projections
Q A_{b,u} Qᵀ are stored, and each path's C_{u,p} is the largest |eigenvalue| of the m × m projection of H_{u,p}
(m = B·(rank + U)). The rank-B part lies in span(Q), so the projection is exact where span(Q) holds the A_{b,u}'s
dominant eigenvectors; it is exact outright when m ≥ the number of weights. Measured on the granular warm-up
(8 examples, P = 315): see ``experiments/results/benchmark_warmup.json``.

The encoder's Hessian-vector products are forward-over-reverse (``torch.func.jvp`` of ``grad``) on one example at
a time, vectorised over directions; each example's θ̃ must depend on its own input only (eval mode).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch.func import functional_call, grad, jvp, vmap


@dataclass
class Projection:
    """One batch's projected encoder operators: ``A[u]`` (B, m, m) float64 = Q_u A_{b,u} Q_uᵀ and ``J[u]`` (B, U, m)
    float64 = J_b Q_uᵀ, for u in range(U)."""
    A: list[torch.Tensor]
    J: list[torch.Tensor]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.A, *self.J))


def _named(module: torch.nn.Module, params: Sequence[torch.nn.Parameter]) -> list[str]:
    names = {id(q): n for n, q in module.named_parameters()}
    missing = [i for i, q in enumerate(params) if id(q) not in names]
    if missing:
        raise ValueError(f"solver='subspace': params {missing} are not parameters of the encoder module")
    return [names[id(q)] for q in params]


def build_projection(module: torch.nn.Module, params: Sequence[torch.nn.Parameter], x: torch.Tensor, rank: int,
                     power: int, gen: torch.Generator, chunk: int = 64) -> Projection:
    """The :class:`Projection` of ``module``'s θ̃ on batch ``x`` w.r.t. ``params`` (see the module docstring).

    ``rank``: random directions per example and u (≥ 1); ``power``: subspace iterations (≥ 0) on each; ``chunk``:
    directions per vectorised Hessian-vector product (memory). Costs B·U·(rank·(1 + power) + m) products on one
    example each."""
    if rank < 1 or power < 0:
        raise ValueError(f"subspace rank must be >= 1 and power >= 0, got {rank}, {power}")
    names = _named(module, params)
    shapes, sizes = [tuple(q.shape) for q in params], [q.numel() for q in params]
    w0 = torch.cat([q.detach().reshape(-1) for q in params])
    n, dt = w0.numel(), w0.dtype

    def f(w, x1, u):  # θ̃_u of one example as a function of the flat weights
        views, i = {}, 0
        for name, shape, size in zip(names, shapes, sizes):
            views[name] = w[i:i + size].view(shape)
            i += size
        return functional_call(module, views, (x1.unsqueeze(0),))[0, u]

    def hvp(x1, u, V):  # A_{b,u} V for directions V (k, n)
        g = lambda w: grad(f)(w, x1, u)  # noqa: E731
        many = vmap(lambda v: jvp(g, (w0,), (v,))[1])
        return torch.cat([many(V[i:i + chunk]) for i in range(0, V.shape[0], chunk)])

    with torch.no_grad():
        theta = module(x[:1])
    B, U = x.shape[0], theta.shape[1]
    J = torch.stack([torch.stack([grad(f)(w0, x[b], u) for u in range(U)]) for b in range(B)])  # (B, U, n)
    A_out, J_out = [], []
    for u in range(U):
        if B * (rank + U) >= n:  # the whole weight space: the projection is exact
            Q = torch.eye(n, dtype=torch.float64)
        else:
            cols = [J.reshape(B * U, n).double()]
            for b in range(B):
                Y = hvp(x[b], u, torch.randn(rank, n, generator=gen, dtype=torch.float64).to(dt))
                for _ in range(power):
                    Y = hvp(x[b], u, torch.linalg.qr(Y.double().T)[0].T.to(dt))
                cols.append(Y.double())
            Q = torch.linalg.qr(torch.cat(cols).T)[0].T  # (m, n) orthonormal rows
        Qd = Q.to(dt)
        A = torch.stack([Q @ hvp(x[b], u, Qd).double().T for b in range(B)])
        A_out.append(0.5 * (A + A.transpose(1, 2)))  # A_{b,u} is a Hessian: drop the rounding's asymmetry
        J_out.append(J.double() @ Q.T)
    return Projection(A_out, J_out)


def projected_eigenvalues(proj: Projection, s0: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """|λ| of largest magnitude of the projected H_{u,p} for every u: (U,) float64, from the path's s (B, U) and
    K (B, U, U) (``importance.loss_derivatives`` / ``taylor.path_derivatives``, ``per_example``)."""
    s0, K = s0.detach().double(), K.detach().double()
    out = []
    for u, (A, QJ) in enumerate(zip(proj.A, proj.J)):
        M = torch.einsum("b,bmn->mn", s0[:, u], A)
        k = torch.einsum("bj,bjm->bm", K[:, u], QJ)  # Q k_{b,u}
        M = M + k.T @ QJ[:, u]  # Σ_b (Q k_{b,u})(Q j_{b,u})ᵀ
        out.append(torch.linalg.eigvals(M).abs().max())
    return torch.stack(out)
