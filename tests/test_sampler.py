"""PathSampler: determinism across ranks and restores, modes, weights, validation."""
import io

import pytest
import torch

from scraplab.sampling import PathSampler


def _seq(s, steps):
    return [s.draw(k) for k in steps]


@pytest.mark.parametrize("mode", ["uniform", "all_first", "adaptive", "fixed"])
def test_same_sequence_on_two_ranks_and_after_restore(mode):
    probs = torch.softmax(torch.arange(9, dtype=torch.float64), 0) if mode == "fixed" else None
    a = PathSampler(9, mode=mode, budget=2, seed=7, probs=probs)
    torch.manual_seed(0)
    sa = _seq(a, range(40))
    b = PathSampler(9, mode=mode, budget=2, seed=7, probs=probs)
    torch.manual_seed(123)  # a different global RNG state on the "other rank" must not matter
    torch.rand(5)
    assert _seq(b, range(40)) == sa
    assert all(len(set(p)) == 2 for p in sa)
    assert len({tuple(p) for p in sa}) > 5  # it is not constant
    # resume: adaptive state included
    c = PathSampler(9, mode=mode, budget=2, seed=7, probs=probs)
    for k in range(20):
        c.observe(c.draw(k), {"grad_norm": float(k % 3 + 1)})
    buf = io.BytesIO()
    torch.save(c.state_dict(), buf)
    buf.seek(0)
    d = PathSampler(9, mode=mode, budget=2, seed=7, probs=probs)
    d.load_state_dict(torch.load(buf, weights_only=True))
    assert _seq(d, range(20, 40)) == _seq(c, range(20, 40))
    assert PathSampler(9, mode=mode, budget=2, seed=8, probs=probs).draw(3) != a.draw(3) or \
        PathSampler(9, mode=mode, budget=2, seed=8, probs=probs).draw(4) != a.draw(4)


def test_all_first_visits_every_path_then_follows_pi():
    s = PathSampler(10, mode="all_first", budget=3, seed=1, probs=torch.eye(10, dtype=torch.float64)[2] * 0.5
                    + torch.eye(10, dtype=torch.float64)[5] * 0.5)
    first = [p for k in range(4) for p in s.draw(k)]  # ⌈10/3⌉ = 4 steps, last one filled from π
    assert set(first[:10]) == set(range(10)) and len(first) == 12
    with pytest.raises(ValueError, match="fewer than budget"):
        s.draw(4)  # π has only 2 non-zero paths but budget is 3
    s2 = PathSampler(10, mode="all_first", budget=1, seed=1, probs=torch.eye(10, dtype=torch.float64)[2])
    assert sorted(p for k in range(10) for p in s2.draw(k)) == list(range(10))
    assert {s2.draw(k)[0] for k in range(10, 30)} == {2}


def test_fixed_mode_frequencies_weights_and_floor():
    pi = torch.tensor([0.7, 0.2, 0.1, 0.0], dtype=torch.float64)
    s = PathSampler(4, mode="fixed", probs=pi, importance_weighted=True, min_prob_frac=0.2)
    expected = 0.8 * pi + 0.05
    torch.testing.assert_close(s.probs, expected)
    assert s.probs.dtype == torch.float64 and float(s.probs.sum()) == pytest.approx(1.0, abs=1e-15)
    counts = torch.bincount(torch.tensor([s.draw(k)[0] for k in range(4000)]), minlength=4).double() / 4000
    assert torch.allclose(counts, expected, atol=0.03)
    w = s.weights([0, 3])
    assert w == pytest.approx([1 / (4 * expected[0].item()), 1 / (4 * expected[3].item())])
    # unbiased: E_π[w_p L_p] equals the mean over paths
    L = torch.tensor([1.0, 5.0, -2.0, 3.0], dtype=torch.float64)
    assert sum(expected[p] * s.weights([p])[0] * L[p] for p in range(4)) == pytest.approx(L.mean().item())
    assert PathSampler(4, mode="fixed", probs=pi).weights([0, 1]) == [1.0, 1.0]


def test_fixed_needs_warmup_and_probs_file(tmp_path):
    s = PathSampler(5, mode="fixed")
    assert s.needs_warmup
    with pytest.raises(RuntimeError, match="θ-IS"):
        s.draw(0)
    f = tmp_path / "pi.pt"
    torch.save(torch.tensor([0.1, 0.2, 0.3, 0.2, 0.2]), f)
    s2 = PathSampler(5, mode="fixed", probs_path=str(f))
    assert not s2.needs_warmup and s2.probs.dtype == torch.float64
    assert not PathSampler(5, mode="uniform").needs_warmup
    with pytest.raises(ValueError, match="not found"):
        PathSampler(5, mode="fixed", probs_path=str(tmp_path / "missing.pt"))


def test_adaptive_prefers_large_gradient_paths_with_floor():
    s = PathSampler(4, mode="adaptive", adaptive_floor=0.2)
    torch.testing.assert_close(s.probs, torch.full((4,), 0.25, dtype=torch.float64))
    s.observe([0], {"grad_norm": 10.0})
    s.observe([1], {"grad_norm": 1.0})
    assert s.probs[2] == s.probs[0]  # unseen paths count as the largest observed value
    s.observe([2, 3], {"grad_norm": [1.0, 1.0]})
    pi = s.probs
    assert int(pi.argmax()) == 0 and float(pi.min()) >= 0.2 / 4 and float(pi.sum()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="grad_norm"):
        s.observe([0], {"loss": 1.0})


@pytest.mark.parametrize("kw,msg", [(dict(mode="nope"), "unknown sampler mode"), (dict(budget=0), "budget"),
                                    (dict(budget=6), "budget"), (dict(probs=[0.5, 0.6, 0, 0, 0]), "probability"),
                                    (dict(probs=[1.0, 0, 0]), "n_paths"), (dict(probs=[-0.5, 1.5, 0, 0, 0]), "negative"),
                                    (dict(min_prob_frac=1.0), "min_prob_frac")])
def test_bad_input(kw, msg):
    with pytest.raises(ValueError, match=msg):
        PathSampler(5, **{"mode": "fixed", **kw})
