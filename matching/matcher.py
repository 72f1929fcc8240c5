"""`Matcher`: a scikit-learn-style estimator matching treated units to controls.

Parameters are stored by ``__init__`` and validated by ``fit`` (so ``get_params``/``set_params``/
``clone`` make re-running with other settings free). ``fit`` returns ``self`` with fitted attributes
ending in ``_``. The estimator is generic over any table: one row per unit, a 0/1 treatment column and a
unique id column; optionally a person column (several rows of one person share its capacity), a period
column (risk-set matching period by period) and a time-zero / at-risk-until pair of date columns. See
docs/matching.md for the exact algorithms.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from matching import algorithms

METHODS = ("nearest", "optimal", "propensity", "cem")
TRANSFORMS = ("none", "log1p")
CALIPER_SCALES = ("sd", "absolute", "relative")
ORDERS = ("closest", "data", "random")
#: Default caliper of method='propensity' when ``caliper='auto'`` (Austin 2011: 0.2 SD of the logit).
PROPENSITY_DEFAULT_CALIPER = 0.2

UNMATCHED_REASONS = {
    "missing_value": "a matching variable (or its time zero) is missing",
    "no_control_in_stratum": "no candidate control in its exact stratum",
    "no_control_within_caliper": "candidate controls in its stratum, none within the caliper",
    "no_control_at_risk": "candidate controls within the caliper, none still at risk on its time zero",
    "controls_taken": "its within-caliper controls at risk were all used by other treated units (or "
                      "their persons by matched sets of earlier periods)",
}
_NO_TIME = np.iinfo(np.int64).min  # a missing date, as int64 seconds (NaT)


@dataclass(frozen=True)
class ReuseStats:
    """How many matched sets each matched control person serves (``Matcher.reuse_``)."""

    persons_once: int  # control persons serving exactly one matched set
    persons_reused: int  # control persons serving two matched sets or more
    max_uses: int  # most matched sets served by one person (0 when nothing matched)
    share_rows_reused: float  # share of the control rows of ``matched_`` that come from reused persons

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Matcher(BaseEstimator):
    """Match treated units to controls within exact strata, on one distance variable.

    Parameters
    ----------
    method : {'nearest', 'optimal', 'propensity', 'cem'}
        'nearest' greedy nearest neighbour; 'optimal' within each stratum the most treated units
        matched, then the most controls, then the least total distance (sparse assignment);
        'propensity' greedy nearest neighbour on the logit of a logistic propensity score, inside the
        exact strata; 'cem' coarsened exact matching on ``exact`` + ``on`` cut into ``cem_bins``
        equal-width bins.
    exact : list of str
        Columns matched exactly (strata are never crossed). Rows with a missing value cannot match.
    on : str
        The distance variable (for 'propensity' it is also a covariate of the score model).
    transform : {'none', 'log1p'}
        Transform of ``on`` before distances are taken ('log1p' needs non-negative values).
    caliper : float > 0, None or 'auto'
        Maximum distance. 'auto' = 0.2 (SD of the logit) for 'propensity', no caliper otherwise.
    caliper_scale : {'sd', 'absolute', 'relative'}
        'sd': caliper × pooled SD of the distance variable, sqrt((s²_treated + s²_control) / 2), over
        the rows passed to ``fit``; 'absolute': in units of the (transformed) distance variable;
        'relative': the control's untransformed value must lie within ± caliper × |treated value|.
    ratio : int >= 1
        Controls per treated unit (1:k). Treated units that find fewer are kept (partial sets).
    replace : bool
        Whether a control (person) may serve several matched sets.
    max_reuse : int >= 0
        With ``replace=True``: maximum number of matched sets per control person (0 = unlimited).
    person : str or None
        Column identifying the person behind a row. Capacity (one matched set without replacement,
        ``max_reuse`` with) is counted per person across all of its rows. None: each row is a person.
    period : str or None
        Column of sortable period labels (e.g. the index quarter). Risk-set matching: periods are
        matched one after the other in ascending order, each on its treated rows and on the control
        rows whose person still has capacity; the period is implicitly an exact variable. A person may
        have at most one control row per period.
    time_zero, at_risk_until : str or None
        Date columns, both or neither. A control row c is a candidate for treated row t only if
        ``at_risk_until[c] >= time_zero[t]`` (still at risk on the treated unit's time zero). In
        ``matched_`` each control row then takes the ``time_zero`` of its set's treated unit and keeps
        its own in ``candidate_<time_zero>``.
    order : {'closest', 'data', 'random'}
        Greedy order: closest pair first (global), data order, or a random order (``random_state``).
    ps_covariates : list of str or None
        Covariates of the propensity model (default: ``exact`` + ``on``); object/category columns are
        one-hot encoded, numeric columns standardised.
    ps_max_controls : int
        The propensity model is fitted on all treated units and at most this many controls (a seeded
        random subset); subsampling controls only shifts the logit by a constant, which changes neither
        distances nor the SD-scaled caliper.
    cem_bins : int >= 1
        Number of equal-width bins of the transformed ``on`` for 'cem'.
    random_state : int or None
        Seed for ``order='random'`` and the propensity subsample. Same seed, same result.
    """

    def __init__(
        self,
        *,
        method: str = "nearest",
        exact: Sequence[str] | None = None,
        on: str | None = None,
        transform: str = "none",
        caliper: float | str | None = "auto",
        caliper_scale: str = "sd",
        ratio: int = 1,
        replace: bool = False,
        max_reuse: int = 0,
        person: str | None = None,
        period: str | None = None,
        time_zero: str | None = None,
        at_risk_until: str | None = None,
        order: str = "closest",
        ps_covariates: Sequence[str] | None = None,
        ps_max_controls: int = 250_000,
        cem_bins: int = 10,
        random_state: int | None = None,
    ) -> None:
        self.method = method
        self.exact = exact
        self.on = on
        self.transform = transform
        self.caliper = caliper
        self.caliper_scale = caliper_scale
        self.ratio = ratio
        self.replace = replace
        self.max_reuse = max_reuse
        self.person = person
        self.period = period
        self.time_zero = time_zero
        self.at_risk_until = at_risk_until
        self.order = order
        self.ps_covariates = ps_covariates
        self.ps_max_controls = ps_max_controls
        self.cem_bins = cem_bins
        self.random_state = random_state

    # ------------------------------------------------------------------ validation
    def _check_params(self, frame: pd.DataFrame, treatment: str, id: str) -> None:
        def bad(name: str, expected: str, value: Any) -> ValueError:
            return ValueError(
                f"The '{name}' parameter of Matcher must be {expected}. Got {value!r} instead."
            )

        def is_int(v: Any) -> bool:
            return isinstance(v, numbers.Integral) and not isinstance(v, bool)

        if self.method not in METHODS:
            raise bad("method", f"a str among {list(METHODS)}", self.method)
        if self.transform not in TRANSFORMS:
            raise bad("transform", f"a str among {list(TRANSFORMS)}", self.transform)
        if self.caliper_scale not in CALIPER_SCALES:
            raise bad("caliper_scale", f"a str among {list(CALIPER_SCALES)}", self.caliper_scale)
        if self.order not in ORDERS:
            raise bad("order", f"a str among {list(ORDERS)}", self.order)
        cal = self.caliper
        if not (cal is None or cal == "auto" or (
            isinstance(cal, numbers.Real) and not isinstance(cal, bool) and np.isfinite(cal) and cal > 0
        )):
            raise bad("caliper", "a float > 0, None or 'auto'", cal)
        if not is_int(self.ratio) or self.ratio < 1:
            raise bad("ratio", "an int >= 1", self.ratio)
        if not isinstance(self.replace, bool | np.bool_):
            raise bad("replace", "a bool", self.replace)
        if not is_int(self.max_reuse) or self.max_reuse < 0:
            raise bad("max_reuse", "an int >= 0 (0 = unlimited)", self.max_reuse)
        if self.max_reuse and not self.replace:
            raise bad("max_reuse", "0 when replace=False (a cap on reuse needs replace=True)", self.max_reuse)
        if self.method == "optimal" and self.ratio > 1 and self.replace and self.max_reuse:
            # replicated rows and columns could pair one treated unit twice with the same control; the
            # exact problem is a min-cost flow, which scipy does not provide
            raise bad("max_reuse", "0 with method='optimal' and ratio > 1 (capped reuse is supported for "
                      "ratio=1, or with method='nearest')", self.max_reuse)
        if not is_int(self.cem_bins) or self.cem_bins < 1:
            raise bad("cem_bins", "an int >= 1", self.cem_bins)
        if not is_int(self.ps_max_controls) or self.ps_max_controls < 1:
            raise bad("ps_max_controls", "an int >= 1", self.ps_max_controls)
        if not (self.random_state is None or is_int(self.random_state)):
            raise bad("random_state", "an int or None", self.random_state)
        exact = self.exact
        if exact is not None and (isinstance(exact, str) or not all(isinstance(c, str) for c in exact)):
            raise bad("exact", "a list of column names or None", exact)
        if self.ps_covariates is not None and (
            isinstance(self.ps_covariates, str) or not all(isinstance(c, str) for c in self.ps_covariates)
        ):
            raise bad("ps_covariates", "a list of column names or None", self.ps_covariates)
        if self.on is None and not (self.method == "propensity" and self.ps_covariates):
            raise bad("on", "a column name (the distance variable)", self.on)
        if self.on is not None and not isinstance(self.on, str):
            raise bad("on", "a column name (str)", self.on)
        for name in ("person", "period", "time_zero", "at_risk_until"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, str) and v):
                raise bad(name, "a column name (str) or None", v)
        if self.time_zero is not None and self.at_risk_until is None:
            raise bad("at_risk_until", "a column name when time_zero is set (both or neither)", None)
        if self.at_risk_until is not None and self.time_zero is None:
            raise bad("time_zero", "a column name when at_risk_until is set (both or neither)", None)

        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"Matcher.fit expects a pandas DataFrame; got {type(frame).__name__}.")
        needed = [treatment, id, *self._exact, *([self.on] if self.on else []), *self._ps_covariates,
                  *[c for c in (self.person, self.period, self.time_zero, self.at_risk_until) if c]]
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
        if self.on is not None and not pd.api.types.is_numeric_dtype(frame[self.on]):
            raise ValueError(
                f"Matcher.fit: the distance variable '{self.on}' must be numeric; found dtype "
                f"{frame[self.on].dtype}."
            )
        if self.time_zero is not None and f"candidate_{self.time_zero}" in frame.columns:
            raise ValueError(
                f"Matcher.fit: the frame already has a column 'candidate_{self.time_zero}', which matched_ "
                f"uses for the candidate's own {self.time_zero}; rename or drop it."
            )
        if self.on is not None and self.transform == "log1p":
            neg = int((frame[self.on] < 0).sum())
            if neg:
                raise ValueError(
                    f"Matcher.fit: transform='log1p' needs non-negative values of '{self.on}'; found "
                    f"{neg} negative value(s). Use transform='none'."
                )

    @property
    def _exact(self) -> list[str]:
        return list(self.exact) if self.exact else []

    @property
    def _ps_covariates(self) -> list[str]:
        if self.method != "propensity":
            return []
        if self.ps_covariates:
            return list(self.ps_covariates)
        return [*self._exact, *([self.on] if self.on else [])]

    @property
    def _strata_columns(self) -> list[str]:
        return list(dict.fromkeys([*([self.period] if self.period else []), *self._exact]))

    def _caliper_value(self) -> float | None:
        if self.caliper == "auto":
            return PROPENSITY_DEFAULT_CALIPER if self.method == "propensity" else None
        return None if self.caliper is None else float(self.caliper)

    # ------------------------------------------------------------------ fit
    def fit(self, frame: pd.DataFrame, treatment: str = "treated", id: str = "unit_id") -> Matcher:
        """Match the treated rows of ``frame`` to its control rows; returns ``self``."""
        self._check_params(frame, treatment, id)
        self.treatment_ = treatment
        self.id_ = id
        self._frame = frame
        is_treated = frame[treatment].to_numpy().astype(bool)
        time = self._time_values(frame, is_treated)
        person = self._person_codes(frame, is_treated)
        period, period_labels = self._period_codes(frame)
        self._check_persons(person, period, is_treated)

        raw, value = self._distance_variable(frame, is_treated)
        # the period is implicitly exact; it leads the stratum code, so strata are ordered by period
        known = {self.period: (period, len(period_labels))} if period is not None else None
        stratum = exact_stratum = stratum_codes(frame, self._strata_columns, known)
        if self.method == "cem":
            stratum = self._cem_strata(stratum, value)
        valid = (stratum >= 0) & np.isfinite(value)
        if time is not None:
            valid &= time != _NO_TIME  # treated: time zero; control: at-risk-until date

        t_rows = np.flatnonzero(is_treated)
        c_rows_all = np.flatnonzero(~is_treated & valid)
        t_strata = stratum[t_rows]
        # only controls sharing a stratum with a treated unit can ever be used
        has_treated = np.zeros(int(stratum.max(initial=-1)) + 2, dtype=bool)
        has_treated[t_strata[valid[t_rows]]] = True
        c_rows = c_rows_all[has_treated[stratum[c_rows_all]]]
        self.n_treated_ = int(len(t_rows))
        self.n_controls_ = int((~is_treated).sum())
        t_exact = exact_stratum[t_rows]
        self.n_strata_ = int(len(np.unique(t_exact[t_exact >= 0])))
        self.caliper_width_ = self._caliper_width(value, is_treated & valid, ~is_treated & valid)

        t_ok = valid[t_rows]
        tv = value[t_rows]
        low, high = self._caliper_bounds(raw[t_rows], tv)
        layout = algorithms.search_layout(
            np.where(t_ok, t_strata, -1), np.where(t_ok, tv, 0.0), np.where(t_ok, low, 0.0),
            np.where(t_ok, high, 0.0), stratum[c_rows], value[c_rows],
        )
        # a treated unit with a missing value gets an empty window
        lo = np.where(t_ok, layout.lo, 0)
        hi = np.where(t_ok, layout.hi, 0)
        layout = algorithms.SearchLayout(layout.values, layout.order, layout.pos, lo, hi,
                                         np.where(t_ok, layout.stratum_lo, 0),
                                         np.where(t_ok, layout.stratum_hi, 0))
        pos_rows = c_rows[layout.order]  # frame row of each sorted control position
        constraints = {}
        if time is not None:
            constraints = {"c_until": time[pos_rows], "t_time": time[t_rows]}
        pos_person = None
        if person is not None and len(pos_rows):
            codes = person[pos_rows]
            if np.bincount(codes).max() > 1:  # a person owns several candidate rows: shared capacity
                pos_person = codes
        t_period = period[t_rows] if period is not None else None
        blocks = _blocks(t_period) if t_period is not None else None

        capacity = self._capacity()
        if self.method == "cem":
            t_idx, c_pos, dist = self._cem_pairs(layout, tv, t_period, pos_person, capacity, **constraints)
        elif self.method == "optimal" and capacity != 0:
            if pos_person is None:  # strata are independent: one problem for all periods at once
                assignment = algorithms.optimal_match(layout, tv, t_strata, self.ratio, capacity, **constraints)
            else:  # risk sets, period by period: persons used earlier have less capacity left
                uses = np.zeros(int(pos_person.max()) + 1, dtype=np.int64)
                parts = []
                for block in blocks:
                    part = algorithms.optimal_match(layout, tv, t_strata, self.ratio, capacity, treated=block,
                                                    person=pos_person, uses=uses, **constraints)
                    np.add.at(uses, pos_person[part.position], 1)
                    parts.append(part)
                assignment = _concat(parts)
        else:
            # with unlimited reuse every treated unit simply takes its k nearest: greedy is optimal
            assignment = algorithms.greedy_match(
                layout, tv, self.ratio, capacity, self._sequence(len(tv)), blocks=blocks, person=pos_person,
                distinct_persons=pos_person is not None and capacity != 1 and period is None, **constraints,
            )
        if self.method != "cem":
            t_idx, c_pos, dist = assignment.treated, assignment.position, assignment.distance

        self._build_outputs(frame, t_rows, pos_rows, layout, t_ok, t_idx, c_pos, dist, id, stratum, exact_stratum,
                            constraints)
        self._reuse_statistics(person, period, period_labels, t_rows, t_idx, c_rows_all, capacity)
        return self

    # ------------------------------------------------------------------ pieces of fit
    def _distance_variable(self, frame: pd.DataFrame, is_treated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.method == "propensity":
            logit = self._propensity_logit(frame, is_treated)
            return logit, logit
        raw = frame[self.on].to_numpy(dtype=np.float64, na_value=np.nan)
        value = np.log1p(raw) if self.transform == "log1p" else raw
        return raw, value

    def _propensity_logit(self, frame: pd.DataFrame, is_treated: np.ndarray) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        covs = self._ps_covariates
        design = _Design.fit(frame, covs, self.on if self.transform == "log1p" else None)
        rng = np.random.default_rng(self.random_state)
        complete = design.complete(frame)
        t_rows = np.flatnonzero(is_treated & complete)
        c_rows = np.flatnonzero(~is_treated & complete)
        if len(t_rows) == 0 or len(c_rows) == 0:
            raise ValueError(
                "Matcher.fit (method='propensity'): need treated and control rows with complete "
                f"covariates {covs}; found {len(t_rows)} treated and {len(c_rows)} controls."
            )
        if len(c_rows) > self.ps_max_controls:
            c_rows = np.sort(rng.choice(c_rows, self.ps_max_controls, replace=False))
        fit_rows = np.concatenate([t_rows, c_rows])
        model = LogisticRegression(max_iter=2000, C=1.0)
        model.fit(design.transform(frame.iloc[fit_rows]), is_treated[fit_rows].astype(int))
        self.ps_model_ = model
        self.ps_design_ = design
        logit = np.full(len(frame), np.nan)
        chunk = 500_000
        for start in range(0, len(frame), chunk):
            part = frame.iloc[start:start + chunk]
            ok = complete[start:start + chunk]
            if ok.any():
                logit[start:start + chunk][ok] = model.decision_function(design.transform(part[ok]))
        return logit

    def _cem_strata(self, stratum: np.ndarray, value: np.ndarray) -> np.ndarray:
        finite = np.isfinite(value)
        if not finite.any():
            return np.full_like(stratum, -1)
        vmin, vmax = float(value[finite].min()), float(value[finite].max())
        edges = np.linspace(vmin, vmax, self.cem_bins + 1)
        self.cem_edges_ = edges
        bins = np.clip(np.searchsorted(edges, value, side="right") - 1, 0, self.cem_bins - 1)
        combined = np.where((stratum >= 0) & finite, stratum * self.cem_bins + bins, -1)
        return combined

    def _caliper_width(self, value: np.ndarray, t_mask: np.ndarray, c_mask: np.ndarray) -> float | None:
        cal = self._caliper_value()
        if cal is None or self.method == "cem":
            return None
        if self.caliper_scale == "sd":
            vt = np.var(value[t_mask], ddof=1) if t_mask.sum() > 1 else 0.0
            vc = np.var(value[c_mask], ddof=1) if c_mask.sum() > 1 else 0.0
            self.pooled_sd_ = float(np.sqrt((vt + vc) / 2))
            return cal * self.pooled_sd_
        if self.caliper_scale == "absolute":
            return cal
        return None  # relative: per treated unit, see _caliper_bounds

    def _caliper_bounds(self, raw: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cal = self._caliper_value()
        if cal is None or self.method == "cem":
            return np.full_like(value, -np.inf), np.full_like(value, np.inf)
        if self.caliper_scale == "relative":
            half = cal * np.abs(raw)
            low_raw, high_raw = raw - half, raw + half
            if self.method != "propensity" and self.transform == "log1p":
                return np.log1p(np.maximum(low_raw, 0.0)), np.log1p(high_raw)
            return low_raw, high_raw
        w = self.caliper_width_
        return value - w, value + w

    def _sequence(self, n: int) -> np.ndarray | None:
        if self.order == "closest":
            return None
        if self.order == "data":
            return np.arange(n)
        return np.random.default_rng(self.random_state).permutation(n)

    def _capacity(self) -> int:
        """Matched sets one control person may serve: 1 without replacement, max_reuse with (0 = unlimited)."""
        if not self.replace:
            return 1
        return int(self.max_reuse)

    def _time_values(self, frame: pd.DataFrame, is_treated: np.ndarray) -> np.ndarray | None:
        """Per row, int64 seconds: the time zero of treated rows, the at-risk-until date of control rows."""
        if self.time_zero is None:
            return None
        t0 = _as_seconds(frame[self.time_zero], "time_zero", self.time_zero)
        until = _as_seconds(frame[self.at_risk_until], "at_risk_until", self.at_risk_until)
        return np.where(is_treated, t0, until)

    def _person_codes(self, frame: pd.DataFrame, is_treated: np.ndarray) -> np.ndarray | None:
        """Per row, a code of the person behind each control row (-1 on treated rows)."""
        if self.person is None:
            return None
        codes = np.full(len(frame), -1, dtype=np.int64)
        codes[~is_treated] = pd.factorize(frame[self.person].to_numpy()[~is_treated])[0]
        missing = int((codes[~is_treated] < 0).sum())
        if missing:
            raise ValueError(
                f"Matcher.fit: the person column '{self.person}' is missing on {missing} of "
                f"{int((~is_treated).sum())} control rows; every control row needs a person (its capacity "
                "is counted per person). Fill or drop those rows."
            )
        return codes

    def _period_codes(self, frame: pd.DataFrame) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Per row, the rank of its period label (-1 when missing), and the sorted labels."""
        if self.period is None:
            return None, None
        try:
            codes, labels = pd.factorize(frame[self.period], sort=True)
        except TypeError:
            raise ValueError(
                f"Matcher.fit: the period column '{self.period}' must hold sortable labels of one type "
                f"(e.g. '2021Q3'); found dtype {frame[self.period].dtype} with mixed types."
            ) from None
        return codes.astype(np.int64), np.asarray(labels)

    def _check_persons(self, person: np.ndarray | None, period: np.ndarray | None, is_treated: np.ndarray) -> None:
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
                    f"Matcher.fit: {n_persons} person(s) ('{self.person}') have several control rows in one "
                    f"period of '{self.period}' ({int(dup.sum())} extra row(s)); risk-set matching needs at "
                    f"most one candidate row per person and period. Keep one row per ({self.person}, "
                    f"{self.period})."
                )
            return
        several = pd.Series(pc).duplicated().to_numpy()
        if several.any() and (self.method == "cem" or (self.method == "optimal" and self._capacity() != 0)):
            n_persons = int(pd.Series(pc[several]).nunique())
            raise ValueError(
                f"Matcher.fit (method='{self.method}'): {n_persons} person(s) ('{self.person}') have several "
                "control rows and period=None, so the capacity of a person cannot be shared between its rows "
                "in one problem. Set period= (e.g. 'index_quarter') to match period by period (risk-set "
                "matching), or use method='nearest'."
            )

    def _cem_pairs(self, layout: algorithms.SearchLayout, tv: np.ndarray, t_period: np.ndarray | None,
                   pos_person: np.ndarray | None, capacity: int, c_until: np.ndarray | None = None,
                   t_time: np.ndarray | None = None):
        """Every (treated, control) pair of a cell, at risk; persons capped at ``capacity`` cells, earliest
        periods first."""
        size = layout.stratum_hi - layout.stratum_lo
        size = np.where(layout.hi > layout.lo, size, 0)
        t_idx, c_pos = algorithms._window_edges(np.arange(len(tv), dtype=np.int64), layout.stratum_lo,
                                                layout.stratum_lo + size)
        if c_until is not None:
            keep = c_until[c_pos] >= t_time[t_idx]
            t_idx, c_pos = t_idx[keep], c_pos[keep]
        if pos_person is not None and capacity != 0:
            uses = np.zeros(int(pos_person.max()) + 1, dtype=np.int64)
            by_period = np.argsort(t_period[t_idx], kind="stable")
            t_idx, c_pos = t_idx[by_period], c_pos[by_period]
            keep = np.ones(len(t_idx), dtype=bool)
            bounds = np.flatnonzero(np.diff(t_period[t_idx])) + 1
            for part in np.split(np.arange(len(t_idx)), bounds):
                ok = uses[pos_person[c_pos[part]]] < capacity
                keep[part] = ok
                np.add.at(uses, pos_person[np.unique(c_pos[part[ok]])], 1)  # one use per cell
            t_idx, c_pos = t_idx[keep], c_pos[keep]
            back = np.lexsort((c_pos, t_idx))
            t_idx, c_pos = t_idx[back], c_pos[back]
        dist = np.abs(layout.values[c_pos] - tv[t_idx])
        return t_idx.astype(np.int64), c_pos.astype(np.int64), dist

    def _build_outputs(self, frame, t_rows, pos_rows, layout, t_ok, t_idx, c_pos, dist, id, stratum,
                       exact_stratum, constraints) -> None:
        ids = frame[id].to_numpy()
        c_frame_rows = pos_rows[c_pos]
        n_t = len(t_rows)
        per_treated = np.bincount(t_idx, minlength=n_t)
        matched_t = np.flatnonzero(per_treated > 0)
        # subclass = 1..n in treated data order (nearest/optimal) or the CEM cell
        subclass_of_t = np.zeros(n_t, dtype=np.int64)
        if self.method == "cem":
            _, cell = np.unique(stratum[t_rows[matched_t]], return_inverse=True)
            subclass_of_t[matched_t] = cell.ravel() + 1
        else:
            subclass_of_t[matched_t] = np.arange(1, len(matched_t) + 1)
        pair_subclass = subclass_of_t[t_idx]
        self.pairs_ = pd.DataFrame({
            "treated_id": ids[t_rows[t_idx]],
            "control_id": ids[c_frame_rows],
            "subclass": pair_subclass,
            "distance": dist,
        })

        t_time = constraints.get("t_time")
        if self.method == "cem":
            # one row per control (a row lies in one cell); weights (m_T^s / m_C^s) × (m_C / m_T) (Iacus,
            # King & Porro), m counted over units with at least one pair
            control_rows, c_first, c_inv = np.unique(c_frame_rows, return_index=True, return_inverse=True)
            c_inv = c_inv.ravel()
            c_subclass = pair_subclass[c_first]
            t_cells = subclass_of_t[matched_t]
            n_cells = int(t_cells.max()) + 1 if len(t_cells) else 1
            mt = np.bincount(t_cells, minlength=n_cells).astype(float)
            mc = np.bincount(c_subclass, minlength=n_cells).astype(float)
            c_weight = (mt[c_subclass] / mc[c_subclass]) * (len(control_rows) / max(len(matched_t), 1))
            source_t = None
            if t_time is not None:
                # time zero of a CEM control: the lower median of the time zeros of its cell's treated
                # units it is at risk for (an actual treated date, so it is still at risk on it)
                by_time = np.lexsort((t_time[t_idx], c_inv))
                n_per = np.bincount(c_inv, minlength=len(control_rows))
                first = np.cumsum(n_per) - n_per
                source_t = t_idx[by_time[first + (n_per - 1) // 2]]
        else:
            # one row per (control, matched set): weight 1/k of its set, subclass = the set
            by_set = np.argsort(pair_subclass, kind="stable")
            control_rows = c_frame_rows[by_set]
            c_weight = 1.0 / per_treated[t_idx[by_set]]
            c_subclass = pair_subclass[by_set]
            source_t = t_idx[by_set]
        treated_part = frame.iloc[t_rows[matched_t]].reset_index(drop=True)
        treated_part["weight"] = 1.0
        treated_part["subclass"] = subclass_of_t[matched_t]
        control_part = frame.iloc[control_rows].reset_index(drop=True)
        control_part["weight"] = c_weight
        control_part["subclass"] = c_subclass
        if self.time_zero is not None:
            tz = self.time_zero
            at = frame.columns.get_loc(tz) + 1
            treated_part.insert(at, f"candidate_{tz}", treated_part[tz].array)
            control_part.insert(at, f"candidate_{tz}", control_part[tz].array)
            control_part[tz] = frame[tz].iloc[t_rows[source_t]].array
        self.matched_ = pd.concat([treated_part, control_part], ignore_index=True)
        self._matched_control_rows = control_rows

        unmatched_t = np.flatnonzero(per_treated == 0)
        n_stratum = (layout.stratum_hi - layout.stratum_lo)[unmatched_t]
        n_caliper = (layout.hi - layout.lo)[unmatched_t]
        n_at_risk = n_caliper
        if t_time is not None:
            n_at_risk = _count_at_risk(layout, unmatched_t, constraints["c_until"], t_time)
        ok = t_ok[unmatched_t]
        reason = np.select(
            [~ok, n_stratum == 0, n_caliper == 0, n_at_risk == 0],
            ["missing_value", "no_control_in_stratum", "no_control_within_caliper", "no_control_at_risk"],
            "controls_taken",
        )
        unmatched = frame.iloc[t_rows[unmatched_t]].copy()
        unmatched["unmatched_reason"] = reason
        unmatched["n_controls_in_stratum"] = np.where(ok, n_stratum, 0)
        unmatched["n_controls_within_caliper"] = np.where(ok, n_caliper, 0)
        unmatched["n_controls_at_risk"] = np.where(ok, n_at_risk, 0)
        self.unmatched_ = unmatched.reset_index(drop=True)

        self.n_treated_matched_ = int(len(matched_t))
        self.n_controls_matched_ = int(len(np.unique(c_frame_rows)))
        self.n_unmatched_ = int(len(unmatched_t))
        self.n_partial_ = int(((per_treated > 0) & (per_treated < self.ratio)).sum()) if self.method != "cem" else 0
        self.n_pairs_ = int(len(t_idx))
        self.n_strata_matched_ = int(len(np.unique(exact_stratum[t_rows[matched_t]])))

    def _reuse_statistics(self, person, period, period_labels, t_rows, t_idx, c_rows_all, capacity) -> None:
        """``n_control_persons_``, ``reuse_`` and ``period_counts_`` from the control rows of ``matched_``."""
        rows = self._matched_control_rows  # frame row of each control row of matched_ (one per set)
        pers = person[rows] if person is not None else rows
        persons, uses = np.unique(pers, return_counts=True)
        self.n_control_persons_ = int(len(persons))
        self.reuse_ = ReuseStats(
            persons_once=int((uses == 1).sum()),
            persons_reused=int((uses >= 2).sum()),
            max_uses=int(uses.max(initial=0)),
            share_rows_reused=float(uses[uses >= 2].sum() / len(rows)) if len(rows) else 0.0,
        )
        if period is None:
            self.period_counts_ = None
            return
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
        self.period_counts_ = pd.DataFrame({
            self.period: period_labels,
            "treated": per_period(t_period),
            "treated_matched": per_period(t_period[matched]),
            "pairs": per_period(t_period[t_idx]),
            "control_rows": candidates,
            "control_rows_available": available,
            "controls_matched": per_period(period[np.unique(rows)]),
        })

    # ------------------------------------------------------------------ diagnostics
    def _check_fitted(self) -> None:
        if not hasattr(self, "pairs_"):
            raise RuntimeError("This Matcher is not fitted yet: call fit(frame) first.")

    def balance(self, covariates: Sequence[str] | None = None, stages: Sequence[str] = ("before", "after")):
        """Tidy balance table (see :func:`matching.balance.balance_table`)."""
        from matching.balance import balance_table

        self._check_fitted()
        covs = list(covariates) if covariates is not None else self.default_covariates()
        return balance_table(self._frame, self.matched_, covs, self.treatment_, stages=stages, id=self.id_)

    def default_covariates(self) -> list[str]:
        covs = [*self._exact, *([self.on] if self.on else []), *self._ps_covariates]
        return list(dict.fromkeys(covs))

    def love_plot(self, ax=None, covariates: Sequence[str] | None = None, threshold: float = 0.1):
        """Absolute SMD before/after per covariate (matplotlib); returns the Axes."""
        from matching.plots import love_plot

        return love_plot(self.balance(covariates), ax=ax, threshold=threshold)

    def summary(self, covariates: Sequence[str] | None = None):
        """A :class:`matching.balance.MatchSummary` with sample sizes before/after and balance."""
        from matching.balance import MatchSummary

        self._check_fitted()
        return MatchSummary.from_matcher(self, self.balance(covariates))


def _as_seconds(column: pd.Series, role: str, name: str) -> np.ndarray:
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


def _blocks(t_period: np.ndarray) -> list[np.ndarray]:
    """Treated indices grouped by period, periods in ascending order (missing periods first)."""
    order = np.argsort(t_period, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(t_period[order])) + 1)


def _concat(parts: list[algorithms.Assignment]) -> algorithms.Assignment:
    if not parts:
        return algorithms.Assignment(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    return algorithms.Assignment(*(np.concatenate([getattr(a, f) for a in parts])
                                   for f in ("treated", "position", "distance")))


def _count_at_risk(layout: algorithms.SearchLayout, treated: np.ndarray, c_until: np.ndarray,
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
        local, position = algorithms._window_edges(sel, layout.lo[treated[sel]], layout.hi[treated[sel]])
        ok = c_until[position] >= t_time[treated[local]]
        out += np.bincount(local[ok], minlength=len(treated))
        start = int(sel[-1]) + 1
    return out


def stratum_codes(frame: pd.DataFrame, columns: Sequence[str],
                  known: dict[str, tuple[np.ndarray, int]] | None = None) -> np.ndarray:
    """Integer code of each row's exact stratum (-1 when any column is missing); sorted, deterministic.

    ``known`` = codes already computed for some columns (sorted level ranks, -1 missing; number of levels).
    """
    n = len(frame)
    if not columns:
        return np.zeros(n, dtype=np.int64)
    code = np.zeros(n, dtype=np.int64)
    missing = np.zeros(n, dtype=bool)
    for col in columns:
        if known and col in known:
            c, n_levels = known[col]
        else:
            c, uniques = pd.factorize(frame[col], sort=True)
            n_levels = len(uniques)
        missing |= c < 0
        code = code * (n_levels + 1) + np.maximum(c, 0)
        if n_levels and code.max() > 2**40:  # keep the mixed-radix code small
            code = pd.factorize(code, sort=True)[0].astype(np.int64)
    # hash-based and sorted: codes follow the sorted order of the exact columns' values
    code = pd.factorize(code, sort=True)[0].astype(np.int64)
    return np.where(missing, -1, code)


class _Design:
    """Propensity design matrix: standardised numeric columns + one-hot categorical columns."""

    def __init__(self, numeric, categorical, means, sds, levels, log_column):
        self.numeric, self.categorical = numeric, categorical
        self.means, self.sds, self.levels, self.log_column = means, sds, levels, log_column

    @classmethod
    def fit(cls, frame: pd.DataFrame, columns: list[str], log_column: str | None) -> _Design:
        numeric = [c for c in columns if pd.api.types.is_numeric_dtype(frame[c]) and not
                   pd.api.types.is_bool_dtype(frame[c])]
        categorical = [c for c in columns if c not in numeric]
        means, sds = {}, {}
        for c in numeric:
            x = frame[c].to_numpy(dtype=float, na_value=np.nan)
            if c == log_column:
                x = np.log1p(x)
            finite = x[np.isfinite(x)]
            means[c] = float(finite.mean()) if len(finite) else 0.0
            sd = float(finite.std()) if len(finite) else 0.0
            sds[c] = sd if sd > 0 else 1.0
        levels = {c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in categorical}
        return cls(numeric, categorical, means, sds, levels, log_column)

    def complete(self, frame: pd.DataFrame) -> np.ndarray:
        cols = self.numeric + self.categorical
        return frame[cols].notna().all(axis=1).to_numpy() if cols else np.ones(len(frame), bool)

    def transform(self, frame: pd.DataFrame):
        from scipy import sparse

        blocks = []
        for c in self.numeric:
            x = frame[c].to_numpy(dtype=float, na_value=np.nan)
            if c == self.log_column:
                x = np.log1p(x)
            blocks.append(sparse.csr_matrix(((x - self.means[c]) / self.sds[c])[:, None]))
        for c in self.categorical:
            cat = pd.Categorical(frame[c].astype(str), categories=self.levels[c])
            codes = cat.codes
            ok = codes >= 0
            m = sparse.csr_matrix(
                (np.ones(ok.sum()), (np.flatnonzero(ok), codes[ok])), shape=(len(frame), len(self.levels[c]))
            )
            blocks.append(m)
        return sparse.hstack(blocks, format="csr")
