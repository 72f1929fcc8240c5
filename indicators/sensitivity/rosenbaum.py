"""Rosenbaum bounds for matched pairs (Rosenbaum, Observational Studies, 2nd ed. 2002, ch. 4).

Γ ≥ 1 is how much more likely one member of a matched pair may be to receive the treatment than
the other because of an unmeasured covariate. For each Γ the one-sided p-value of the test of no
effect is bounded above; the *sensitivity* Γ of a result is the largest Γ at which that bound is still
below alpha: a hidden bias of that size could explain the result away, a smaller one could not.

* Continuous outcomes: Wilcoxon's signed-rank statistic of the pair differences, large-sample normal
  bound (as ``rbounds::psens`` and ``DOS2::senWilcox``), tested in the direction of the estimate.
* Binary outcomes: McNemar's test on the discordant pairs; under Γ the count of discordant pairs in
  the direction of the estimate is at most Binomial(D, Γ / (1 + Γ)) (``rbounds::binarysens``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

# Largest Γ searched: beyond it a result is reported as insensitive up to this bound.
GAMMA_MAX = 50.0


def signed_rank_upper_p(differences: np.ndarray, gamma: float) -> float:
    """Upper bound of the one-sided p-value of Wilcoxon's signed-rank test (H1: differences > 0)
    under a hidden bias Γ (normal approximation; zero differences dropped, ties given mid-ranks)."""
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d) & (d != 0)]
    if d.size == 0:
        return 1.0
    ranks = stats.rankdata(np.abs(d))
    t = float(ranks[d > 0].sum())
    p_plus = gamma / (1.0 + gamma)
    mean = p_plus * ranks.sum()
    var = p_plus * (1 - p_plus) * (ranks**2).sum()
    return float(stats.norm.sf((t - mean) / math.sqrt(var)))


def mcnemar_upper_p(n_favour: int, n_discordant: int, gamma: float) -> float:
    """Upper bound of the one-sided p-value of McNemar's test: P(Binomial(D, Γ/(1+Γ)) ≥ n_favour)."""
    if n_discordant == 0:
        return 1.0
    return float(stats.binom.sf(n_favour - 1, n_discordant, gamma / (1.0 + gamma)))


def sensitivity_gamma(upper_p, alpha: float) -> float | None:  # noqa: ANN001 - Γ → p bound
    """Largest Γ whose p-value bound stays below ``alpha`` (the bound rises with Γ); None when the
    result is not significant even without hidden bias (Γ = 1); GAMMA_MAX when still significant there."""
    if upper_p(1.0) >= alpha:
        return None
    if upper_p(GAMMA_MAX) < alpha:
        return GAMMA_MAX
    return float(optimize.brentq(lambda g: upper_p(g) - alpha, 1.0, GAMMA_MAX, xtol=1e-6))


@dataclass(frozen=True)
class RosenbaumBound:
    """The sensitivity Γ of one headline's matched-pair test."""

    id: str
    test: str                 # "signed_rank" or "mcnemar"
    direction: str            # "treated_higher" or "treated_lower": the one-sided alternative tested
    n_pairs: int
    p_value: float            # one-sided p-value at Γ = 1 (no hidden bias)
    gamma: float | None       # largest Γ still significant at alpha (None: not significant at Γ = 1)
    alpha: float
    n_discordant: int | None = None

    def summary_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"id": self.id, "test": self.test, "direction": self.direction,
                              "n_pairs": self.n_pairs, "n_discordant": self.n_discordant,
                              "p_value": self.p_value, "gamma": self.gamma, "alpha": self.alpha}])


def signed_rank_bound(id: str, differences: np.ndarray, alpha: float, direction: str) -> RosenbaumBound:
    """Sensitivity of the signed-rank test of pair differences (treated − control), one-sided in
    ``direction`` ("treated_higher" or "treated_lower")."""
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    signed = d if direction == "treated_higher" else -d
    gamma = sensitivity_gamma(lambda g: signed_rank_upper_p(signed, g), alpha)
    return RosenbaumBound(id, "signed_rank", direction, int(d.size), signed_rank_upper_p(signed, 1.0), gamma, alpha)


def mcnemar_bound(id: str, treated: np.ndarray, control: np.ndarray, alpha: float, direction: str) -> RosenbaumBound:
    """Sensitivity of McNemar's test on binary pair outcomes (1 = event), one-sided in ``direction``."""
    t, c = np.asarray(treated, dtype=int), np.asarray(control, dtype=int)
    t_only, c_only = int(((t == 1) & (c == 0)).sum()), int(((t == 0) & (c == 1)).sum())
    favour = t_only if direction == "treated_higher" else c_only
    d = t_only + c_only
    gamma = sensitivity_gamma(lambda g: mcnemar_upper_p(favour, d, g), alpha)
    return RosenbaumBound(id, "mcnemar", direction, int(t.size), mcnemar_upper_p(favour, d, 1.0), gamma, alpha, d)
