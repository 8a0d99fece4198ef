"""Sound matching without training: θ found by optimisation through the synth (inverse synthesis)."""
from .optimize import MatchResult, ThetaLogits, optimize_theta, per_example_loss

__all__ = ["MatchResult", "ThetaLogits", "optimize_theta", "per_example_loss"]
