"""The sliced second-layer product (``scattering.second_layer.fold_half_band``) against the dense product of the full
spectrum, in float64: values, gradients, vmap; and where the JTFS uses it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scraplab.scattering import JTFS
from scraplab.scattering.core import fold_product, half_to_full
from scraplab.scattering.second_layer import BandFold, HalfBand, fold_half_band

N = 1024


def band_filter(a: int, hi: int, lo: int = 1) -> np.ndarray:
    """A real length-N filter non-zero exactly on [N − a, N) ∪ [lo, hi) (bin 0 left at zero, as kymatio's ψ)."""
    rng = np.random.default_rng(a * 1000 + hi)
    h = np.zeros(N)
    h[lo:hi] = rng.uniform(0.1, 1.0, hi - lo)
    if a:
        h[N - a:] = rng.uniform(1e-6, 1e-3, a)
    return h


def dense(U, h, k):
    return fold_product(half_to_full(U, N), h, k)


@pytest.mark.parametrize("a, hi, k", [(40, 300, 1), (40, 300, 3), (100, 500, 2), (0, 260, 1), (300, 200, 4)])
def test_sliced_product_equals_the_dense_one_with_its_gradient(a, hi, k):
    # (300, 200, 4): 500 bins folded to 64, so the band wraps over several folds; (0, 260, 1): nothing below 0
    h = torch.tensor(band_filter(a, hi))
    band = HalfBand.from_support(np.flatnonzero(h.numpy()), N, k, min_bins=1)
    assert (band.a, band.hi) == (a, hi)
    torch.manual_seed(0)
    U = torch.randn(3, 5, N // 2 + 1, dtype=torch.complex128, requires_grad=True)
    U_ref = U.detach().clone().requires_grad_(True)
    Y, Y_ref = fold_half_band(U, band, band.weights(h)), dense(U_ref, h, k)
    assert Y.shape == Y_ref.shape == (3, 5, N // 2**k)
    torch.testing.assert_close(Y, Y_ref, rtol=1e-12, atol=1e-14)
    G = torch.randn_like(Y)
    (g,) = torch.autograd.grad(Y, U, G)
    (g_ref,) = torch.autograd.grad(Y_ref, U_ref, G)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-14)


def test_sliced_product_under_vmap():
    h = torch.tensor(band_filter(40, 300))
    band = HalfBand.from_support(np.flatnonzero(h.numpy()), N, 2, min_bins=1)
    U = torch.randn(4, 2, 3, N // 2 + 1, dtype=torch.complex128)
    out = torch.func.vmap(lambda u: fold_half_band(u, band, band.weights(h)))(U)
    torch.testing.assert_close(out, dense(U.reshape(8, 3, -1), h, 2).reshape(4, 2, 3, -1), rtol=1e-12, atol=1e-14)


def test_bands_that_slicing_would_not_serve_are_refused():
    h = band_filter(40, 300)
    idx = np.flatnonzero(h)
    assert HalfBand.from_support(idx, N, 1, min_bins=400) is None  # 340 bins: below the minimum
    gap = idx[idx != N - 20]  # a hole in the bins below zero: not one circular band
    assert HalfBand.from_support(gap, N, 1, min_bins=1) is None
    sparse = np.array([1, 2, 3, 290, 299])  # a band of 300 bins for 5 taps: the gather is cheaper
    assert HalfBand.from_support(sparse, N, 1, min_bins=1) is None


def test_jtfs_slices_its_wide_second_order_bands_and_gathers_the_narrow_ones():
    jtfs = JTFS(32768, J=12, Q=(8, 2), J_fr=3, Q_fr=2)
    levels = jtfs._supports(torch.device("cpu"))[1]
    kinds = {type(s).__name__ for lv in levels.values() for s in lv.values()}
    assert {"BandFold", "tuple"} <= kinds  # (None: the dense product, where it is as cheap)
    widest = max(levels, key=lambda n2: jtfs.filter_meta["psi2"][n2]["xi"])
    assert all(isinstance(s, BandFold) for k1, s in levels[widest].items() if k1 == 0)
