"""θ-IS with a shared first layer: the quadratic model of synth + scalogram gives every path the same s and ∂s/∂θ̃
as differentiating them per path (float64), the split loss equals the loss, and the synth is differentiated once
per batch instead of once per path."""
import pytest
import torch

from scraplab.losses.scrapl import SCRAPLLoss
from scraplab.sampling.importance import build_front_models, loss_derivatives, theta_importance
from scraplab.sampling.taylor import model_bytes, path_derivatives, quadratic_model
from scraplab.synths import GranularSynth


def _granular(B=3, seed=0):
    synth = GranularSynth(n_samples=2048, n_grains=6, grain_n_samples=512)
    loss = SCRAPLLoss(shape=2048, J=6, Q=(4, 1), J_fr=2, Q_fr=1).double()
    g = torch.Generator().manual_seed(seed)
    seeds = torch.arange(B) + 10
    with torch.no_grad():
        x = synth(torch.rand(B, 2, dtype=torch.float64, generator=g) * 0.8 + 0.1, seeds + 100)
    theta0 = torch.rand(B, 2, dtype=torch.float64, generator=g) * 0.8 + 0.1
    return synth, loss, seeds, x, theta0


def test_split_loss_equals_the_loss():
    torch.manual_seed(0)
    for first_order in (False, True):
        loss = SCRAPLLoss(shape=1024, J=4, Q=(2, 1), J_fr=2, Q_fr=1, first_order=first_order).double()
        x_hat, x = torch.randn(2, 3, 1024, dtype=torch.float64), torch.randn(2, 3, 1024, dtype=torch.float64)
        U1 = loss.first_layer(x_hat)
        for paths in ([0], [loss.n_paths - 1], [1, 5, 2]):
            for red in ("mean", "none"):
                torch.testing.assert_close(loss.from_first_layer(U1, x, paths, reduction=red),
                                           loss(x_hat, x, paths=paths, reduction=red), rtol=1e-13, atol=0)
    with pytest.raises(ValueError, match="rows"):
        loss.from_first_layer(U1, x[:1], [0])
    with pytest.raises(ValueError, match="out of range"):  # the same path checks as forward
        loss.from_first_layer(U1, x, [loss.n_paths])
    with pytest.raises(ValueError, match="must not be empty"):
        loss.from_first_layer(U1, x, [])


def test_quadratic_model_gives_every_path_the_same_gradient_and_hessian():
    synth, loss, seeds, x, theta0 = _granular()
    model = quadratic_model(lambda th: loss.first_layer(synth(th, seeds)), theta0)
    for y, y0 in zip(model(theta0), loss.first_layer(synth(theta0, seeds))):  # value at θ̃0
        torch.testing.assert_close(y, y0, rtol=1e-13, atol=1e-15)
    checked = 0
    for p in range(0, loss.n_paths, 3):
        s1, K1 = loss_derivatives(lambda th: loss(synth(th, seeds), x, paths=[p]), theta0)
        s2, K2 = loss_derivatives(lambda th: loss.from_first_layer(model(th), x, [p]), theta0)
        s3, K3 = path_derivatives(model, lambda F: loss.from_first_layer(F, x, [p]))  # chain rule, no model pass
        assert K1.abs().max() > 0 and s1.abs().max() > 0 and K1[:, 0, 1].abs().max() > 0
        assert not (s3.requires_grad or K3.requires_grad)  # no graph kept alive by the caller's per-path values
        for s_, K_ in ((s2, K2), (s3, K3)):
            torch.testing.assert_close(s_, s1, rtol=1e-9, atol=1e-12 * float(s1.abs().max()))
            torch.testing.assert_close(K_, K1, rtol=1e-8, atol=1e-10 * float(K1.abs().max()))
        checked += 1
    assert checked >= 3
    # off θ̃0 the model is only second-order accurate: it is a model, not the function
    far = [y.abs().max() for y in (a - b for a, b in zip(model(theta0 + 0.2), loss.first_layer(synth(theta0 + 0.2, seeds))))]
    assert max(far) > 1e-8
    assert model.nbytes == model_bytes(loss.first_layer(synth(theta0, seeds)), 2)
    assert quadratic_model(lambda th: loss.first_layer(synth(th, seeds)), theta0, max_bytes=1000) is None


