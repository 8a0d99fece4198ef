"""Matching by optimisation (scraplab.matching): recovery, batching = per-target runs, restarts, stopping, errors."""
from __future__ import annotations

import math

import pytest
import torch

from scraplab.losses import SCRAPLLoss
from scraplab.matching import optimize_theta, per_example_loss
from scraplab.matching.warmup import direct_theta_is
from scraplab.optim import factories
from scraplab.sampling import PathSampler
from scraplab.synths import GranularSynth, Param, Synth

N = 1024


class ToneSynth(Synth):
    """θ = (level, offset): level·sin(2π·64 t) + offset. The L2 loss is a convex quadratic in (level, offset)."""

    def __init__(self, n_samples: int = N):
        super().__init__(8192, n_samples)
        self.params = (Param("level", 0.0, 1.0), Param("offset", -0.5, 0.5))

    def render(self, phys, seed):
        t = torch.arange(self.n_samples, dtype=phys["level"].dtype) / self.sample_rate
        return phys["level"][:, None] * torch.sin(2 * math.pi * 64 * t)[None] + phys["offset"][:, None]


class L2(torch.nn.Module):
    def forward(self, x_hat, x):
        return (x_hat - x).square().mean()


def _targets(synth, theta, seed=100):
    with torch.no_grad():
        return synth(theta, torch.arange(theta.shape[0]) + seed)


def test_recovers_known_theta_on_convex_loss():
    synth = ToneSynth()
    theta = torch.tensor([[0.3, 0.8], [0.7, 0.2], [0.5, 0.5]], dtype=torch.float64)
    res = optimize_theta(synth, L2(), _targets(synth, theta), steps=300, lr=0.05, seed=3)
    assert res.theta.shape == (3, 2)
    assert (res.theta - theta).abs().max() < 0.01
    start = res.theta_curve[0, :, 0]
    assert (start - theta).abs().mean() > 0.1  # it did move from somewhere else
    assert res.curve.shape == (300, 3, 1) and res.curve[-1].mean() < 1e-2 * res.curve[0].mean()


def test_path_aware_optimizer_recovers_level_with_scrapl():
    """With only the level free, every path's distance is |a − a*|·‖S_p(sin)‖: one random path per step suffices."""
    synth = ToneSynth(2048)
    loss = SCRAPLLoss(shape=2048, J=6, Q=(4, 2), J_fr=2, Q_fr=1).double()
    theta = torch.tensor([[0.25, 0.5], [0.75, 0.5]], dtype=torch.float64)
    init = torch.tensor([[0.6, 0.5], [0.4, 0.5]], dtype=torch.float64)
    opt = lambda params, n_paths=None: factories.p_adam(params, n_paths=n_paths, lr=0.02, weight_decay=0.0,
                                                        eps=1e-20)
    res = optimize_theta(synth, loss, _targets(synth, theta).double(), steps=150, init=init, optimizer=opt)
    assert (res.theta[:, 0] - theta[:, 0]).abs().max() < 0.03


def _granular():
    return GranularSynth(n_samples=2048, n_grains=4, grain_n_samples=512)


def test_batch_equals_per_target_runs_meso_psaga():
    synth = _granular()
    loss = SCRAPLLoss(shape=2048, J=6, Q=(4, 2), J_fr=2, Q_fr=1).double()
    theta = torch.tensor([[0.2, 0.3], [0.6, 0.9], [0.8, 0.4]], dtype=torch.float64)
    x = _targets(synth, theta).double()
    opt = lambda params, n_paths=None: factories.p_saga(params, n_paths=n_paths, lr=0.05, weight_decay=0.0,
                                                        eps=1e-20)
    kw = dict(steps=12, optimizer=opt, seed=5, meso=True, record_every=3, restarts=2)
    batch = optimize_theta(synth, loss, x, **kw)
    for t in range(3):
        alone = optimize_theta(synth, loss, x[t:t + 1], target_ids=[t],
                               init=batch.theta_curve[0, t:t + 1], **kw)
        torch.testing.assert_close(alone.theta_curve[:, 0], batch.theta_curve[:, t], rtol=0, atol=1e-9)
        torch.testing.assert_close(alone.curve[:, 0], batch.curve[:, t], rtol=0, atol=1e-12)
    # meso: different steps render with different seeds, so the loss of a fixed θ is not constant
    assert batch.curve[:, 0, 0].unique().numel() > 1


