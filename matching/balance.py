"""Balance diagnostics: standardised mean differences, variance ratios, eCDF statistics, ESS.

Conventions (stated in the output):

* SMD = (weighted mean treated − weighted mean control) / SD of the treated units *before* matching
  (the ATT convention of cobalt); the same denominator is used before and after, so a change in SMD is a
  change in means only. When the treated SD is 0 the pooled SD sqrt((s²_t + s²_c)/2) before matching is
  used, and the ``smd_denominator`` column says so.
* variance ratio = weighted variance treated / weighted variance control, with the unbiased
  reliability-weight formula  V = Σw(x − x̄)² / (Σw − Σw²/Σw)  (numpy's ``np.cov(aweights=...)``).
* eCDF mean / max = mean / max over the distinct pooled values of |F_t(v) − F_c(v)|, with weighted eCDFs
  after matching.
* flags: |SMD| > 0.1; variance ratio outside [0.5, 2] (numeric, non-binary covariates only).
* categorical (non-numeric) covariates are expanded into one 0/1 dummy per level, named ``col=level``.
* ``convention="matchit"`` follows MatchIt's ``summary()`` (ATT) instead: the SMD denominator of a binary
  covariate is sqrt(p(1 − p)) of the treated before matching (continuous: the treated SD, as above); no
  variance ratio for binary covariates; eCDF statistics after matching are taken over the distinct values
  of the *whole* sample (unmatched units weigh 0), and for a binary covariate eCDF mean = eCDF max = the
  absolute difference in proportions. Checked against MatchIt's printed summary on lalonde
  (tests/test_matchit_lalonde.py).
* after matching, statistics are over *units*: a control serving several matched sets has one row per
  set in ``Matcher.matched_`` and weighs the sum of its per-set weights (:func:`unit_rows`). Means and
  eCDFs would not change if rows were kept split, but Σw² would (variance denominators, Kish ESS —
  a reused control would look like several independent ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.stats import SMD_THRESHOLD, weighted_mean_var

VR_BOUNDS = (0.5, 2.0)
CONVENTIONS = ("study", "matchit")


def kish_ess(weights: np.ndarray) -> float:
    """Kish effective sample size (Σw)² / Σw²."""
    w = np.asarray(weights, dtype=float)
    s2 = float((w * w).sum())
    return float(w.sum() ** 2 / s2) if s2 > 0 else 0.0


def unit_rows(matched: pd.DataFrame, id: str, weight: str = "weight") -> pd.DataFrame:
    """One row per unit of a matched table with one row per (unit, matched set): the first row of each
    unit, weighing the sum of its rows' weights. Returns ``matched`` itself when no unit repeats."""
    if id not in matched.columns or not matched[id].duplicated().any():
        return matched
    total = matched.groupby(id, sort=False)[weight].sum()
    out = matched.drop_duplicates(id).copy()
    out[weight] = out[id].map(total).to_numpy(dtype=float)
    return out.reset_index(drop=True)


def ecdf_stats(x_t: np.ndarray, w_t: np.ndarray, x_c: np.ndarray, w_c: np.ndarray) -> tuple[float, float]:
    """Mean and max absolute difference of the (weighted) eCDFs over the distinct pooled values."""
    if len(x_t) == 0 or len(x_c) == 0:
        return np.nan, np.nan
    values, inv = np.unique(np.concatenate([x_t, x_c]), return_inverse=True)
    nt = len(x_t)
    ft = np.bincount(inv[:nt], weights=w_t, minlength=len(values)).cumsum() / w_t.sum()
    fc = np.bincount(inv[nt:], weights=w_c, minlength=len(values)).cumsum() / w_c.sum()
    diff = np.abs(ft - fc)
    return float(diff.mean()), float(diff.max())


@dataclass(frozen=True)
class _Covariate:
    name: str
    source: str
    kind: str  # numeric | binary
    values: np.ndarray  # over the full frame (float, NaN = missing)
    level: Any = None  # for a dummy: the level it indicates
    level_is_text: bool = False


