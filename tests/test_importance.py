"""θ-IS warm-up: the θ-dependent path wins, π is a floored probability vector, shards merge, cache reuse."""
import json

import pytest
import torch

from scraplab.sampling.importance import (load_or_compute, merge_shards, merged_values, probs_from_values, save_shard,
                                          theta_importance)

P, U, N = 5, 2, 16


def _toy(seed=0):
    torch.manual_seed(seed)
    enc = torch.nn.Sequential(torch.nn.Linear(N, 6), torch.nn.Tanh(), torch.nn.Linear(6, U), torch.nn.Sigmoid())
    enc = enc.double()
    t = torch.linspace(0, 1, N, dtype=torch.float64)

    def synth(theta):  # (B, U) -> (B, 1, N)
        return (theta[:, :1] * torch.sin(6 * t) + theta[:, 1:] ** 2 * t).unsqueeze(1)

    def path_loss(x_hat, x, p):  # only path 2 depends on θ (through x_hat); the others are constant in θ
        if p == 2:
            return ((x_hat - x) ** 2).mean() * 10
        return ((x * (p + 1)) ** 2).mean() + 0.0 * x_hat.sum()

    x = torch.randn(4, 1, N, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return enc, synth, path_loss, x


class _Enc(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):  # (B, 1, N) -> (B, U)
        return self.net(x.squeeze(1))


def _encoder_input(enc):
    return _Enc(enc)


def test_only_theta_dependent_path_gets_the_mass_and_vectorised_equals_loop():
    enc, synth, loss, x = _toy()
    e = _encoder_input(enc)
    vals = theta_importance(e, synth, loss, x, P, params=list(enc.parameters()), progress=False)
    assert vals.shape == (P, U) and vals.dtype == torch.float64
    assert (vals[2] > 0).all() and vals[[0, 1, 3, 4]].abs().max() == 0
    pi = probs_from_values(vals, min_prob_frac=0.1)
    assert int(pi.argmax()) == 2
    assert float(pi.sum()) == pytest.approx(1.0, abs=1e-12) and float(pi.min()) >= 0.1 / P - 1e-15
    loop = theta_importance(e, synth, loss, x, P, params=list(enc.parameters()), vectorize=False, progress=False)
    torch.testing.assert_close(loop, vals, rtol=1e-8, atol=0)


def test_power_iteration_matches_exact_eigenvalue():
    """A linear 'encoder' with a quadratic loss: the u-slice Hessian is explicit, compare with eigvalsh."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 1, bias=False).double()
    x = torch.randn(6, 1, 3, dtype=torch.float64)
    enc = lambda z: lin(z.squeeze(1))  # θ = W z, U = 1
    loss = lambda x_hat, z, p: (p + 1.0) * (x_hat ** 2).mean()  # L = (p+1)·mean θ², synth = identity
    vals = theta_importance(enc, lambda th: th.unsqueeze(1), loss, x, 2, params=[lin.weight], n_iter=200,
                            tol=1e-12, progress=False)
    z = x.squeeze(1)
    for p in range(2):
        H = 2 * (p + 1.0) * z.T @ z / z.shape[0]
        assert vals[p, 0] == pytest.approx(torch.linalg.eigvalsh(H).abs().max().item(), rel=1e-6)


def test_shards_merge_to_full_run_and_bad_tiling(tmp_path):
    enc, synth, loss, x = _toy()
    e, kw = _encoder_input(enc), dict(params=list(enc.parameters()), progress=False, seed=3)
    full = probs_from_values(theta_importance(e, synth, loss, x, P, **kw))
    f1 = save_shard(tmp_path / "a.pt", theta_importance(e, synth, loss, x, P, path_range=(0, 2), **kw), (0, 2), P, {})
    f2 = save_shard(tmp_path / "b.pt", theta_importance(e, synth, loss, x, P, path_range=(2, 5), **kw), (2, 5), P, {})
    torch.testing.assert_close(merge_shards([f2, f1]), full, rtol=0, atol=0)  # deterministic, shard-independent
    with pytest.raises(ValueError, match="tile"):
        merge_shards([f2])
    # interleaved shards (the CLI's): values put back at their paths
    odd, even = range(1, P, 2), range(0, P, 2)
    f4 = save_shard(tmp_path / "d.pt", theta_importance(e, synth, loss, x, P, path_range=odd, **kw), odd, P, {})
    f5 = save_shard(tmp_path / "e.pt", theta_importance(e, synth, loss, x, P, path_range=even, **kw), even, P, {})
    torch.testing.assert_close(merge_shards([f4, f5]), full, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"missing \[1\], more than once \[2, 4\]"):
        merge_shards([f2, f5])
    with pytest.raises(ValueError, match="rows of values"):
        save_shard(tmp_path / "f.pt", torch.ones(3, U, dtype=torch.float64), odd, P, {})
    for bad in ((2, 2), (0, P + 1), range(P - 1, P + 1), (0, 1, 2)):
        with pytest.raises(ValueError, match="path_range"):
            theta_importance(e, synth, loss, x, P, path_range=bad, **kw)
    f3 = save_shard(tmp_path / "c.pt", torch.ones(3, U, dtype=torch.float64), (2, 5), P, {"other": 1})
    with pytest.raises(ValueError, match="settings"):
        merge_shards([f1, f3])
    with pytest.raises(ValueError, match=r"other settings than the ones asked for: \[.*c\.pt'\]"):
        merged_values([f1, f3], settings={})
    torch.testing.assert_close(merged_values([f1, f2], settings={}), merged_values([f2, f1]), rtol=0, atol=0)


def test_nondeterministic_synth_is_refused_and_mode_restored():
    enc, synth, loss, x = _toy()
    enc.train()
    noisy = lambda th: synth(th) + torch.randn(th.shape[0], 1, N, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="deterministic"):
        theta_importance(_encoder_input(enc), noisy, loss, x, P, params=list(enc.parameters()), progress=False)
    assert enc.training
    with pytest.raises(ValueError, match="path_range"):
        theta_importance(_encoder_input(enc), synth, loss, x, P, path_range=(3, 9), progress=False)


def test_load_or_compute_reuses_matching_settings(tmp_path):
    enc, synth, loss, x = _toy()
    calls = []
    counting_loss = lambda xh, xx, p: (calls.append(p), loss(xh, xx, p))[1]
    args = dict(encoder=_encoder_input(enc), synth_fn=synth, path_loss_fn=counting_loss, x=x, n_paths=P,
                root=tmp_path, params=list(enc.parameters()), progress=False)
    pi = load_or_compute("toy", {"synth": "toy"}, **args)
    n = len(calls)
    assert n > 0 and (tmp_path / "toy.json").exists()
    assert json.loads((tmp_path / "toy.json").read_text())["settings"]["n_paths"] == P
    again = load_or_compute("toy", {"synth": "toy"}, **args)
    assert len(calls) == n and torch.equal(pi, again)  # reused, nothing recomputed
    load_or_compute("toy", {"synth": "toy"}, min_prob_frac=0.5, **args)
    assert len(calls) > n  # different settings → recomputed


def test_stored_pi_of_another_code_version_is_recomputed(tmp_path, monkeypatch):
    import scraplab.sampling.importance as importance

    enc, synth, loss, x = _toy()
    calls = []
    counting_loss = lambda xh, xx, p: (calls.append(p), loss(xh, xx, p))[1]
    args = dict(encoder=_encoder_input(enc), synth_fn=synth, path_loss_fn=counting_loss, x=x, n_paths=P,
                root=tmp_path, params=list(enc.parameters()), progress=False)
    load_or_compute("toy", {"synth": "toy"}, **args)
    stored = json.loads((tmp_path / "toy.json").read_text())["settings"]
    assert stored["code_version"]["warmup"] == importance.WARMUP_VERSION
    n = len(calls)
    monkeypatch.setattr(importance, "WARMUP_VERSION", importance.WARMUP_VERSION + 1)
    load_or_compute("toy", {"synth": "toy"}, **args)
    assert len(calls) > n  # same settings, newer code: not reused


def test_waiting_ranks_never_compute(tmp_path):
    enc, synth, loss, x = _toy()
    calls = []
    counting_loss = lambda xh, xx, p: (calls.append(p), loss(xh, xx, p))[1]
    args = dict(encoder=_encoder_input(enc), synth_fn=synth, path_loss_fn=counting_loss, x=x, n_paths=P,
                root=tmp_path, params=list(enc.parameters()), progress=False)
    with pytest.raises(TimeoutError, match="toy.pt"):
        load_or_compute("toy", {"synth": "toy"}, wait_s=0.3, **args)
    assert not calls and not (tmp_path / "toy.pt").exists()
    pi = load_or_compute("toy", {"synth": "toy"}, **args)  # rank 0
    n = len(calls)
    assert torch.equal(load_or_compute("toy", {"synth": "toy"}, wait_s=0.3, **args), pi) and len(calls) == n


def test_multi_batch_reductions():
    """eig_mean = mean of per-batch λ (paper's E_x); operator_mean = λ of the batch-averaged operator (code)."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 1, bias=False).double()
    xs = [torch.randn(5, 1, 3, dtype=torch.float64) for _ in range(2)]
    loss = lambda x_hat, z, p: (x_hat ** 2).mean()
    kw = dict(params=[lin.weight], n_iter=300, tol=1e-13, progress=False, synth_kwargs=[{}, {}])
    run = lambda red: theta_importance(_Enc(lin), lambda th: th.unsqueeze(1), loss, xs, 1, batch_reduce=red, **kw)
    Hs = [2 * x.squeeze(1).T @ x.squeeze(1) / 5 for x in xs]
    lam = lambda H: torch.linalg.eigvalsh(H).abs().max().item()
    assert run("eig_mean")[0, 0] == pytest.approx((lam(Hs[0]) + lam(Hs[1])) / 2, rel=1e-6)
    assert run("operator_mean")[0, 0] == pytest.approx(lam((Hs[0] + Hs[1]) / 2), rel=1e-6)


# ---------------------------------------------------------------- fast ('local') method vs the direct double backward
def _scrapl_problem(seed=0, B=3):
    """Tiny real problem: SCRAPL path losses (14 paths) of a two-parameter tone synth, a small MLP encoder, float64."""
    from scraplab.losses.scrapl import SCRAPLLoss

    n = 1024
    loss = SCRAPLLoss(shape=n, J=4, Q=(2, 1), J_fr=2, Q_fr=1).double()
    t = torch.arange(n, dtype=torch.float64) / n

    def synth(theta):  # amplitude and frequency per example: (B, 2) -> (B, 1, n)
        freq = 40.0 + 200.0 * theta[:, 1:]
        return (theta[:, :1] * torch.sin(2 * torch.pi * freq * t) * torch.hann_window(n, dtype=torch.float64)
                ).unsqueeze(1)

    g = torch.Generator().manual_seed(seed)
    x = synth(torch.rand(B, 2, dtype=torch.float64, generator=g)) + 0.01 * torch.randn(B, 1, n, generator=g,
                                                                                        dtype=torch.float64)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(32, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2), torch.nn.Sigmoid())
    net = net.double()
    enc = _Enc(torch.nn.Sequential(torch.nn.Unflatten(1, (32, 32)), _Mean(), net))
    return enc, synth, (lambda x_hat, xx, p: loss(x_hat, xx, paths=[p])), x, loss.n_paths


class _Mean(torch.nn.Module):
    def forward(self, z):  # (B, 32, 32) -> (B, 32): frame energies as features
        return z.square().mean(-1).sqrt()


def test_local_method_equals_direct_on_scrapl_paths():
    enc, synth, loss, x, n_paths = _scrapl_problem()
    kw = dict(n_iter=5, tol=0.0, progress=False, path_range=(4, 11))  # both rates (n2) of the 14 paths
    direct = theta_importance(enc, synth, loss, x, n_paths, method="direct", vectorize=False, **kw)
    local = theta_importance(enc, synth, loss, x, n_paths, method="local", **kw)
    full = theta_importance(enc, synth, loss, x, n_paths, method="local", per_example=False, vectorize=False, **kw)
    assert direct.shape == (7, 2) and (direct > 0).all()
    assert float(direct.max() / direct.min()) > 2  # the paths differ: a non-trivial comparison
    torch.testing.assert_close(local, direct, rtol=1e-8, atol=0)
    torch.testing.assert_close(full, direct, rtol=1e-8, atol=0)
    # the toy problem too, with both reductions over two batches
    enc2, synth2, loss2, x2 = _toy()
    e2 = _encoder_input(enc2)
    for red in ("eig_mean", "operator_mean"):
        kw2 = dict(params=list(enc2.parameters()), progress=False, batch_reduce=red, synth_kwargs=[{}, {}])
        a = theta_importance(e2, synth2, loss2, [x2[:2], x2[2:]], P, method="direct", **kw2)
        b = theta_importance(e2, synth2, loss2, [x2[:2], x2[2:]], P, method="local", **kw2)
        torch.testing.assert_close(b, a, rtol=1e-8, atol=1e-30)


def test_local_method_differentiates_synth_and_loss_once_per_path():
    """Gradients reach the synth output 1 + U times per path (s, then U Hessian probes) whatever n_iter; the direct
    method back-propagates through it in every power iteration."""
    enc, synth, loss, x, n_paths = _scrapl_problem(B=2)
    visits = []

    def counting_synth(theta):
        y = synth(theta)
        if y.requires_grad:
            y.register_hook(lambda g: visits.append(1))
        return y

    def count(method, n_iter):
        visits.clear()
        theta_importance(enc, counting_synth, loss, x, n_paths, path_range=(3, 4), n_iter=n_iter, tol=0.0,
                         method=method, vectorize=False, progress=False, check_determinism=False)
        return len(visits)

    assert count("local", 2) == count("local", 7) == 1 + 2
    assert count("direct", 7) > count("direct", 2) > 3


def test_loss_derivatives_match_the_autograd_hessian():
    from scraplab.sampling.importance import loss_derivatives

    B, Uh = 3, 2
    W = torch.randn(B * Uh, B * Uh, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def separable(th):  # per-example terms only
        return (torch.sin(3 * th).prod(1) + th[:, 0] ** 2 * th[:, 1]).sum()

    def coupled(th):  # couples examples
        return separable(th) + torch.tanh(W @ th.reshape(-1)).square().sum()

    th0 = torch.rand(B, Uh, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for fn, per_example in ((separable, True), (coupled, False)):
        s, K = loss_derivatives(fn, th0, per_example=per_example)
        H = torch.autograd.functional.hessian(lambda v: fn(v.reshape(B, Uh)), th0.reshape(-1)).reshape(B, Uh, B, Uh)
        g = torch.autograd.functional.jacobian(lambda v: fn(v.reshape(B, Uh)), th0.reshape(-1)).reshape(B, Uh)
        torch.testing.assert_close(s, g, rtol=1e-12, atol=1e-14)
        want = torch.stack([H[b, :, b] for b in range(B)]) if per_example else H
        torch.testing.assert_close(K, want, rtol=1e-12, atol=1e-14)
    # the block assumption is wrong for a coupled loss: the U probes then sum the cross-example blocks
    _, Kb = loss_derivatives(coupled, th0, per_example=True)
    H = torch.autograd.functional.hessian(lambda v: coupled(v.reshape(B, Uh)), th0.reshape(-1)).reshape(B, Uh, B, Uh)
    assert not torch.allclose(Kb, torch.stack([H[b, :, b] for b in range(B)]))


def test_coupled_loss_needs_per_example_false():
    enc, synth, _, x = _toy()
    e = _encoder_input(enc)

    def coupled(x_hat, xx, p):  # the batch mean of x_hat enters a nonlinearity: examples interact
        return (x_hat.mean(0) - xx.mean(0)).square().sum() * (x_hat - xx).square().mean() * (p + 1)

    kw = dict(params=list(enc.parameters()), progress=False, n_iter=8, tol=0.0)
    direct = theta_importance(e, synth, coupled, x, 2, method="direct", **kw)
    full = theta_importance(e, synth, coupled, x, 2, method="local", per_example=False, **kw)
    block = theta_importance(e, synth, coupled, x, 2, method="local", per_example=True, **kw)
    torch.testing.assert_close(full, direct, rtol=1e-8, atol=0)
    assert not torch.allclose(block, direct, rtol=1e-3)
    with pytest.raises(ValueError, match="method"):
        theta_importance(e, synth, coupled, x, 2, method="gauss_newton", **kw)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_lanczos_reaches_the_exact_eigenvalue_in_fewer_products_than_power_iteration(sign):
    """An 8-dim linear 'encoder' with a quadratic loss (explicit Hessian with close top eigenvalues): Lanczos is
    exact after d steps and, at 5 steps, closer to |λ_max| than 5 power iterations; a negative-definite operator
    gives |λ| of the largest magnitude."""
    torch.manual_seed(3)
    d = 8
    lin = torch.nn.Linear(d, 1, bias=False).double()
    x = torch.randn(40, 1, d, dtype=torch.float64) * torch.linspace(1.0, 1.2, d, dtype=torch.float64)
    enc = lambda z: lin(z.squeeze(1))
    loss = lambda x_hat, z, p: sign * (p + 1.0) * (x_hat ** 2).mean()
    z = x.squeeze(1)
    exact = [torch.linalg.eigvalsh(2 * (p + 1.0) * z.T @ z / z.shape[0]).abs().max().item() for p in range(2)]
    kw = dict(params=[lin.weight], tol=0.0, progress=False)
    full = theta_importance(enc, lambda th: th.unsqueeze(1), loss, x, 2, n_iter=d, solver="lanczos", **kw)
    few_l = theta_importance(enc, lambda th: th.unsqueeze(1), loss, x, 2, n_iter=5, solver="lanczos", **kw)
    few_p = theta_importance(enc, lambda th: th.unsqueeze(1), loss, x, 2, n_iter=5, solver="power", **kw)
    for p in range(2):
        assert full[p, 0] == pytest.approx(exact[p], rel=1e-9)
        assert abs(few_l[p, 0] - exact[p]) < abs(few_p[p, 0] - exact[p])
    with pytest.raises(ValueError, match="solver"):
        theta_importance(enc, lambda th: th.unsqueeze(1), loss, x, 2, solver="arnoldi", **kw)


def test_power_iteration_creeps_towards_the_lanczos_value():
    """On the toy problem the power iteration converges slowly (close top eigenvalues): 400 and 2000 iterations
    move monotonically towards the converged Lanczos value (60 and 120 steps agree) and never exceed it."""
    enc, synth, loss, x = _toy()
    e = _encoder_input(enc)
    kw = dict(params=list(enc.parameters()), progress=False, tol=0.0)
    l60 = theta_importance(e, synth, loss, x, P, n_iter=60, solver="lanczos", **kw)
    l120 = theta_importance(e, synth, loss, x, P, n_iter=120, solver="lanczos", **kw)
    torch.testing.assert_close(l60, l120, rtol=1e-9, atol=1e-12)
    p400 = theta_importance(e, synth, loss, x, P, n_iter=400, **kw)
    p2000 = theta_importance(e, synth, loss, x, P, n_iter=2000, **kw)
    assert ((l60 - p2000).abs() <= (l60 - p400).abs() + 1e-12).all()
    assert (p2000 <= l60 * (1 + 1e-9)).all() and float((l60 - p400).abs().max()) > 0.1
