"""Time to first hospitalisation (death competing) and to death, per matched unit, and their curves by
arm with matched-set bootstrap bands (:mod:`indicators.sensitivity.competing_risks`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from indicators.bootstrap import resample_counts
from indicators.outcomes import DAYS_PER_YEAR, stay_category_sql
from indicators.sensitivity.competing_risks import CurveSet, aalen_johansen, numbers_at_risk
from pipeline.stages.outputs import HOSPITAL


def first_stays(con, units: pd.DataFrame) -> pd.Series:  # noqa: ANN001
    """Entry date of each unit's first full (non-séance) MCO stay of the hospital perimeter in follow-up
    (index: unit_id; absent when none). ``con``: DuckDB connection with a ``stays`` view."""
    u = pd.DataFrame({"unit_id": units["unit_id"].to_numpy(), "person_id": units["person_id"].to_numpy(),
                      "start": pd.to_datetime(units["index_date"]).dt.date.to_numpy(),
                      "stop": pd.to_datetime(units["fu_end"]).dt.date.to_numpy()})
    con.register("cr_units", u)
    category = stay_category_sql(con)
    first = con.execute(f"""
        SELECT u.unit_id, min(CAST(s.entry_date AS DATE)) AS first_stay
        FROM cr_units u JOIN stays s ON s.person_id = u.person_id
         AND CAST(s.entry_date AS DATE) BETWEEN u.start AND u.stop AND CAST(s.is_seance AS INTEGER) = 0
         AND {category} = '{HOSPITAL}'
        GROUP BY 1
    """).df()
    con.unregister("cr_units")
    return pd.to_datetime(first.set_index("unit_id")["first_stay"])


def unit_times(outcomes: pd.DataFrame, first_stay: pd.Series) -> pd.DataFrame:
    """Per unit: ``t_hosp`` / ``event_hosp`` (1 stay, 2 death first, 0 censored) and ``t_death`` /
    ``died``, in days since the index date."""
    index = pd.to_datetime(outcomes["index_date"])
    end_days = (pd.to_datetime(outcomes["fu_end"]) - index).dt.days.to_numpy()
    died = outcomes["died"].to_numpy() == 1
    stay = first_stay.reindex(outcomes.index)
    stay_days = (stay - index).dt.days.to_numpy()
    has_stay = np.isfinite(stay_days)
    t_hosp = np.where(has_stay, stay_days, end_days)
    event = np.where(has_stay, 1, np.where(died, 2, 0))
    return pd.DataFrame({"t_hosp": t_hosp.astype(int), "event_hosp": event, "t_death": end_days.astype(int),
                         "died": died.astype(int)}, index=outcomes.index)


def arm_curves(membership: pd.DataFrame, times: pd.DataFrame, months: int, replicates: int, seed: int,
               ci_level: float) -> CurveSet:
    """Survival and cumulative incidence of first hospitalisation (death competing) by arm, on monthly
    points 0 … ``months``, with bands from ``replicates`` matched-set bootstrap replicates."""
    t = times.loc[membership["unit_id"]].reset_index(drop=True)
    w = membership["w"].to_numpy(float)
    cluster = membership["cluster_idx"].to_numpy()
    n_clusters = int(cluster.max()) + 1
    counts = np.vstack([np.ones((1, n_clusters)), *resample_counts(n_clusters, replicates, np.random.default_rng(seed))])
    weights = counts[:, cluster] * w[None, :]
    n_days = int(round(months * (DAYS_PER_YEAR / 12))) + 1
    grid = np.minimum(np.round(np.arange(months + 1) * (DAYS_PER_YEAR / 12)).astype(int), n_days - 1)
    alpha = 1 - ci_level
    curves = {}
    for arm, flag in (("treated", 1), ("control", 0)):
        m = membership["treated"].to_numpy() == flag
        surv_h, cif_h, cif_d = aalen_johansen(t.loc[m, "t_hosp"].to_numpy(), t.loc[m, "event_hosp"].to_numpy(),
                                              weights[:, m], n_days)
        surv, _, _ = aalen_johansen(t.loc[m, "t_death"].to_numpy(), t.loc[m, "died"].to_numpy(), weights[:, m], n_days)
        curves[arm] = {"survival": (surv[:, grid], numbers_at_risk(t.loc[m, "t_death"], grid)),
                       "cif_hospitalisation": (cif_h[:, grid], numbers_at_risk(t.loc[m, "t_hosp"], grid)),
                       "cif_death_without_hospitalisation": (cif_d[:, grid], numbers_at_risk(t.loc[m, "t_hosp"], grid))}
    rows = []
    for curve in ("survival", "cif_hospitalisation", "cif_death_without_hospitalisation"):
        (vt, nt), (vc, nc) = curves["treated"][curve], curves["control"][curve]
        for arm, vals, n_risk in (("treated", vt, nt), ("control", vc, nc), ("difference", vt - vc, None)):
            lo, hi = np.quantile(vals[1:], [alpha / 2, 1 - alpha / 2], axis=0)
            for j, month in enumerate(range(months + 1)):
                rows.append({"curve": curve, "arm": arm, "month": month, "day": int(grid[j]),
                             "estimate": float(vals[0, j]), "ci_low": float(lo[j]), "ci_high": float(hi[j]),
                             "n_at_risk": None if n_risk is None else int(n_risk[j])})
    return CurveSet(pd.DataFrame(rows), replicates, ci_level)
