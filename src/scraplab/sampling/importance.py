"""θ-importance sampling warm-up (paper §3.4; digest §1.8), generic over encoder, synth and path loss.

For path p and synth parameter u, C_{u,p} = |λ_max| of the u-slice of the path-loss Hessian w.r.t. the encoder
weights w at initialisation:  H_{u,p} v = ∂/∂w ⟨ g_u(w), v ⟩  with  g_u(w) = Σ_b s_{b,u}(w) ∂θ̃_{b,u}/∂w  and
s = ∂L^{φ_p}(D(θ̃), x)/∂θ̃ (θ̃ = E_x(w), shape (B, U)). λ_max by power iteration on Hessian-vector products
(≤ n_iter, stop when every u's Rayleigh quotient changes by < tol relatively), vectorised over u with
``is_grads_batched`` (the authors loop over u). Then  π_p = (1/U) Σ_u C_{u,p} / Σ_{p'} C_{u,p'}, optionally
π ← (1 − f)·π + f/P. Each path's random start vector is seeded from (seed, p), so sharded runs (disjoint path ranges)
give exactly the values of one full run; ``merge_shards`` joins them.
Multi-batch: ``batch_reduce='eig_mean'`` (paper: C = E_x[λ_max]) or ``'operator_mean'`` (authors' code, which
takes λ_max of the batch-summed operator; we average, which rescales every C equally).

Cost. By the chain rule H_{u,p} v = Σ_b (∂θ̃_{b,u}/∂w · v) ∇_w s_{b,u} + Σ_b s_{b,u} ∇²_w θ̃_{b,u} v with
∇_w s_{b,u} = Σ_{b',u'} (∂s_{b,u}/∂θ̃_{b',u'}) ∇_w θ̃_{b',u'}: synth and path loss enter only through s and its
Jacobian ∂s/∂θ̃ at θ̃0 = E_x(w) (no third derivative). The default ``method='local'`` therefore differentiates
synth + JTFS once per path (s with a graph, then U Hessian probes, block diagonal over examples) and runs every
power iteration through the encoder alone, on s̃(θ̃) = s0 + ∂s/∂θ̃ (θ̃ − θ̃0), which has the same value and the same
derivative at θ̃0: the operator is unchanged (float64: equal to ~1e-12 relative). ``method='direct'`` (the former
algorithm, the authors' structure) back-propagates twice through synth and JTFS in every power iteration. Measured on
the CPU-scale granular problem (B = 4, 1 thread): direct ≈ 0.4 s + 1.0–2.6 s per iteration per path, local
≈ 1.3–3.4 s per path + 0.13 s per iteration. In float32 both are limited by the rounding of the JTFS double
backward (a few % on small eigenvalues; λ of paths whose C is ~1e-3 of the largest can be off by more).
"""
from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from scraplab.sampling.sampler import _mix_seed, check_probs
from scraplab.sampling.subspace import build_projection, projected_eigenvalues
from scraplab.sampling.taylor import path_derivatives, quadratic_model

# Version of the warm-up computation, stored beside every π: a stored π is reused only by the version that made it.
# Bump it when a change alters the computed values (1: method 'local', per-path seeded starts, eig_mean).
WARMUP_VERSION = 1


def _as_batches(x, synth_kwargs):
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    if synth_kwargs is None:
        kws = [{}] * len(xs)
    elif isinstance(synth_kwargs, dict):
        kws = [synth_kwargs] * len(xs)
    else:
        kws = list(synth_kwargs)
    if not xs or len(kws) != len(xs):
        raise ValueError(f"need one synth_kwargs per batch: {len(xs)} batches, {len(kws)} kwargs")
    return xs, kws


def check_deterministic(encoder, synth_fn, x, synth_kwargs) -> bool:
    """True when encoder (in its current mode) and synth give identical outputs twice."""
    with torch.no_grad():
        a = synth_fn(encoder(x), **synth_kwargs)
        b = synth_fn(encoder(x), **synth_kwargs)
    return bool(torch.equal(a, b))


