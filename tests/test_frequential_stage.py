"""The fused frequential stage ``core.scatter_and_average`` (A · |Xᵀ W|) against a direct float64 computation:
values at magnitudes whose float32 squares are subnormal, gradients including the eps clamp, chunking."""
import pytest
import torch

from scraplab.scattering import core


def _operands(B=2, n1=5, T=300, C=7, Tp=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    X = torch.complex(torch.randn(B, n1, T, generator=g, dtype=dtype), torch.randn(B, n1, T, generator=g, dtype=dtype))
    W = torch.complex(torch.randn(n1, C, generator=g, dtype=dtype), torch.randn(n1, C, generator=g, dtype=dtype))
    A = torch.rand(Tp, T, generator=g, dtype=dtype)
    return X, W, A


def _reference(X, W, A):
    Z = torch.einsum("bnt,nc->btc", X, W)  # (B, T, C)
    return torch.einsum("st,btc->bsc", A, Z.abs())


def test_values_equal_direct_computation_float64():
    X, W, A = _operands()
    torch.testing.assert_close(core.scatter_and_average(X, W, A, 1e-12), _reference(X, W, A), rtol=1e-12, atol=0)


def test_float32_keeps_precision_where_squares_would_be_subnormal():
    # |Xᵀ W| ~ 1e-22: squared in float32 that is ~1e-44, a subnormal with 1-2 significant digits.
    X, W, A = _operands()
    X = X * 1e-22
    ref = _reference(X, W, A)
    out = core.scatter_and_average(X.to(torch.complex64), W.to(torch.complex64), A.float(), 1e-12)
    assert out.dtype == torch.float32
    rel = ((out.double() - ref).abs() / ref.abs()).max().item()
    assert rel < 1e-5, rel


def test_gradient_matches_direct_computation_and_eps_clamp():
    X, W, A = _operands()
    # One product made tiny (|z| = 1e-14 < eps = 1e-12): its gradient is the eps-clamped z / eps, not z / |z|.
    X = X.clone()
    X[0, :, 3] = 0
    X[0, 0, 3] = 1e-14 / W[0, 2]  # z[0, 3, 2] = 1e-14; the other columns of frame 3 get 1e-14 · W[0, c] / W[0, 2]
    eps = 1e-12
    g = torch.randn(2, 4, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    Xa = X.clone().requires_grad_()
    (core.scatter_and_average(Xa, W, A, eps) * g).sum().backward()
    Z = torch.einsum("bnt,nc->btc", X, W)
    ratio = torch.einsum("st,bsc->btc", A, g) / Z.abs().clamp_min(eps)
    expected = torch.einsum("btc,nc->bnt", Z * ratio, W.conj())
    torch.testing.assert_close(Xa.grad, expected, rtol=1e-10, atol=1e-30)
    assert (Z.abs() < eps).sum() >= 1  # the clamp was exercised


@pytest.mark.parametrize("chunk", [16, 1 << 19])
def test_chunking_does_not_change_result(monkeypatch, chunk):
    monkeypatch.setattr(core, "CHUNK_ELEMENTS", chunk)
    X, W, A = _operands(T=1000)
    torch.testing.assert_close(core.scatter_and_average(X, W, A, 1e-12), _reference(X, W, A), rtol=1e-12, atol=0)


def test_double_backward_matches_autograd_of_direct_computation():
    X, W, A = _operands(T=40)
    X = X.requires_grad_()
    v = torch.randn_like(X)
    g = torch.randn(2, 4, 7, dtype=torch.float64)

    def hvp(f):
        (gx,) = torch.autograd.grad((f(X) * g).sum(), X, create_graph=True)
        (h,) = torch.autograd.grad((gx.conj() * v).real.sum(), X)
        return h
    torch.testing.assert_close(hvp(lambda x: core.scatter_and_average(x, W, A, 1e-12)), hvp(lambda x: _reference(x, W, A)),
                               rtol=1e-9, atol=1e-12)



def test_scale_is_kept_within_the_dtype_range():
    assert core.modulus_scale(torch.float16) == 1.0  # 2**20 would overflow float16 weights
    for dt in (torch.float32, torch.float64, torch.bfloat16):
        assert core.modulus_scale(dt) == core.MODULUS_SCALE