class _Enc(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(32, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2),
                                       torch.nn.Sigmoid()).double()
        self.n = n

    def forward(self, x):  # (B, 1, n) -> (B, 2): 32 frame energies as features
        return self.net(x.reshape(x.shape[0], 32, -1).square().mean(-1).sqrt())


def _warmup_problem():
    synth, loss, seeds, x, _ = _granular(B=4)
    enc = _Enc(2048)
    path_loss = lambda x_hat, xx, p: loss(x_hat, xx, paths=[p])  # noqa: E731
    front = (loss.first_layer, lambda U1, xx, p: loss.from_first_layer(U1, xx, [p]))
    kw = dict(synth_kwargs=[{"seed": seeds[:2]}, {"seed": seeds[2:]}], n_iter=4, tol=0.0, progress=False)
    return enc, synth, loss, path_loss, front, [x[:2], x[2:]], kw


def test_shared_front_warmup_equals_the_per_path_and_direct_computations():
    enc, synth, loss, path_loss, front, xs, kw = _warmup_problem()
    rng = (0, 6)
    per_path = theta_importance(enc, synth, path_loss, xs, loss.n_paths, path_range=rng, **kw)
    shared = theta_importance(enc, synth, path_loss, xs, loss.n_paths, path_range=rng, front=front, **kw)
    direct = theta_importance(enc, synth, path_loss, xs, loss.n_paths, path_range=(2, 3), method="direct", **kw)
    assert float(per_path.max() / per_path.min()) > 2  # the paths differ: a non-trivial comparison
    torch.testing.assert_close(shared, per_path, rtol=1e-8, atol=0)
    torch.testing.assert_close(shared[2:3], direct, rtol=1e-8, atol=0)
    # the same models built beforehand (a benchmark's per-path timing), and the per-path fallback over budget
    enc.eval()
    models = build_front_models(enc, synth, xs, kw["synth_kwargs"], front[0])
    again = theta_importance(enc, synth, path_loss, xs, loss.n_paths, path_range=(3, 4), front=front,
                             front_models=models, **kw)
    assert torch.equal(again[0], shared[3])
    over = theta_importance(enc, synth, path_loss, xs, loss.n_paths, path_range=(3, 4), front=front,
                            front_max_bytes=0, **kw)
    assert torch.equal(over[0], per_path[3])  # bit for bit the per-path computation
    with pytest.raises(ValueError, match="front_models"):
        theta_importance(enc, synth, path_loss, xs, loss.n_paths, path_range=(3, 4), front=front,
                         front_models=models[:1], **kw)
    # the subspace solver takes s and ∂s/∂θ̃ from the shared model too: the same values as per path, no graph kept
    sub = [theta_importance(enc, synth, path_loss, xs, loss.n_paths, path_range=rng, solver="subspace",
                            subspace_rank=8, **extra, **kw) for extra in ({}, {"front": front})]
    torch.testing.assert_close(sub[1], sub[0], rtol=1e-8, atol=0)
    assert not sub[1].requires_grad and float(sub[1].max() / sub[1].min()) > 2


def test_shared_front_differentiates_the_synth_once_per_batch():
    enc, synth, loss, path_loss, front, xs, kw = _warmup_problem()
    visits = []

    def counting_synth(theta, seed):
        y = synth(theta, seed)
        if y.requires_grad:
            y.register_hook(lambda g: visits.append(1))
        return y

    def count(n_paths, **extra):
        visits.clear()
        theta_importance(enc, counting_synth, path_loss, xs, loss.n_paths, path_range=(0, n_paths),
                         check_determinism=False, **kw, **extra)
        return len(visits)

    assert count(1) == 2 * 3 and count(3) == 3 * 2 * 3  # per path and batch: s + U = 2 probes
    assert count(1, front=front) == count(3, front=front) > 0  # once per batch, whatever the number of paths


