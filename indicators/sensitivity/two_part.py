"""Cost-model cross-check: spending per patient-year from a two-part model, beside the bootstrap.

Part 1: logistic GLM of "any spending in follow-up" on the arm. Part 2: gamma GLM with log link of the
spending of units with any, on the arm, with offset log(patient-years). Arm rate = P(any | arm) ×
exp(b0 + b1 × arm) euros per patient-year; avoided spending = control rate − treated rate, its SE by
the delta method from the two fits' cluster-robust covariances (clusters = the bootstrap's resampling
clusters of matched sets), taken as independent. Rows are membership rows (a reused control once per
set) weighted by their within-set matching weight (``var_weights``).

The gamma model weighs every unit's rate alike (its score equation sets the mean of unit rates),
while the headline is a ratio of totals (spending over patient-years): the two agree when spending
accrues evenly over time, and a gap between them says short follow-ups weigh on the headline.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats


@dataclass(frozen=True)
class TwoPartResult:
    """Two-part model estimates of spending per patient-year by arm and of the avoided spending."""

    table: pd.DataFrame       # quantity, estimate, se, ci_low, ci_high, bootstrap_estimate, bootstrap_ci_*
    n_rows: int
    n_clusters: int
    ci_level: float
    notes: tuple[str, ...] = ()

    def summary_frame(self) -> pd.DataFrame:
        return self.table


def _fit(y: np.ndarray, X: np.ndarray, family, groups: np.ndarray, weights: np.ndarray,  # noqa: ANN001
         offset: np.ndarray | None = None):  # noqa: ANN202
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels flags cluster covariances with weights as partial
        model = sm.GLM(y, X, family=family, offset=offset, var_weights=weights)
        return model.fit(cov_type="cluster", cov_kwds={"groups": groups})


def two_part_model(spend: np.ndarray, pyears: np.ndarray, treated: np.ndarray, weights: np.ndarray,
                   clusters: np.ndarray, ci_level: float,
                   bootstrap: dict[str, tuple[float, float | None, float | None]] | None = None) -> TwoPartResult:
    """Fit both parts; ``bootstrap`` maps quantity → (estimate, ci_low, ci_high) shown beside."""
    spend, pyears = np.asarray(spend, float), np.asarray(pyears, float)
    treated, weights = np.asarray(treated, float), np.asarray(weights, float)
    X = sm.add_constant(treated, has_constant="add")
    anyp = (spend > 0).astype(float)
    notes = []
    if anyp.min() == 1.0:  # everyone has spending: part 1 is P = 1 in both arms
        p_coef, p_cov = None, None
        notes.append("every unit has spending in follow-up: part 1 is 1 in both arms")
    else:
        r1 = _fit(anyp, X, sm.families.Binomial(), clusters, weights)
        p_coef, p_cov = np.asarray(r1.params), np.asarray(r1.cov_params())
    pos = spend > 0
    r2 = _fit(spend[pos], X[pos], sm.families.Gamma(sm.families.links.Log()), clusters[pos], weights[pos],
              offset=np.log(pyears[pos]))
    g_coef, g_cov = np.asarray(r2.params), np.asarray(r2.cov_params())

    def rates(theta: np.ndarray) -> dict[str, float]:
        g = theta[:2]
        out = {}
        for name, a in (("control", 0.0), ("treated", 1.0)):
            p = 1.0 if p_coef is None else 1.0 / (1.0 + math.exp(-(theta[2] + theta[3] * a)))
            out[name] = p * math.exp(g[0] + g[1] * a)
        out["avoided"] = out["control"] - out["treated"]
        out["ratio"] = out["treated"] / out["control"]
        return out

    theta = np.concatenate([g_coef, p_coef if p_coef is not None else np.zeros(2)])
    cov = np.zeros((4, 4))
    cov[:2, :2] = g_cov
    if p_cov is not None:
        cov[2:, 2:] = p_cov
    base = rates(theta)
    z = stats.norm.ppf(0.5 + ci_level / 2)
    rows = []
    for q, est in base.items():
        grad = np.zeros(4)
        for k in range(4):
            h = 1e-6 * max(1.0, abs(theta[k]))
            up, dn = theta.copy(), theta.copy()
            up[k] += h
            dn[k] -= h
            grad[k] = (rates(up)[q] - rates(dn)[q]) / (2 * h)
        se = float(math.sqrt(max(grad @ cov @ grad, 0.0)))
        b = (bootstrap or {}).get(q, (None, None, None))
        rows.append({"quantity": q, "estimate": est, "se": se, "ci_low": est - z * se, "ci_high": est + z * se,
                     "bootstrap_estimate": b[0], "bootstrap_ci_low": b[1], "bootstrap_ci_high": b[2]})
    if not np.allclose(weights, 1.0):
        notes.append("matching weights enter as var_weights; statsmodels marks cluster covariances with "
                     "weights as partly supported")
    return TwoPartResult(pd.DataFrame(rows), int(len(spend)), int(len(np.unique(clusters))), ci_level, tuple(notes))
