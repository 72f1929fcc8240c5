"""Event study: spending and hospital stays by calendar month relative to the index month, treated vs
matched controls, with matched-set bootstrap bands, a pre-trend test and the difference in differences
read from it.

Relative month r = (calendar month) − (index month): r = 0 is the month of the index date (it holds
days before and after it), r = −1 the last month wholly before it. A unit counts in month r < 0 (its
history, required by eligibility) and in month r ≥ 0 while followed (the month of its follow-up end
included, as in the indicators' windows). Each month's value per arm is a ratio of weighted totals
(spending or stays / units followed that month), so the same matched-set bootstrap
(:func:`indicators.bootstrap.cluster_bootstrap`) gives the bands.

* Pre-trend test: the differences (treated − control) in months −B … −2, each minus that of month −1,
  are jointly zero (Wald χ² with the bootstrap covariance, B − 1 degrees of freedom). Matching on the
  prior year's nursing cost makes the pre-period levels close by design; the test asks whether the
  arms were already *diverging*.
* Difference in differences: mean difference over months 0 … A minus mean difference over −B … −1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from indicators.bootstrap import cluster_bootstrap, per_set_totals, percentile_interval

# outcome → (panel expression summed per person-month, unit, scale)
EVENT_OUTCOMES = {
    "spending": ("eur_per_patient_month", 1.0),
    "hospital_stays": ("stays_per_100_patient_months", 100.0),
}


def monthly_frame(con, units: pd.DataFrame, spend_cols: list[str], before: int, after: int,  # noqa: ANN001
                  claims_start: object = None) -> pd.DataFrame:
    """Per unit (index: unit_id) and relative month −before … after: ``spending_<r>``,
    ``hospital_stays_<r>`` and ``followed_<r>`` (1 if the unit counts in month r). A month before
    ``claims_start`` (no claims extracted) never counts.

    ``units``: unit_id, person_id, index_date, fu_end. ``con``: a DuckDB connection with a ``panel``
    view (:meth:`indicators.outcomes.ClaimsData.connect`).
    """
    u = pd.DataFrame({"unit_pos": np.arange(len(units)), "person_id": units["person_id"].to_numpy(),
                      "index_m": pd.to_datetime(units["index_date"]).dt.to_period("M").dt.start_time.dt.date.to_numpy()})
    con.register("ev_units", u)
    spend = " + ".join(f"coalesce(p.{c}, 0)" for c in spend_cols) or "0"
    sql = f"""
        WITH p AS (SELECT *, CAST(month AS DATE) AS m FROM panel)
        SELECT u.unit_pos, date_diff('month', u.index_m, date_trunc('month', p.m)) AS rel,
               sum({spend}) AS spending, sum(coalesce(p.hosp_stays, 0)) AS hospital_stays
        FROM ev_units u JOIN p ON p.person_id = u.person_id
         AND date_trunc('month', p.m) BETWEEN u.index_m - INTERVAL {before} MONTH AND u.index_m + INTERVAL {after} MONTH
        GROUP BY 1, 2
    """
    long = con.execute(sql).df()
    con.unregister("ev_units")
    months = np.arange(-before, after + 1)
    n = len(units)
    out = {}
    for name in EVENT_OUTCOMES:
        grid = np.zeros((n, months.size))
        grid[long["unit_pos"].to_numpy(dtype=int), long["rel"].to_numpy(dtype=int) + before] = long[name].to_numpy(float)
        out.update({f"{name}_{r}": grid[:, j] for j, r in enumerate(months)})
    idx = pd.to_datetime(units["index_date"]).dt.to_period("M")
    end = pd.to_datetime(units["fu_end"]).dt.to_period("M")
    last = np.asarray([(e - i).n for e, i in zip(end, idx, strict=True)])
    first = (np.full(n, -before) if claims_start is None else
             np.asarray([(pd.Period(claims_start, "M") - i).n for i in idx]))
    for r in months:
        followed = ((r < 0) & (r >= first)) | ((r >= 0) & (r <= last))
        out[f"followed_{r}"] = followed.astype(float)
        for name in EVENT_OUTCOMES:  # spending after the follow-up end is not the unit's to count
            out[f"{name}_{r}"] = out[f"{name}_{r}"] * followed
    return pd.DataFrame(out, index=units["unit_id"].to_numpy())


@dataclass(frozen=True)
class EventStudyResult:
    """Per outcome and relative month: arm means, difference with band; per outcome: pre-trend test
    and difference in differences (``tests``)."""

    table: pd.DataFrame       # outcome, relative_month, unit, treated, control, estimate, ci_low, ci_high, n_*
    tests: pd.DataFrame       # outcome, unit, pretrend_chi2, pretrend_df, pretrend_p, did, did_ci_low, did_ci_high
    replicates: int
    ci_level: float

    def summary_frame(self) -> pd.DataFrame:
        return self.table

    def pretrend_p(self, outcome: str) -> float | None:
        row = self.tests.loc[self.tests["outcome"] == outcome, "pretrend_p"]
        return None if row.empty or pd.isna(row.iloc[0]) else float(row.iloc[0])


def pretrend_wald(point: np.ndarray, draws: np.ndarray) -> tuple[float, int, float]:
    """Wald test that the pre-period contrasts are jointly zero: (χ², df, p). ``point`` (k,) and
    ``draws`` (B × k) hold the contrasts (difference in month r minus that in month −1)."""
    ok = np.all(np.isfinite(draws), axis=1)
    if ok.sum() <= point.size or not np.all(np.isfinite(point)):
        return float("nan"), int(point.size), float("nan")
    cov = np.cov(draws[ok], rowvar=False)
    chi2 = float(point @ np.linalg.pinv(np.atleast_2d(cov)) @ point)
    df = int(np.linalg.matrix_rank(np.atleast_2d(cov)))
    return chi2, df, float(stats.chi2.sf(chi2, df)) if df > 0 else float("nan")


def event_study_estimates(membership: pd.DataFrame, monthly: pd.DataFrame, before: int, after: int, replicates: int,
                seed: int, ci_level: float) -> EventStudyResult:
    """Arm means by relative month from the per-unit ``monthly`` frame (:func:`monthly_frame`)."""
    months = np.arange(-before, after + 1)
    stats_ = list(monthly.columns)
    per_set, names = per_set_totals(membership, monthly, stats_)
    boot = cluster_bootstrap(per_set, names, replicates, seed, ci_level)
    point, draws = boot.totals(), boot.replicate_totals()
    rows, tests = [], []
    with np.errstate(divide="ignore", invalid="ignore"):
        for outcome, (unit, scale) in EVENT_OUTCOMES.items():
            def arm(T, a, r, outcome=outcome, scale=scale):  # noqa: ANN001, ANN202
                return scale * T[f"{a}.{outcome}_{r}"] / T[f"{a}.followed_{r}"]

            diff_p = np.array([arm(point, "t", r) - arm(point, "c", r) for r in months])
            diff_d = np.column_stack([arm(draws, "t", r) - arm(draws, "c", r) for r in months])
            for j, r in enumerate(months):
                e = percentile_interval(float(diff_p[j]), diff_d[:, j], ci_level)
                rows.append({"outcome": outcome, "relative_month": int(r), "unit": unit,
                             "treated": float(arm(point, "t", r)), "control": float(arm(point, "c", r)),
                             "estimate": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high,
                             "n_treated": float(point[f"t.followed_{r}"]),
                             "n_control": float(point[f"c.followed_{r}"])})
            pre = months < 0
            ref = before - 1  # column of month −1
            contrast_p = diff_p[pre][:-1] - diff_p[ref]
            contrast_d = diff_d[:, pre][:, :-1] - diff_d[:, [ref]]
            chi2, df, p = pretrend_wald(contrast_p, contrast_d)
            did_p = float(np.mean(diff_p[~pre]) - np.mean(diff_p[pre]))
            did_d = diff_d[:, ~pre].mean(axis=1) - diff_d[:, pre].mean(axis=1)
            did = percentile_interval(did_p, did_d, ci_level)
            tests.append({"outcome": outcome, "unit": unit, "pretrend_chi2": chi2, "pretrend_df": df,
                          "pretrend_p": p, "did": did.value, "did_ci_low": did.ci_low, "did_ci_high": did.ci_high})
    return EventStudyResult(pd.DataFrame(rows), pd.DataFrame(tests), boot.n_replicates, ci_level)