def _slice_grads_from(theta, s, params, vectorize):
    """g_u(w) = Σ_b s_{b,u} ∂θ̃_{b,u}/∂w for all u at once: list over params of (U, *param.shape), differentiable
    w.r.t. w (through ``theta`` and through ``s``, which must be a differentiable function of ``theta``)."""
    U = theta.shape[1]
    cot = torch.eye(U, dtype=theta.dtype, device=theta.device)[:, None, :] * s.unsqueeze(0)  # (U, B, U)
    if vectorize:
        return list(torch.autograd.grad(theta, params, grad_outputs=cot, is_grads_batched=True, create_graph=True,
                                        materialize_grads=True))
    per_u = [torch.autograd.grad(theta, params, grad_outputs=cot[u], create_graph=True, retain_graph=True,
                                 materialize_grads=True) for u in range(U)]
    return [torch.stack([g[i] for g in per_u]) for i in range(len(params))]


def _encode(encoder, x):
    theta = encoder(x)
    if theta.dim() != 2:
        raise ValueError(f"encoder must return (B, U), got shape {tuple(theta.shape)}")
    return theta


def _slice_grads(encoder, synth_fn, path_loss_fn, x, kw, p, params, vectorize):
    """Direct method: s = ∂L^{φ_p}(D(θ̃))/∂θ̃ with a graph through synth and path loss, so every Hessian-vector
    product differentiates the synth and the JTFS a second time."""
    theta = _encode(encoder, x)
    loss = path_loss_fn(synth_fn(theta, **kw), x, p)
    (s,) = torch.autograd.grad(loss, theta, create_graph=True)
    return _slice_grads_from(theta, s, params, vectorize)


