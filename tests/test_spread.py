"""The collapse measure: spread of predicted θ against the targets' spread, logged at test time."""
import math

import pytest
import torch

from scraplab.cli.train import train
from scraplab.metrics.spread import UNIFORM_STD, is_collapsed, theta_spread
from train_helpers import tiny_cfg


def test_spread_ratio_against_targets_and_uniform():
    g = torch.Generator().manual_seed(0)
    theta = torch.rand(200, 2, generator=g, dtype=torch.float64)
    assert theta_spread(theta, theta)["theta_spread_ratio"] == pytest.approx(1.0)
    half = 0.5 + 0.5 * (theta - 0.5)  # half the spread around the centre
    out = theta_spread(half, theta, ["a", "b"])
    assert out["theta_spread_ratio/a"] == pytest.approx(0.5) and out["theta_spread_ratio/b"] == pytest.approx(0.5)
    preset = torch.full((200, 2), 0.3, dtype=torch.float64) + 1e-3 * theta  # nearly one preset for everything
    assert is_collapsed(theta_spread(preset, theta)["theta_spread_ratio"])
    # without targets the reference is θ uniform on [0, 1]
    assert theta_spread(half)["theta_spread_ratio"] == pytest.approx(float(half.std(0, unbiased=False).mean())
                                                                    / UNIFORM_STD, rel=1e-9)
    assert UNIFORM_STD == pytest.approx(1 / math.sqrt(12))
    with pytest.raises(ValueError, match="N >= 2"):
        theta_spread(theta[:1])
    with pytest.raises(ValueError, match="shape"):
        theta_spread(theta, theta[:, :1])


def test_training_reports_the_spread_in_metrics(tmp_path):
    metrics = train(tiny_cfg("granular", "param", tmp_path / "run"))
    for prefix in ("test",):  # (debug=tiny skips the untrained-encoder pass, init/...)
        ratio = metrics[f"{prefix}/theta_spread_ratio"]
        assert math.isfinite(ratio) and ratio >= 0
        assert {f"{prefix}/theta_spread_ratio/density", f"{prefix}/theta_spread_ratio/slope"} <= set(metrics)
