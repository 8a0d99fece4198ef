"""Second-order Taylor model of a per-example function of θ̃, so that θ-IS differentiates it once, not once per path.

The θ-IS warm-up (``importance.theta_importance``, method ``'local'``) needs, for every path p, the gradient s and
the Hessian K of ℓ_p(θ̃) = L_p(F(θ̃)) at θ̃0, where F(θ̃) = first JTFS layer of synth(θ̃) is the same for every path
and is most of the cost. By the chain rule s and K depend on F only through F(θ̃0), ∂F/∂θ̃ and ∂²F/∂θ̃² at θ̃0:

    s = J_Fᵀ ∇L_p,    K = J_Fᵀ ∇²L_p J_F + Σ_k (∇L_p)_k ∇²F_k.

So the quadratic model F̃(θ̃) = F0 + Σ_u D_u δ_u + ½ Σ_{u,v} H_uv δ_u δ_v (δ = θ̃ − θ̃0) has the same s and K as F
for every path (exactly, in exact arithmetic). It is built once per batch; each path then differentiates only its
own second layer and frequential stage, and :func:`path_derivatives` forms s and K from the stored derivatives.

The derivatives are computed without forward-mode AD (the synths' and the JTFS's custom autograd Functions define no
``jvp``) by the double-backward identity J v = ∂/∂z ⟨Jᵀz, v⟩ (Jᵀz is linear in a dummy cotangent z), once for D and
once more for H: four nested backward passes through synth and first layer, once per batch. Each example's output
must depend on its own θ̃ row only (true for every synth and loss of this package), so the direction e_u set in every
example at once gives all examples' derivatives in one pass.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch


class QuadraticModel:
    """F̃(θ̃) = F0 + Σ_u D_u δ_u + Σ_{u≤v} c_uv H_uv δ_u δ_v (c = ½ on the diagonal, 1 off it), δ = θ̃ − θ̃0.

    ``F0``: list of (B, ...) tensors as returned by the modelled function (real or complex); the derivatives are
    stored as real views, stacked: ``D[k]`` (U, B, ...), ``H[k]`` (U(U+1)/2, B, ...). Calling the model on θ̃ (B, U)
    returns tensors shaped and typed like ``F0``, differentiable in θ̃ to any order.
    """

    def __init__(self, theta0: torch.Tensor, F0: list[torch.Tensor], D: list[torch.Tensor], H: list[torch.Tensor]):
        self.theta0 = theta0.detach()
        self.complex = [f.is_complex() for f in F0]
        self.F0 = [torch.view_as_real(f).detach() if c else f.detach() for f, c in zip(F0, self.complex)]
        self.D, self.H = D, H
        U = self.theta0.shape[1]
        self.pairs = [(u, v) for u in range(U) for v in range(u, U)]
        self.coef = torch.tensor([0.5 if u == v else 1.0 for u, v in self.pairs], dtype=self.theta0.dtype,
                                 device=self.theta0.device)

    def __call__(self, theta: torch.Tensor) -> list[torch.Tensor]:
        d = theta - self.theta0  # (B, U)
        dd = torch.stack([d[:, u] * d[:, v] for u, v in self.pairs], 0) * self.coef[:, None]  # (n_pairs, B)
        d = d.t()  # (U, B)
        out = []
        for F0, D, H, c in zip(self.F0, self.D, self.H, self.complex):
            shape = d.shape + (1,) * (F0.dim() - 1)
            y = F0 + (D * d.reshape(shape)).sum(0) + (H * dd.reshape(dd.shape + shape[2:])).sum(0)
            out.append(torch.view_as_complex(y) if c else y)
        return out

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.F0, *self.D, *self.H))


def _real(ts):
    return [torch.view_as_real(t) if t.is_complex() else t for t in ts]


def model_bytes(F0: list[torch.Tensor], n_params: int, dtype: Optional[torch.dtype] = None) -> int:
    """Memory of the model of F0 for U = ``n_params``, stored in real ``dtype`` (default F0's precision): F0, U
    first and U(U+1)/2 second derivatives."""
    def size(t):
        item = t.element_size() if dtype is None else torch.finfo(dtype).bits // 8 * (2 if t.is_complex() else 1)
        return t.numel() * item
    return sum(size(t) for t in F0) * (1 + n_params + n_params * (n_params + 1) // 2)


def quadratic_model(fn: Callable[[torch.Tensor], list[torch.Tensor]], theta0: torch.Tensor,
                    max_bytes: Optional[int] = None, compute_dtype: Optional[torch.dtype] = None
                    ) -> Optional[QuadraticModel]:
    """The :class:`QuadraticModel` of ``fn`` at ``theta0`` (B, U); None when it would take more than ``max_bytes``.

    ``fn(θ̃)`` returns a list of (B, ...) tensors (real or complex); example b's outputs must depend on θ̃[b] only.
    ``compute_dtype`` (e.g. float64, with an ``fn`` that computes in it): θ̃0 is cast to it for the derivatives,
    which are then stored in ``theta0``'s precision. The nested backward passes accumulate rounding, most in the
    second derivatives; in float64 they cost about twice as much and come out exact to the stored precision.
    """
    store = theta0.dtype
    th = theta0.detach().to(compute_dtype or store).requires_grad_(True)
    B, U = th.shape
    with torch.enable_grad():
        F = fn(th)
        if max_bytes is not None and model_bytes(F, U, store) > max_bytes:
            return None
        Fr = _real(F)

        def directional(outs, dummies):  # D_u = J e_u for every u, as functions of θ̃ (graphs kept)
            g = torch.autograd.grad(outs, th, dummies, create_graph=True, materialize_grads=True)[0]  # Jᵀ z (B, U)
            res = []
            for u in range(U):
                e = torch.zeros_like(th)
                e[:, u] = 1.0
                res.append(torch.autograd.grad(g, dummies, e, create_graph=True, materialize_grads=True))
            return res

        z = [torch.zeros_like(f, requires_grad=True) for f in Fr]
        D = directional(Fr, z)  # D[u][k]
        H = {}
        for u in range(U):  # H_uv = ∂_v D_u: the same identity applied to D_u
            z2 = [torch.zeros_like(f, requires_grad=True) for f in Fr]
            a = torch.autograd.grad(D[u], th, z2, create_graph=True, materialize_grads=True)[0]  # (B, U)
            for v in range(u, U):
                e = torch.zeros_like(th)
                e[:, v] = 1.0
                H[(u, v)] = [h.detach() for h in torch.autograd.grad(a, z2, e, retain_graph=True,
                                                                       materialize_grads=True)]
    pairs = [(u, v) for u in range(U) for v in range(u, U)]
    rdt, cdt = store, {torch.float64: torch.complex128}.get(store, torch.complex64)
    D_st = [torch.stack([D[u][k].detach() for u in range(U)]).to(rdt) for k in range(len(Fr))]
    H_st = [torch.stack([H[pq][k] for pq in pairs]).to(rdt) for k in range(len(Fr))]
    F0 = [f.detach().to(cdt if f.is_complex() else rdt) for f in F]
    return QuadraticModel(theta0, F0, D_st, H_st)


def path_derivatives(model: QuadraticModel, loss_of_front: Callable[[list[torch.Tensor]], torch.Tensor]
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """s (B, U) and K (B, U, U) of ℓ(θ̃) = loss_of_front(F̃(θ̃)) at θ̃0, by the chain rule on the model's stored
    derivatives (the values ``loss_derivatives(lambda th: loss_of_front(model(th)), θ̃0)`` gives, without
    back-propagating through the model):

        s_bu = ⟨c_b, D_ub⟩,   K_buv = ⟨(∇²L D_u)_b, D_vb⟩ + ⟨c_b, H_uvb⟩,   c = ∇_F L at F0,

    one backward pass of the loss with a graph and U double backward passes (∇²L D_u), then O(U²) contractions
    over F. ℓ must be a sum of per-example terms (its Hessian in F block diagonal over examples)."""
    leaves = [f.clone().requires_grad_(True) for f in model.F0]
    with torch.enable_grad():
        ins = [torch.view_as_complex(x) if c else x for x, c in zip(leaves, model.complex)]
        c = torch.autograd.grad(loss_of_front(ins), leaves, create_graph=True, materialize_grads=True)
    B, U = model.theta0.shape
    flat = lambda t, lead: t.reshape(*lead, -1).to(torch.float64)  # noqa: E731 (contractions in float64)
    s = sum(torch.einsum("bk,ubk->bu", flat(ci, (B,)), flat(D, (U, B))) for ci, D in zip(c, model.D))
    n_pairs = len(model.pairs)
    k2 = sum(torch.einsum("bk,pbk->bp", flat(ci, (B,)), flat(H, (n_pairs, B))) for ci, H in zip(c, model.H))
    K = torch.zeros(B, U, U, dtype=torch.float64, device=s.device)
    for i, (u, v) in enumerate(model.pairs):
        K[:, u, v] = K[:, v, u] = k2[:, i]
    if any(ci.requires_grad for ci in c):  # else L is affine in F: no ∇²L term
        for u in range(U):
            dot = sum((ci * D[u]).sum() for ci, D in zip(c, model.D))
            w = torch.autograd.grad(dot, leaves, retain_graph=u < U - 1, materialize_grads=True)  # ∇²L D_u
            K[:, u, :] += sum(torch.einsum("bk,vbk->bv", flat(wi, (B,)), flat(D, (U, B))) for wi, D in zip(w, model.D))
    dt = model.theta0.dtype
    # detached: K's second term is built from c, which carries the loss's graph; a caller keeping anything computed
    # from K (the warm-up's per-path eigenvalues) would keep every path's graph alive
    return s.detach().to(dt), K.detach().to(dt)
