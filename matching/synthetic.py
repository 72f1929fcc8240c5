"""A synthetic cohort table shaped like ``build/clean/cohort.parquet`` (docs/CONTRACTS.md §2).

For tests and benchmarks of the matching step only (the study's planted truth comes from the extract
generator in ``data_samples``). Complex-care treated patients get heavier prior nursing costs, so a
share of them finds no control within the caliper — the mechanism behind `unmatched_share_complex`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FLAGS = ["CPX_SOCIAL", "CPX_AIDANT", "CPX_PALLIATIF", "CPX_PSY", "CPX_HANDICAP", "CPX_PEDIATRIE"]
DPTS = ["075", "077", "078", "091", "092", "093", "094", "095", "002", "059", "060", "062", "080",
        "009", "011", "012", "030", "031", "032", "034", "046", "048", "065", "066", "081", "082"]


def synthetic_cohort(n_treated: int, n_controls: int, seed: int = 0, n_quarters: int = 16,
                     complex_share: float = 0.4, complex_cost_factor: float = 6.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_treated + n_controls
    treated = np.zeros(n, dtype=np.int8)
    treated[:n_treated] = 1
    quarter = rng.integers(0, n_quarters, n)
    year = 2020 + quarter // 4
    q = quarter % 4 + 1
    index_date = pd.to_datetime({"year": year, "month": 3 * (q - 1) + 1, "day": 1})
    age = np.clip(rng.normal(78, 10, n), 20, 104).astype(np.int64)
    ald = (rng.random(n) < 0.7).astype(np.int8)
    dpt = np.asarray(DPTS)[rng.integers(0, len(DPTS), n)]
    cost = rng.lognormal(7.5, 1.0, n)
    flags = np.zeros((n, len(FLAGS)), dtype=np.int8)
    is_complex = np.zeros(n, dtype=bool)
    is_complex[:n_treated] = rng.random(n_treated) < complex_share
    flags[:n_treated] = (rng.random((n_treated, len(FLAGS))) < 0.35) & is_complex[:n_treated, None]
    flags[np.flatnonzero(is_complex & (flags.sum(1) == 0)), 0] = 1
    cost[is_complex] *= complex_cost_factor * rng.lognormal(0, 0.5, is_complex.sum())
    ids = np.char.add("P", np.arange(n).astype(str))
    frame = pd.DataFrame({
        "unit_id": np.char.add(np.char.add(ids, "@"), index_date.dt.strftime("%Y-%m-%d").to_numpy().astype(str)),
        "person_id": ids,
        "treated": treated,
        "index_date": index_date.dt.date,
        "index_quarter": np.char.add(np.char.add(year.astype(str), "Q"), q.astype(str)),
        "BEN_SEX_COD": rng.integers(1, 3, n).astype(np.int64),
        "age": age,
        "ald": ald,
        "ald_group": np.where(ald == 1, "cardiovascular", "none"),
        "dpt": dpt,
        "region": "Île-de-France",
        "prior_nursing_cost": np.round(cost, 2),
        "prior_total_cost": np.round(cost * rng.uniform(2, 5, n), 2),
        "prior_hosp_stays": rng.poisson(0.4, n).astype(np.int64),
    })
    for j, f in enumerate(FLAGS):
        frame[f] = flags[:, j]
    frame["complex"] = is_complex.astype(np.int8)
    # controls are alive to the end of the study; a treated row's at-risk date is its index date
    frame["at_risk_until"] = np.where(treated == 1, frame["index_date"], pd.Timestamp("2023-12-31").date())
    frame["eligible"] = np.int8(1)
    frame["ineligible_reason"] = None
    return frame
