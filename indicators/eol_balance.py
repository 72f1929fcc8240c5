"""Balance among decedents: are the treated and control patients who died comparable at time zero?

End-of-life indicators compare decedents arm against arm. Matching balances the arms at time zero,
not the subsets who die: if the programme changed who dies (or when), decedents of the two arms would
differ in their baseline covariates. This table shows, for the matched units who died during
follow-up, the baseline covariates of each arm (controls weighted by their matching weights) and the
standardised mean difference, so a reader can see whether the decedent comparison is still a like-for-
like one (|SMD| < 0.1 is the usual threshold).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from indicators.analysis import MatchedAnalysis
from pipeline.stats import SMD_THRESHOLD, weighted_mean_var

BALANCE_COVARIATES = ("age", "BEN_SEX_COD", "ald", "prior_nursing_cost", "prior_total_cost",
                      "prior_hosp_stays")


def decedent_balance(an: MatchedAnalysis, matched: pd.DataFrame) -> pd.DataFrame:
    """One row per covariate: n and weighted mean of each arm's decedents, SMD (pooled SD of the two
    arms' decedents), and whether |SMD| exceeds 0.1. Also the same SMD over all matched units."""
    mem = an.membership
    died = an.outcomes["died"].reindex(mem["unit_id"]).to_numpy() == 1
    cov = matched.drop_duplicates("unit_id").set_index("unit_id")
    rows = []
    for c in BALANCE_COVARIATES:
        if c not in cov.columns:
            continue
        x_all = pd.to_numeric(cov[c], errors="coerce").reindex(mem["unit_id"]).to_numpy(dtype=float)
        w_all = mem["w"].to_numpy(dtype=float)
        is_t = mem["treated"].to_numpy() == 1
        row: dict[str, object] = {"covariate": c}
        for scope, keep in (("decedents", died), ("all_matched", np.ones_like(died))):
            ok = keep & np.isfinite(x_all)
            mt, vt = weighted_mean_var(x_all[ok & is_t], w_all[ok & is_t], reliability=False)
            mc, vc = weighted_mean_var(x_all[ok & ~is_t], w_all[ok & ~is_t], reliability=False)
            sd = np.sqrt((vt + vc) / 2)
            smd = (mt - mc) / sd if sd > 0 else 0.0
            row[f"{scope}_mean_treated"] = mt
            row[f"{scope}_mean_control"] = mc
            row[f"{scope}_smd"] = smd
        row["n_treated"] = int(np.unique(mem.loc[died & is_t, "person_id"]).size)
        row["n_control"] = int(np.unique(mem.loc[died & ~is_t, "person_id"]).size)
        row["flag_smd"] = bool(abs(row["decedents_smd"]) > SMD_THRESHOLD)
        rows.append(row)
    return pd.DataFrame(rows)
