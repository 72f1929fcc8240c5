"""0–10 scores (mean with a Student t interval, median) and paired before/after scores (mean change
with a t interval, median change, Wilcoxon signed-rank test with Pratt's handling of zero differences)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from surveys.formatting import (
    IntervalResult,
    Lang,
    SurveyResult,
    ci_word,
    format_number,
    format_pvalue,
    small_n_note,
)


@dataclass(frozen=True)
class ScoreResult(IntervalResult):
    """Mean of a numeric score with a Student t interval, and its median."""

    n: int
    n_missing: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float
    median: float
    minimum: float
    maximum: float
    alpha: float
    small_n_threshold: int
    label: str = ""
    method: str = "Student t interval for the mean"

    def summary_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{
            "label": self.label, "n": self.n, "n_missing": self.n_missing, "mean": self.mean, "sd": self.sd,
            "ci_low": self.ci_low, "ci_high": self.ci_high, "ci_level": self.ci_level, "median": self.median,
            "min": self.minimum, "max": self.maximum, "method": self.method,
            "small_n_warning": self.small_n_warning,
        }])

    def format(self, lang: Lang = "en", decimals: int = 1) -> str:
        m = format_number(self.mean, decimals, lang)
        lo, hi = format_number(self.ci_low, decimals, lang), format_number(self.ci_high, decimals, lang)
        med = format_number(self.median, 1 if self.median % 1 else 0, lang)
        word = "médiane" if lang == "fr" else "median"
        return f"{m}/10 [{ci_word(self.ci_level, lang)} {lo}–{hi}], {word} {med}, n = {self.n}"

    def render(self, lang: Lang = "en") -> str:
        prefix = f"{self.label}: " if self.label else ""
        return prefix + self.format(lang) + small_n_note(self.n, self.small_n_threshold, lang)


def t_interval(values: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 2:
        return (math.nan, math.nan)
    m, se = x.mean(), x.std(ddof=1) / math.sqrt(n)
    t = float(sps.t.ppf(1 - alpha / 2, n - 1))
    return (float(m - t * se), float(m + t * se))


def score_summary(values: pd.Series | np.ndarray, *, alpha: float = 0.05, small_n_threshold: int = 30,
                  n_missing: int | None = None, label: str = "") -> ScoreResult:
    """Mean (t interval), SD, median, range of a score; NaN is item non-response."""
    s = pd.Series(values, dtype="float64")
    missing = int(s.isna().sum()) if n_missing is None else int(n_missing)
    x = s.dropna().to_numpy()
    n = len(x)
    low, high = t_interval(x, alpha)
    return ScoreResult(
        n=n, n_missing=missing, mean=float(x.mean()) if n else math.nan,
        sd=float(x.std(ddof=1)) if n > 1 else math.nan, ci_low=low, ci_high=high,
        median=float(np.median(x)) if n else math.nan, minimum=float(x.min()) if n else math.nan,
        maximum=float(x.max()) if n else math.nan, alpha=alpha, small_n_threshold=small_n_threshold, label=label,
    )


# -- paired before/after ------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairedResult(SurveyResult):
    """Paired before/after scores: change, unchanged pairs, Wilcoxon signed-rank (Pratt zeros).

    Only complete pairs enter; ``before`` and ``after`` summarise those same pairs.
    """

    n_pairs: int
    n_incomplete: int
    before: ScoreResult
    after: ScoreResult
    mean_change: float
    change_ci_low: float
    change_ci_high: float
    sd_change: float
    median_change: float
    n_unchanged: int
    n_increased: int
    n_decreased: int
    wilcoxon_statistic: float
    p_value: float
    test_method: str
    alpha: float
    small_n_threshold: int
    label: str = ""
    zero_method: str = "pratt"
    method: str = field(default="Student t interval for the mean change; Wilcoxon signed-rank test, "
                                 "Pratt handling of zero differences (scipy.stats.wilcoxon)")

    @property
    def n(self) -> int:
        return self.n_pairs

    def summary_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{
            "label": self.label, "n_pairs": self.n_pairs, "n_incomplete": self.n_incomplete,
            "mean_before": self.before.mean, "before_ci_low": self.before.ci_low,
            "before_ci_high": self.before.ci_high, "median_before": self.before.median,
            "mean_after": self.after.mean, "after_ci_low": self.after.ci_low, "after_ci_high": self.after.ci_high,
            "median_after": self.after.median, "mean_change": self.mean_change,
            "change_ci_low": self.change_ci_low, "change_ci_high": self.change_ci_high,
            "sd_change": self.sd_change, "median_change": self.median_change, "n_unchanged": self.n_unchanged,
            "n_increased": self.n_increased, "n_decreased": self.n_decreased,
            "wilcoxon_statistic": self.wilcoxon_statistic, "p_value": self.p_value,
            "test_method": self.test_method, "zero_method": self.zero_method, "ci_level": self.ci_level,
            "method": self.method, "small_n_warning": self.small_n_warning,
        }])

    def format(self, lang: Lang = "en", decimals: int = 1) -> str:
        b, a = format_number(self.before.mean, decimals, lang), format_number(self.after.mean, decimals, lang)
        d = format_number(self.mean_change, decimals, lang, signed=True)
        lo = format_number(self.change_ci_low, decimals, lang, signed=True)
        hi = format_number(self.change_ci_high, decimals, lang, signed=True)
        md = format_number(self.median_change, 1 if self.median_change % 1 else 0, lang, signed=True)
        ci = ci_word(self.ci_level, lang)
        if lang == "fr":
            return (f"{b} → {a}/10 (écart {d} [{ci} {lo} à {hi}], écart médian {md}; Wilcoxon–Pratt "
                    f"{format_pvalue(self.p_value, lang)}; {self.n_unchanged} paires inchangées), "
                    f"n = {self.n_pairs} paires")
        return (f"{b} → {a}/10 (change {d} [{ci} {lo} to {hi}], median change {md}; Wilcoxon–Pratt "
                f"{format_pvalue(self.p_value, lang)}; {self.n_unchanged} unchanged pairs), n = {self.n_pairs} pairs")

    def render(self, lang: Lang = "en") -> str:
        prefix = f"{self.label}: " if self.label else ""
        return prefix + self.format(lang) + small_n_note(self.n_pairs, self.small_n_threshold, lang)


def _wilcoxon_pratt(d: np.ndarray) -> tuple[float, float, str]:
    """Wilcoxon signed-rank test on the differences with Pratt's zeros, and the p-value method used.

    The method follows scipy's own 'auto' rule, made explicit so the result can name it: exact null
    distribution for n <= 50 without ties or zeros; with ties or zeros, exhaustive permutation for
    n <= 13 and the normal approximation (corrected for ties and zeros) above.
    """
    n = len(d)
    if n == 0 or np.all(d == 0):
        return (math.nan, math.nan, "not computed (no non-zero difference)")
    nonzero = d[d != 0]
    has_zeros = len(nonzero) < n
    has_ties = len(np.unique(np.abs(nonzero))) < len(nonzero)
    if not has_zeros and not has_ties and n <= 50:
        method, label = "exact", "exact null distribution"
    elif (has_zeros or has_ties) and n <= 13:
        method, label = sps.PermutationMethod(), "exhaustive permutation distribution"
    else:
        method, label = "asymptotic", "normal approximation (tie and zero corrected)"
    res = sps.wilcoxon(d, zero_method="pratt", method=method)
    return (float(res.statistic), float(res.pvalue), label)


def paired_change(before: pd.Series | np.ndarray, after: pd.Series | np.ndarray, *, alpha: float = 0.05,
                  small_n_threshold: int = 30, label: str = "") -> PairedResult:
    """Before/after change on complete pairs; a pair with either score missing is left out."""
    b = pd.Series(np.asarray(before, dtype=float))
    a = pd.Series(np.asarray(after, dtype=float))
    if len(a) != len(b):
        raise ValueError("before and after must have the same length (one row per respondent)")
    complete = b.notna() & a.notna()
    bb, aa = b[complete].to_numpy(), a[complete].to_numpy()
    d = aa - bb
    n = len(d)
    low, high = t_interval(d, alpha)
    stat, p, test = _wilcoxon_pratt(d)
    return PairedResult(
        n_pairs=n, n_incomplete=int((~complete).sum()),
        before=score_summary(bb, alpha=alpha, small_n_threshold=small_n_threshold, n_missing=0),
        after=score_summary(aa, alpha=alpha, small_n_threshold=small_n_threshold, n_missing=0),
        mean_change=float(d.mean()) if n else math.nan, change_ci_low=low, change_ci_high=high,
        sd_change=float(d.std(ddof=1)) if n > 1 else math.nan,
        median_change=float(np.median(d)) if n else math.nan, n_unchanged=int((d == 0).sum()),
        n_increased=int((d > 0).sum()), n_decreased=int((d < 0).sum()), wilcoxon_statistic=stat,
        p_value=p, test_method=test, alpha=alpha, small_n_threshold=small_n_threshold, label=label,
    )
