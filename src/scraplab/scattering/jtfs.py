"""``JTFS``: the joint time-frequency scattering transform as an ``nn.Module``, one path or all of them.

Coefficient for coefficient the joint-format output of kymatio main's ``TimeFrequencyScattering`` (orders 1 and 2,
``format="joint"``, ``out_type="array"``), restricted by default to the second-order paths that SCRAPL samples
(paper §4.1: P = 315 for J=12, Q=(8, 2), J_fr=3, Q_fr=2; P = 483 for J_fr=5, T=2048, F=1).
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from . import core
from .first_layer import Bands, first_layer
from .filterbank import (
    decimation_operator,
    frequential_filterbanks,
    frequential_operator,
    frequential_padding,
    time_filterbanks,
    time_padding,
)
from .paths import PathMeta, enumerate_paths
from .second_layer import BandFold, HalfBand, second_layer


SUPPORT_TOL = 1e-30  # filter taps below this fraction of a filter's peak are skipped (see core.fold_product)
# Entries of the FFT-defined operators (frequential filters, time and frequency averaging) below this fraction of
# the operator's peak are set to 0, and frequential operator columns (output rows of the log-frequency convolution)
# whose weights on the rows present all sit below it are skipped, their modulus set to 0. Those weights are the
# float64 round-off floor (~1e-16) of the FFT that defines the operator, in kymatio as here: noise, not filter.
OPERATOR_TOL = 1e-14


class JTFS(nn.Module):
    """Joint time-frequency scattering with per-path evaluation.

    Args:
        shape: signal length N in samples.
        J: number of octaves of the temporal wavelets (largest time scale 2**J samples).
        Q: (Q1, Q2) wavelets per octave at the first and second order (an int means (Q, 1)).
        J_fr: number of octaves of the frequential wavelets (in scalogram rows).
        Q_fr: frequential wavelets per octave.
        T: temporal averaging support in samples (default 2**J).
        F: frequential averaging support in rows (default 2**J_fr); must not exceed 2**J_fr.
        first_order: also return the first-order paths (time-averaged scalogram × spin ≥ 0 frequential
            filters), placed before the second-order ones as in kymatio.
        eps: smoothing of the complex modulus (see ``core.modulus``).
        dtype: real dtype of the filters (float32 default; build with float64 for exact comparisons —
            ``.double()`` on a float32 module keeps float32-rounded filters).

    Shapes: input (B, N) or (B, C, N), float; ``forward`` returns (..., P, F', T'), ``forward_path`` (..., F', T').
    """

    def __init__(self, shape: int, J: int = 12, Q=(8, 2), J_fr: int = 3, Q_fr: int = 2,
                 T: Optional[int] = None, F: Optional[int] = None, first_order: bool = False,
                 eps: float = 1e-12, dtype: Optional[torch.dtype] = None):
        super().__init__()
        Q = (Q, 1) if isinstance(Q, int) else tuple(Q)
        _check_args(shape, J, Q, J_fr, Q_fr, T, F)
        self.shape, self.J, self.Q, self.J_fr, self.Q_fr = int(shape), J, Q, J_fr, Q_fr
        self.T = T if T is not None else 2**J
        self.F = F if F is not None else 2**J_fr
        self.eps = float(eps)
        self.first_order = first_order
        self.log2_stride = int(math.floor(math.log2(self.T)))
        self.log2_F = int(math.floor(math.log2(self.F)))
        dtype = dtype or torch.get_default_dtype()

        self.padding = time_padding(self.shape, J, self.T)
        phi, psi1, psi2 = time_filterbanks(self.padding.n_padded, J, Q, self.T)
        self.n_fr_pad = frequential_padding(J, Q[0], J_fr, self.F)
        phi_F, psis_fr = frequential_filterbanks(self.n_fr_pad, J_fr, Q_fr, self.F)
        self.paths: list[PathMeta] = enumerate_paths(psi1, psi2, psis_fr, Q[0], first_order)
        self.filter_meta = {"psi1": _meta(psi1), "psi2": _meta(psi2), "psi_fr": _meta(psis_fr)}
        self._check_resolutions()

        def buf(name, array):
            array = np.asarray(array)
            if np.iscomplexobj(array):  # complex stored as a real view so that .double()/.half() convert it
                array = np.stack([array.real, array.imag], axis=-1)
            self.register_buffer(name, _flush_subnormals_(torch.as_tensor(array, dtype=dtype).clone()))

        n1_total = len(psi1)
        buf("psi1", np.stack([p["levels"][0] for p in psi1]))
        self._n_psi2_levels = max(len(p["levels"]) for p in psi2)
        for k in range(self._n_psi2_levels):  # levels a filter never uses stay zero
            size = self.padding.n_padded // 2**k
            buf(f"psi2_l{k}", np.stack([p["levels"][k] if k < len(p["levels"]) else np.zeros(size) for p in psi2]))
        for k, lv in enumerate(phi["levels"]):
            buf(f"phi_l{k}", lv)
        self._k_fr = [min(p["j"], self.log2_F) for p in psis_fr]
        for n_fr, (p, k) in enumerate(zip(psis_fr, self._k_fr)):
            buf(f"wfr{n_fr}", _drop_round_off(frequential_operator(p["levels"][0], n1_total, k)))
        start, stop = self.padding.ind_start[self.log2_stride], self.padding.ind_end[self.log2_stride]
        for j2 in sorted({p.j2 for p in self.paths if p.order == 2}):
            buf(f"tavg{j2}", _drop_round_off(decimation_operator(phi["levels"][j2], self.log2_stride - j2,
                                                                 range(start, stop))))
        n_rows = self.n_fr_pad // 2**self.log2_F
        for k in sorted({k for p, k in zip(psis_fr, self._k_fr) if p["xi"] != 0}):
            buf(f"favg{k}", _drop_round_off(decimation_operator(phi_F["levels"][k], self.log2_F - k, range(n_rows)).T))

        # Scalogram rows grouped by subsampling k1 = min(j1, log2 T); j1 is non-decreasing in n1.
        k1s = [min(p["j"], self.log2_stride) for p in psi1]
        self._groups = []
        for n1, k1 in enumerate(k1s):
            if self._groups and self._groups[-1][2] == k1:
                self._groups[-1][1] = n1 + 1
            else:
                self._groups.append([n1, n1 + 1, k1])
        self._groups = [tuple(g) for g in self._groups]
        self._build_supports(psi1, psi2)

    # ------------------------------------------------------------------ public API
    @property
    def n_paths(self) -> int:
        return len(self.paths)

    @property
    def n1_total(self) -> int:
        return self.psi1.shape[0]

    def output_shape(self) -> tuple[int, int]:
        """(F', T'): log-frequency rows and frames of every path."""
        start, stop = self._unpad()
        return self.n_fr_pad // 2**self.log2_F, stop - start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """All paths, (..., P, F', T')."""
        return self.forward_paths(x, range(self.n_paths))

    def forward_path(self, x: torch.Tensor, idx: int) -> torch.Tensor:
        """One path, (..., F', T'): the first-layer rows it needs, one ψ2, one frequential filter."""
        return self.forward_paths(x, [idx])[..., 0, :, :]

    def forward_paths(self, x: torch.Tensor, idxs: Sequence[int]) -> torch.Tensor:
        """Selected paths, (..., k, F', T'), sharing one first layer and one ψ2 product per rate."""
        idxs = [int(i) for i in idxs]
        for i in idxs:
            if not 0 <= i < self.n_paths:
                raise IndexError(f"path index {i} out of range [0, {self.n_paths})")
        lead = x.shape[:-1]
        U1 = self.first_layer(x, self.rows_needed(idxs))
        S = self.paths_from_first_layer(U1, idxs)
        return S.reshape(lead + S.shape[1:])

    def rows_needed(self, idxs: Sequence[int]) -> int:
        """How many first-order rows (n1 < n) the paths ``idxs`` read."""
        return max(self.n1_total if self.paths[int(i)].n2 is None else self.paths[int(i)].n1_max for i in idxs)

    def first_layer(self, x: torch.Tensor, n1: Optional[int] = None) -> list[torch.Tensor]:
        """The scalogram spectra that every path reads: per group of equal subsampling, (B·C, rows, bins) rfft
        halves of |x ∗ ψ1| for the rows n1 < ``n1`` (default all). ``paths_from_first_layer`` takes it from there,
        so several calls (θ-IS's per-path derivatives) can share one first layer."""
        return self._first_layer(self._prepare(x), self.n1_total if n1 is None else int(n1))

    def paths_from_first_layer(self, U1: list[torch.Tensor], idxs: Sequence[int]) -> torch.Tensor:
        """Selected paths (B·C, k, F', T') from ``first_layer``'s output (which must hold the rows they read)."""
        idxs = [int(i) for i in idxs]
        by_rate = defaultdict(list)  # n2 (None for order 1) -> [(position in output, path)]
        for pos, i in enumerate(idxs):
            p = self.paths[i]
            by_rate[p.n2].append((pos, p))
        have, need = sum(U.shape[1] for U in U1), self.rows_needed(idxs)
        if have < need:
            raise ValueError(f"the first layer holds {have} rows; paths {idxs} read {need}")
        device = U1[0].device
        out = [None] * len(idxs)
        for n2, items in by_rate.items():
            X = self._first_order_input(U1) if n2 is None else second_layer(
                U1, self._groups, self._psi2_levels(), n2, items[0][1].j2, items[0][1].n1_max, self.log2_stride,
                self._supports(device)[1][n2])
            for positions, coefs in self._frequential(X, [p for _, p in items]):
                for k, pos in enumerate(positions):
                    out[items[pos][0]] = coefs[:, k]
        return torch.stack(out, dim=1)

    def meta(self) -> list[dict]:
        return [p.as_dict() for p in self.paths]

    # ------------------------------------------------------------------ internals
    def _prepare(self, x):
        if not torch.is_tensor(x) or not x.is_floating_point():
            raise ValueError(f"JTFS input must be a real floating-point tensor, got {getattr(x, 'dtype', type(x))}")
        if x.shape[-1] != self.shape:
            raise ValueError(f"JTFS was built for signals of {self.shape} samples, got {x.shape[-1]}")
        x = x.reshape(-1, self.shape)
        x = torch.nn.functional.pad(x[:, None], (self.padding.left, self.padding.right), mode="reflect")[:, 0]
        return x

    def _first_layer(self, x, n1_needed):
        groups = [(a, min(b, n1_needed), k) for a, b, k in self._groups if a < n1_needed]
        sups, _, bands = self._supports(x.device)
        return first_layer(torch.fft.fft(x), self.psi1, groups, self.eps, bands, sups)

    def _build_supports(self, psi1, psi2):
        """Bins where each narrow filter is non-negligible, for the sparse products of ``core.fold_product``.
        Kept as NumPy and moved to a device on first use (index tensors, unaffected by dtype casts)."""
        def support(rows, k):
            rows = np.atleast_2d(rows)
            masks = np.abs(rows) > SUPPORT_TOL * np.abs(rows).max(axis=1, keepdims=True)
            m = int(masks.sum(axis=1).max())
            if k == 0 or m > rows.shape[1] // 2:  # dense is as cheap
                return None
            idx = np.zeros((rows.shape[0], m), dtype=np.int64)  # padding points at a bin of weight 0 below
            for r, mask in enumerate(masks):
                nz = np.flatnonzero(mask)
                idx[r, : nz.size] = nz
                idx[r, nz.size:] = np.flatnonzero(~mask)[0]
            return idx, idx % (rows.shape[1] // 2**k)

        rows1 = [np.stack([p["levels"][0] for p in psi1[a:b]]) for a, b, _ in self._groups]
        self._bands1 = [Bands.from_filters(r, k, SUPPORT_TOL) for r, (_, _, k) in zip(rows1, self._groups)]
        self._np_sup1 = [support(r, k) for r, (_, _, k) in zip(rows1, self._groups)]
        self._np_sup2 = {}
        for p in self.paths:
            if p.order != 2 or p.n2 in self._np_sup2:
                continue
            levels = {}
            for a, b, k1 in self._groups:
                if a >= p.n1_max:
                    break
                h = psi2[p.n2]["levels"][k1]
                k2 = min(p.j2 - k1, self.log2_stride)
                sup = support(h, k2)
                band = None if sup is None else HalfBand.from_support(sup[0][0], h.shape[0], k2)
                if band is not None:  # a wide circular band: sliced (second_layer.fold_half_band)
                    sup = band
                elif sup is not None:  # the scalogram spectra are rfft halves: read bin i > n/2 as conj(bin n - i)
                    idx, n = sup[0][0], h.shape[0]
                    neg = idx > n // 2
                    sign = np.stack([np.ones(idx.size), np.where(neg, -1.0, 1.0)], axis=-1)
                    sup = (idx, sup[1][0], np.where(neg, n - idx, idx), sign)
                levels[k1] = sup
            self._np_sup2[p.n2] = levels
        self._sup_cache = {}
        self._col_cache = {}

    def _supports(self, device):
        key = (device, self.psi1.dtype)
        if key not in self._sup_cache:
            self._sup_cache[key] = self._build_device_supports(device)
        return self._sup_cache[key]

    @torch.inference_mode(False)
    def _build_device_supports(self, device):
        """Index and weight tensors for ``device``. Built outside inference mode even when the first call runs under
        it: they are kept for every later call, and autograd cannot save inference tensors for backward."""
        def t(s):  # float arrays (the conjugation signs) follow the filters' dtype
            if s is None:
                return None
            return tuple(torch.as_tensor(a, device=device, dtype=None if a.dtype.kind == "i" else self.psi1.dtype)
                         for a in s)
        bands = [None if b is None else (b, b.weights(self.psi1[a:stop].to(device), k))
                 for b, (a, stop, k) in zip(self._bands1, self._groups)]

        def t2(n2, k1, s):  # a ψ2 level: a band's taps from the filter buffer, or index tensors
            if isinstance(s, HalfBand):
                return BandFold(s, s.weights(getattr(self, f"psi2_l{k1}")[n2].to(device)))
            return t(s)

        return ([t(s) for s in self._np_sup1],
                {n2: {k: t2(n2, k, s) for k, s in lv.items()} for n2, lv in self._np_sup2.items()},
                bands)

    def _first_order_input(self, U1):
        """S1 = U1 ∗ φ_T at stride T: (B, n1_total, T_pad) real."""
        rows = []
        for (start, stop, k1), U in zip(self._groups, U1):
            phi = getattr(self, f"phi_l{k1}")
            S = core.fold_product(core.half_to_full(U, phi.shape[-1]), phi, self.log2_stride - k1)
            rows.append(torch.fft.ifft(S).real)
        return torch.cat(rows, dim=1)

    def _apply(self, fn, *args, **kwargs):
        """After a cast (``.float()``, ``.half()``, ``.to(...)``), flush the filters' new subnormal values to zero."""
        out = super()._apply(fn, *args, **kwargs)
        for t in self._buffers.values():
            if t is not None:
                _flush_subnormals_(t)
        return out

    def _psi2_levels(self):
        return [getattr(self, f"psi2_l{k}") for k in range(self._n_psi2_levels)]

    def _frequential(self, X, paths: list[PathMeta]):
        """Yield (positions in ``paths``, (B, k, F', T') coefficients) per group of equal subsampling and spin."""
        groups = defaultdict(list)
        for pos, p in enumerate(paths):
            groups[(self._k_fr[p.n_fr], p.spin == 0)].append(pos)
        n1 = X.shape[-2]
        for (k_fr, spin0), positions in groups.items():
            Ws, cols = [], []
            for k, pos in enumerate(positions):
                W, keep = self._operator_columns(paths[pos].n_fr, n1)
                f_out = W.shape[-1]
                Ws.append(W[:, keep])
                cols.append(keep + k * f_out)
            W, cols = torch.cat(Ws, dim=-1), torch.cat(cols)
            p0 = paths[positions[0]]
            time_avg = getattr(self, f"tavg{p0.j2}") if p0.order == 2 else self._unpad_matrix(X)
            U = core.scatter_and_average(X, W, time_avg, self.eps)
            width = len(positions) * f_out  # a group shares k_fr, hence F_out
            if U.shape[-1] < width:  # the skipped columns' modulus is 0
                U = U.new_zeros(U.shape[:-1] + (width,)).index_copy(-1, cols, U)
            fr_avg = None if spin0 else getattr(self, f"favg{k_fr}")
            yield positions, core.average_frequency(U, len(positions), fr_avg)

    def _operator_columns(self, n_fr, n1):
        """(W restricted to the first n1 rows, complex; indices of its columns above OPERATOR_TOL)."""
        W = torch.view_as_complex(getattr(self, f"wfr{n_fr}"))
        key = (n_fr, n1, W.device, W.dtype)
        if key not in self._col_cache:
            with torch.inference_mode(False):  # kept for later calls, as _build_device_supports
                mag = W.abs()
                self._col_cache[key] = torch.nonzero(mag[:n1].amax(0) > OPERATOR_TOL * mag.amax())[:, 0]
        return W[:n1], self._col_cache[key]

    def _unpad_matrix(self, X):
        """Order 1 is averaged already: unpadding only, as a selection matrix (T', T)."""
        start, stop = self._unpad()
        return torch.eye(X.shape[-1], dtype=X.real.dtype, device=X.device)[start:stop]

    def _unpad(self):
        return self.padding.ind_start[self.log2_stride], self.padding.ind_end[self.log2_stride]

    def _check_resolutions(self):
        for p in self.paths:
            if p.order == 2 and p.j2 > self.log2_stride:
                raise ValueError(f"T={self.T} is shorter than the scale 2**{p.j2} of a second-order wavelet; "
                                 f"increase T or lower J")

    def extra_repr(self) -> str:
        return (f"shape={self.shape}, J={self.J}, Q={self.Q}, J_fr={self.J_fr}, Q_fr={self.Q_fr}, T={self.T}, "
                f"F={self.F}, paths={self.n_paths}, first_order={self.first_order}")


_FLUSHED = (torch.float32, torch.float16, torch.bfloat16)


def _drop_round_off(op: np.ndarray) -> np.ndarray:
    """Zero the entries of an operator defined through a float64 FFT (frequential filters, time and frequency
    averaging) that lie below OPERATOR_TOL of its peak: that is its round-off floor (~1e-16), not filter. Kept, the
    time-averaging matrices' 1e-38…1e-16 tails made float32 subnormal products in the averaging matmul, which
    slowed the spin-0 paths at the TR-808 settings by 1.1–1.9×."""
    mag = np.abs(op)
    return np.where(mag < OPERATOR_TOL * mag.max(), 0, op)


def _flush_subnormals_(t: torch.Tensor) -> torch.Tensor:
    """Set the subnormal entries of a filter tensor to 0, in place (returned).

    The Gaussian tails of the filters, cast to float32, reach below the smallest normal number (1.2e-38):
    psi1 alone has ~86 k such values at the TR-808 settings. x86 CPUs multiply subnormals about 10-100× slower
    than normal numbers: with some in the spin-0 frequential operator, the frequential stage of path 0 at the
    TR-808 settings took 2.36 s instead of 0.20 s (batch 8, no grad). Zero differs from them by < 1.2e-38,
    far below the dtype's own rounding of any coefficient. float64 filters are left bit-identical to kymatio's
    (the exactness tests compare them); their subnormals (< 2.2e-308) are only met in float64 reference runs."""
    if t.dtype in _FLUSHED and t.device.type != "meta":
        t.masked_fill_(t.abs() < torch.finfo(t.dtype).tiny, 0.0)
    return t


def _meta(bank):
    return [{"xi": f["xi"], "sigma": f["sigma"], "j": f["j"]} for f in bank]


def _check_args(shape, J, Q, J_fr, Q_fr, T, F):
    for name, v in dict(shape=shape, J=J, J_fr=J_fr, Q_fr=Q_fr).items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if len(Q) != 2 or any((not isinstance(q, int)) or q < 1 for q in Q):
        raise ValueError(f"Q must be an int or a pair of positive ints, got {Q!r}")
    if T is not None and not (1 <= T <= shape):
        raise ValueError(f"T must be in [1, shape={shape}], got {T!r}")
    if F is not None and not (1 <= F <= 2**J_fr):
        raise ValueError(f"F must be in [1, 2**J_fr={2**J_fr}], got {F!r}")
    if 2**J > shape:
        raise ValueError(f"2**J = {2**J} exceeds the signal length {shape}")
