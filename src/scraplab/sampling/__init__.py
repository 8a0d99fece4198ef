"""Path sampling (paper §3.1, §3.4): schedules π and the θ-importance-sampling warm-up."""
from scraplab.sampling.importance import load_or_compute, merge_shards, probs_from_values, theta_importance
from scraplab.sampling.sampler import MODES, PathSampler, check_probs

__all__ = ["MODES", "PathSampler", "check_probs", "load_or_compute", "merge_shards", "probs_from_values",
           "theta_importance"]
