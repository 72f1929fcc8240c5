"""Negative-control outcomes and empirically calibrated headline intervals (issue 14, part 1).

Each outcome named in ``sensitivity.negative_controls`` is a spending category (dental care, prostheses,
spectacles, ...) or a category of MCO stays (``cleaning.stay_categories``: elective cataract surgery)
the programme cannot plausibly change. It is estimated with exactly the headline design: the same
:class:`~indicators.analysis.MatchedAnalysis` (matched sets of ``matching/matched.parquet``, follow-up
windows, unit outcomes of ``indicators/outcomes.py``) and the same matched-set bootstrap replicates —
only the statistic's numerator changes: the ratio of spending per patient-year (a stay category: of
stays per patient-year, entering in follow-up, like ``hosp_stays_per_100py``), treated over controls,
on the log scale. Their spread estimates the design's
systematic error, which calibrates the headline ratio estimates (``calibration.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from indicators.analysis import MatchedAnalysis, ratio
from indicators.bootstrap import Statistic
from indicators.sensitivity.calibration import (
    ASSUMPTION,
    ASSUMPTION_FR,
    SystematicError,
    fit_systematic_error,
)
from pipeline.config import StudyConfig

METHOD = ("negative-control outcomes estimated with the headline design (same matched sets, follow-up and "
          "matched-set bootstrap); log ratio of spending (stay categories: stays) per patient-year, "
          "SE = bootstrap SD of the log "
          "ratio; systematic error N(mean, sd^2) fitted by maximum likelihood (Schuemie et al. 2014), "
          "profile-likelihood CI of its mean; calibrated CI = log estimate - mean ± z·sqrt(se^2 + sd^2) "
          "(Schuemie et al. 2018)")


def log_rate_ratio(numerator: str, denominator: str) -> Statistic:
    """log(treated total / treated denominator) − log(control total / control denominator)."""
    t, c = ratio("t", numerator, denominator), ratio("c", numerator, denominator)
    return lambda T: np.log(t(T)) - np.log(c(T))


def headline_log_ratios() -> dict[str, tuple[Statistic, str]]:
    """The headline effects that are ratios, as log ratios (treated / control), with how the headline
    value follows from the ratio r."""
    return {
        "avoided_spending_share": (log_rate_ratio("s_perimeter", "pyears"), "1 - r"),
        "eol_hosp_rate": (log_rate_ratio("eol_any_stay", "died"), "r - 1"),
        "eol_spending_ratio": (log_rate_ratio("eol_s_perimeter", "died"), "r"),
    }


def _headline_value(log_r: float, transform: str) -> float:
    r = math.exp(log_r)
    return {"1 - r": 1 - r, "r - 1": r - 1, "r": r}[transform]


@dataclass(frozen=True)
class LogEstimate:
    """A log ratio with its bootstrap standard error and percentile CI (log scale)."""

    log_ratio: float
    se: float
    ci_low: float | None
    ci_high: float | None
    valid_replicates: int

    @property
    def estimable(self) -> bool:
        return math.isfinite(self.log_ratio) and math.isfinite(self.se) and self.se > 0


def log_estimate(an: MatchedAnalysis, stat: Statistic) -> LogEstimate:
    """Point, bootstrap SD and percentile CI of a log statistic over the analysis' replicates."""
    e = an.est(stat)
    reps = an.boot.replicate_values(stat)
    ok = np.isfinite(reps)
    se = float(np.std(reps[ok], ddof=1)) if ok.sum() >= 2 else float("nan")
    return LogEstimate(e.value, se, e.ci_low, e.ci_high, int(ok.sum()))


@dataclass(frozen=True)
class NegativeControlResult:
    """Negative-control estimates, the fitted systematic error and the calibrated headlines.

    ``controls`` has one row per negative control (treated and control spending per patient-year,
    ratio, log ratio, SE, CI, estimable); ``headlines`` one row per headline ratio (uncalibrated and
    calibrated CIs, on the log scale and in the headline's unit). ``error`` is None when fewer than two
    controls are estimable (then nothing is calibrated).
    """

    controls: pd.DataFrame
    headlines: pd.DataFrame
    error: SystematicError | None
    ci_level: float
    replicates: int
    n_treated: int
    method: str = METHOD
    assumption: str = ASSUMPTION
    assumption_fr: str = ASSUMPTION_FR

    @property
    def n(self) -> int:
        """Negative controls used in the fit (estimable ones)."""
        return 0 if self.error is None else self.error.n

    @property
    def systematic_error_mean(self) -> float | None:
        return None if self.error is None else self.error.mean

    @property
    def systematic_error_sd(self) -> float | None:
        return None if self.error is None else self.error.sd

    @property
    def systematic_error_ci_low(self) -> float | None:
        return None if self.error is None else self.error.mean_ci_low

    @property
    def systematic_error_ci_high(self) -> float | None:
        return None if self.error is None else self.error.mean_ci_high

    def calibrate(self, log_estimate: float, se: float) -> tuple[float, float]:
        """Calibrated (low, high) CI of a log ratio with standard error ``se`` (log scale)."""
        if self.error is None:
            raise ValueError("no systematic-error distribution: fewer than two negative controls were "
                             "estimable; list more in sensitivity.negative_controls")
        return self.error.calibrate(log_estimate, se)

    def summary_frame(self) -> pd.DataFrame:
        """One row per negative control, then one per calibrated headline (``kind`` tells which)."""
        c = self.controls.assign(kind="negative_control")
        h = self.headlines.assign(kind="headline")
        return pd.concat([c, h], ignore_index=True, sort=False)

    def summary(self) -> dict[str, float | int | None]:
        """The ``negative_controls`` block of ``sensitivity/summary.json``."""
        e = self.error
        return {
            "n": self.n,
            "systematic_error_mean": self.systematic_error_mean,
            "systematic_error_sd": self.systematic_error_sd,
            "systematic_error_ci_low": self.systematic_error_ci_low,
            "systematic_error_ci_high": self.systematic_error_ci_high,
            "expected_absolute_systematic_error": None if e is None else e.expected_absolute_error,
            "ci_level": self.ci_level,
            "replicates": self.replicates,
            "method": self.method,
            "assumption": self.assumption,
        }