def loss_derivatives(loss_of_theta: Callable, theta0: torch.Tensor,
                     per_example: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient and Hessian of ℓ(θ̃) = L^{φ_p}(D(θ̃), x) w.r.t. the synth parameters at θ̃0 (B, U), detached.

    Returns ``s`` (B, U) and ``K``: ``K[b, u, u'] = ∂s_{b,u}/∂θ̃_{b,u'}`` (B, U, U) when ``per_example`` (ℓ is a
    sum or mean of per-example terms and the synth renders each example on its own, so the Hessian is block
    diagonal over examples and U probes, each e_u in every example at once, give all blocks), else the full
    ``K[b, u, b', u'] = ∂s_{b,u}/∂θ̃_{b',u'}`` (B, U, B, U) from B·U probes. Rows of K are vector-Jacobian
    products of s, the same products the direct method's double backward forms. The probes run one after another,
    not under ``is_grads_batched``: vmap through the synths' and the JTFS's custom autograd Functions is not
    guaranteed to work (in-place ops in a backward), and on CPU it was no faster (1.2 s vs 1.0 s for U = 2).
    """
    th = theta0.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_of_theta(th)
        (s,) = torch.autograd.grad(loss, th, create_graph=True, materialize_grads=True)
    B, U = th.shape
    n = U if per_example else B * U
    eye = torch.eye(n, dtype=th.dtype, device=th.device)
    probes = eye[:, None, :].expand(U, B, U) if per_example else eye.reshape(n, B, U)  # (n, B, U)
    if not s.requires_grad:  # ℓ affine in θ̃ (or constant): zero Hessian
        rows = torch.zeros(n, B, U, dtype=th.dtype, device=th.device)
    else:
        rows = torch.stack([torch.autograd.grad(s, th, grad_outputs=probes[i], retain_graph=True,
                                                materialize_grads=True)[0] for i in range(n)])
    if per_example:  # rows[u, b, u'] = Σ_b'' ∂s_{b'',u}/∂θ̃_{b,u'} = ∂s_{b,u}/∂θ̃_{b,u'} (block diagonal)
        K = rows.permute(1, 0, 2)
    else:  # rows[(b,u), b', u'] = ∂s_{b,u}/∂θ̃_{b',u'}
        K = rows.reshape(B, U, B, U)
    return s.detach(), K.detach()


def _local_score(theta, s0, K):
    """s̃(θ̃) = s0 + K (θ̃ − θ̃0): equal to s at θ̃0 with the same first derivative (its value is s0 exactly, its
    vector-Jacobian products are those of s), which is all the Hessian-vector product of the u-slice uses."""
    d = theta - theta.detach()
    Kd = torch.einsum("bij,bj->bi", K, d) if K.dim() == 3 else torch.einsum("bicj,cj->bi", K, d)
    return s0 + Kd


def _hvp(gs, vs, params, vectorize):
    """H_u v_u for every u: gs, vs lists over params of (U, *shape)."""
    dot = sum((g * v).flatten(1).sum(1) for g, v in zip(gs, vs))  # (U,)
    U = dot.shape[0]
    if vectorize:
        eye = torch.eye(U, dtype=dot.dtype, device=dot.device)
        out = torch.autograd.grad(dot, params, grad_outputs=eye, is_grads_batched=True, retain_graph=True,
                                  materialize_grads=True)
        return [o.detach() for o in out]
    rows = [torch.autograd.grad(dot[u], params, retain_graph=True, materialize_grads=True) for u in range(U)]
    return [torch.stack([r[i] for r in rows]).detach() for i in range(len(params))]


def _power_iteration(apply, shapes, U, gen, n_iter, tol, dtype, device):
    """Batched power iteration over u: returns |λ| (U,) float64 and the iterations used."""
    vs = [torch.randn((U, *s), generator=gen, dtype=torch.float64).to(dtype=dtype, device=device) for s in shapes]
    norm = torch.sqrt(sum((v.double() ** 2).flatten(1).sum(1) for v in vs)).clamp_min(1e-30)
    vs = [v / norm.view(-1, *[1] * (v.dim() - 1)).to(dtype) for v in vs]
    lam_prev, it = None, 0
    for it in range(1, n_iter + 1):
        hv = apply(vs)
        lam = sum((v.double() * h.double()).flatten(1).sum(1) for v, h in zip(vs, hv))
        norm = torch.sqrt(sum((h.double() ** 2).flatten(1).sum(1) for h in hv))
        safe = norm.clamp_min(1e-30)
        vs = [h / safe.view(-1, *[1] * (h.dim() - 1)).to(h.dtype) for h in hv]
        if lam_prev is not None and bool(((lam - lam_prev).abs() <= tol * lam_prev.abs().clamp_min(1e-30)).all()):
            break
        lam_prev = lam
    return lam.abs().cpu(), it


def _lanczos(apply, shapes, U, gen, n_iter, tol, dtype, device):
    """Batched Lanczos over u (full reorthogonalisation): |λ| of the Ritz value of largest magnitude (U,) float64
    and the steps used. Same start vectors as :func:`_power_iteration`; k steps span the Krylov space that k power
    iterations explore, and the Ritz value is the best estimate in it, so fewer Hessian-vector products reach a
    given accuracy. Stops when every u's estimate changes by < tol relatively (or a Krylov space is exhausted)."""
    def dots(a, b):
        return sum((x.double() * y.double()).flatten(1).sum(1) for x, y in zip(a, b))  # (U,)

    def scale(a, c):  # a * c[u]
        return [x * c.view(-1, *[1] * (x.dim() - 1)).to(x.dtype) for x in a]

    vs = [torch.randn((U, *s), generator=gen, dtype=torch.float64).to(dtype=dtype, device=device) for s in shapes]
    vs = scale(vs, 1.0 / dots(vs, vs).sqrt().clamp_min(1e-30))
    basis, alphas, betas = [vs], [], []
    lam_prev, lam, it = None, torch.zeros(U, dtype=torch.float64), 0
    for it in range(1, n_iter + 1):
        w = apply(basis[-1])
        alpha = dots(w, basis[-1])
        alphas.append(alpha)
        for q in basis:  # full reorthogonalisation (twice is enough in floating point)
            w = [x - y for x, y in zip(w, scale(q, dots(w, q)))]
        for q in basis:
            w = [x - y for x, y in zip(w, scale(q, dots(w, q)))]
        beta = dots(w, w).sqrt()
        k = len(alphas)
        T = torch.zeros(U, k, k, dtype=torch.float64)
        idx = torch.arange(k)
        T[:, idx, idx] = torch.stack(alphas, 1)
        if betas:
            b = torch.stack(betas, 1)
            T[:, idx[:-1], idx[1:]] = b
            T[:, idx[1:], idx[:-1]] = b
        ev = torch.linalg.eigvalsh(T)  # (U, k) ascending
        lam = torch.where(ev[:, 0].abs() > ev[:, -1].abs(), ev[:, 0], ev[:, -1])
        scale_ref = ev.abs().amax(1).clamp_min(1e-30)
        exhausted = bool((beta <= 1e-10 * scale_ref).all())
        if exhausted or (lam_prev is not None and bool(((lam - lam_prev).abs() <= tol * lam_prev.abs().clamp_min(1e-30)).all())):
            break
        lam_prev = lam
        betas.append(beta)
        basis.append(scale(w, 1.0 / beta.clamp_min(1e-30)))
    return lam.abs().cpu(), it


def theta_importance(encoder: torch.nn.Module | Callable, synth_fn: Callable, path_loss_fn: Callable, x, n_paths: int,
                     synth_kwargs=None, path_range: tuple[int, int] | range | None = None, n_iter: int = 20,
                     tol: float = 1e-4, seed: int = 0, params: Sequence[torch.nn.Parameter] | None = None,
                     batch_reduce: str = "eig_mean", vectorize: bool = True, check_determinism: bool = True,
                     progress: bool = True, method: str = "local", per_example: bool = True,
                     solver: str = "power", front: tuple[Callable, Callable] | None = None,
                     front_max_bytes: int = 2 << 30, front_models: list | None = None,
                     front_dtype: torch.dtype | None = None, subspace_rank: int = 32,
                     subspace_power: int = 1, projections: list | None = None) -> torch.Tensor:
    """C_{u,p} for p in ``path_range`` (default all P; ``(start, end)`` or a ``range``): float64 (n_range, U).

    encoder(x) -> θ̃ (B, U); synth_fn(θ̃, **synth_kwargs) -> (B, 1, N); path_loss_fn(x_hat, x, p) -> scalar.
    ``x`` is one batch or a list of batches (``synth_kwargs`` then a list too, e.g. fixed seeds/shifts).
    An ``nn.Module`` encoder is put in eval mode for the computation and restored afterwards; a plain callable
    (e.g. a lambda around a module) must be deterministic itself and needs ``params``.

    ``method``: ``'local'`` (default) differentiates synth and path loss once per path and batch (s and its
    Jacobian ∂s/∂θ̃, see ``loss_derivatives``) and runs the power iteration through the encoder only;
    ``'direct'`` back-propagates through synth and path loss twice in every Hessian-vector product. Both apply the
    same operator H_{u,p} (equal up to rounding); ``'local'`` costs about one path gradient + U Hessian probes per
    path whatever ``n_iter``. ``per_example`` (``'local'`` only): the path loss is a sum/mean of per-example terms
    and the synth renders examples independently (true for every synth and loss of this package), so ∂s/∂θ̃ is
    block diagonal over examples and U probes suffice; False probes all B·U directions.
    ``solver``: ``'power'`` (the paper's power iteration, ≤ ``n_iter`` Hessian-vector products) or ``'lanczos'``
    (≤ ``n_iter`` Lanczos steps from the same start: the best estimate in the same Krylov space, so fewer steps
    reach a given accuracy) or ``'subspace'`` (``'local'``, ``per_example`` and an ``nn.Module`` encoder only; not
    with ``'operator_mean'``): the encoder's Hessians projected once per batch on a basis of ``subspace_rank``
    random directions per example and u, refined by ``subspace_power`` subspace iterations, then each path's
    |λ_max| from an m × m eigenproblem, with no Hessian-vector product per path (``subspace``; ``n_iter`` and
    ``tol`` unused; ``projections``: those of :func:`build_projections` for these batches, built beforehand).
    ``front`` (``'local'`` with ``per_example`` only): ``(front_fn, path_from_front)`` with
    ``path_loss_fn(x_hat, x, p) == path_from_front(front_fn(x_hat), x, p)``, e.g. a SCRAPL loss's
    ``first_layer`` / ``from_first_layer``. The front end of the synth's render is then replaced, per batch, by its
    quadratic Taylor model at θ̃0 (``taylor.quadratic_model``: the same s and ∂s/∂θ̃ for every path), so synth and
    first layer are differentiated once per batch instead of once per path. Batches whose model would exceed
    ``front_max_bytes`` keep the per-path computation. ``front_models``: the models of
    :func:`build_front_models` for these batches, built beforehand (a benchmark timing paths one call at a time).
    ``front_dtype``: the precision the models are built in (``front[0]`` must compute in it; the training app
    passes a float64 copy of the loss: the float32 nested derivatives round more than the per-path computation).
    """
    paths = as_path_range(path_range, n_paths)
    if n_iter < 1 or tol < 0:
        raise ValueError(f"n_iter must be >= 1 and tol >= 0, got {n_iter}, {tol}")
    if batch_reduce not in ("eig_mean", "operator_mean"):
        raise ValueError(f"batch_reduce must be 'eig_mean' or 'operator_mean', got {batch_reduce!r}")
    if method not in ("local", "direct"):
        raise ValueError(f"method must be 'local' or 'direct', got {method!r}")
    if solver not in ("power", "lanczos", "subspace"):
        raise ValueError(f"solver must be 'power', 'lanczos' or 'subspace', got {solver!r}")
    if solver == "subspace" and (method != "local" or not per_example or batch_reduce != "eig_mean"
                                 or not isinstance(encoder, torch.nn.Module)):
        raise ValueError("solver='subspace' needs method='local', per_example=True, batch_reduce='eig_mean' and an "
                         "nn.Module encoder")
    eig = _power_iteration if solver == "power" else _lanczos
    xs, kws = _as_batches(x, synth_kwargs)
    module = encoder if isinstance(encoder, torch.nn.Module) else None  # a plain callable manages its own mode
    if params is None and module is None:
        raise ValueError("pass params= when the encoder is not an nn.Module")
    params = list(params) if params is not None else [q for q in module.parameters() if q.requires_grad]
    if not params:
        raise ValueError("the encoder has no trainable parameters")
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    try:
        if check_determinism and not check_deterministic(encoder, synth_fn, xs[0], kws[0]):
            raise RuntimeError("encoder/synth are not deterministic: fix the synth seeds (synth_kwargs) and use "
                               "eval mode, or θ-IS values are noise")
        shapes = [tuple(q.shape) for q in params]
        dtype, device = params[0].dtype, params[0].device
        use_front = front is not None and method == "local" and per_example
        if not use_front:
            models = [None] * len(xs)
        elif front_models is not None:
            if len(front_models) != len(xs):
                raise ValueError(f"front_models has {len(front_models)} models for {len(xs)} batches")
            models = list(front_models)
        else:
            t0 = time.perf_counter()
            models = build_front_models(encoder, synth_fn, xs, kws, front[0], front_max_bytes, front_dtype)
            if progress:
                n_ok = sum(m is not None for m in models)
                tqdm.write(f"θ-IS: first layer modelled once for {n_ok} of {len(models)} batch(es) in "
                           f"{time.perf_counter() - t0:.1f} s ({sum(m.nbytes for m in models if m) / 2**20:.0f} MiB)"
                           + ("" if n_ok == len(models) else f"; the others exceed {front_max_bytes / 2**30:g} GiB"
                                                                " and are differentiated per path"))

        def derivatives(b, p, theta0=None):  # s0, K of path p on batch b at θ̃0 (method 'local')
            xb, kw = xs[b], kws[b]
            if models[b] is not None:  # from the shared model by the chain rule: the path stage only
                return path_derivatives(models[b], lambda F: front[1](F, xb, p))
            if theta0 is None:
                with torch.no_grad():
                    theta0 = _encode(encoder, xb)
            return loss_derivatives(lambda th: path_loss_fn(synth_fn(th, **kw), xb, p), theta0, per_example)

        def slice_grads(b, p):
            """Method 'local': synth and path loss enter H_{u,p} v only through s and ∂s/∂θ̃ at θ̃0 (the chain rule
            stops there: no third derivative), so they are differentiated once per path and every Hessian-vector
            product runs through the encoder alone. Same operator as ``_slice_grads`` (method 'direct')."""
            if method == "direct":
                return _slice_grads(encoder, synth_fn, path_loss_fn, xs[b], kws[b], p, params, vectorize)
            theta = _encode(encoder, xs[b])
            s0, K = derivatives(b, p, theta)
            return _slice_grads_from(theta, _local_score(theta, s0, K), params, vectorize)

        if solver != "subspace":
            projections = None
        elif projections is not None:
            if len(projections) != len(xs):
                raise ValueError(f"projections has {len(projections)} entries for {len(xs)} batches")
        else:
            t0 = time.perf_counter()
            projections = build_projections(module, xs, params, subspace_rank, subspace_power, seed)
            if progress:
                tqdm.write(f"θ-IS: encoder Hessians projected for {len(xs)} batch(es) in "
                           f"{time.perf_counter() - t0:.1f} s ({sum(q.nbytes for q in projections) / 2**20:.0f} MiB)")

        rows = []
        for p in tqdm(paths, desc="θ-IS paths", disable=not progress):
            if projections is not None:
                lam = torch.stack([projected_eigenvalues(projections[b], *derivatives(b, p))
                                   for b in range(len(xs))]).mean(0)
                rows.append(lam.to(torch.float64))
                continue
            gen = torch.Generator().manual_seed(_mix_seed(seed, p))
            gss = [slice_grads(b, p) for b in range(len(xs))] if batch_reduce == "operator_mean" else None
            if gss is not None:
                apply = lambda vs: [torch.stack(h).mean(0) for h in
                                    zip(*[_hvp(gs, vs, params, vectorize) for gs in gss])]
                lam, _ = eig(apply, shapes, gss[0][0].shape[0], gen, n_iter, tol, dtype, device)
            else:
                lams = []
                for b in range(len(xs)):
                    gs = slice_grads(b, p)
                    lam_b, _ = eig(lambda vs: _hvp(gs, vs, params, vectorize), shapes,
                                   gs[0].shape[0], gen, n_iter, tol, dtype, device)
                    lams.append(lam_b)
                lam = torch.stack(lams).mean(0)
            rows.append(lam.to(torch.float64))
        return torch.stack(rows)
    finally:
        if module is not None:
            module.train(was_training)


def build_projections(encoder: torch.nn.Module, x, params: Sequence[torch.nn.Parameter] | None = None,
                      rank: int = 32, power: int = 1, seed: int = 0) -> list:
    """Per batch, the projected encoder Hessians of solver ``'subspace'`` (``subspace.build_projection``), seeded
    from (``seed``, batch index) so that every shard builds the same ones. The encoder must be in the mode the
    warm-up uses (eval)."""
    params = list(params) if params is not None else [q for q in encoder.parameters() if q.requires_grad]
    xs = x if isinstance(x, (list, tuple)) else [x]
    return [build_projection(encoder, params, xb, rank, power, torch.Generator().manual_seed(_mix_seed(seed, -2 - b)))
            for b, xb in enumerate(xs)]


def shared_first_layer(loss) -> tuple[Callable, Callable]:
    """``front`` for :func:`theta_importance` from a loss with ``first_layer`` / ``from_first_layer`` (SCRAPL): the
    models are built from a float64 copy of the loss, made on first use (pass ``front_dtype=torch.float64``)."""
    copies = []

    def first_layer(x_hat):
        if not copies:
            copies.append(copy.deepcopy(loss).double())
        return copies[0].first_layer(x_hat)

    return first_layer, lambda U1, x, p: loss.from_first_layer(U1, x, [p])


def build_front_models(encoder, synth_fn, x, synth_kwargs, front_fn, max_bytes: int | None = 2 << 30,
                       compute_dtype: torch.dtype | None = None) -> list:
    """Per batch, the quadratic model of ``front_fn(synth_fn(θ̃))`` at the encoder's θ̃0 (None where it would exceed
    ``max_bytes``), for ``theta_importance(front=..., front_models=...)``. The encoder must be in the mode the
    warm-up uses (eval for an ``nn.Module``). ``compute_dtype``: see ``taylor.quadratic_model`` (``front_fn`` and
    the synth must then compute in it)."""
    models = []
    for xb, kw in zip(*_as_batches(x, synth_kwargs)):
        with torch.no_grad():
            theta0 = _encode(encoder, xb)
        models.append(quadratic_model(lambda th: front_fn(synth_fn(th, **kw)), theta0, max_bytes, compute_dtype))
    return models


def probs_from_values(vals: torch.Tensor, min_prob_frac: float = 0.0, eps: float = 1e-12) -> torch.Tensor:
    """π (P,) float64 from C (P, U): per-u normalisation across paths, mean over u, uniform floor f."""
    if not 0.0 <= min_prob_frac < 1.0:
        raise ValueError(f"min_prob_frac must be in [0, 1), got {min_prob_frac}")
    c = torch.as_tensor(vals, dtype=torch.float64)
    if c.dim() != 2 or not torch.isfinite(c).all() or (c < 0).any():
        raise ValueError("θ-IS values must be a finite non-negative (P, U) tensor")
    c = c.clamp_min(eps)
    pi = (c / c.sum(0, keepdim=True)).mean(1)
    pi = (1.0 - min_prob_frac) * pi + min_prob_frac / c.shape[0]
    return check_probs(pi, c.shape[0])


def as_path_range(path_range, n_paths: int) -> range:
    """The paths of ``theta_importance(path_range=...)``: None (all), ``(start, end)`` or a ``range`` (a step
    interleaves shards, see ``scraplab.cli.warmup.shard_paths``); ValueError unless it is non-empty and inside
    [0, n_paths)."""
    if path_range is None:
        return range(n_paths)
    if isinstance(path_range, range):
        paths = path_range
    elif len(path_range) == 2:
        paths = range(int(path_range[0]), int(path_range[1]))
    else:
        paths = range(0)  # refused below
    if len(paths) == 0 or paths.step < 1 or paths[0] < 0 or paths[-1] >= n_paths:
        raise ValueError(f"path_range must be (start, end) with 0 <= start < end <= n_paths={n_paths}, or a "
                         f"non-empty increasing range inside [0, {n_paths}), got {path_range!r}")
    return paths


def save_shard(file, vals: torch.Tensor, path_range, n_paths: int, settings: dict) -> Path:
    """Write one shard's values with its paths (``(start, end)`` or a ``range``) and the settings that produced
    them."""
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    paths = as_path_range(path_range, n_paths)
    if vals.shape[0] != len(paths):
        raise ValueError(f"{file}: {vals.shape[0]} rows of values for {len(paths)} paths")
    torch.save({"vals": vals.to(torch.float64), "start": paths.start, "end": paths.stop, "step": paths.step,
                "n_paths": int(n_paths), "settings": json.dumps(settings, sort_keys=True)}, file)
    return file


def merged_values(files: Sequence, settings: dict | None = None) -> torch.Tensor:
    """C (P, U) from shard files whose paths must cover [0, P) exactly once, with identical settings (equal to
    ``settings``, the record of :func:`warmup_record`, when given)."""
    shards = [(Path(f), torch.load(Path(f), weights_only=True)) for f in files]
    if not shards:
        raise ValueError("no θ-IS shard files given")
    if settings is not None:
        other = [str(f) for f, s in shards if json.loads(s["settings"]) != settings]
        if other:
            raise ValueError(f"θ-IS shards computed with other settings than the ones asked for: {other}")
    if len({(s["n_paths"], s["settings"]) for _, s in shards}) != 1:
        raise ValueError("θ-IS shards were made with different settings or n_paths")
    n_paths, U = shards[0][1]["n_paths"], shards[0][1]["vals"].shape[1]
    vals = torch.zeros(n_paths, U, dtype=torch.float64)
    count = torch.zeros(n_paths, dtype=torch.long)
    for f, s in shards:
        idx = torch.arange(s["start"], s["end"], s.get("step", 1))  # files without a step are contiguous
        if idx.numel() != s["vals"].shape[0]:
            raise ValueError(f"{f}: {s['vals'].shape[0]} rows of values for {idx.numel()} paths")
        vals[idx] = s["vals"]
        count[idx] += 1
    if (count != 1).any():
        def listed(mask):  # the first 10 paths where mask holds
            ix = torch.nonzero(mask)[:, 0].tolist()
            return f"{ix[:10]}{'…' if len(ix) > 10 else ''}"
        raise ValueError(f"θ-IS shards do not tile the {n_paths} paths: missing {listed(count == 0)}, "
                         f"more than once {listed(count > 1)}")
    return vals


def merge_shards(files: Sequence, min_prob_frac: float = 0.0) -> torch.Tensor:
    """π from shard files whose paths must cover [0, P) exactly once with identical settings."""
    return probs_from_values(merged_values(files), min_prob_frac)


def warmup_record(settings: dict, n_paths: int, n_examples: int, n_iter: int = 20, tol: float = 1e-4, seed: int = 0,
                  min_prob_frac: float = 0.0, batch_reduce: str = "eig_mean", solver: str = "power",
                  shared_front: bool = False, subspace_rank: int = 32, subspace_power: int = 1) -> dict:
    """The settings stored beside π (problem ``settings`` plus the numeric warm-up settings), JSON-normalised.
    Settings added later are recorded only when they differ from the former computation, so the records of π
    made before them stay as they were."""
    from scraplab import __version__

    full = {**settings, "n_paths": int(n_paths), "n_iter": int(n_iter), "tol": float(tol), "seed": int(seed),
            "min_prob_frac": float(min_prob_frac), "batch_reduce": batch_reduce, "n_examples": int(n_examples),
            **({} if solver == "power" else {"solver": solver}),
            **({"subspace_rank": int(subspace_rank), "subspace_power": int(subspace_power)}
               if solver == "subspace" else {}),
            **({"first_layer": "shared"} if shared_front else {}),  # θ-IS `front`: same operator, other rounding
            "code_version": {"warmup": WARMUP_VERSION, "scraplab": __version__}}
    return json.loads(json.dumps(full, sort_keys=True, default=str))


def store_probs(folder, name: str, record: dict, probs: torch.Tensor, vals: torch.Tensor | None = None) -> Path:
    """Write ``<folder>/<name>.pt`` (π), ``.vals.pt`` (C, if given) and ``.json`` (record, entropy summary)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pt = folder / f"{name}.pt"
    torch.save(probs, pt)
    if vals is not None:
        torch.save(vals, folder / f"{name}.vals.pt")
    n_paths = probs.shape[0]
    ent = float(-(probs * probs.clamp_min(1e-300).log()).sum())
    (folder / f"{name}.json").write_text(json.dumps(
        {"settings": record, "probs_file": pt.name, "effective_paths": math.exp(ent),
         "max_over_uniform": float(probs.max() * n_paths)}, indent=2, sort_keys=True))
    return pt


def load_or_compute(name: str, settings: dict, encoder, synth_fn, path_loss_fn, x, n_paths: int, synth_kwargs=None,
                    n_iter: int = 20, tol: float = 1e-4, seed: int = 0, min_prob_frac: float = 0.0,
                    batch_reduce: str = "eig_mean", root=None, progress: bool = True, wait_s: float | None = None,
                    solver: str = "power", **kw) -> torch.Tensor:
    """π from ``<root>/theta_is/<name>.pt`` when its ``.json`` records the same settings (and code version), else
    computed and stored.

    ``settings`` must identify the problem (synth, loss/JTFS config, encoder init seed, data seed, ...); the numeric
    warm-up settings, the example count and the code version are added here. ``root`` defaults to
    ``scraplab.locations.data_dir()``. ``wait_s``: never compute, wait up to that many seconds for another process
    (DDP rank 0) to store π, then raise ``TimeoutError``.
    """
    from scraplab.locations import data_dir

    folder = Path(root) if root is not None else data_dir() / "theta_is"
    n_ex = sum(int(b.shape[0]) for b in _as_batches(x, synth_kwargs)[0])
    full = warmup_record(settings, n_paths, n_ex, n_iter, tol, seed, min_prob_frac, batch_reduce, solver,
                         shared_front=kw.get("front") is not None, subspace_rank=kw.get("subspace_rank", 32),
                         subspace_power=kw.get("subspace_power", 1))
    pt, meta = folder / f"{name}.pt", folder / f"{name}.json"

    def stored() -> torch.Tensor | None:
        if pt.exists() and meta.exists() and json.loads(meta.read_text()).get("settings") == full:
            return check_probs(torch.load(pt, weights_only=True), n_paths)
        return None

    if wait_s is not None:
        deadline = time.monotonic() + float(wait_s)
        while (probs := stored()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"θ-IS: no π with this run's settings appeared at {pt} within {wait_s:g} s "
                                   "(it is computed by rank 0)")
            time.sleep(0.2)
        return probs
    probs = stored()
    if probs is not None:
        return probs
    vals = theta_importance(encoder, synth_fn, path_loss_fn, x, n_paths, synth_kwargs=synth_kwargs, n_iter=n_iter,
                            tol=tol, seed=seed, batch_reduce=batch_reduce, progress=progress, solver=solver, **kw)
    probs = probs_from_values(vals, min_prob_frac)
    store_probs(folder, name, full, probs, vals)
    return probs
