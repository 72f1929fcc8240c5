"""Regression cross-checks (cluster-robust by matched set) and the difference-in-differences sensitivity.

The regressions run on the membership rows (one row per unit and matched set, within-set weights), so
their point estimates equal the bootstrap's ratio estimators and only the standard errors differ:

* spending per patient-year: WLS of the unit rate (spending / patient-years) on ``treated`` with weights
  w × patient-years → coefficient = treated − control rate;
* share with ≥ 1 stay: linear probability WLS with weights w → difference of shares;
* stays per 100 patient-years: WLS of the unit rate with weights w × patient-years → difference of rates
  (a weighted Poisson GLM would give the rate ratio, but statsmodels does not support cluster-robust
  covariances with var_weights);
* DiD: long WLS (pre, post) of spending rates on treated × post with weights w × period patient-years;
  the interaction equals the ratio-estimator DiD.

All use ``cov_type='cluster'`` with groups = matched set.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from indicators.analysis import MatchedAnalysis
from indicators.results import Indicator, pct_fr
from indicators.spending import perimeter_text, perimeter_text_fr


def _rows(an: MatchedAnalysis) -> pd.DataFrame:
    mem = an.membership
    o = an.outcomes.loc[mem["unit_id"], ["pyears", "s_perimeter", "any_stay", "stays", "pre_s_perimeter",
                                         "pre_pyears", "post_s_perimeter", "post_pyears"]]
    return pd.concat([mem.reset_index(drop=True), o.reset_index(drop=True)], axis=1)


def _fit_wls(y: np.ndarray, X: np.ndarray, w: np.ndarray, groups: np.ndarray):  # noqa: ANN202
    # With very few clusters the cluster covariance can be singular (NaN SE, reported as a missing CI).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sm.WLS(y, X, weights=w).fit(cov_type="cluster", cov_kwds={"groups": groups})
        _ = res.bse
        return res


@dataclass(frozen=True)
class CrossCheckResult:
    table: pd.DataFrame

    def summary_frame(self) -> pd.DataFrame:
        return self.table


def regression_crosscheck(an: MatchedAnalysis) -> CrossCheckResult:
    d = _rows(an)
    level = an.config.indicators.ci_level
    z = stats.norm.ppf(0.5 + level / 2)
    g = d["set_idx"].to_numpy()
    X = sm.add_constant(d["treated"].to_numpy(dtype=float))
    out = []

    def add(outcome, estimator, est, se, boot):  # noqa: ANN001, ANN202
        lo, hi = est - z * se, est + z * se
        b = an.boot.estimate(boot)
        out.append({"outcome": outcome, "estimator": estimator, "estimate": est,
                    "se": se, "ci_low": lo, "ci_high": hi, "n_rows": len(d), "n_clusters": int(len(np.unique(g))),
                    "bootstrap_estimate": b.value, "bootstrap_ci_low": b.ci_low, "bootstrap_ci_high": b.ci_high})

    r = _fit_wls((d["s_perimeter"] / d["pyears"]).to_numpy(), X, (d["w"] * d["pyears"]).to_numpy(), g)
    add("spending_per_patient_year (treated − control)", "WLS, cluster-robust SE by matched set",
        r.params[1], r.bse[1], lambda T: T["t.s_perimeter"] / T["t.pyears"] - T["c.s_perimeter"] / T["c.pyears"])
    r = _fit_wls(d["any_stay"].to_numpy(), X, d["w"].to_numpy(), g)
    add("share_any_stay (treated − control)", "linear probability WLS, cluster-robust SE by matched set",
        r.params[1], r.bse[1], lambda T: T["t.any_stay"] / T["t.n"] - T["c.any_stay"] / T["c.n"])
    r = _fit_wls((100 * d["stays"] / d["pyears"]).to_numpy(), X, (d["w"] * d["pyears"]).to_numpy(), g)
    add("stays_per_100py (treated − control)", "WLS, cluster-robust SE by matched set", r.params[1], r.bse[1],
        lambda T: 100 * (T["t.stays"] / T["t.pyears"] - T["c.stays"] / T["c.pyears"]))
    return CrossCheckResult(pd.DataFrame(out))


@dataclass(frozen=True)
class DiDResult:
    indicator: Indicator
    table: pd.DataFrame

    def summary_frame(self) -> pd.DataFrame:
        return self.table


def did_statistic(T):  # noqa: ANN001, ANN201
    """Ratio-estimator DiD of spending per patient-year (post − pre, treated − control)."""
    t = T["t.post_s_perimeter"] / T["t.post_pyears"] - T["t.pre_s_perimeter"] / T["t.pre_pyears"]
    c = T["c.post_s_perimeter"] / T["c.post_pyears"] - T["c.pre_s_perimeter"] / T["c.pre_pyears"]
    return t - c


def difference_in_differences(an: MatchedAnalysis) -> DiDResult:
    ic = an.config.indicators
    d = _rows(an)
    level = ic.ci_level
    z = stats.norm.ppf(0.5 + level / 2)
    pre = pd.DataFrame({"y": d["pre_s_perimeter"] / d["pre_pyears"], "w": d["w"] * d["pre_pyears"],
                        "treated": d["treated"], "post": 0, "g": d["set_idx"]})
    post = pd.DataFrame({"y": d["post_s_perimeter"] / d["post_pyears"], "w": d["w"] * d["post_pyears"],
                         "treated": d["treated"], "post": 1, "g": d["set_idx"]})
    long = pd.concat([pre, post], ignore_index=True)
    X = np.column_stack([np.ones(len(long)), long["treated"], long["post"], long["treated"] * long["post"]])
    r = _fit_wls(long["y"].to_numpy(), X, long["w"].to_numpy(), long["g"].to_numpy())
    est, se = float(r.params[3]), float(r.bse[3])
    boot = an.boot.estimate(did_statistic)
    T = an.boot.totals()
    rows = []
    for arm, a in (("treated", "t"), ("control", "c")):
        pre_r = float(T[f"{a}.pre_s_perimeter"] / T[f"{a}.pre_pyears"])
        post_r = float(T[f"{a}.post_s_perimeter"] / T[f"{a}.post_pyears"])
        rows.append({"row": arm, "pre_eur_per_patient_year": pre_r, "post_eur_per_patient_year": post_r,
                     "change": post_r - pre_r, "estimate": None, "se": None, "ci_low": None, "ci_high": None})
    rows.append({"row": "did_wls_cluster", "estimate": est, "se": se, "ci_low": est - z * se,
                 "ci_high": est + z * se})
    rows.append({"row": "did_bootstrap", "estimate": boot.value, "ci_low": boot.ci_low, "ci_high": boot.ci_high})
    ind = Indicator(
        id="did_spending_per_patient_year",
        label_fr="Différence de différences des dépenses par patient-année (sensibilité)",
        label_en="Difference-in-differences of spending per patient-year (sensitivity)",
        unit="eur_per_patient_year", value=est, ci_low=est - z * se, ci_high=est + z * se,
        n=an.n_treated,
        method=f"WLS difference-in-differences (rates weighted by matching weight × patient-years), "
               f"cluster-robust SE by matched set ({int(d['set_idx'].nunique())} clusters), normal {level:.0%} CI",
        ci_level=level, population="matched ÉQUILIBRES patients vs matched controls (weighted)",
        definition=f"(post − pre) change of spending per patient-year, treated minus controls; pre = "
                   f"{ic.did_pre_months} months before index, post = {ic.did_months} months from index "
                   f"(truncated at end of follow-up); {perimeter_text(an.config)}. Negative = savings.",
        arm_values={"treated_change": rows[0]["change"], "control_change": rows[1]["change"],
                    "bootstrap_estimate": boot.value},
        arm_ci={"bootstrap_estimate": (boot.ci_low, boot.ci_high)}, n_control=an.n_control,
        method_fr=f"différence de différences par moindres carrés pondérés (taux pondérés par poids "
                  f"d'appariement × patients-années), erreurs-types robustes par grappe d'ensembles appariés "
                  f"({int(d['set_idx'].nunique())} grappes), IC normal à {pct_fr(level)}",
        population_fr="patients ÉQUILIBRES appariés et leurs témoins appariés (pondérés)",
        definition_fr=f"Variation (après − avant) de la dépense par patient-année, traités moins témoins ; "
                      f"avant = {ic.did_pre_months} mois avant la date index, après = {ic.did_months} mois à "
                      f"partir de la date index (tronqué à la fin du suivi) ; {perimeter_text_fr(an.config)}. "
                      f"Négatif = économies.",
    )
    return DiDResult(ind, pd.DataFrame(rows))
