"""Small statistical helpers shared by several steps (declared once, here in the ground)."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

# |standardised mean difference| above which a covariate is flagged as imbalanced (cobalt/MatchIt usage).
SMD_THRESHOLD = 0.1


def wilson_interval(successes: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (NaN, NaN when n <= 0); ``n`` may be an
    effective (non-integer) size."""
    if n <= 0:
        return np.nan, np.nan
    z = float(norm.ppf(1 - (1 - level) / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def weighted_mean_var(x: np.ndarray, w: np.ndarray, *, reliability: bool = True) -> tuple[float, float]:
    """Weighted mean and variance of ``x``.

    ``reliability=True``: the unbiased variance for reliability (frequency-like) weights, the
    denominator sum(w) - sum(w²)/sum(w), as MatchIt/cobalt use for balance. ``reliability=False``:
    the plain weighted second moment about the mean (denominator sum(w)).
    """
    x = np.asarray(x, dtype=float)
    w = np.asarray(w, dtype=float)
    sw = w.sum()
    if sw <= 0 or x.size == 0:
        return np.nan, np.nan
    mean = float((w * x).sum() / sw)
    denom = sw - (w * w).sum() / sw if reliability else sw
    var = float((w * (x - mean) ** 2).sum() / denom) if denom > 0 else np.nan
    return mean, var
