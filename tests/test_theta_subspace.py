"""θ-IS solver 'subspace': each path's |λ_max| from one projection of the encoder's Hessians, checked in float64
against the dense u-slice operator built column by column from the warm-up's own Hessian-vector products."""
import pytest
import torch

from scraplab.sampling.importance import (_encode, _hvp, _local_score, _slice_grads_from, loss_derivatives,
                                          theta_importance)

P, U, N = 4, 2, 12


def _problem():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(N, 5), torch.nn.Tanh(), torch.nn.Linear(5, U), torch.nn.Sigmoid()).double()

    class Enc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):  # (B, 1, N) -> (B, U)
            return self.net(x.squeeze(1))

    t = torch.linspace(0, 1, N, dtype=torch.float64)

    def synth(theta):  # a nonlinear render: K has off-diagonal terms and s is non-zero
        return (torch.sin(3 * theta[:, :1]) * torch.cos(5 * t) + theta[:, 1:] ** 3 * t).unsqueeze(1)

    def path_loss(x_hat, x, p):  # each path weighs the samples differently
        w = 1.0 + torch.arange(N, dtype=torch.float64).remainder(p + 2)
        return (w * (x_hat - x) ** 2).mean() * (p + 1)

    x = torch.randn(3, 1, N, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return Enc(), synth, path_loss, x


def _dense_values(enc, synth, loss, x):
    """|λ| of largest magnitude of every H_{u,p}, from the matrix whose columns are H_{u,p} e_i."""
    params = list(enc.parameters())
    n = sum(q.numel() for q in params)
    enc.eval()
    out = torch.zeros(P, U, dtype=torch.float64)
    for p in range(P):
        theta = _encode(enc, x)
        s0, K = loss_derivatives(lambda th: loss(synth(th), x, p), theta)
        gs = _slice_grads_from(theta, _local_score(theta, s0, K), params, False)
        cols = []
        for i in range(n):
            e = torch.zeros(n, dtype=torch.float64)
            e[i] = 1.0
            vs, k = [], 0
            for q in params:
                vs.append(e[k:k + q.numel()].view(q.shape).expand(U, *q.shape).clone())
                k += q.numel()
            cols.append(torch.cat([h.flatten(1) for h in _hvp(gs, vs, params, False)], 1))  # (U, n)
        H = torch.stack(cols, 2)  # (U, n, n): H[u][:, i] = H_u e_i
        out[p] = torch.stack([torch.linalg.eigvals(H[u]).abs().max() for u in range(U)])
    return out


def test_full_rank_projection_equals_the_dense_operator_and_partial_rank_approaches_it():
    enc, synth, loss, x = _problem()
    dense = _dense_values(enc, synth, loss, x)
    assert (dense > 0).all()
    kw = dict(progress=False, solver="subspace")
    n = sum(q.numel() for q in enc.parameters())  # 77 weights; 3 examples × (rank + U) >= 77 spans them all
    full = theta_importance(enc, synth, loss, x, P, subspace_rank=n, **kw)
    torch.testing.assert_close(full, dense, rtol=1e-9, atol=0)
    # 3 × (8 + 2) = 30 of 77 directions already hold every example's Hessian range (a 5-unit hidden layer): exact
    part = theta_importance(enc, synth, loss, x, P, subspace_rank=8, **kw)
    torch.testing.assert_close(part, dense, rtol=1e-9, atol=0)
    # a basis too small for them (3 × (2 + 2)): off by up to ~16 %, and subspace iterations bring it closer
    errs = [float(((theta_importance(enc, synth, loss, x, P, subspace_rank=2, subspace_power=q, **kw) - dense).abs()
                   / dense).max()) for q in (0, 3)]
    assert 0.1 < errs[0] and errs[1] < 0.6 * errs[0]


def test_shards_equal_one_run_and_bad_settings_are_refused():
    enc, synth, loss, x = _problem()
    kw = dict(progress=False, solver="subspace", subspace_rank=4)
    whole = theta_importance(enc, synth, loss, x, P, **kw)
    parts = torch.cat([theta_importance(enc, synth, loss, x, P, path_range=r, **kw) for r in ((0, 1), (1, P))])
    assert torch.equal(whole, parts)
    with pytest.raises(ValueError, match="subspace"):
        theta_importance(enc, synth, loss, x, P, method="direct", **kw)
    with pytest.raises(ValueError, match="subspace"):
        theta_importance(enc, synth, loss, x, P, batch_reduce="operator_mean", **kw)
    with pytest.raises(ValueError, match="subspace"):
        theta_importance(lambda z: enc(z), synth, loss, x, P, params=list(enc.parameters()), **kw)
    with pytest.raises(ValueError, match="rank"):
        theta_importance(enc, synth, loss, x, P, progress=False, solver="subspace", subspace_rank=0)
