"""Risk-set matching inputs of `matching.matcher.Matcher`: persons, periods and time zeros as integer codes.

A *person* may own several control rows (one per period) sharing one capacity; periods are matched one
after the other in ascending order; a control row is a candidate of a treated row only while still at
risk on the treated row's time zero (``at_risk_until >= time_zero``). Dates become int64 seconds, a
missing date the int64 minimum (:data:`NO_TIME`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from matching.algorithms import SearchLayout, window_edges

NO_TIME = np.iinfo(np.int64).min  # a missing date, as int64 seconds (NaT)


def as_seconds(column: pd.Series, role: str, name: str) -> np.ndarray:
    """A date-like column as int64 seconds (missing = the int64 minimum); ValueError for anything else."""
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        column = column.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(column):
        return column.to_numpy().astype("datetime64[s]").astype(np.int64)
    if column.dtype == object and pd.api.types.infer_dtype(column, skipna=True) in ("date", "datetime", "empty"):
        values = column.to_numpy().copy()
        values[pd.isna(column).to_numpy()] = None
        return np.array(values, dtype="datetime64[s]").astype(np.int64)
    raise ValueError(
        f"Matcher.fit: the {role} column '{name}' must hold dates (datetime64, or datetime.date values); "
        f"found dtype {column.dtype}. Convert it with pd.to_datetime."
    )


def time_values(frame: pd.DataFrame, is_treated: np.ndarray, time_zero: str | None,
                at_risk_until: str | None) -> np.ndarray | None:
    """Per row, int64 seconds: the time zero of treated rows, the at-risk-until date of control rows."""
    if time_zero is None:
        return None
    t0 = as_seconds(frame[time_zero], "time_zero", time_zero)
    until = as_seconds(frame[at_risk_until], "at_risk_until", at_risk_until)
    return np.where(is_treated, t0, until)


def person_codes(frame: pd.DataFrame, is_treated: np.ndarray, person: str | None) -> np.ndarray | None:
    """Per row, a code of the person behind each control row (-1 on treated rows)."""
    if person is None:
        return None
    codes = np.full(len(frame), -1, dtype=np.int64)
    # factorised as a Series: a categorical column is coded from its integer codes, not its values
    codes[~is_treated] = pd.factorize(frame[person][~is_treated])[0]
    missing = int((codes[~is_treated] < 0).sum())
    if missing:
        raise ValueError(
            f"Matcher.fit: the person column '{person}' is missing on {missing} of "
            f"{int((~is_treated).sum())} control rows; every control row needs a person (its capacity "
            "is counted per person). Fill or drop those rows."
        )
    return codes


def period_codes(frame: pd.DataFrame, period: str | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per row, the rank of its period label (-1 when missing), and the sorted labels."""
    if period is None:
        return None, None
    try:
        codes, labels = pd.factorize(frame[period], sort=True)
    except TypeError:
        raise ValueError(
            f"Matcher.fit: the period column '{period}' must hold sortable labels of one type "
            f"(e.g. '2021Q3'); found dtype {frame[period].dtype} with mixed types."
        ) from None
    return codes.astype(np.int64), np.asarray(labels)


def check_persons(person: np.ndarray | None, period: np.ndarray | None, is_treated: np.ndarray, *,
                  person_column: str | None, period_column: str | None, method: str, capacity: int) -> None:
    """At most one control row per person and period; a person with several rows needs a period for
    'optimal' and 'cem' (greedy methods handle it by removing all rows of an exhausted person)."""
    if person is None:
        return
    pc = person[~is_treated]
    if period is not None:
        pp = period[~is_treated]
        ok = pp >= 0
        key = pc[ok] * (int(pp.max(initial=0)) + 1) + pp[ok]
        if len(key) and key.max() < 4 * len(key) + 1024:  # dense codes: a count is cheaper than a hash
            if np.bincount(key).max() <= 1:
                return
        dup = pd.Series(key).duplicated().to_numpy()
        if dup.any():
            n_persons = int(pd.Series(pc[ok][dup]).nunique())
            raise ValueError(
                f"Matcher.fit: {n_persons} person(s) ('{person_column}') have several control rows in one "
                f"period of '{period_column}' ({int(dup.sum())} extra row(s)); risk-set matching needs at "
                f"most one candidate row per person and period. Keep one row per ({person_column}, "
                f"{period_column})."
            )
        return
    several = pd.Series(pc).duplicated().to_numpy()
    if several.any() and (method == "cem" or (method == "optimal" and capacity != 0)):
        n_persons = int(pd.Series(pc[several]).nunique())
        raise ValueError(
            f"Matcher.fit (method='{method}'): {n_persons} person(s) ('{person_column}') have several "
            "control rows and period=None, so the capacity of a person cannot be shared between its rows "
            "in one problem. Set period= (e.g. 'index_quarter') to match period by period (risk-set "
            "matching), or use method='nearest'."
        )