def expand_covariates(frame: pd.DataFrame, covariates: Sequence[str]) -> list[_Covariate]:
    """Numeric columns as they are; other columns as one 0/1 dummy per level (levels sorted)."""
    out = []
    for col in dict.fromkeys(covariates):
        if col not in frame.columns:
            raise ValueError(
                f"balance: covariate '{col}' is not a column of the matched frame; available: "
                f"{list(frame.columns)[:15]}..."
            )
        s = frame[col]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            x = s.to_numpy(dtype=float, na_value=np.nan)
            kind = "binary" if len(np.unique(x[np.isfinite(x)])) <= 2 else "numeric"
            out.append(_Covariate(col, col, kind, x))
            continue
        text = False
        try:
            codes, levels = pd.factorize(s, sort=True)
        except TypeError:  # mixed, unorderable types: compare as text
            codes, levels = pd.factorize(s.astype("string"), sort=True)
            text = True
        for i, level in enumerate(levels):
            x = (codes == i).astype(float)
            x[codes < 0] = np.nan
            out.append(_Covariate(f"{col}={level}", col, "binary", x, level, text))
    return out


def ecdf_stats_on(grid: np.ndarray, x_t: np.ndarray, w_t: np.ndarray, x_c: np.ndarray,
                  w_c: np.ndarray) -> tuple[float, float]:
    """Mean and max absolute difference of the (weighted) eCDFs evaluated at the values ``grid``."""
    if len(x_t) == 0 or len(x_c) == 0 or len(grid) == 0:
        return np.nan, np.nan

    def cdf(x, w):
        order = np.argsort(x, kind="stable")
        cum = np.r_[0.0, np.cumsum(w[order])]
        return cum[np.searchsorted(x[order], grid, side="right")] / w.sum()

    diff = np.abs(cdf(x_t, w_t) - cdf(x_c, w_c))
    return float(diff.mean()), float(diff.max())


def binary_ecdf_stats(x_t: np.ndarray, w_t: np.ndarray, x_c: np.ndarray, w_c: np.ndarray) -> tuple[float, float]:
    """Same as :func:`ecdf_stats` for a variable with at most two values, without sorting."""
    if len(x_t) == 0 or len(x_c) == 0:
        return np.nan, np.nan
    low = min(x_t.min(), x_c.min())
    if low == max(x_t.max(), x_c.max()):
        return 0.0, 0.0
    diff = abs(w_t[x_t == low].sum() / w_t.sum() - w_c[x_c == low].sum() / w_c.sum())
    return float(diff / 2), float(diff)


def _stats(xt, wt, xc, wc, binary: bool = False, grid: np.ndarray | None = None) -> dict[str, float]:
    if np.isnan(xt).any():  # copies only when something is missing
        ok = np.isfinite(xt)
        xt, wt = xt[ok], wt[ok]
    if np.isnan(xc).any():
        ok = np.isfinite(xc)
        xc, wc = xc[ok], wc[ok]
    mt, vt = weighted_mean_var(xt, wt)
    mc, vc = weighted_mean_var(xc, wc)
    if grid is not None:
        em, ex = ecdf_stats_on(grid, xt, wt, xc, wc)
    else:
        em, ex = (binary_ecdf_stats if binary else ecdf_stats)(xt, wt, xc, wc)
    return {"mean_treated": mt, "mean_control": mc, "var_treated": vt, "var_control": vc,
            "ecdf_mean": em, "ecdf_max": ex, "n_treated": int(len(xt)), "n_control": int(len(xc)),
            "ess_control": kish_ess(wc)}


