"""Across-seed statistics in the paper's form (digest ``paper_and_package.md`` §2.1: the authors'
``plot_loss.py`` and ``calc_p_vals.py``).

* :func:`mean_ci95` — mean and the half-width ``1.96 · std(ddof=0) / √n`` (the paper's 95 % CI over runs; note the
  population std and the normal quantile, as in the authors' script, not a t-interval).
* :func:`paired_test` — for the ablation deltas (Table 6): mean of the per-seed differences ``b − a``, its 95 %
  t-interval half-width ``t_{0.975, n−1} · std(ddof=1) / √n`` and the two-sided p-value of ``scipy.stats.ttest_rel``.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from scipy import stats


def _finite(values: Sequence[float], what: str) -> np.ndarray:
    v = np.asarray([float(x) for x in values], dtype=np.float64)
    if v.size == 0:
        raise ValueError(f"{what}: no values")
    if not np.isfinite(v).all():
        raise ValueError(f"{what}: non-finite values {v.tolist()}")
    return v


def mean_ci95(values: Sequence[float], what: str = "values") -> tuple[float, float]:
    """``(mean, 1.96·std(ddof=0)/√n)``; the half-width is 0 for a single run."""
    v = _finite(values, what)
    return float(v.mean()), float(1.96 * v.std(ddof=0) / math.sqrt(v.size))


def paired_test(a: Sequence[float], b: Sequence[float], what: str = "paired values") -> dict[str, Optional[float]]:
    """Paired comparison of ``b`` against ``a`` (same seeds, same order).

    Returns ``{"n", "delta_mean", "t_ci95", "p_value"}``; ``t_ci95`` and ``p_value`` are None when n < 2 or when
    every difference is identical (zero variance: the t statistic is undefined).
    """
    a, b = _finite(a, what), _finite(b, what)
    if a.shape != b.shape:
        raise ValueError(f"{what}: paired samples need equal lengths, got {a.size} and {b.size}")
    d = b - a
    out: dict[str, Optional[float]] = {"n": int(d.size), "delta_mean": float(d.mean()), "t_ci95": None,
                                       "p_value": None}
    if d.size >= 2 and d.std(ddof=1) > 0:
        out["t_ci95"] = float(stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size))
        out["p_value"] = float(stats.ttest_rel(b, a).pvalue)
    return out