def test_a_float64_model_makes_the_float32_warmup_exact_to_float32():
    enc, synth, loss, path_loss, front, xs, kw = _warmup_problem()
    truth = theta_importance(enc, synth, path_loss, xs, loss.n_paths, path_range=(0, 6), **kw)
    enc32, loss32 = enc.float(), SCRAPLLoss(shape=2048, J=6, Q=(4, 1), J_fr=2, Q_fr=1)
    xs32 = [x.float() for x in xs]
    front32 = (loss.first_layer, lambda U1, xx, p: loss32.from_first_layer(U1, xx, [p]))  # float64 front end
    got = theta_importance(enc32, synth, lambda a, b, p: loss32(a, b, paths=[p]), xs32, loss.n_paths,
                           path_range=(0, 6), front=front32, front_dtype=torch.float64, **kw)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, truth, rtol=2e-3, atol=0)


def test_the_training_app_shares_the_first_layer_unless_told_not_to(tmp_path):
    import lightning as L

    from scraplab.cli.build import build_all
    from scraplab.cli.train import theta_is_problem
    from scraplab.sampling.importance import warmup_record
    from train_helpers import tiny_cfg

    def problem(extra):
        cfg = tiny_cfg("granular", "scrapl", tmp_path, ["sampler=theta_is", "sampler.warmup.n_examples=2",
                                                        "sampler.warmup.batch_size=2", *extra])
        L.seed_everything(0)
        return theta_is_problem(build_all(cfg), cfg)

    shared, per_path = problem([]), problem(["sampler.warmup.share_first_layer=false"])
    assert per_path["front"] is None and per_path["front_dtype"] is None
    assert shared["front"] is not None and shared["front_dtype"] == torch.float64
    assert shared["name"] == per_path["name"]  # the same problem; the records tell the computations apart
    rec = lambda pr: warmup_record(pr["settings"], pr["n_paths"], 2, shared_front=pr["front"] is not None)  # noqa: E731
    assert rec(shared)["first_layer"] == "shared" and "first_layer" not in rec(per_path)
    # the shared front end's split loss is the training loss
    x = shared["x"][0]
    x_hat = x.flip(0)
    loss = shared["path_loss_fn"]
    U1 = shared["front"][0](x_hat.double())  # the float64 copy's first layer
    got = shared["front"][1]([u.to(torch.complex64) for u in U1], x, 3)
    torch.testing.assert_close(got, loss(x_hat, x, 3), rtol=1e-4, atol=0)


def test_path_derivatives_with_three_parameters():
    """Off-diagonal second derivatives of every pair (u < v) land in both halves of K."""
    loss = SCRAPLLoss(shape=1024, J=4, Q=(2, 1), J_fr=2, Q_fr=1).double()
    t = torch.arange(1024, dtype=torch.float64) / 1024

    def synth(th):  # amplitude, frequency, decay: (B, 3) -> (B, 1, 1024)
        return (th[:, :1] * torch.sin(2 * torch.pi * (40 + 200 * th[:, 1:2]) * t)
                * torch.exp(-4 * th[:, 2:] * t)).unsqueeze(1)

    g = torch.Generator().manual_seed(3)
    x = synth(torch.rand(2, 3, dtype=torch.float64, generator=g))
    theta0 = torch.rand(2, 3, dtype=torch.float64, generator=g)
    model = quadratic_model(lambda th: loss.first_layer(synth(th)), theta0)
    for p in (1, 6, 11):
        s1, K1 = loss_derivatives(lambda th: loss(synth(th), x, paths=[p]), theta0)
        s2, K2 = path_derivatives(model, lambda F: loss.from_first_layer(F, x, [p]))
        assert (K1[:, 0, 2].abs() > 0).all() and (K1[:, 1, 2].abs() > 0).all()
        torch.testing.assert_close(s2, s1, rtol=1e-9, atol=1e-13 * float(s1.abs().max()))
        torch.testing.assert_close(K2, K1, rtol=1e-8, atol=1e-11 * float(K1.abs().max()))
