"""𝒫-Adam + 𝒫-SAGA + SGD as one resumable ``torch.optim.Optimizer`` (paper §3.2–3.3, Algorithm 1).

Per path p (0 ≤ p < P) and per parameter tensor w of shape S the optimizer keeps
``m`` (P, *S), ``v`` (P, *S) (𝒫-Adam moments), optionally ``g_hat`` (P, *S) (𝒫-SAGA memory) and a float64
running sum ``saga_sum`` (*S) = Σ_{γ∈Γ} ĝ_γ; shared across parameters: last visit ``tau`` (P,) int64, the
visited set Γ as ``visited`` (P,) bool and the visit clock ``n_visits``.

Update at step k with drawn path p and (all-reduced, ``grad_mult``-scaled) gradient g — paper Algorithm 1:
    m_p ← β1^{(k−τ_p)/P} m_p + (1 − β1^{(k−τ_p)/P}) g,   v_p likewise with β2 and g⊙g
    g_cur = m̂ / sqrt(ε + v̂)   (paper, default)  or  m̂ / (sqrt(v̂) + ε)  (authors' code, ``eps_inside_sqrt=False``)
            with m̂ = m_p / (1 − β1^{k/P}), v̂ = v_p / (1 − β2^{k/P});  τ_p ← k
    g_SAGA = g_cur − ĝ_p + Σ_{γ∈Γ} ĝ_γ / D,  D = max(1, |Γ|) (paper) or max(1, |Γ ∪ {p}| − 1) (code)
    w ← w − lr·(g_SAGA + weight_decay·w)          (plain SGD with weight decay);  ĝ_p ← g_cur, Γ ← Γ ∪ {p}.

Path budget k > 1 (several distinct paths averaged in one backward pass): the clock counts *path visits*, so a
step with B paths advances it by B and a path is on average revisited every P/B steps, as with B = 1. Every drawn
path's slot is updated with the same (averaged) gradient; g_cur and the SAGA correction are the means over the drawn
paths: g_SAGA = mean_i (g_cur,i − ĝ_{p_i}) + Σ_{γ∈Γ} ĝ_γ / D. With B = 1 this is exactly the paper.

Memory (per-path state is 3·P·|w| floats in the authors' code):
* ``saga_memory='auto'`` (default) does not store ĝ when 𝒫-Adam is on: ĝ_p is a deterministic function of the
  stored (m_p, v_p, τ_p), which only change when p is visited, so it is recomputed bit-identically (2·P·|w|).
* ``state_dtype`` ('float32' | 'bfloat16' | 'float16') stores the tables in reduced precision; arithmetic is fp32 and
  g_cur is computed from the *stored* moments so the SAGA sum stays consistent with what is recomputed later.
* ``factored_v=True`` (beyond the paper) keeps v_p of every ≥2-D tensor as Adafactor-style row/column statistics
  (R_i = mean_j g²_ij, C_j = mean_i g²_ij, both with the path-wise decay), v̂ = R Cᵀ / mean(R): v costs ~nothing.
* param group key ``per_path=False``: that group gets shared (standard, path-agnostic) Adam moments and no SAGA.
* ``shared_v=True`` (beyond the paper, a diagnostic): per-path first moments m_p but one second moment v for all
  paths, updated at every step with the drawn path's g⊙g (standard Adam clock, bias 1 − β2^steps). The drawn path's
  step is m̂_p / sqrt(ε + v̂): a path with small gradients takes a small step, as under AdamW, instead of the unit-size
  step the per-path v_p gives it. ĝ_p then depends on v at p's last visit, so 𝒫-SAGA stores ĝ (saga_memory 'table').
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch.optim import Optimizer

_DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _as_dtype(d) -> torch.dtype | None:
    """None (= the parameter's dtype), a torch dtype or its name."""
    if d is None or d == "param":
        return None
    if isinstance(d, torch.dtype) and d in _DTYPES.values():
        return d
    if isinstance(d, str) and d.replace("torch.", "") in _DTYPES:
        return _DTYPES[d.replace("torch.", "")]
    raise ValueError(f"state_dtype must be one of {sorted(_DTYPES)}, got {d!r}")


def _dtype_name(d) -> str | None:
    dt = _as_dtype(d)
    return None if dt is None else str(dt).replace("torch.", "")


class NonFiniteStateError(FloatingPointError):
    """A step left NaN/Inf in the weights or in the optimizer state of the drawn paths (e.g. ``grad_mult`` so
    large that g² overflows the state dtype); raised before anything is checkpointed."""


class PathAdamSaga(Optimizer):
    """Path-wise Adam and SAGA followed by SGD with weight decay (see the module docstring for the exact rules).

    Args:
        params: parameters or param groups (group keys: lr, weight_decay, grad_mult, state_dtype, per_path).
        n_paths: P, the number of scattering paths.
        p_adam / p_saga: switch each stabiliser (both off = SGD with ``grad_mult``).
        eps_inside_sqrt: True = paper (ε inside the root), False = authors' code / torch.optim.Adam.
        saga_divisor: 'paper' (|Γ|) or 'code' (|Γ ∪ {p}| − 1).
        state_dtype: None (= parameter dtype), 'float32', 'bfloat16' or 'float16' (per group too).
        saga_memory: 'auto' (recompute ĝ from the moments when 𝒫-Adam is on), 'table' (store ĝ, paper/code).
        factored_v: rank-1 (row/column) per-path second moments for ≥2-D tensors (memory saver, beyond the paper).
        grad_mult: gradient multiplier applied before everything (authors: 1e8 granular/chirplet, 1 for 808).
    Call ``set_paths(paths)`` before every ``step()``.

    Every step checks that the weights and the drawn paths' state stayed finite. That check synchronises with the
    device; with ``defer_finite_check = True`` (set by the training module on accelerators) the steps only
    accumulate a device-side flag, and :meth:`raise_if_nonfinite` checks it (the module calls it every few steps
    and before any checkpoint).
    """

    def __init__(self, params: Iterable, n_paths: int, lr: float = 1e-4, weight_decay: float = 0.0,
                 betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8, p_adam: bool = True, p_saga: bool = True,
                 grad_mult: float = 1.0, eps_inside_sqrt: bool = True, saga_divisor: str = "paper",
                 saga_memory: str = "auto", state_dtype=None, per_path: bool = True, factored_v: bool = False,
                 shared_v: bool = False):
        if int(n_paths) < 1:
            raise ValueError(f"n_paths must be >= 1, got {n_paths}")
        if lr < 0 or weight_decay < 0 or eps < 0:
            raise ValueError(f"lr, weight_decay and eps must be >= 0, got {lr}, {weight_decay}, {eps}")
        betas = tuple(float(b) for b in betas)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
        if saga_divisor not in ("paper", "code"):
            raise ValueError(f"saga_divisor must be 'paper' or 'code', got {saga_divisor!r}")
        if saga_memory not in ("auto", "table"):
            raise ValueError(f"saga_memory must be 'auto' or 'table', got {saga_memory!r}")
        if grad_mult <= 0:
            raise ValueError(f"grad_mult must be > 0, got {grad_mult}")
        _as_dtype(state_dtype)
        if shared_v and (factored_v or not p_adam):
            raise ValueError("shared_v needs p_adam=True and factored_v=False")
        self.n_paths = int(n_paths)
        self.p_adam, self.p_saga = bool(p_adam), bool(p_saga)
        self.betas, self.eps, self.eps_inside_sqrt = betas, float(eps), bool(eps_inside_sqrt)
        self.saga_divisor = saga_divisor
        self.shared_v = bool(shared_v)
        self.recompute_saga = self.p_adam and saga_memory == "auto" and not self.shared_v
        self.factored_v = bool(factored_v)
        defaults = dict(lr=lr, weight_decay=weight_decay, grad_mult=grad_mult,
                        state_dtype=_dtype_name(state_dtype), per_path=bool(per_path))
        super().__init__(params, defaults)
        self._tau = torch.zeros(self.n_paths, dtype=torch.int64)
        self._visited = torch.zeros(self.n_paths, dtype=torch.bool)
        self._n_visits = 0  # the paper's k, counted in path visits (k > 1 budgets advance it by k)
        self._n_steps = 0   # optimizer steps, the clock of the shared (per_path=False) Adam state
        self._paths: list[int] | None = None
        self.defer_finite_check = False
        self._nonfinite: torch.Tensor | None = None  # device flag of deferred checks
        self._unchecked_from: int | None = None

    def raise_if_nonfinite(self) -> None:
        """Check the deferred flag (one device sync); raise :class:`NonFiniteStateError` if a step went bad."""
        flag, first, self._nonfinite, self._unchecked_from = self._nonfinite, self._unchecked_from, None, None
        if flag is not None and bool(flag):
            raise NonFiniteStateError(
                f"non-finite weights or optimizer state after an optimizer step between {first} and {self._n_steps} "
                f"(grad_mult={self.param_groups[0]['grad_mult']:g}): lower optim.grad_mult or optim.lr")

    # ----------------------------------------------------------------------------------------------- paths
    def set_paths(self, paths) -> None:
        """Declare the distinct path index(es) whose (averaged) loss produced the gradients of the next step."""
        paths = [int(paths)] if isinstance(paths, int) else [int(p) for p in paths]
        if not paths:
            raise ValueError("set_paths needs at least one path")
        if len(set(paths)) != len(paths):
            raise ValueError(f"paths must be distinct, got {paths}")
        bad = [p for p in paths if not 0 <= p < self.n_paths]
        if bad:
            raise ValueError(f"path indices {bad} outside [0, {self.n_paths})")
        self._paths = paths

    # ----------------------------------------------------------------------------------------------- state
    def _spec(self, p: torch.Tensor, group: dict) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """Shapes and dtypes of the state of one parameter (used for allocation and ``state_bytes``)."""
        shape, dt = tuple(p.shape), _as_dtype(group["state_dtype"]) or p.dtype
        if not group["per_path"]:
            return {"m": (shape, dt), "v": (shape, dt)} if self.p_adam else {}
        spec, P = {}, (self.n_paths, *shape)
        if self.p_adam:
            spec["m"] = (P, dt)
            if self.shared_v:
                spec["v"] = (shape, dt)  # one v for every path
            elif self.factored_v and len(shape) >= 2:  # Adafactor-style rank-1 v_p: rows (P, S0), cols (P, ∏S1:)
                spec.update(v_row=((self.n_paths, shape[0]), dt), v_col=((self.n_paths, math.prod(shape[1:])), dt))
            else:
                spec["v"] = (P, dt)
        if self.p_saga:
            if not self.recompute_saga:
                spec["g_hat"] = (P, dt)
            spec["saga_sum"] = (shape, torch.float64)  # float64 so the running sum does not drift
        return spec

    def _state_for(self, p: torch.Tensor, group: dict) -> dict:
        st = self.state[p]
        if not st:
            for name, (shape, dt) in self._spec(p, group).items():
                st[name] = torch.zeros(shape, dtype=dt, device=p.device)
        return st

    def state_bytes(self) -> int:
        """Bytes of the optimizer state (per-path tables + running sums + path counters), allocated or planned."""
        total = self._tau.numel() * 8 + self._visited.numel()
        for group in self.param_groups:
            for p in group["params"]:
                for shape, dt in self._spec(p, group).values():
                    total += math.prod(shape) * torch.empty((), dtype=dt).element_size()
        return total

    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["path_state"] = {"tau": self._tau.clone(), "visited": self._visited.clone(),
                            "n_visits": self._n_visits, "n_steps": self._n_steps, "n_paths": self.n_paths}
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        sd = dict(state_dict)
        ps = sd.pop("path_state", None)
        if ps is None or int(ps["n_paths"]) != self.n_paths:
            raise ValueError(f"state_dict has no path_state for n_paths={self.n_paths}")
        saved = sd["state"]
        super().load_state_dict(sd)
        # torch casts floating state to the parameter dtype; restore the stored dtypes (bf16 tables, fp64 sums).
        ids = [i for g in sd["param_groups"] for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        for i, p in zip(ids, params):
            if i in saved:
                self.state[p] = {k: v.to(device=p.device, copy=True) for k, v in saved[i].items()}
        self._tau = ps["tau"].clone().to(torch.int64)
        self._visited = ps["visited"].clone().to(torch.bool)
        self._n_visits, self._n_steps = int(ps["n_visits"]), int(ps["n_steps"])

    # ----------------------------------------------------------------------------------------------- maths
    def _precondition(self, m, v, t, t_v=None) -> torch.Tensor:
        """g_cur = m̂ / sqrt(ε + v̂) (paper) or m̂ / (sqrt(v̂) + ε) (code); t = clock in units of P (k/P), (B,);
        ``t_v``: v's own clock when it is not t (``shared_v``: optimizer steps)."""
        b1, b2 = self.betas
        shape = (-1,) + (1,) * (m.dim() - 1)
        t_v = t if t_v is None else t_v
        bc1 = (1.0 - torch.pow(torch.tensor(b1, dtype=torch.float64), t)).to(device=m.device, dtype=m.dtype).view(shape)
        bc2 = (1.0 - torch.pow(torch.tensor(b2, dtype=torch.float64), t_v)).to(device=m.device, dtype=m.dtype).view(shape)
        v_hat = v / bc2
        denom = (v_hat + self.eps).sqrt() if self.eps_inside_sqrt else v_hat.sqrt() + self.eps
        return (m / bc1) / denom

    @staticmethod
    def _read_v(tables: dict, idx, dtype, shape) -> torch.Tensor:
        """v rows ``idx`` as (B, *shape); factored: v_ij = R_i C_j / mean(R) (exact when g⊙g is rank 1)."""
        if "v" in tables:
            return tables["v"].index_select(0, idx).to(dtype)
        row = tables["v_row"].index_select(0, idx).to(dtype)  # (B, S0)
        col = tables["v_col"].index_select(0, idx).to(dtype)  # (B, ∏S1:)
        v = row.unsqueeze(2) * col.unsqueeze(1) / row.mean(1).clamp_min(1e-38).view(-1, 1, 1)
        return v.reshape(len(idx), *shape)

    def _adam(self, tables: dict, idx, g, decay_t, t_now):
        """Update moments of rows ``idx`` with gradient g (decay exponents ``decay_t`` (B,), float64) and return
        g_cur (B, *S) computed from the stored (possibly rounded) moments."""
        m_store = tables["m"]
        b1, b2 = self.betas
        shape = (-1,) + (1,) * g.dim()
        d1 = torch.pow(torch.tensor(b1, dtype=torch.float64), decay_t).to(device=g.device, dtype=g.dtype).view(shape)
        d2 = torch.pow(torch.tensor(b2, dtype=torch.float64), decay_t).to(device=g.device, dtype=g.dtype).view(shape)
        m = m_store.index_select(0, idx).to(g.dtype)
        m = d1 * m + (1 - d1) * g
        m_store.index_copy_(0, idx, m.to(m_store.dtype))
        if self.shared_v and tables["v"].dim() == g.dim():  # per-path m, one v (*S) on the optimizer-step clock
            v = b2 * tables["v"].to(g.dtype) + (1 - b2) * (g * g)
            tables["v"].copy_(v.to(tables["v"].dtype))
            m = m_store.index_select(0, idx).to(g.dtype)
            v = tables["v"].to(g.dtype).unsqueeze(0).expand_as(m)
            return self._precondition(m, v, t_now.expand(len(idx)),
                                      torch.tensor([float(self._n_steps)], dtype=torch.float64).expand(len(idx)))
        if "v" in tables:
            v = d2 * tables["v"].index_select(0, idx).to(g.dtype) + (1 - d2) * (g * g)
            tables["v"].index_copy_(0, idx, v.to(tables["v"].dtype))
        else:
            g2, d2 = (g * g).reshape(g.shape[0], -1), d2.view(-1, 1)
            for name, stat in (("v_row", g2.mean(1)), ("v_col", g2.mean(0))):
                new = d2 * tables[name].index_select(0, idx).to(g.dtype) + (1 - d2) * stat
                tables[name].index_copy_(0, idx, new.to(tables[name].dtype))
        m = m_store.index_select(0, idx).to(g.dtype)
        v = self._read_v(tables, idx, g.dtype, g.shape)
        return self._precondition(m, v, t_now.expand(len(idx)))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        paths = self._paths
        needs_paths = any(g["per_path"] for g in self.param_groups) and (self.p_adam or self.p_saga)
        if needs_paths and paths is None:
            raise RuntimeError("PathAdamSaga.step() called without set_paths(paths) for this step")
        paths = paths or [0]
        B, P = len(paths), self.n_paths
        idx = torch.tensor(paths, dtype=torch.int64)
        k = self._n_visits + B
        t_now = torch.tensor([k / P], dtype=torch.float64)
        decay_t = (k - self._tau[idx]).to(torch.float64) / P
        tau_old = self._tau[idx].to(torch.float64) / P
        seen_before = self._visited[idx]
        n_seen = int(self._visited.sum())
        if self.saga_divisor == "paper":
            div = max(1, n_seen)
        else:
            div = max(1, n_seen + int((~seen_before).sum()) - 1)
        self._n_steps += 1
        touched: list[torch.Tensor] = []
        for group in self.param_groups:
            lr, wd, mult = group["lr"], group["weight_decay"], group["grad_mult"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("PathAdamSaga does not support sparse gradients")
                st = self._state_for(p, group)
                cdt = torch.promote_types(p.dtype, torch.float32)
                g = p.grad.to(cdt) * mult if mult != 1.0 else p.grad.to(cdt)
                if not group["per_path"]:
                    direction = g
                    if self.p_adam:
                        one = torch.tensor([1.0], dtype=torch.float64)
                        direction = self._adam({"m": st["m"].unsqueeze(0), "v": st["v"].unsqueeze(0)},
                                               torch.zeros(1, dtype=torch.int64, device=p.device), g, one,
                                               torch.tensor([float(self._n_steps)], dtype=torch.float64))[0]
                    p.add_(direction + wd * p if wd else direction, alpha=-lr)
                    touched.extend([p, *st.values()])
                    continue
                dev_idx = idx.to(p.device)
                old = None
                if self.p_saga and self.recompute_saga:
                    # ĝ_p = g_cur at p's last visit, a function of (m_p, v_p, τ_p) read *before* they change
                    old = torch.zeros((B, *g.shape), dtype=cdt, device=p.device)
                    seen = seen_before.to(p.device)
                    if bool(seen.any()):
                        sel = dev_idx[seen]
                        old[seen] = self._precondition(st["m"].index_select(0, sel).to(cdt),
                                                       self._read_v(st, sel, cdt, g.shape), tau_old[seen_before])
                if self.p_adam:
                    g_cur = self._adam(st, dev_idx, g, decay_t, t_now)  # (B, *S)
                else:
                    g_cur = g.unsqueeze(0).expand(B, *g.shape)
                direction = g_cur.mean(0)
                if self.p_saga:
                    if self.recompute_saga:
                        new = g_cur
                    else:
                        old = st["g_hat"].index_select(0, dev_idx).to(cdt)
                        st["g_hat"].index_copy_(0, dev_idx, g_cur.to(st["g_hat"].dtype))
                        new = st["g_hat"].index_select(0, dev_idx).to(cdt)
                    avg = (st["saga_sum"] / div).to(cdt)
                    direction = (g_cur - old).mean(0) + avg
                    st["saga_sum"].add_((new.to(torch.float64) - old.to(torch.float64)).sum(0))
                p.add_(direction + wd * p if wd else direction, alpha=-lr)
                touched.append(p)  # and the drawn rows of the per-path tables; saga_sum (and a shared v) is one tensor
                whole = ("saga_sum", "v") if self.shared_v else ("saga_sum",)
                touched.extend(t if name in whole else t.index_select(0, dev_idx) for name, t in st.items())
        # One device sync per step (unless deferred): non-finite state must not be carried on (or checkpointed).
        if touched and self.defer_finite_check:
            bad = ~torch.stack([torch.isfinite(t).all() for t in touched]).all()
            self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
            self._unchecked_from = self._n_steps if self._unchecked_from is None else self._unchecked_from
        elif touched and not bool(torch.stack([torch.isfinite(t).all() for t in touched]).all()):
            raise NonFiniteStateError(
                f"non-finite weights or optimizer state after optimizer step {self._n_steps} (path(s) {paths}, "
                f"grad_mult={self.param_groups[0]['grad_mult']:g}): lower optim.grad_mult or optim.lr")
        if needs_paths:
            self._tau[idx] = k
            self._visited[idx] = True
            self._n_visits = k
        self._paths = None
        return loss