def balance_table(
    frame: pd.DataFrame,
    matched: pd.DataFrame,
    covariates: Sequence[str],
    treatment: str,
    stages: Sequence[str] = ("before", "after"),
    weight: str = "weight",
    id: str | None = None,
    convention: str = "study",
) -> pd.DataFrame:
    """One row per covariate (dummy) and stage: means, SMD, variance ratio, eCDF stats, flags, ESS.

    ``id``: the unit id column of ``matched``; units repeated over matched sets are collapsed first
    (:func:`unit_rows`).

    ``convention``: 'study' (the module conventions) or 'matchit' (MatchIt's ``summary()``, see the module
    docstring; it always reads the whole candidate pool).

    Without the 'before' stage (and with the 'study' convention) the candidate pool is not scanned: denominators come from the treated
    rows and dummy levels from the treated and matched rows (the pool is read only for the pooled-SD
    fallback of a covariate constant among the treated).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"balance: convention must be one of {list(CONVENTIONS)}; got {convention!r}")
    matchit = convention == "matchit"
    full_frame = frame
    covariates = list(dict.fromkeys(covariates))
    if id is not None:
        matched = unit_rows(matched, id, weight)
    if "before" not in stages and not matchit:
        is_t = frame[treatment].to_numpy().astype(bool)
        cols = [*covariates, treatment]
        frame = pd.concat([frame.loc[is_t, cols], matched.loc[matched[treatment] != 1, cols]], ignore_index=True)
    before_cov = expand_covariates(frame, covariates)
    t_before = frame[treatment].to_numpy().astype(bool)
    rows: list[dict[str, Any]] = []
    after_cov: dict[str, np.ndarray] = {}
    if "after" in stages:
        for c in before_cov:
            if c.name == c.source:
                after_cov[c.name] = matched[c.source].to_numpy(dtype=float, na_value=np.nan)
            else:
                col = matched[c.source]
                x = (col == c.level).to_numpy(dtype=float, na_value=np.nan)
                if c.level_is_text:
                    x = (col.astype("string") == c.level).to_numpy(dtype=float, na_value=np.nan)
                x[col.isna().to_numpy()] = np.nan
                after_cov[c.name] = x
        t_after = matched[treatment].to_numpy().astype(bool)
        w_after = matched[weight].to_numpy(dtype=float)
    for c in before_cov:
        xt = c.values[t_before]
        xc = c.values[~t_before]
        sd_t = np.nanstd(xt, ddof=1) if np.isfinite(xt).sum() > 1 else np.nan
        if matchit and c.kind == "binary" and np.isfinite(xt).any():
            p_t = float(np.nanmean(xt))
            sd_t = np.sqrt(p_t * (1 - p_t))  # MatchIt: the binomial SD of the treated, not the sample SD
        if np.isfinite(sd_t) and sd_t > 0:
            denom, denom_name = sd_t, "treated_sd_before"
        else:
            if frame is not full_frame:  # the pooled fallback needs the whole candidate pool
                pool = next(p for p in expand_covariates(full_frame, [c.source]) if p.name == c.name)
                xc = pool.values[~full_frame[treatment].to_numpy().astype(bool)]
            vt = np.nanvar(xt, ddof=1) if np.isfinite(xt).sum() > 1 else 0.0
            vc = np.nanvar(xc, ddof=1) if np.isfinite(xc).sum() > 1 else 0.0
            denom, denom_name = float(np.sqrt((vt + vc) / 2)), "pooled_sd_before"
        for stage in stages:
            if stage == "before":
                st = _stats(xt, np.ones(len(xt)), xc, np.ones(len(xc)), c.kind == "binary")
            elif stage == "after":
                x = after_cov[c.name]
                grid = np.unique(c.values[np.isfinite(c.values)]) if matchit and c.kind != "binary" else None
                st = _stats(x[t_after], w_after[t_after], x[~t_after], w_after[~t_after], c.kind == "binary",
                            grid)
            else:
                raise ValueError(f"balance: stage must be 'before' or 'after'; got {stage!r}")
            diff = st["mean_treated"] - st["mean_control"]
            if denom > 0:
                smd = diff / denom
            else:
                smd = 0.0 if diff == 0 else np.nan
            vr = st["var_treated"] / st["var_control"] if st["var_control"] and st["var_control"] > 0 else np.nan
            if matchit and c.kind == "binary":
                vr = np.nan  # MatchIt prints no variance ratio for a binary covariate
                st["ecdf_mean"] = st["ecdf_max"]  # and its eCDF mean is the difference in proportions
            rows.append({
                "covariate": c.name, "variable": c.source, "type": c.kind, "stage": stage,
                "mean_treated": st["mean_treated"], "mean_control": st["mean_control"], "smd": smd,
                "smd_denominator": denom_name, "sd_denominator": denom, "variance_ratio": vr,
                "ecdf_mean": st["ecdf_mean"], "ecdf_max": st["ecdf_max"],
                "flag_smd": bool(np.isfinite(smd) and abs(smd) > SMD_THRESHOLD),
                "flag_vr": bool(c.kind == "numeric" and np.isfinite(vr) and not (VR_BOUNDS[0] <= vr <= VR_BOUNDS[1])),
                "n_treated": st["n_treated"], "n_control": st["n_control"], "ess_control": st["ess_control"],
            })
    return pd.DataFrame(rows)


def balance_overview(balance: pd.DataFrame, stage: str = "after") -> dict[str, float]:
    """Max |SMD|, share of covariates flagged (SMD or VR), number flagged, for one stage."""
    part = balance[balance["stage"] == stage]
    if part.empty:
        return {"max_abs_smd": np.nan, "share_flagged": np.nan, "n_flagged": 0, "n_covariates": 0}
    flagged = part["flag_smd"] | part["flag_vr"]
    return {
        "max_abs_smd": float(np.nanmax(np.abs(part["smd"].to_numpy(dtype=float)))) if part["smd"].notna().any() else np.nan,
        "share_flagged": float(flagged.mean()),
        "n_flagged": int(flagged.sum()),
        "n_covariates": int(len(part)),
    }


@dataclass(frozen=True)
class MatchSummary:
    """Sample sizes before/after matching and a balance overview; renders itself."""

    method: str
    params: dict[str, Any]
    sizes: pd.DataFrame
    balance: pd.DataFrame = field(repr=False)
    overview_before: dict[str, float] = field(default_factory=dict)
    overview_after: dict[str, float] = field(default_factory=dict)
    caliper_width: float | None = None

    @classmethod
    def from_matcher(cls, m, balance: pd.DataFrame) -> MatchSummary:
        units = unit_rows(m.matched_, m.id_)
        w = units.loc[units[m.treatment_] == 0, "weight"].to_numpy(dtype=float)
        sizes = pd.DataFrame(
            [
                ("treated", m.n_treated_, m.n_treated_matched_),
                ("controls", m.n_controls_, m.n_controls_matched_),
                ("control persons", None, m.n_control_persons_),
                ("controls (effective, Kish)", m.n_controls_, round(kish_ess(w), 1)),
                ("unmatched treated", None, m.n_unmatched_),
                ("partial sets (< ratio controls)", None, m.n_partial_),
                ("strata with treated", m.n_strata_, m.n_strata_matched_),
            ],
            columns=["sample", "before", "after"],
        ).astype({"before": object, "after": object})
        return cls(
            method=m.method, params=m.get_params(), sizes=sizes, balance=balance,
            overview_before=balance_overview(balance, "before"),
            overview_after=balance_overview(balance, "after"), caliper_width=m.caliper_width_,
        )

    def summary_frame(self) -> pd.DataFrame:
        return self.sizes.copy()

    def render(self) -> str:
        lines = [f"Matching ({self.method}): " + ", ".join(
            f"{k}={v}" for k, v in self.params.items() if k in (
                "exact", "on", "transform", "caliper", "caliper_scale", "ratio", "replace", "max_reuse", "person",
                "period", "time_zero", "order")
        )]
        if self.caliper_width is not None:
            lines.append(f"caliper width on the distance scale: {self.caliper_width:.4g}")
        lines.append(f"{'sample':<34}{'before':>12}{'after':>12}")
        for r in self.sizes.itertuples(index=False):
            lines.append(f"{r.sample:<34}{_fmt(r.before):>12}{_fmt(r.after):>12}")
        for stage, ov in (("before", self.overview_before), ("after", self.overview_after)):
            if ov.get("n_covariates"):
                lines.append(
                    f"balance {stage:<6}: max |SMD| {ov['max_abs_smd']:.3f}; "
                    f"{ov['n_flagged']}/{ov['n_covariates']} covariates flagged (|SMD|>0.1 or VR outside 0.5–2)"
                )
        lines.append("SMD denominator: SD of the treated before matching (ATT).")
        return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.1f}"
    return f"{int(v):,}"
