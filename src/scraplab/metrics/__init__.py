"""Evaluation metrics of the paper (Mitcheltree et al. 2026, §4 and Tables 1–9): θ errors and convergence
(:mod:`.theta`), TR-808 perceptual features (:mod:`.features`), audio distances (:mod:`.audio`), step cost
(:mod:`.cost`). Each module is importable on its own."""
from .theta import (convergence_rate, steps_to_convergence, theta_l1_permille, theta_l1_summary,
                    total_variation)

__all__ = ["theta_l1_permille", "theta_l1_summary", "steps_to_convergence", "convergence_rate", "total_variation"]
