"""SCRAPL loss: zero on identical inputs, unbiasedness by enumeration, determinism, caching, bad input."""
import numpy as np
import pytest
import torch

from scraplab.losses import JTFSLoss, SCRAPLLoss, Scattering1DLoss

N = 512
KW = dict(shape=N, J=4, Q=(4, 2), J_fr=2, Q_fr=1)


def signals(batch=2, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, N, generator=g, dtype=dtype), torch.randn(batch, N, generator=g, dtype=dtype)


@pytest.fixture(scope="module")
def loss64():
    return SCRAPLLoss(**KW).double()


def test_identical_inputs_give_zero(loss64):
    x, _ = signals()
    for p in (0, loss64.n_paths - 1):
        assert loss64(x.clone(), x, paths=[p]) < 1e-6
    assert SCRAPLLoss(**KW, scaling="paper").double()(x.clone(), x, paths=3) == 0


@pytest.mark.parametrize("scaling", ["norm", "paper"])
def test_uniform_enumeration_equals_full_loss(scaling):
    loss = SCRAPLLoss(**KW, scaling=scaling).double()
    x_hat, x = signals()
    per_path = torch.stack([loss(x_hat, x, paths=[p]) for p in range(loss.n_paths)])
    torch.testing.assert_close(per_path.mean(), loss.full(x_hat, x), rtol=1e-10, atol=0)
    if scaling == "paper":  # the paper's full loss is the plain squared JTFS distance
        S_hat, S = loss.jtfs(x_hat), loss.jtfs(x)
        torch.testing.assert_close(loss.full(x_hat, x), (S_hat - S).square().flatten(1).sum(1).mean())


