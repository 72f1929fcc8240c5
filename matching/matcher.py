"""`Matcher`: a scikit-learn-style estimator matching treated units to controls.

Parameters are stored by ``__init__`` and validated by ``fit`` (so ``get_params``/``set_params``/
``clone`` make re-running with other settings free). ``fit`` returns ``self`` with fitted attributes
ending in ``_``. The estimator is generic over any table: one row per unit, a 0/1 treatment column and a
unique id column; optionally a person column (several rows of one person share its capacity), a period
column (risk-set matching period by period) and a time-zero / at-risk-until pair of date columns. See
docs/matching.md for the exact algorithms.

Modules: parameter checks in :mod:`matching.params`, persons/periods/time zeros in
:mod:`matching.risk_sets`, the propensity model in :mod:`matching.propensity`, the matching algorithms
on sorted arrays in :mod:`matching.algorithms`; this module prepares their inputs and builds the outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from matching import algorithms
from matching.params import check_frame, check_params
from matching.propensity import propensity_logit
from matching.risk_sets import (
    NO_TIME,
    check_persons,
    count_at_risk,
    period_blocks,
    period_codes,
    period_counts,
    person_codes,
    time_values,
)
from matching.support import comparable_counts, greedy_sequence, off_support

UNMATCHED_REASONS = {
    "missing_value": "a matching variable (or its time zero) is missing",
    "no_control_in_stratum": "no candidate control in its exact stratum",
    "no_control_within_caliper": "candidate controls in its stratum, none within the caliper",
    "no_control_at_risk": "candidate controls within the caliper, none still at risk on its time zero",
    "controls_taken": "its within-caliper controls at risk were all used by other treated units (or "
                      "their persons by matched sets of earlier periods)",
}
#: With ``discard``: treated units off the common support (not a reason of the study's profiles, whose
#: default design discards nothing).
OFF_SUPPORT_REASON = {"off_support": "its distance lies outside the common support (discard)"}


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
    caliper : float > 0 or None
        Maximum distance (None: no caliper). The default 0.2 is the configured ``matching.caliper``
        (with ``caliper_scale='sd'``, Austin 2011's 0.2 SD).
    caliper_scale : {'sd', 'sd_all', 'absolute', 'relative'}
        'sd': caliper × pooled SD of the distance variable, sqrt((s²_treated + s²_control) / 2), over
        the rows passed to ``fit``; 'sd_all': caliper × SD of the distance variable over all valid rows,
        treated and controls together, after ``discard`` (MatchIt's ``std.caliper = TRUE``);
        'absolute': in units of the (transformed) distance variable;
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
    order : {'closest', 'data', 'random', 'largest', 'smallest'}
        Greedy order: closest pair first (global), data order, a random order (``seed``), or treated units
        by decreasing ('largest', MatchIt's default ``m.order``) / increasing ('smallest') value of the
        distance variable, ties in data order. Ignored by 'optimal' and 'cem'.
    ps_covariates : list of str or None
        Covariates of the propensity model (default: ``exact`` + ``on``); object/category columns are
        one-hot encoded, numeric columns standardised.
    ps_max_controls : int
        The propensity model is fitted on all treated units and at most this many controls (a seeded
        random subset); subsampling controls only shifts the logit by a constant, which changes neither
        distances nor the SD-scaled caliper on the logit (it does change them with
        ``ps_scale='probability'``: keep every control to reproduce R).
    ps_model : {'penalised', 'glm'}
        'penalised': scikit-learn's L2 logistic regression (C = 1); 'glm': an unpenalised binomial GLM
        (statsmodels), as R's ``glm`` and MatchIt's ``distance = "glm"``.
    ps_scale : {'logit', 'probability'}
        Distance variable of 'propensity': the linear predictor (MatchIt's ``link = "linear.logit"``) or
        the fitted probability (MatchIt's default ``link = "logit"``).
    discard : {'none', 'both', 'treated', 'control'}
        Common support on the distance variable (MatchIt's ``discard``): 'control' drops controls outside
        the treated units' range, 'treated' treated units outside the controls' range, 'both' every unit
        outside the overlap of the two ranges (bounds inclusive). Discarded treated units are unmatched
        with reason 'off_support'; discarded rows do not enter the SD of the caliper. Ignored by 'cem'.
    cem_bins : int >= 1
        Number of equal-width bins of the transformed ``on`` for 'cem'.
    seed : int or None
        Seed for ``order='random'`` and the propensity subsample. Same seed, same result.
    """

    def __init__(
        self,
        *,
        method: str = "nearest",
        exact: Sequence[str] | None = None,
        on: str | None = None,
        transform: str = "none",
        caliper: float | None = 0.2,
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
        ps_model: str = "penalised",
        ps_scale: str = "logit",
        discard: str = "none",
        cem_bins: int = 10,
        seed: int | None = None,
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
        self.ps_model = ps_model
        self.ps_scale = ps_scale
        self.discard = discard
        self.cem_bins = cem_bins
        self.seed = seed

    # ------------------------------------------------------------------ derived column lists
    @property
    def exact_columns(self) -> list[str]:
        """The exact-matching columns (``exact``, or none)."""
        return list(self.exact) if self.exact else []

    @property
    def ps_columns(self) -> list[str]:
        """The covariates of the propensity model (none unless method='propensity')."""
        if self.method != "propensity":
            return []
        if self.ps_covariates:
            return list(self.ps_covariates)
        return [*self.exact_columns, *([self.on] if self.on else [])]

    @property
    def strata_columns(self) -> list[str]:
        """The columns of an exact stratum: the period (implicitly exact) then ``exact``."""
        return list(dict.fromkeys([*([self.period] if self.period else []), *self.exact_columns]))

    # ------------------------------------------------------------------ fit
    def fit(self, frame: pd.DataFrame, treatment: str = "treated", id: str = "unit_id") -> Matcher:
        """Match the treated rows of ``frame`` to its control rows; returns ``self``."""
        check_params(self)
        check_frame(self, frame, treatment, id)
        self.treatment_ = treatment
        self.id_ = id
        self._frame = frame
        is_treated = frame[treatment].to_numpy().astype(bool)
        time = time_values(frame, is_treated, self.time_zero, self.at_risk_until)
        person = person_codes(frame, is_treated, self.person)
        period, period_labels = period_codes(frame, self.period)
        check_persons(person, period, is_treated, person_column=self.person, period_column=self.period,
                      method=self.method, capacity=self._capacity())

        raw, value = self._distance_variable(frame, is_treated)
        # the period is implicitly exact; it leads the stratum code, so strata are ordered by period
        known = {self.period: (period, len(period_labels))} if period is not None else None
        stratum = exact_stratum = stratum_codes(frame, self.strata_columns, known)
        if self.method == "cem":
            stratum = self._cem_strata(stratum, value)
        valid = (stratum >= 0) & np.isfinite(value)
        self.distance_ = value
        # CEM ignores discard, as it ignores the caliper (its cells are its common support)
        discarded = off_support(value, is_treated, valid, "none" if self.method == "cem" else self.discard)
        self.n_discarded_treated_ = int((discarded & is_treated).sum())
        self.n_discarded_controls_ = int((discarded & ~is_treated).sum())
        valid &= ~discarded
        if time is not None:
            valid &= time != NO_TIME  # treated: time zero; control: at-risk-until date

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
        blocks = period_blocks(t_period) if t_period is not None else None

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
                assignment = algorithms.concat_assignments(parts)
        else:
            # with unlimited reuse every treated unit simply takes its k nearest: greedy is optimal
            assignment = algorithms.greedy_match(
                layout, tv, self.ratio, capacity, greedy_sequence(self.order, tv, self.seed), blocks=blocks,
                person=pos_person,
                distinct_persons=pos_person is not None and capacity != 1 and period is None, **constraints,
            )
        if self.method != "cem":
            t_idx, c_pos, dist = assignment.treated, assignment.position, assignment.distance

        gone = self._build_outputs(frame, t_rows, pos_rows, layout, t_ok, t_idx, c_pos, dist, id, stratum,
                                   exact_stratum, constraints, discarded[t_rows])
        self.unmatched_["n_comparable_any_period"] = self._comparable_any_period(
            frame, value, ~is_treated & valid, t_rows[gone], np.where(t_ok, low, np.nan)[gone],
            np.where(t_ok, high, np.nan)[gone])
        self._reuse_statistics(person, period, period_labels, t_rows, t_idx, c_rows_all, capacity)
        return self

    # ------------------------------------------------------------------ pieces of fit
    def _distance_variable(self, frame: pd.DataFrame, is_treated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.method == "propensity":
            logit, self.ps_model_, self.ps_design_ = propensity_logit(
                frame, is_treated, self.ps_columns, self.on if self.transform == "log1p" else None, self.seed,
                self.ps_max_controls, self.ps_model)
            if self.ps_scale == "probability":
                with np.errstate(over="ignore"):
                    score = 1.0 / (1.0 + np.exp(-logit))
                return score, score
            return logit, logit
        raw = frame[self.on].to_numpy(dtype=np.float64, na_value=np.nan)
        value = np.log1p(raw) if self.transform == "log1p" else raw
        return raw, value

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
        cal = self.caliper
        if cal is None or self.method == "cem":
            return None
        if self.caliper_scale == "sd_all":  # MatchIt's std.caliper: SD over all units kept
            both = value[t_mask | c_mask]
            self.distance_sd_ = float(np.std(both, ddof=1)) if len(both) > 1 else 0.0
            return float(cal) * self.distance_sd_
        if self.caliper_scale == "sd":
            vt = np.var(value[t_mask], ddof=1) if t_mask.sum() > 1 else 0.0
            vc = np.var(value[c_mask], ddof=1) if c_mask.sum() > 1 else 0.0
            self.pooled_sd_ = float(np.sqrt((vt + vc) / 2))
            return float(cal) * self.pooled_sd_
        if self.caliper_scale == "absolute":
            return float(cal)
        return None  # relative: per treated unit, see _caliper_bounds

    def _caliper_bounds(self, raw: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cal = self.caliper
        if cal is None or self.method == "cem":
            return np.full_like(value, -np.inf), np.full_like(value, np.inf)
        if self.caliper_scale == "relative":
            half = float(cal) * np.abs(raw)
            low_raw, high_raw = raw - half, raw + half
            if self.method != "propensity" and self.transform == "log1p":
                return np.log1p(np.maximum(low_raw, 0.0)), np.log1p(high_raw)
            return low_raw, high_raw
        w = self.caliper_width_
        return value - w, value + w

    @property
    def profile_columns(self) -> list[str]:
        """The exact columns that describe a patient rather than a date: ``exact`` without the period."""
        return [c for c in self.exact_columns if c != self.period]

    def _comparable_any_period(self, frame: pd.DataFrame, value: np.ndarray, control: np.ndarray,
                               rows: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """``support.comparable_counts`` on the profile codes (:attr:`profile_columns`): per treated frame
        row of ``rows``, the control rows of any period with its profile and a distance in [low, high]."""
        if not len(rows):
            return np.zeros(0, dtype=np.int64)
        return comparable_counts(stratum_codes(frame, self.profile_columns), value, control, rows, low, high)

    def _capacity(self) -> int:
        """Matched sets one control person may serve: 1 without replacement, max_reuse with (0 = unlimited)."""
        if not self.replace:
            return 1
        return int(self.max_reuse)

    def _cem_pairs(self, layout: algorithms.SearchLayout, tv: np.ndarray, t_period: np.ndarray | None,
                   pos_person: np.ndarray | None, capacity: int, c_until: np.ndarray | None = None,
                   t_time: np.ndarray | None = None):
        """Every (treated, control) pair of a cell, at risk; persons capped at ``capacity`` cells, earliest
        periods first."""
        size = layout.stratum_hi - layout.stratum_lo
        size = np.where(layout.hi > layout.lo, size, 0)
        t_idx, c_pos = algorithms.window_edges(np.arange(len(tv), dtype=np.int64), layout.stratum_lo,
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
                       exact_stratum, constraints, t_discarded) -> np.ndarray:
        """Set the fitted outputs; return the positions (in ``t_rows``) of the unmatched treated units,
        in the order of ``unmatched_``."""
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
            n_at_risk = count_at_risk(layout, unmatched_t, constraints["c_until"], t_time)
        ok = t_ok[unmatched_t]
        reason = np.select(
            [t_discarded[unmatched_t], ~ok, n_stratum == 0, n_caliper == 0, n_at_risk == 0],
            ["off_support", "missing_value", "no_control_in_stratum", "no_control_within_caliper",
             "no_control_at_risk"],
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
        return unmatched_t

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
        self.period_counts_ = period_counts(period, period_labels, self.period, person, t_rows, t_idx, c_rows_all,
                                            rows, pers, capacity)

    # ------------------------------------------------------------------ diagnostics
    def _check_fitted(self) -> None:
        if not hasattr(self, "pairs_"):
            raise RuntimeError("This Matcher is not fitted yet: call fit(frame) first.")

    def balance(self, covariates: Sequence[str] | None = None, stages: Sequence[str] = ("before", "after"),
                convention: str = "study"):
        """Tidy balance table (see :func:`matching.balance.balance_table`; ``convention='matchit'`` for
        MatchIt's ``summary()`` conventions)."""
        from matching.balance import balance_table

        self._check_fitted()
        covs = list(covariates) if covariates is not None else self.default_covariates()
        return balance_table(self._frame, self.matched_, covs, self.treatment_, stages=stages, id=self.id_,
                             convention=convention)

    def default_covariates(self) -> list[str]:
        covs = [*self.exact_columns, *([self.on] if self.on else []), *self.ps_columns]
        return list(dict.fromkeys(covs))

    def summary(self, covariates: Sequence[str] | None = None):
        """A :class:`matching.balance.MatchSummary` with sample sizes before/after and balance."""
        from matching.balance import MatchSummary

        self._check_fitted()
        return MatchSummary.from_matcher(self, self.balance(covariates))


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
        code *= n_levels + 1
        code += np.maximum(c, 0)
        if n_levels and code.max() > 2**40:  # keep the mixed-radix code small
            code = pd.factorize(code, sort=True)[0].astype(np.int64)
    # dense and sorted: codes follow the sorted order of the exact columns' values
    code = dense_ranks(code)
    code[missing] = -1
    return code


def dense_ranks(code: np.ndarray) -> np.ndarray:
    """The rank of each value among the distinct values of ``code`` (non-negative int64), i.e. the
    codes of ``pd.factorize(code, sort=True)``; by a lookup table when the values are small (strata
    combine a few levels per column), which hashes nothing."""
    top = int(code.max(initial=-1))
    if top < 4 * len(code) + 1024:
        used = np.zeros(top + 1, dtype=bool)
        used[code] = True
        return (np.cumsum(used) - 1)[code]
    return pd.factorize(code, sort=True)[0].astype(np.int64)
