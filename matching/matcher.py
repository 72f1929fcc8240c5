"""`Matcher`: a scikit-learn-style estimator matching treated units to controls.

Parameters are stored by ``__init__`` and validated by ``fit`` (so ``get_params``/``set_params``/
``clone`` make re-running with other settings free). ``fit`` returns ``self`` with fitted attributes
ending in ``_``. The estimator is generic over any table: one row per unit, a 0/1 treatment column and a
unique id column. See docs/matching.md for the exact algorithms.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
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
    "missing_value": "a matching variable is missing",
    "no_control_in_stratum": "no candidate control in its exact stratum",
    "no_control_within_caliper": "candidate controls in its stratum, none within the caliper",
    "controls_taken": "its within-caliper controls were all used by other treated units",
}


class Matcher(BaseEstimator):
    """Match treated units to controls within exact strata, on one distance variable.

    Parameters
    ----------
    method : {'nearest', 'optimal', 'propensity', 'cem'}
        'nearest' greedy nearest neighbour; 'optimal' maximum number of pairs then minimum total
        distance within each stratum (sparse assignment); 'propensity' greedy nearest neighbour on the
        logit of a logistic propensity score, inside the exact strata; 'cem' coarsened exact matching
        on ``exact`` + ``on`` cut into ``cem_bins`` equal-width bins.
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
        Whether a control may serve several treated units.
    max_reuse : int >= 0
        With ``replace=True``: maximum number of treated units per control (0 = unlimited).
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

        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"Matcher.fit expects a pandas DataFrame; got {type(frame).__name__}.")
        needed = [treatment, id, *self._exact, *([self.on] if self.on else []), *self._ps_covariates]
        missing = [c for c in dict.fromkeys(needed) if c not in frame.columns]
        if missing:
            raise ValueError(
                f"Matcher.fit: column(s) {missing} not found in the frame ({len(frame.columns)} columns: "
                f"{list(frame.columns)[:12]}...). Pass the right names to exact/on/ps_covariates or "
                f"treatment=/id=."
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

        raw, value = self._distance_variable(frame, is_treated)
        stratum = exact_stratum = stratum_codes(frame, self._exact)
        if self.method == "cem":
            stratum = self._cem_strata(stratum, value)
        valid = (stratum >= 0) & np.isfinite(value)

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

        if self.method == "cem":
            t_idx, c_pos, dist = self._cem_pairs(layout, tv)
        else:
            capacity = 0 if (self.replace and self.max_reuse == 0) else (self.max_reuse if self.replace else 1)
            if self.method == "optimal" and capacity != 0:
                assignment = algorithms.optimal_match(layout, tv, t_strata, self.ratio, capacity)
            else:
                # with unlimited reuse every treated unit simply takes its k nearest: greedy is optimal
                assignment = algorithms.greedy_match(layout, tv, self.ratio, capacity, self._sequence(len(tv)))
            t_idx, c_pos, dist = assignment.treated, assignment.position, assignment.distance

        self._build_outputs(frame, t_rows, c_rows, layout, t_ok, t_idx, c_pos, dist, id, stratum, exact_stratum)
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

    def _cem_pairs(self, layout: algorithms.SearchLayout, tv: np.ndarray):
        size = layout.stratum_hi - layout.stratum_lo
        size = np.where(layout.hi > layout.lo, size, 0)
        t_idx = np.repeat(np.arange(len(tv)), size)
        offsets = np.cumsum(size) - size
        c_pos = np.arange(int(size.sum())) - np.repeat(offsets - layout.stratum_lo, size)
        dist = np.abs(layout.values[c_pos] - tv[t_idx])
        return t_idx.astype(np.int64), c_pos.astype(np.int64), dist

    def _build_outputs(self, frame, t_rows, c_rows, layout, t_ok, t_idx, c_pos, dist, id, stratum,
                       exact_stratum) -> None:
        ids = frame[id].to_numpy()
        c_frame_rows = c_rows[layout.order[c_pos]]
        n_t = len(t_rows)
        per_treated = np.bincount(t_idx, minlength=n_t)
        matched_t = np.flatnonzero(per_treated > 0)
        # subclass = 1..n in treated data order (nearest/optimal) or the CEM cell
        if self.method == "cem":
            _, cell = np.unique(stratum[t_rows[matched_t]], return_inverse=True)
            subclass_of_t = np.zeros(n_t, dtype=np.int64)
            subclass_of_t[matched_t] = cell + 1
        else:
            subclass_of_t = np.zeros(n_t, dtype=np.int64)
            subclass_of_t[matched_t] = np.arange(1, len(matched_t) + 1)
        self.pairs_ = pd.DataFrame({
            "treated_id": ids[t_rows[t_idx]],
            "control_id": ids[c_frame_rows],
            "subclass": subclass_of_t[t_idx],
            "distance": dist,
        })

        # ATT weights: treated 1; each control 1/k of its set (k = controls of that treated), summed
        if self.method == "cem":
            cells = subclass_of_t[t_idx]
            # CEM weights (Iacus, King & Porro): (m_T^s / m_C^s) × (m_C / m_T) for controls
            t_cells = subclass_of_t[matched_t]
            c_unique_rows, c_first = np.unique(c_frame_rows, return_index=True)
            c_cells = cells[c_first]
            n_cells = int(t_cells.max()) + 1 if len(t_cells) else 1
            mt = np.bincount(t_cells, minlength=n_cells).astype(float)
            mc = np.bincount(c_cells, minlength=n_cells).astype(float)
            c_weight = (mt[c_cells] / mc[c_cells]) * (len(c_unique_rows) / max(len(matched_t), 1))
            c_subclass = c_cells
        else:
            share = 1.0 / per_treated[t_idx]
            c_unique_rows, inv = np.unique(c_frame_rows, return_inverse=True)
            c_weight = np.bincount(inv, weights=share, minlength=len(c_unique_rows))
            # a reused control keeps the subclass of its first (lowest) set; pairs_ has every set
            c_subclass = np.full(len(c_unique_rows), np.iinfo(np.int64).max)
            np.minimum.at(c_subclass, inv, subclass_of_t[t_idx])
        treated_part = frame.iloc[t_rows[matched_t]].copy()
        treated_part["weight"] = 1.0
        treated_part["subclass"] = subclass_of_t[matched_t]
        control_part = frame.iloc[c_unique_rows].copy()
        control_part["weight"] = c_weight
        control_part["subclass"] = c_subclass
        self.matched_ = pd.concat([treated_part, control_part], ignore_index=True)

        unmatched_t = np.flatnonzero(per_treated == 0)
        n_stratum = (layout.stratum_hi - layout.stratum_lo)[unmatched_t]
        n_caliper = (layout.hi - layout.lo)[unmatched_t]
        reason = np.where(
            ~t_ok[unmatched_t], "missing_value",
            np.where(n_stratum == 0, "no_control_in_stratum",
                     np.where(n_caliper == 0, "no_control_within_caliper", "controls_taken")),
        )
        unmatched = frame.iloc[t_rows[unmatched_t]].copy()
        unmatched["unmatched_reason"] = reason
        unmatched["n_controls_in_stratum"] = np.where(t_ok[unmatched_t], n_stratum, 0)
        unmatched["n_controls_within_caliper"] = np.where(t_ok[unmatched_t], n_caliper, 0)
        self.unmatched_ = unmatched.reset_index(drop=True)

        self.n_treated_matched_ = int(len(matched_t))
        self.n_controls_matched_ = int(len(c_unique_rows))
        self.n_unmatched_ = int(len(unmatched_t))
        self.n_partial_ = int(((per_treated > 0) & (per_treated < self.ratio)).sum()) if self.method != "cem" else 0
        self.n_pairs_ = int(len(t_idx))
        self.n_strata_matched_ = int(len(np.unique(exact_stratum[t_rows[matched_t]])))

    # ------------------------------------------------------------------ diagnostics
    def _check_fitted(self) -> None:
        if not hasattr(self, "pairs_"):
            raise RuntimeError("This Matcher is not fitted yet: call fit(frame) first.")

    def balance(self, covariates: Sequence[str] | None = None, stages: Sequence[str] = ("before", "after")):
        """Tidy balance table (see :func:`matching.balance.balance_table`)."""
        from matching.balance import balance_table

        self._check_fitted()
        covs = list(covariates) if covariates is not None else self.default_covariates()
        return balance_table(self._frame, self.matched_, covs, self.treatment_, stages=stages)

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


def stratum_codes(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Integer code of each row's exact stratum (-1 when any column is missing); sorted, deterministic."""
    n = len(frame)
    if not columns:
        return np.zeros(n, dtype=np.int64)
    code = np.zeros(n, dtype=np.int64)
    missing = np.zeros(n, dtype=bool)
    for col in columns:
        c, uniques = pd.factorize(frame[col], sort=True)
        missing |= c < 0
        code = code * (len(uniques) + 1) + np.maximum(c, 0)
        if len(uniques) and code.max() > 2**40:  # keep the mixed-radix code small
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