def test_importance_weighted_mode_is_unbiased_under_nonuniform_probs():
    base = SCRAPLLoss(**KW).double()
    P = base.n_paths
    probs = torch.rand(P, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.05
    probs /= probs.sum()
    weighted = SCRAPLLoss(**KW, probs=probs, importance_weighted=True).double()
    plain = SCRAPLLoss(**KW, probs=probs).double()
    x_hat, x = signals()
    expect_w = sum(probs[p] * weighted(x_hat, x, paths=[p]) for p in range(P))
    expect_plain = sum(probs[p] * plain(x_hat, x, paths=[p]) for p in range(P))
    full = base.full(x_hat, x)
    torch.testing.assert_close(expect_w, full, rtol=1e-10, atol=0)
    assert abs(float(expect_plain - full)) > 1e-6 * float(full)  # the paper's θ-IS mode is biased


def test_gradient_of_full_equals_mean_of_path_gradients(loss64):
    x_hat, x = signals()
    x_hat.requires_grad_()
    g_full, = torch.autograd.grad(loss64.full(x_hat, x), x_hat)
    g_sum = torch.zeros_like(x_hat)
    for p in range(loss64.n_paths):
        g_sum += torch.autograd.grad(loss64(x_hat, x, paths=[p]), x_hat)[0]
    torch.testing.assert_close(g_sum / loss64.n_paths, g_full, rtol=1e-9, atol=1e-15)


def test_several_paths_average(loss64):
    x_hat, x = signals()
    two = loss64(x_hat, x, paths=[2, 9])
    assert loss64.last_paths == [2, 9]
    torch.testing.assert_close(two, (loss64(x_hat, x, paths=2) + loss64(x_hat, x, paths=9)) / 2)


def test_seeded_draws_are_reproducible():
    a, b = SCRAPLLoss(**KW, seed=7), SCRAPLLoss(**KW, seed=7)
    assert [a.draw()[0] for _ in range(20)] == [b.draw()[0] for _ in range(20)]
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    x_hat, x = signals(dtype=torch.float32)
    a(x_hat, x, generator=g1)
    b(x_hat, x, generator=g2)
    assert a.last_paths == b.last_paths
    assert len(set(a.draw(k=a.n_paths))) == a.n_paths  # distinct paths


def test_draws_follow_probs():
    probs = torch.zeros(SCRAPLLoss(**KW).n_paths, dtype=torch.float64)
    probs[5] = 1.0
    loss = SCRAPLLoss(**KW, probs=probs, seed=0)
    assert {loss.draw()[0] for _ in range(10)} == {5}


def test_silent_input_has_finite_gradients_and_double_backward():
    loss = SCRAPLLoss(**KW).double()
    x = torch.zeros(2, N, dtype=torch.float64)
    for target in (torch.zeros_like(x), signals()[1]):
        x_hat = torch.zeros_like(x, requires_grad=True)
        g, = torch.autograd.grad(loss(x_hat, target, paths=[4]), x_hat, create_graph=True)
        assert torch.isfinite(g).all()
        gg, = torch.autograd.grad(g.square().sum(), x_hat, allow_unused=True)
        assert gg is None or torch.isfinite(gg).all()


def test_log1p_rho_and_target_cache():
    loss = SCRAPLLoss(**KW, log1p=True).double()
    x_hat, x = signals()
    S = loss.jtfs.forward_path(x, 3)
    S_hat = loss.jtfs.forward_path(x_hat, 3)
    expect = (torch.log1p(S_hat / 1e-3) - torch.log1p(S / 1e-3)).flatten(1).norm(dim=1).mean()
    torch.testing.assert_close(loss(x_hat, x, paths=3), expect)
    x.mul_(2.0)  # in-place change of the target must invalidate the cache
    S2 = loss.jtfs.forward_path(x, 3)
    expect2 = (torch.log1p(S_hat / 1e-3) - torch.log1p(S2 / 1e-3)).flatten(1).norm(dim=1).mean()
    torch.testing.assert_close(loss(x_hat, x, paths=3), expect2)


def test_channels_are_examples():
    loss = SCRAPLLoss(**KW).double()
    x_hat, x = signals(batch=4)
    torch.testing.assert_close(loss(x_hat.view(2, 2, N), x.view(2, 2, N), paths=1), loss(x_hat, x, paths=1))


def test_jtfs_and_scattering1d_losses():
    x_hat, x = signals(dtype=torch.float32)
    j = JTFSLoss(**KW)
    assert j.n_paths == SCRAPLLoss(**KW, first_order=True).n_paths
    assert j(x, x) < 1e-4 < j(x_hat, x)
    s = Scattering1DLoss(N, J=4, Q=(4, 2))
    x_hat.requires_grad_()
    v = s(x_hat, x)
    v.backward()
    assert v > 0 and torch.isfinite(x_hat.grad).all() and x_hat.grad.abs().sum() > 0


@pytest.mark.parametrize("make, match", [
    (lambda x: (x[:, :-1], x[:, :-1]), "built for 512"),
    (lambda x: (x, x[:1]), "shapes differ"),
    (lambda x: (x.new_full(x.shape, float("nan")), x), "NaN"),
    (lambda x: (x[:0], x[:0]), "empty batch"),
    (lambda x: (x.long(), x.long()), "floating-point"),
    (lambda x: (x[0], x[0]), r"\(B, N\)"),
])
def test_bad_inputs_raise(make, match):
    loss = SCRAPLLoss(**KW)
    x = torch.randn(2, N)
    with pytest.raises(ValueError, match=match):
        loss(*make(x))


def test_bad_probs_and_paths_raise():
    P = SCRAPLLoss(**KW).n_paths
    with pytest.raises(ValueError, match="one entry per path"):
        SCRAPLLoss(**KW, probs=[1.0])
    with pytest.raises(ValueError, match="sum to 1"):
        SCRAPLLoss(**KW, probs=[1.0] * P)
    with pytest.raises(ValueError, match="non-negative"):
        SCRAPLLoss(**KW, probs=[-1.0] + [2.0 / (P - 1)] * (P - 1))
    loss = SCRAPLLoss(**KW)
    x = torch.randn(1, N)
    with pytest.raises(ValueError, match="out of range"):
        loss(x, x, paths=[P])
    with pytest.raises(ValueError, match="scaling"):
        SCRAPLLoss(**KW, scaling="squared")


def test_target_cache_is_not_fooled_by_reused_memory(loss64):
    for seed in range(4):  # freed targets' memory is reused by the next ones
        x_hat, x = signals(seed=seed)
        S, S_hat = loss64.jtfs.forward_path(x, 3), loss64.jtfs.forward_path(x_hat, 3)
        expect = (S_hat - S).flatten(1).norm(dim=1).mean()
        torch.testing.assert_close(loss64(x_hat, x, paths=3), expect)
        del x, x_hat


@pytest.mark.parametrize("paths", ["12", [1.7], True, [True], 1.0, torch.tensor([1.0]), torch.tensor([[1]]),
                                   np.array([0.5]), {3}])
def test_paths_that_would_silently_become_other_paths_are_refused(paths):
    loss = SCRAPLLoss(**KW)
    x = torch.randn(1, N)
    with pytest.raises(ValueError, match="paths must be a path index"):
        loss(x, x, paths=paths)


def test_numpy_and_tensor_path_indices_are_accepted(loss64):
    x_hat, x = signals()
    expect = loss64(x_hat, x, paths=[3])
    for paths in (np.int64(3), torch.tensor(3), torch.tensor([3]), [np.int32(3)], [torch.tensor(3)], np.array([3])):
        torch.testing.assert_close(loss64(x_hat, x, paths=paths), expect)
    assert loss64.last_paths == [3]


def test_input_dtypes_are_cast_up_or_refused_clearly():
    loss = SCRAPLLoss(**KW)  # float32 filters
    x_hat, x = signals(dtype=torch.float32)
    expect = loss(x_hat, x, paths=[2])
    with pytest.raises(ValueError, match="x_hat is torch.float64 but the loss computes in torch.float32"):
        loss(x_hat.double(), x, paths=[2])
    for low in (torch.float16, torch.bfloat16):  # autocast outputs: cast up, gradients flow back in their dtype
        xh = x_hat.to(low).requires_grad_()
        value = loss(xh, x.to(low), paths=[2])
        assert value.dtype == torch.float32 and torch.isfinite(value)
        torch.testing.assert_close(value, loss(xh.detach().float(), x.to(low).float(), paths=[2]))
        value.backward()
        assert xh.grad.dtype == low and torch.isfinite(xh.grad.float()).all()
    torch.testing.assert_close(loss.double()(x_hat, x, paths=[2]).float(), expect, rtol=1e-4, atol=1e-6)


def test_target_cache_sees_refills_that_bypass_the_version_counter(loss64):
    x_hat, x = signals()
    first = loss64(x_hat, x, paths=[4])
    _, other = signals(seed=7)
    for refill in (lambda: x.numpy().__setitem__(slice(None), other.numpy()),
                   lambda: x.data.copy_(other)):
        x.copy_(signals()[1])  # back to the original values
        torch.testing.assert_close(loss64(x_hat, x, paths=[4]), first)
        refill()
        expect = (loss64.jtfs.forward_path(x_hat, 4) - loss64.jtfs.forward_path(other, 4)).flatten(1).norm(dim=1)
        torch.testing.assert_close(loss64(x_hat, x, paths=[4]), expect.mean())


def test_target_cache_is_reused_for_an_unchanged_target(loss64, monkeypatch):
    x_hat, x = signals()
    calls = []
    real = loss64.jtfs.forward_paths
    monkeypatch.setattr(loss64.jtfs, "forward_paths", lambda s, p: calls.append(list(p)) or real(s, p))
    loss64(x_hat, x, paths=[1, 2])
    loss64(x_hat + 1.0, x, paths=[2])  # same target (also a copy of it): no new target transform
    loss64(x_hat, x.clone(), paths=[1])
    assert calls == [[1, 2], [1, 2], [2], [1]]  # (prediction, target), then predictions only


@pytest.mark.parametrize("make", [lambda: SCRAPLLoss(**KW), lambda: SCRAPLLoss(**KW, target_cache_mb=1.0),
                                  lambda: JTFSLoss(**KW)], ids=["scrapl", "scrapl-store", "jtfs"])
def test_a_loss_first_called_under_inference_mode_still_trains(make):
    # Lazily built state (first-layer supports, operator columns, target coefficients) must not become inference
    # tensors, which autograd refuses to save: a user's script may evaluate before it trains.
    x_hat, x = signals()
    fresh, used = make().double(), make().double()
    paths = {} if isinstance(fresh, JTFSLoss) else dict(paths=[0, fresh.n_paths - 1])
    with torch.inference_mode():
        before = used(x_hat, x, **paths)
    grads = []
    for loss in (fresh, used):
        z = x_hat.clone().requires_grad_()
        v = loss(z, x, **paths)
        v.backward()
        grads.append(z.grad)
    torch.testing.assert_close(v.detach(), before)
    torch.testing.assert_close(grads[1], grads[0])
    assert grads[0].abs().sum() > 0
