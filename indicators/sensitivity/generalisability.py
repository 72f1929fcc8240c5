"""Generalisability: how the matched ÉQUILIBRES patients compare with all eligible ÉQUILIBRES patients
and with the complex-care patients who found no control (standardised differences).

The headline effects hold for the matched treated patients (the ATT among those with a comparable
control). A large standardised difference between them and all treated patients says the effect may
not carry over to the programme's whole population; one against the unmatched complex patients says
who the estimate leaves out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


def standardised_difference(a: pd.Series, b: pd.Series) -> float:
    """(mean a − mean b) / sqrt((var a + var b) / 2); NaN when either group is empty or both are constant."""
    a, b = pd.to_numeric(a, errors="coerce").dropna(), pd.to_numeric(b, errors="coerce").dropna()
    if a.empty or b.empty:
        return float("nan")
    pooled = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2) if len(a) > 1 and len(b) > 1 else float("nan")
    diff = a.mean() - b.mean()
    if not np.isfinite(pooled) or pooled == 0:
        return 0.0 if diff == 0 else float("nan")
    return float(diff / pooled)


@dataclass(frozen=True)
class GeneralisabilityResult:
    table: pd.DataFrame   # covariate, mean_*, smd_*, n_*

    def summary_frame(self) -> pd.DataFrame:
        return self.table


def generalisability(cohort: pd.DataFrame, matched_treated_units: pd.Series, covariates: list[str]
                     ) -> GeneralisabilityResult:
    """Means and SMDs of ``covariates`` in three groups of eligible treated cohort rows: matched, all,
    and complex-care (``complex`` = 1) without a match."""
    treated = cohort[(cohort["treated"] == 1) & (cohort["eligible"] == 1)]
    is_matched = treated["unit_id"].astype(str).isin(set(matched_treated_units.astype(str)))
    groups = {"matched_treated": treated[is_matched], "all_treated": treated,
              "unmatched_complex": treated[~is_matched & (treated.get("complex", 0) == 1)]}
    rows = []
    for cov in covariates:
        if cov not in cohort.columns or not pd.api.types.is_numeric_dtype(cohort[cov]):
            continue
        row: dict[str, object] = {"covariate": cov}
        for g, frame in groups.items():
            row[f"mean_{g}"] = float(frame[cov].mean()) if len(frame) else None
        row["smd_matched_vs_all"] = standardised_difference(groups["matched_treated"][cov], treated[cov])
        row["smd_matched_vs_unmatched_complex"] = standardised_difference(
            groups["matched_treated"][cov], groups["unmatched_complex"][cov])
        row.update({f"n_{g}": len(frame) for g, frame in groups.items()})
        rows.append(row)
    return GeneralisabilityResult(pd.DataFrame(rows))