def _outcome_of(an: MatchedAnalysis, cat: str) -> tuple[str, str, float, object]:
    """(unit outcome column, unit, scale, label source) of a negative control: spending per
    patient-year for a spending category; stays per 100 patient-years for a stay category."""
    cleaning = an.config.cleaning
    if cat in cleaning.stay_categories:
        return f"stays_{cat}", "per_100_patient_years", 100.0, cleaning.stay_categories[cat]
    return f"s_{cat}", "eur_per_patient_year", 1.0, cleaning.categories.get(cat)


def negative_control_estimates(an: MatchedAnalysis, outcomes: list[str]) -> pd.DataFrame:
    """One row per negative-control outcome, each estimated on the headline's matched analysis."""
    rows = []
    for cat in outcomes:
        column, unit, scale, rule = _outcome_of(an, cat)
        est = log_estimate(an, log_rate_ratio(column, "pyears"))
        t, c = an.est(ratio("t", column, "pyears")), an.est(ratio("c", column, "pyears"))
        rows.append({
            "outcome": cat,
            "label_en": rule.label_en if rule is not None else cat,
            "label_fr": rule.label_fr if rule is not None else cat,
            "treated": t.value * scale, "control": c.value * scale, "unit": unit,
            "ratio": math.exp(est.log_ratio) if math.isfinite(est.log_ratio) else None,
            "ratio_ci_low": None if est.ci_low is None else math.exp(est.ci_low),
            "ratio_ci_high": None if est.ci_high is None else math.exp(est.ci_high),
            "log_ratio": est.log_ratio if math.isfinite(est.log_ratio) else None,
            "se_log_ratio": est.se if math.isfinite(est.se) else None,
            "estimable": est.estimable,
            "true_effect": 0.0,
        })
    return pd.DataFrame(rows)


def calibrated_headlines(an: MatchedAnalysis, error: SystematicError | None) -> pd.DataFrame:
    """The headline ratio effects with their uncalibrated and calibrated CIs."""
    rows = []
    for id_, (stat, transform) in headline_log_ratios().items():
        est = log_estimate(an, stat)
        row: dict[str, object] = {"outcome": id_, "transform": transform,
                                  "log_ratio": est.log_ratio if math.isfinite(est.log_ratio) else None,
                                  "se_log_ratio": est.se if math.isfinite(est.se) else None,
                                  "estimable": est.estimable}
        if est.estimable:
            row["value"] = _headline_value(est.log_ratio, transform)
            ends = sorted(_headline_value(x, transform) for x in (est.ci_low, est.ci_high))
            row["ci_low"], row["ci_high"] = ends
        if est.estimable and error is not None:
            lo, hi = error.calibrate(est.log_ratio, est.se)
            row["calibrated_log_ratio"] = error.calibrated_estimate(est.log_ratio)
            row["calibrated_log_ci_low"], row["calibrated_log_ci_high"] = lo, hi
            row["calibrated_value"] = _headline_value(error.calibrated_estimate(est.log_ratio), transform)
            ends = sorted(_headline_value(x, transform) for x in (lo, hi))
            row["calibrated_ci_low"], row["calibrated_ci_high"] = ends
        rows.append(row)
    return pd.DataFrame(rows)


def negative_control_analysis(analysis: MatchedAnalysis, config: StudyConfig) -> NegativeControlResult:
    """Estimate every ``sensitivity.negative_controls`` outcome with the headline design, fit the
    systematic error and calibrate the headline ratio estimates."""
    outcomes = list(config.sensitivity.negative_controls)
    known = (set(analysis.config.cleaning.category_names) | {"hospital"}
             | set(analysis.config.cleaning.stay_category_names))
    missing = [c for c in outcomes if c not in known]
    if missing:
        from pipeline.io import PipelineError

        raise PipelineError(
            f"sensitivity.negative_controls names {missing}, which the cleaned panel and stays do not have "
            f"(their categories: {sorted(known)}); add them under [cleaning.categories] or "
            f"[cleaning.stay_categories] and re-run `equilibres clean`.")
    controls = negative_control_estimates(analysis, outcomes)
    ok = controls["estimable"].to_numpy(dtype=bool)
    ci = analysis.boot.ci_level
    error = None
    if ok.sum() >= 2:
        error = fit_systematic_error(controls.loc[ok, "log_ratio"].to_numpy(float),
                                     controls.loc[ok, "se_log_ratio"].to_numpy(float), ci_level=ci)
    return NegativeControlResult(controls=controls, headlines=calibrated_headlines(analysis, error), error=error,
                                 ci_level=ci, replicates=analysis.boot.n_replicates, n_treated=analysis.n_treated)


__all__ = ["NegativeControlResult", "negative_control_analysis", "negative_control_estimates",
           "calibrated_headlines", "headline_log_ratios", "log_rate_ratio", "LogEstimate"]
