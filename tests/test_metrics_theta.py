"""θ metrics (paper Tables 1–3, 7): L1 ‰ on hand-computed examples, convergence steps/rate, total variation."""
import math

import pytest
import torch

from scraplab.metrics import (convergence_rate, steps_to_convergence, theta_l1_permille, theta_l1_summary,
                              total_variation)


def test_theta_l1_hand_computed():
    theta = torch.tensor([[0.1, 0.5], [0.9, 0.0], [0.3, 1.0]], dtype=torch.float64)
    theta_hat = torch.tensor([[0.2, 0.5], [0.6, 0.25], [0.3, 0.4]], dtype=torch.float64)
    # |Δ| column 0: 0.1, 0.3, 0.0 → mean 0.1333…; column 1: 0, 0.25, 0.6 → mean 0.28333…
    per = theta_l1_permille(theta_hat, theta)
    assert per.dtype == torch.float64
    torch.testing.assert_close(per, torch.tensor([400 / 3, 850 / 3], dtype=torch.float64), rtol=0, atol=1e-12)
    s = theta_l1_summary(theta_hat, theta, ["density", "slope"])
    assert math.isclose(s["theta_l1_permille"], (400 / 3 + 850 / 3) / 2, abs_tol=1e-12)
    assert math.isclose(s["theta_l1_permille/slope"], 850 / 3, abs_tol=1e-12)


def test_theta_l1_constant_half_on_uniform_grid_is_250():
    theta = torch.linspace(0, 1, 10001, dtype=torch.float64)[:, None]
    per = theta_l1_permille(torch.full_like(theta, 0.5), theta)
    assert abs(float(per[0]) - 250.0) < 0.1


@pytest.mark.parametrize("a,b,msg", [
    (torch.zeros(3, 2), torch.zeros(3, 3), "must both be"),
    (torch.zeros(0, 2), torch.zeros(0, 2), "at least one"),
    (torch.zeros(2, 2), torch.full((2, 2), 1.5), r"\[0, 1\]"),
    (torch.full((2, 2), float("nan")), torch.zeros(2, 2), "non-finite"),
])
def test_theta_l1_bad_input(a, b, msg):
    with pytest.raises(ValueError, match=msg):
        theta_l1_permille(a, b)


def test_steps_to_convergence_strict_threshold_and_none():
    steps = [96, 192, 288, 384]
    assert steps_to_convergence(steps, [250.0, 120.0, 100.0, 99.9]) == 384  # 100 is not < 100
    assert steps_to_convergence(steps, [250.0, 80.0, 130.0, 60.0]) == 192  # first crossing, even if it bounces back
    assert steps_to_convergence(steps, [250.0, float("nan"), 130.0, 101.0]) is None
    assert steps_to_convergence(steps, [250.0, 140.0, 130.0, 101.0], threshold=135.0) == 288
    with pytest.raises(ValueError, match="same length"):
        steps_to_convergence(steps, [1.0])
    with pytest.raises(ValueError, match="non-decreasing"):
        steps_to_convergence([2, 1], [1.0, 1.0])


def test_convergence_rate():
    assert convergence_rate([96, None, 480, None, None]) == pytest.approx(0.4)
    assert convergence_rate([None]) == 0.0
    with pytest.raises(ValueError):
        convergence_rate([])


def test_total_variation_synthetic_curves():
    # monotone decrease 250 → 50 over 5 points: Σ|Δ| = 200, /5 points = 40, /4 diffs = 50
    mono = [250.0, 200.0, 150.0, 100.0, 50.0]
    assert total_variation(mono) == pytest.approx(40.0)
    assert total_variation(mono, normalize="diffs") == pytest.approx(50.0)
    # oscillating curve with the same endpoints has a larger TV
    zigzag = [250.0, 100.0, 200.0, 50.0, 50.0]
    assert total_variation(zigzag) == pytest.approx((150 + 100 + 150 + 0) / 5)
    assert total_variation(zigzag) > total_variation(mono)
    assert total_variation([42.0]) == 0.0 and total_variation([70.0, 70.0, 70.0]) == 0.0
    with pytest.raises(ValueError, match="non-finite"):
        total_variation([1.0, float("inf")])
    with pytest.raises(ValueError, match="normalize"):
        total_variation(mono, normalize="mean")