def period_blocks(t_period: np.ndarray) -> list[np.ndarray]:
    """Treated indices grouped by period, periods in ascending order (missing periods first)."""
    order = np.argsort(t_period, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(t_period[order])) + 1)


def count_at_risk(layout: SearchLayout, treated: np.ndarray, c_until: np.ndarray,
                  t_time: np.ndarray, chunk: int = 4_000_000) -> np.ndarray:
    """For the given treated units, the number of controls in their caliper window at risk on their time
    zero (windows scanned in chunks of about ``chunk`` positions)."""
    out = np.zeros(len(treated), dtype=np.int64)
    size = (layout.hi - layout.lo)[treated]
    ends = np.cumsum(size)
    start = 0
    while start < len(treated):
        stop = max(start + 1, int(np.searchsorted(ends, ends[start] - size[start] + chunk, side="right")))
        sel = np.arange(start, min(stop, len(treated)))
        local, position = window_edges(sel, layout.lo[treated[sel]], layout.hi[treated[sel]])
        ok = c_until[position] >= t_time[treated[local]]
        out += np.bincount(local[ok], minlength=len(treated))
        start = int(sel[-1]) + 1
    return out


def period_counts(period: np.ndarray, period_labels: np.ndarray, period_column: str, person: np.ndarray | None,
                  t_rows: np.ndarray, t_idx: np.ndarray, c_rows_all: np.ndarray, rows: np.ndarray,
                  pers: np.ndarray, capacity: int) -> pd.DataFrame:
    """Per period: treated rows, matched treated rows, pairs, candidate control rows, control rows still
    available (their person below its capacity) and matched control rows (``Matcher.period_counts_``).

    ``rows`` = the frame row of each control row of ``matched_`` and ``pers`` its person (or row).
    """
    n_p = len(period_labels)

    def per_period(codes: np.ndarray) -> np.ndarray:
        return np.bincount(codes[codes >= 0], minlength=n_p)

    t_period = period[t_rows]
    matched = np.unique(t_idx)
    c_period = period[c_rows_all]  # valid rows: never a missing period
    candidates = np.bincount(c_period, minlength=n_p)
    available = candidates
    if person is not None and capacity != 0 and len(rows):
        # a person is available in every period up to the one where it reached its capacity
        use_period = period[rows]
        order = np.lexsort((use_period, pers))
        p_sorted, u_sorted = pers[order], use_period[order]
        first = np.flatnonzero(np.r_[True, p_sorted[1:] != p_sorted[:-1]])
        rank = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
        exhausted_at = np.full(int(person.max()) + 1, n_p, dtype=np.int64)
        last = rank == capacity - 1
        exhausted_at[p_sorted[last]] = u_sorted[last]
        keep = c_period <= exhausted_at[person[c_rows_all]]
        available = np.bincount(c_period[keep], minlength=n_p)
    return pd.DataFrame({
        period_column: period_labels,
        "treated": per_period(t_period),
        "treated_matched": per_period(t_period[matched]),
        "pairs": per_period(t_period[t_idx]),
        "control_rows": candidates,
        "control_rows_available": available,
        "controls_matched": per_period(period[np.unique(rows)]),
    })
