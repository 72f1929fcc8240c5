"""Survival (Kaplan–Meier) and cumulative incidence with a competing risk (Aalen–Johansen), by arm.

Both estimators are written for *weighted* data in discrete time (days since the index date) and are
vectorised over many weight vectors at once: row 0 of the weight matrix is the matched sample
(matching weights), the other rows are matched-set bootstrap replicates (counts of draws of each
resampling cluster × matching weight), so the bands respect matched sets exactly as the headline
intervals do. lifelines fits one unweighted-or-weighted sample at a time (and jitters tied event
times in ``AalenJohansenFitter``), so it is the test reference (tests/test_sensitivity_curves.py),
not the engine.

With n(t) the weighted number at risk on day t, d1(t) events of interest, d2(t) competing events:
S(t) = Π_{s ≤ t} (1 − (d1 + d2)(s) / n(s)) (Kaplan–Meier of either event) and
CIF1(t) = Σ_{s ≤ t} S(s−) d1(s) / n(s) (Aalen–Johansen). With no competing event CIF1 = 1 − KM.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse


def _per_day(time: np.ndarray, mask: np.ndarray, weights: np.ndarray, n_days: int) -> np.ndarray:
    """(R × n_days) weighted counts of the units with ``mask`` on each day."""
    rows = np.flatnonzero(mask)
    m = sparse.csr_matrix((np.ones(rows.size), (rows, time[rows])), shape=(time.size, n_days))
    return np.asarray((m.T @ weights.T).T)


def aalen_johansen(time: np.ndarray, event: np.ndarray, weights: np.ndarray, n_days: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overall survival S, cumulative incidence of cause 1 and of cause 2 on days 0 … n_days − 1.

    ``time``: integer day of the event or censoring (≥ 0; a unit is at risk on days ≤ time);
    ``event``: 0 censored, 1 event of interest, 2 competing event; ``weights``: (R × n) or (n,).
    Returns three (R × n_days) arrays (1-D when ``weights`` is 1-D).
    """
    time = np.clip(np.asarray(time, dtype=np.int64), 0, n_days - 1)
    event = np.asarray(event)
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    exits = _per_day(time, np.ones(time.size, bool), w, n_days)
    d1 = _per_day(time, event == 1, w, n_days)
    d2 = _per_day(time, event == 2, w, n_days)
    at_risk = w.sum(axis=1, keepdims=True) - np.cumsum(exits, axis=1) + exits
    with np.errstate(divide="ignore", invalid="ignore"):
        h1 = np.where(at_risk > 0, d1 / at_risk, 0.0)
        h2 = np.where(at_risk > 0, d2 / at_risk, 0.0)
    surv = np.cumprod(1.0 - h1 - h2, axis=1)
    before = np.hstack([np.ones((surv.shape[0], 1)), surv[:, :-1]])
    cif1, cif2 = np.cumsum(before * h1, axis=1), np.cumsum(before * h2, axis=1)
    if np.ndim(weights) == 1:
        return surv[0], cif1[0], cif2[0]
    return surv, cif1, cif2


def kaplan_meier(time: np.ndarray, died: np.ndarray, weights: np.ndarray, n_days: int) -> np.ndarray:
    """Weighted Kaplan–Meier survival on days 0 … n_days − 1 (``died`` 1 = event, 0 = censored)."""
    surv, _, _ = aalen_johansen(time, np.asarray(died, dtype=int), weights, n_days)
    return surv


def numbers_at_risk(time: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Unweighted number of units still at risk on each of ``days`` (time ≥ day)."""
    t = np.sort(np.asarray(time))
    return t.size - np.searchsorted(t, np.asarray(days), side="left")


@dataclass(frozen=True)
class CurveSet:
    """Survival and cumulative incidence by arm at monthly points, with matched-set bootstrap bands.

    ``table`` has one row per (curve, arm, month): curve ∈ {survival, cif_hospitalisation,
    cif_death_without_hospitalisation}, arm ∈ {treated, control, difference}.
    """

    table: pd.DataFrame
    replicates: int
    ci_level: float

    def summary_frame(self) -> pd.DataFrame:
        return self.table
