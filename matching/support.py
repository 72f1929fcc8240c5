"""The MatchIt-style pieces of `matching.matcher.Matcher`: common support (``discard``) and the order in
which greedy matching serves treated units (``order``); and, for the unmatched, whether any candidate of
their profile is comparable at all (``comparable_counts``).

MatchIt (Ho, Imai, King & Stuart; ``matchit(method = "nearest")``) serves treated units one at a time in
``m.order`` (default ``"largest"`` propensity score first) and drops units off the common support before
matching with ``discard``. Both are defined on the distance variable, so they apply to any distance here
(propensity score, its logit, or ``on``)."""

from __future__ import annotations

import numpy as np

#: The greedy orders that serve treated units by their value of the distance variable.
VALUE_ORDERS = {"largest": True, "smallest": False}


def greedy_sequence(order: str, t_value: np.ndarray, seed: int | None) -> np.ndarray | None:
    """Indices of the treated units in the order greedy matching serves them (None: 'closest' pair first).

    'largest'/'smallest': by decreasing/increasing value, ties in data order (a stable sort, as R's
    ``order()``); missing values last. 'data': as given. 'random': a permutation drawn with ``seed``.
    """
    n = len(t_value)
    if order == "closest":
        return None
    if order == "data":
        return np.arange(n)
    if order in VALUE_ORDERS:
        value = np.asarray(t_value, dtype=np.float64)
        key = np.where(np.isfinite(value), -value if VALUE_ORDERS[order] else value, np.inf)
        return np.argsort(key, kind="stable")
    return np.random.default_rng(seed).permutation(n)


def off_support(value: np.ndarray, is_treated: np.ndarray, valid: np.ndarray, discard: str) -> np.ndarray:
    """Per row, whether it is discarded as off the common support of the distance ``value``.

    As MatchIt's ``discard``: 'control' = controls outside [min, max] of the treated values; 'treated' =
    treated units outside [min, max] of the control values; 'both' = any unit outside the intersection of
    the two ranges; 'none' = nothing. Ranges are taken over ``valid`` rows; bounds are inclusive.
    """
    out = np.zeros(len(value), dtype=bool)
    if discard == "none":
        return out
    t = valid & is_treated
    c = valid & ~is_treated
    if not t.any() or not c.any():
        return out
    t_lo, t_hi = float(value[t].min()), float(value[t].max())
    c_lo, c_hi = float(value[c].min()), float(value[c].max())
    with np.errstate(invalid="ignore"):
        if discard in ("control", "both"):
            out |= c & ((value < t_lo) | (value > t_hi))
        if discard in ("treated", "both"):
            out |= t & ((value < c_lo) | (value > c_hi))
    return out


def comparable_counts(codes: np.ndarray, value: np.ndarray, control: np.ndarray, rows: np.ndarray,
                      low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """For each row of ``rows`` (treated units): how many ``control`` rows share its ``codes`` (its
    profile; -1 = missing) with a ``value`` in [``low``, ``high``] (its caliper window, infinite without
    a caliper; NaN = a missing value, counted 0).

    Zero means the patient's profile has no counterpart among the candidates of the whole study,
    whatever the date (``Matcher.unmatched_["n_comparable_any_period"]``; ``unmatched_share_complex``
    counts these patients, docs/matching.md, "No comparable control vs unmatched").

    Controls are ordered by one float per row (profile x spacing + value: the profile dominates, and
    rounding is monotone, so each profile's values form one non-decreasing run) — at scale 1 (5 M
    control rows) a fraction of a two-key sort —, then each treated unit's window is searched in its
    profile's run on the exact values."""
    out = np.zeros(len(rows), dtype=np.int64)
    keep = control & (codes >= 0) & np.isfinite(value)
    t_code = codes[rows]
    if not keep.any():
        return out
    c_code, v = codes[keep], value[keep]
    v_min = float(v.min())
    spacing = 2.0 * (float(v.max()) - v_min + 1.0)  # a profile's values stay inside [0, spacing / 2)
    order = np.argsort(c_code * spacing + (v - v_min))
    c_code, c_value = c_code[order], v[order]
    first = np.searchsorted(c_code, t_code, side="left")
    last = np.searchsorted(c_code, t_code, side="right")
    for k in np.flatnonzero((t_code >= 0) & ~np.isnan(low) & ~np.isnan(high) & (last > first)):
        seg = c_value[first[k]:last[k]]
        out[k] = np.searchsorted(seg, high[k], side="right") - np.searchsorted(seg, low[k], side="left")
    return out
