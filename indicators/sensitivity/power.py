"""Reading a null correctly: the minimum detectable effect of each headline given the matched sample.

With the standard error ``se`` the matched-set bootstrap gives a headline, a two-sided test at level
alpha detects with probability ``power`` any true effect at least ``(z(1 − alpha/2) + z(power)) × se``
(normal approximation). For a ratio the same holds on the log scale, giving the minimum detectable
rate ratio MDRR = exp((z(1 − alpha/2) + z(power)) × se(log ratio)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats


def detectable_multiplier(alpha: float, power: float) -> float:
    """z(1 − alpha/2) + z(power): 2.80 for alpha 0.05 and power 0.8."""
    return float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))


def minimum_detectable_effect(se: float, alpha: float, power: float) -> float:
    """Smallest true difference detected with probability ``power`` by a two-sided level-alpha test."""
    return detectable_multiplier(alpha, power) * se


def minimum_detectable_rate_ratio(se_log: float, alpha: float, power: float) -> float:
    """MDRR: the smallest rate (risk, mean) ratio above 1 detected with probability ``power``."""
    return math.exp(detectable_multiplier(alpha, power) * se_log)


def bootstrap_se(replicates: np.ndarray) -> float:
    """Standard deviation of the finite bootstrap replicates (NaN with fewer than 2)."""
    r = np.asarray(replicates, dtype=float)
    r = r[np.isfinite(r)]
    return float(np.std(r, ddof=1)) if r.size >= 2 else float("nan")


@dataclass(frozen=True)
class DetectableEffect:
    """How large an effect the matched sample could see: MDRR (ratio scale) and MDE (headline unit)."""

    id: str
    se: float                 # bootstrap SE of the headline, in its unit
    se_log_ratio: float       # bootstrap SE of the log of the underlying ratio
    mdrr: float               # minimum detectable ratio (> 1)
    mde: float                # minimum detectable effect in the headline's unit (absolute size)
    alpha: float
    power: float

    def summary_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"id": self.id, "se": self.se, "se_log_ratio": self.se_log_ratio,
                              "mdrr": self.mdrr, "mde": self.mde, "alpha": self.alpha, "power": self.power}])
