"""The fused band first layer (``scattering.first_layer``) against the scatter-sum product of ``core.fold_product``,
in float64: values, gradients and Hessian-vector products (θ-IS differentiates it twice)."""
import numpy as np
import pytest
import torch

from scraplab.scattering import JTFS
from scraplab.scattering.first_layer import Bands, first_layer


def _layer(j, x, fused):
    sups, _, bands = j._supports(x.device)
    return first_layer(torch.fft.fft(j._prepare(x)), j.psi1, j._groups, j.eps, bands if fused else None, sups)


def test_bands_cover_most_groups_and_refuse_folding_rows():
    j = JTFS(4096, J=8, Q=(8, 2), J_fr=3, Q_fr=2, dtype=torch.float64)
    assert sum(b is not None for b in j._bands1) >= len(j._groups) - 2  # the widest-subsampled groups may fold
    h = np.ones((1, 64))
    assert Bands.from_filters(h, 0, 1e-30) is not None
    assert Bands.from_filters(h, 1, 1e-30) is None  # a 64-bin band cannot be placed in 32 bins


@pytest.mark.parametrize("n1", [None, 13])
def test_fused_first_layer_equals_scatter_sum(n1):
    torch.manual_seed(0)
    j = JTFS(4096, J=8, Q=(8, 2), J_fr=3, Q_fr=2, dtype=torch.float64)
    x = torch.randn(2, 4096, dtype=torch.float64, requires_grad=True)
    new = j.first_layer(x, n1)
    old = _layer(j, x, fused=False)[: len(new)]
    if n1 is not None:
        old[-1] = old[-1][:, : new[-1].shape[1]]
    gs = [torch.randn_like(o) for o in old]
    gn = torch.autograd.grad(sum((a * g.conj()).real.sum() for a, g in zip(new, gs)), x)[0]
    go = torch.autograd.grad(sum((a * g.conj()).real.sum() for a, g in zip(old, gs)), x)[0]
    for a, b in zip(new, old):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12 * b.abs().max().item())
    torch.testing.assert_close(gn, go, rtol=1e-10, atol=1e-12 * go.abs().max().item())


def test_fused_first_layer_second_derivatives():
    torch.manual_seed(1)
    j = JTFS(1024, J=5, Q=(4, 2), J_fr=2, Q_fr=1, dtype=torch.float64)
    x = torch.randn(1, 1024, dtype=torch.float64, requires_grad=True)
    v = torch.randn(1, 1024, dtype=torch.float64)

    def hvp(fused):
        y = sum(u.abs().square().sum() for u in _layer(j, x, fused))
        (g,) = torch.autograd.grad(y, x, create_graph=True)
        (h,) = torch.autograd.grad((g * v).sum(), x)
        return g.detach(), h

    (g1, h1), (g0, h0) = hvp(True), hvp(False)
    torch.testing.assert_close(g1, g0, rtol=1e-10, atol=1e-12 * g0.abs().max().item())
    torch.testing.assert_close(h1, h0, rtol=1e-8, atol=1e-10 * h0.abs().max().item())
    assert torch.autograd.gradcheck(lambda x: torch.cat([u.abs().flatten() for u in _layer(j, x, True)])[:40], (x,))


def test_fused_backward_under_batched_grads_equals_one_vector_at_a_time():
    # θ-IS's warm-up runs this backward under vmap, where out= products have no batching rule
    torch.manual_seed(3)
    j = JTFS(1024, J=5, Q=(4, 2), J_fr=2, Q_fr=1, dtype=torch.float64)
    x = torch.randn(1, 1024, dtype=torch.float64, requires_grad=True)
    U = torch.cat([u.flatten() for u in j.first_layer(x)])
    vs = torch.randn(3, *U.shape, dtype=U.dtype)
    (batched,) = torch.autograd.grad(U, x, vs, retain_graph=True, is_grads_batched=True)
    for v, b in zip(vs, batched):
        (one,) = torch.autograd.grad(U, x, v, retain_graph=True)
        torch.testing.assert_close(b, one, rtol=1e-12, atol=1e-14)
