"""The parameters of `matching.matcher.Matcher`: their allowed values, and the checks ``fit`` runs on them
and on the frame (scikit-learn's wording: "The 'caliper' parameter of Matcher must be ...")."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matching.matcher import Matcher

METHODS = ("nearest", "optimal", "propensity", "cem")
TRANSFORMS = ("none", "log1p")
CALIPER_SCALES = ("sd", "sd_all", "absolute", "relative")
ORDERS = ("closest", "data", "random", "largest", "smallest")
PS_MODELS = ("penalised", "glm")
PS_SCALES = ("logit", "probability")
DISCARDS = ("none", "both", "treated", "control")


def _bad(name: str, expected: str, value: Any) -> ValueError:
    return ValueError(f"The '{name}' parameter of Matcher must be {expected}. Got {value!r} instead.")


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_column_list(v: Any) -> bool:
    return not isinstance(v, str) and all(isinstance(c, str) for c in v)


def check_params(m: Matcher) -> None:
    """Raise ValueError naming the first parameter of ``m`` outside its allowed values."""
    if m.method not in METHODS:
        raise _bad("method", f"a str among {list(METHODS)}", m.method)
    if m.transform not in TRANSFORMS:
        raise _bad("transform", f"a str among {list(TRANSFORMS)}", m.transform)
    if m.caliper_scale not in CALIPER_SCALES:
        raise _bad("caliper_scale", f"a str among {list(CALIPER_SCALES)}", m.caliper_scale)
    if m.order not in ORDERS:
        raise _bad("order", f"a str among {list(ORDERS)}", m.order)
    if m.ps_model not in PS_MODELS:
        raise _bad("ps_model", f"a str among {list(PS_MODELS)}", m.ps_model)
    if m.ps_scale not in PS_SCALES:
        raise _bad("ps_scale", f"a str among {list(PS_SCALES)}", m.ps_scale)
    if m.discard not in DISCARDS:
        raise _bad("discard", f"a str among {list(DISCARDS)}", m.discard)
    cal = m.caliper
    if not (cal is None or (
        isinstance(cal, numbers.Real) and not isinstance(cal, bool) and np.isfinite(cal) and cal > 0
    )):
        raise _bad("caliper", "a float > 0 or None", cal)
    if not _is_int(m.ratio) or m.ratio < 1:
        raise _bad("ratio", "an int >= 1", m.ratio)
    if not isinstance(m.replace, bool | np.bool_):
        raise _bad("replace", "a bool", m.replace)
    if not _is_int(m.max_reuse) or m.max_reuse < 0:
        raise _bad("max_reuse", "an int >= 0 (0 = unlimited)", m.max_reuse)
    if m.max_reuse and not m.replace:
        raise _bad("max_reuse", "0 when replace=False (a cap on reuse needs replace=True)", m.max_reuse)
    if m.method == "optimal" and m.ratio > 1 and m.replace and m.max_reuse:
        # replicated rows and columns could pair one treated unit twice with the same control; the
        # exact problem is a min-cost flow, which scipy does not provide
        raise _bad("max_reuse", "0 with method='optimal' and ratio > 1 (capped reuse is supported for "
                   "ratio=1, or with method='nearest')", m.max_reuse)
    if not _is_int(m.cem_bins) or m.cem_bins < 1:
        raise _bad("cem_bins", "an int >= 1", m.cem_bins)
    if not _is_int(m.ps_max_controls) or m.ps_max_controls < 1:
        raise _bad("ps_max_controls", "an int >= 1", m.ps_max_controls)
    if not (m.seed is None or _is_int(m.seed)):
        raise _bad("seed", "an int or None", m.seed)
    if m.exact is not None and not _is_column_list(m.exact):
        raise _bad("exact", "a list of column names or None", m.exact)
    if m.ps_covariates is not None and not _is_column_list(m.ps_covariates):
        raise _bad("ps_covariates", "a list of column names or None", m.ps_covariates)
    if m.on is None and not (m.method == "propensity" and m.ps_covariates):
        raise _bad("on", "a column name (the distance variable)", m.on)
    if m.on is not None and not isinstance(m.on, str):
        raise _bad("on", "a column name (str)", m.on)
    for name in ("person", "period", "time_zero", "at_risk_until"):
        v = getattr(m, name)
        if v is not None and not (isinstance(v, str) and v):
            raise _bad(name, "a column name (str) or None", v)
    if m.time_zero is not None and m.at_risk_until is None:
        raise _bad("at_risk_until", "a column name when time_zero is set (both or neither)", None)
    if m.at_risk_until is not None and m.time_zero is None:
        raise _bad("time_zero", "a column name when at_risk_until is set (both or neither)", None)


def check_frame(m: Matcher, frame: pd.DataFrame, treatment: str, id: str) -> None:
    """Raise TypeError/ValueError when ``frame`` cannot be matched with the (checked) parameters of ``m``."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"Matcher.fit expects a pandas DataFrame; got {type(frame).__name__}.")
    needed = [treatment, id, *m.exact_columns, *([m.on] if m.on else []), *m.ps_columns,
              *[c for c in (m.person, m.period, m.time_zero, m.at_risk_until) if c]]
    missing = [c for c in dict.fromkeys(needed) if c not in frame.columns]
    if missing:
        raise ValueError(
            f"Matcher.fit: column(s) {missing} not found in the frame ({len(frame.columns)} columns: "
            f"{list(frame.columns)[:12]}...). Pass the right names to exact/on/ps_covariates/person/"
            f"period/time_zero/at_risk_until or treatment=/id=."
        )
    tr = frame[treatment]
    if pd.api.types.is_numeric_dtype(tr) or pd.api.types.is_bool_dtype(tr):
        t_values = tr.to_numpy(dtype=float, na_value=np.nan)
        bad_t = ~((t_values == 0) | (t_values == 1))
    else:
        bad_t = np.ones(len(tr), dtype=bool)
    if bad_t.any():
        raise ValueError(
            f"Matcher.fit: treatment column '{treatment}' must hold 0/1; {int(bad_t.sum())} of "
            f"{len(frame)} rows hold other values (e.g. {tr[bad_t].iloc[0]!r})."
        )
    dup = frame[id].duplicated()
    if dup.any():
        raise ValueError(
            f"Matcher.fit: id column '{id}' must be unique; {int(dup.sum())} duplicated value(s). "
            "Use a row-level id (e.g. unit_id = person_id@index_date)."
        )
    if m.on is not None and not pd.api.types.is_numeric_dtype(frame[m.on]):
        raise ValueError(
            f"Matcher.fit: the distance variable '{m.on}' must be numeric; found dtype "
            f"{frame[m.on].dtype}."
        )
    if m.time_zero is not None and f"candidate_{m.time_zero}" in frame.columns:
        raise ValueError(
            f"Matcher.fit: the frame already has a column 'candidate_{m.time_zero}', which matched_ "
            f"uses for the candidate's own {m.time_zero}; rename or drop it."
        )
    if m.on is not None and m.transform == "log1p":
        neg = int((frame[m.on] < 0).sum())
        if neg:
            raise ValueError(
                f"Matcher.fit: transform='log1p' needs non-negative values of '{m.on}'; found "
                f"{neg} negative value(s). Use transform='none'."
            )