def test_restarts_keep_the_lowest_final_loss_and_chunks_change_nothing():
    synth = ToneSynth()
    theta = torch.tensor([[0.3, 0.8], [0.7, 0.2]], dtype=torch.float64)
    x = _targets(synth, theta)
    res = optimize_theta(synth, L2(), x, steps=5, restarts=3, lr=0.05)
    assert res.theta_all.shape == (2, 3, 2) and res.loss_all.shape == (2, 3)
    torch.testing.assert_close(res.final_loss, res.loss_all.min(dim=1).values)
    torch.testing.assert_close(res.theta, res.theta_all[torch.arange(2), res.loss_all.argmin(1)])
    chunked = optimize_theta(synth, L2(), x, steps=5, restarts=3, lr=0.05, chunk_size=2)
    torch.testing.assert_close(chunked.theta_all, res.theta_all)


def test_patience_stops_a_converged_run():
    synth = ToneSynth()
    theta = torch.tensor([[0.3, 0.8]], dtype=torch.float64)
    res = optimize_theta(synth, L2(), _targets(synth, theta), steps=2000, lr=0.05, patience=30, min_delta=1e-3)
    assert res.stopped_early and res.steps < 2000
    assert (res.theta - theta).abs().max() < 0.02


def test_per_example_loss_scores_each_pair_alone():
    from scraplab.losses.spectral import RandomMSSLoss
    x = torch.randn(3, 1, 2048)
    y = x + 0.1 * torch.randn(3, 1, 2048)
    loss = SCRAPLLoss(shape=2048, J=6, Q=(4, 2), J_fr=2, Q_fr=1)
    per = per_example_loss(loss, y, x, paths=[3])
    torch.testing.assert_close(per[1], loss(y[1:2], x[1:2], paths=[3]))
    torch.testing.assert_close(per.mean(), loss(y, x, paths=[3]))
    rnd = per_example_loss(RandomMSSLoss(seed=0), y, x)
    assert rnd.shape == (3,) and torch.isfinite(rnd).all()


def test_direct_theta_is_gives_a_distribution_over_paths():
    synth = _granular()
    loss = SCRAPLLoss(shape=2048, J=6, Q=(4, 2), J_fr=2, Q_fr=1)
    theta = torch.tensor([[0.3, 0.6], [0.7, 0.2]])
    probs, vals, cpu = direct_theta_is(synth, loss, _targets(synth, theta), torch.full((2, 2), 0.5), n_iter=5)
    assert probs.shape == (loss.n_paths,) and abs(float(probs.sum()) - 1) < 1e-9
    assert vals.shape == (loss.n_paths, 2) and cpu >= 0
    assert probs.max() > 1.5 / loss.n_paths  # curvature differs between paths


@pytest.mark.parametrize("kw, match", [
    (dict(targets=torch.zeros(2, N)), r"\(T, 1, N\)"),
    (dict(targets=torch.zeros(2, 1, 100)), "samples but the synth renders"),
    (dict(targets=torch.zeros(0, 1, N)), "empty"),
    (dict(steps=0), "steps and restarts"),
    (dict(restarts=0), "steps and restarts"),
    (dict(init=torch.full((2, 2), 1.5)), r"init θ must be finite and in \[0, 1\]"),
    (dict(init=torch.zeros(3, 2)), "init must be"),
    (dict(target_ids=[1]), "target_ids needs 2"),
    (dict(chunk_size=0), "chunk_size"),
])
def test_bad_input_gives_clear_errors(kw, match):
    synth = ToneSynth()
    args = dict(targets=torch.zeros(2, 1, N), steps=2)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        optimize_theta(synth, L2(), **args)


def test_sampler_with_the_wrong_path_count_is_refused():
    synth = ToneSynth(2048)
    loss = SCRAPLLoss(shape=2048, J=6, Q=(4, 2), J_fr=2, Q_fr=1)
    with pytest.raises(ValueError, match="paths but the loss has"):
        optimize_theta(synth, loss, torch.zeros(1, 1, 2048), steps=1, sampler=PathSampler(loss.n_paths + 1))
