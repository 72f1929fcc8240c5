"""Small-sample survey statistics, each returning a frozen result object.

Every result records the method, alpha and n it used, flags a small sample (n below the study's
``surveys.small_n_threshold``), offers ``summary_frame()`` (one tidy row per estimate) and renders
itself as text (``render(lang)``, English or French with a comma decimal). Computing is separate from
rendering: the runner and the report only render. Charts live in :mod:`surveys.charts`.

Methods:

* proportions: Wilson score interval (default) or Clopper–Pearson exact interval, always shown as
  ``k/n (x %) [95 % CI a–b %]``; weighted proportions use Kish's effective sample size in the interval;
* ordered (Likert) items: frequency table, median level (lower median: the first level whose
  cumulative share reaches 50 %), top-box share (share of the favourable levels);
* 0–10 scores: mean with a Student t interval, median;
* paired before/after scores: mean change with a t interval, median change, number of unchanged
  pairs, Wilcoxon signed-rank test with Pratt's handling of zero differences;
* response rates: AAPOR RR1 (and RR2), formula named in the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

from pipeline.stats import wilson_interval

ProportionMethod = Literal["wilson", "clopper-pearson"]
Lang = Literal["en", "fr"]

RR1_FORMULA = "AAPOR RR1 = I / ((I + P) + (R + NC + O) + (UH + UO))"
RR2_FORMULA = "AAPOR RR2 = (I + P) / ((I + P) + (R + NC + O) + (UH + UO))"

_METHOD_LABELS = {
    "wilson": {"en": "Wilson score interval", "fr": "intervalle de Wilson"},
    "clopper-pearson": {"en": "Clopper–Pearson exact interval", "fr": "intervalle exact de Clopper–Pearson"},
}


# -- formatting helpers ------------------------------------------------------------------------------

def format_number(x: float | None, decimals: int = 1, lang: Lang = "en", signed: bool = False) -> str:
    """A number with a fixed number of decimals; French uses a comma decimal separator."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    s = f"{x:+.{decimals}f}" if signed else f"{x:.{decimals}f}"
    return s.replace(".", ",") if lang == "fr" else s


def format_pvalue(p: float | None, lang: Lang = "en") -> str:
    if p is None or not math.isfinite(p):
        return "p = –"
    if p < 0.001:
        return "p < 0,001" if lang == "fr" else "p < 0.001"
    return "p = " + format_number(p, 3, lang)


def _ci_word(level: float, lang: Lang) -> str:
    pct = format_number(100 * level, 0 if abs(100 * level - round(100 * level)) < 1e-9 else 1, lang)
    return f"IC {pct} %" if lang == "fr" else f"{pct} % CI"


def _small_n_note(n: float, threshold: int, lang: Lang) -> str:
    if n >= threshold:
        return ""
    return (f" ⚠ petit effectif (n < {threshold})" if lang == "fr"
            else f" ⚠ small sample (n < {threshold})")


def _z(alpha: float) -> float:
    return float(sps.norm.ppf(1 - alpha / 2))


# -- proportions -------------------------------------------------------------------------------------

def proportion_interval(k: float, n: float, method: ProportionMethod = "wilson",
                        alpha: float = 0.05) -> tuple[float, float]:
    """Two-sided 1 − alpha interval for k successes out of n (n may be a non-integer effective size)."""
    if n <= 0:
        return (math.nan, math.nan)
    if not 0 <= k <= n:
        raise ValueError(f"k must lie in [0, n]; got k={k}, n={n}")
    if method == "wilson":
        return wilson_interval(k, n, 1 - alpha)
    if method == "clopper-pearson":
        low = 0.0 if k == 0 else float(sps.beta.ppf(alpha / 2, k, n - k + 1))
        high = 1.0 if k == n else float(sps.beta.ppf(1 - alpha / 2, k + 1, n - k))
        return (low, high)
    raise ValueError(f"The 'method' parameter must be 'wilson' or 'clopper-pearson'. Got {method!r} instead.")


class _SurveyResult:
    """What every survey result shares: its CI level and its small-n warning."""

    alpha: float
    n: int
    small_n_threshold: int

    @property
    def ci_level(self) -> float:
        return 1 - self.alpha

    @property
    def small_n_warning(self) -> bool:
        return self.n < self.small_n_threshold


class _IntervalResult(_SurveyResult):
    """A survey result with one estimate and its confidence interval."""

    ci_low: float
    ci_high: float

    def conf_int(self) -> tuple[float, float]:
        return (self.ci_low, self.ci_high)


@dataclass(frozen=True)
class ProportionResult(_IntervalResult):
    """k of n answers (or a weighted share with Kish effective n) with its confidence interval."""

    k: int
    n: int
    estimate: float
    ci_low: float
    ci_high: float
    method: ProportionMethod
    alpha: float
    small_n_threshold: int
    label: str = ""
    weighted: bool = False
    n_eff: float | None = None  # Kish effective sample size (weighted only)

    @property
    def method_label(self) -> str:
        base = _METHOD_LABELS[self.method]["en"]
        return base + (" with Kish effective n (post-stratification weights)" if self.weighted else "")

    @property
    def method_label_fr(self) -> str:
        base = _METHOD_LABELS[self.method]["fr"]
        return base + (" avec n effectif de Kish (poids de post-stratification)" if self.weighted else "")

    def summary_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{
            "label": self.label, "k": self.k, "n": self.n, "estimate": self.estimate,
            "ci_low": self.ci_low, "ci_high": self.ci_high, "ci_level": self.ci_level,
            "method": self.method_label, "weighted": self.weighted, "n_eff": self.n_eff,
            "small_n_warning": self.small_n_warning,
        }])

    def format(self, lang: Lang = "en", decimals: int = 1) -> str:
        """``k/n (x %) [95 % CI a–b %]`` (French: comma decimal, "IC 95 %")."""
        if self.n == 0:
            return "0/0 (–)"
        pct = format_number(100 * self.estimate, decimals, lang)
        lo = format_number(100 * self.ci_low, decimals, lang)
        hi = format_number(100 * self.ci_high, decimals, lang)
        head = f"{self.k}/{self.n} ({pct} %)"
        if self.weighted:
            # The weighted share is not k/n: show the raw counts, then the weighted share and n_eff.
            neff = format_number(self.n_eff, 1, lang)
            head = f"{self.k}/{self.n}, " + (f"pondéré {pct} % (n eff. {neff})" if lang == "fr"
                                             else f"weighted {pct} % (eff. n {neff})")
        return f"{head} [{_ci_word(self.ci_level, lang)} {lo}–{hi} %]"

    def render(self, lang: Lang = "en") -> str:
        prefix = f"{self.label}: " if self.label else ""
        return prefix + self.format(lang) + _small_n_note(self.n, self.small_n_threshold, lang)


def proportion(k: int, n: int, *, method: ProportionMethod = "wilson", alpha: float = 0.05,
               small_n_threshold: int = 30, label: str = "") -> ProportionResult:
    """The share k/n with a Wilson (default) or Clopper–Pearson interval."""
    k, n = int(k), int(n)
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"k and n must satisfy 0 <= k <= n; got k={k}, n={n}")
    low, high = proportion_interval(k, n, method, alpha)
    return ProportionResult(k=k, n=n, estimate=k / n if n else math.nan, ci_low=low, ci_high=high,
                            method=method, alpha=alpha, small_n_threshold=small_n_threshold, label=label)


def kish_effective_n(weights: np.ndarray) -> float:
    """Kish's effective sample size (Σw)² / Σw²."""
    w = np.asarray(weights, dtype=float)
    return float(w.sum() ** 2 / (w**2).sum()) if len(w) and (w**2).sum() > 0 else 0.0


def weighted_proportion(success: np.ndarray, weights: np.ndarray, *, method: ProportionMethod = "wilson",
                        alpha: float = 0.05, small_n_threshold: int = 30, label: str = "") -> ProportionResult:
    """A weighted share Σw·y / Σw; its interval uses the Kish effective n in place of n."""
    y = np.asarray(success, dtype=bool)
    w = np.asarray(weights, dtype=float)
    if y.shape != w.shape:
        raise ValueError("success and weights must have the same length")
    if (w < 0).any():
        raise ValueError("weights must be non-negative")
    n = int(len(y))
    if n == 0 or w.sum() == 0:
        return ProportionResult(k=0, n=n, estimate=math.nan, ci_low=math.nan, ci_high=math.nan, method=method,
                                alpha=alpha, small_n_threshold=small_n_threshold, label=label,
                                weighted=True, n_eff=0.0)
    p = float((w * y).sum() / w.sum())
    n_eff = kish_effective_n(w)
    low, high = proportion_interval(p * n_eff, n_eff, method, alpha)
    return ProportionResult(k=int(y.sum()), n=n, estimate=p, ci_low=low, ci_high=high, method=method,
                            alpha=alpha, small_n_threshold=small_n_threshold, label=label, weighted=True,
                            n_eff=n_eff)


# -- coded items: frequency tables, Likert summaries ------------------------------------------------

@dataclass(frozen=True)
class FrequencyResult(_SurveyResult):
    """Frequency table of a coded item; for an ordered (Likert) item also its median and top-box share.

    ``counts`` follow ``codes`` in the codebook order; answers coded missing are counted in
    ``n_missing`` and excluded from every share.
    """

    codes: tuple[int, ...]
    labels_fr: tuple[str, ...]
    labels_en: tuple[str, ...]
    counts: tuple[int, ...]
    n_missing: int
    favourable_codes: tuple[int, ...]
    ordered: bool
    method: ProportionMethod
    alpha: float
    small_n_threshold: int
    label: str = ""

    @property
    def n(self) -> int:
        return int(sum(self.counts))

    @property
    def shares(self) -> tuple[float, ...]:
        return tuple(c / self.n if self.n else math.nan for c in self.counts)

    def level(self, code: int) -> ProportionResult:
        """The share of one answer code, with its interval."""
        i = self.codes.index(code)
        return proportion(self.counts[i], self.n, method=self.method, alpha=self.alpha,
                          small_n_threshold=self.small_n_threshold, label=self.labels_en[i])

    @property
    def favourable(self) -> ProportionResult | None:
        """Share of favourable answers (the top-box share of a Likert item)."""
        if not self.favourable_codes:
            return None
        k = sum(c for code, c in zip(self.codes, self.counts, strict=True) if code in self.favourable_codes)
        return proportion(k, self.n, method=self.method, alpha=self.alpha,
                          small_n_threshold=self.small_n_threshold, label=self.label)

    top_box = favourable

    @property
    def median(self) -> int | None:
        """Lower median level: the first code (in scale order) whose cumulative share reaches 50 %."""
        if not self.ordered or self.n == 0:
            return None
        cum = np.cumsum(self.counts) / self.n
        return self.codes[int(np.argmax(cum >= 0.5 - 1e-12))]

    def summary_frame(self) -> pd.DataFrame:
        rows = []
        cum = 0
        for i, code in enumerate(self.codes):
            lvl = self.level(code)
            cum += self.counts[i]
            rows.append({
                "code": code, "label_fr": self.labels_fr[i], "label_en": self.labels_en[i],
                "count": self.counts[i], "n": self.n, "share": lvl.estimate, "ci_low": lvl.ci_low,
                "ci_high": lvl.ci_high, "cumulative_share": cum / self.n if self.n else math.nan,
                "favourable": code in self.favourable_codes, "is_median": code == self.median,
                "n_missing": self.n_missing, "method": lvl.method_label, "ci_level": self.ci_level,
                "small_n_warning": self.small_n_warning,
            })
        return pd.DataFrame(rows)

    def render(self, lang: Lang = "en") -> str:
        labels = self.labels_fr if lang == "fr" else self.labels_en
        lines = [f"{self.label}" + _small_n_note(self.n, self.small_n_threshold, lang)] if self.label else []
        for i, code in enumerate(self.codes):
            lines.append(f"  {labels[i]}: {self.level(code).format(lang)}")
        if self.favourable is not None:
            word = "favorable" if lang == "fr" else "favourable"
            lines.append(f"  {word}: {self.favourable.format(lang)}")
        if self.median is not None:
            lines.append(f"  médiane: {labels[self.codes.index(self.median)]}" if lang == "fr"
                         else f"  median: {labels[self.codes.index(self.median)]}")
        if self.n_missing:
            lines.append(f"  non-réponse: {self.n_missing}" if lang == "fr" else f"  item non-response: {self.n_missing}")
        return "\n".join(lines)


LikertResult = FrequencyResult


def frequency_table(answers: pd.Series | np.ndarray, codes: list[int] | tuple[int, ...], *,
                    labels_fr: tuple[str, ...] | None = None, labels_en: tuple[str, ...] | None = None,
                    favourable: tuple[int, ...] = (), ordered: bool = False, n_missing: int | None = None,
                    method: ProportionMethod = "wilson", alpha: float = 0.05, small_n_threshold: int = 30,
                    label: str = "") -> FrequencyResult:
    """Count the answers per code; NaN (item non-response) is counted as missing.

    Answers that are not among ``codes`` are an error (validation should have caught them).
    """
    s = pd.Series(answers, dtype="float64")
    missing = int(s.isna().sum()) if n_missing is None else int(n_missing)
    present = s.dropna()
    unknown = sorted(set(present.unique()) - {float(c) for c in codes})
    if unknown:
        raise ValueError(f"answers {unknown} are not among the codes {list(codes)}")
    counts = tuple(int((present == c).sum()) for c in codes)
    labels_fr = labels_fr or tuple(str(c) for c in codes)
    labels_en = labels_en or tuple(str(c) for c in codes)
    return FrequencyResult(codes=tuple(int(c) for c in codes), labels_fr=tuple(labels_fr),
                           labels_en=tuple(labels_en), counts=counts, n_missing=missing,
                           favourable_codes=tuple(favourable), ordered=ordered, method=method, alpha=alpha,
                           small_n_threshold=small_n_threshold, label=label)


def likert_summary(answers: pd.Series | np.ndarray, codes: list[int] | tuple[int, ...], **kwargs) -> FrequencyResult:
    """A Likert item: ordered frequency table, median level and top-box (favourable) share."""
    return frequency_table(answers, codes, ordered=True, **kwargs)


# -- 0–10 scores ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScoreResult(_IntervalResult):
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
        return f"{m}/10 [{_ci_word(self.ci_level, lang)} {lo}–{hi}], {word} {med}, n = {self.n}"

    def render(self, lang: Lang = "en") -> str:
        prefix = f"{self.label}: " if self.label else ""
        return prefix + self.format(lang) + _small_n_note(self.n, self.small_n_threshold, lang)


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
class PairedResult(_SurveyResult):
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
        ci = _ci_word(self.ci_level, lang)
        if lang == "fr":
            return (f"{b} → {a}/10 (écart {d} [{ci} {lo} à {hi}], écart médian {md}; Wilcoxon–Pratt "
                    f"{format_pvalue(self.p_value, lang)}; {self.n_unchanged} paires inchangées), "
                    f"n = {self.n_pairs} paires")
        return (f"{b} → {a}/10 (change {d} [{ci} {lo} to {hi}], median change {md}; Wilcoxon–Pratt "
                f"{format_pvalue(self.p_value, lang)}; {self.n_unchanged} unchanged pairs), n = {self.n_pairs} pairs")

    def render(self, lang: Lang = "en") -> str:
        prefix = f"{self.label}: " if self.label else ""
        return prefix + self.format(lang) + _small_n_note(self.n_pairs, self.small_n_threshold, lang)


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


# -- response rates -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResponseRateResult(_SurveyResult):
    """AAPOR response rate RR1 (and RR2) of a survey or of one respondent group.

    I = complete interviews, P = partial interviews, R = refusals, NC = non-contacts, O = other
    non-response, UH/UO = unknown eligibility. With only the invited count known, every invited
    non-respondent is a non-response case of unknown reason and RR1 = I / invited.
    """

    group: str
    invited: int | None
    complete: int
    partial: int
    refusals: int | None
    non_contacts: int | None
    other: int | None
    unknown: int | None
    rr1: float | None
    rr2: float | None
    small_n_threshold: int
    formula: str = RR1_FORMULA
    note: str = ""
    method: str = "AAPOR Standard Definitions, RR1 (complete interviews only) and RR2 (with partials)"
    alpha: float | None = None  # a response rate is a count ratio, not a sample estimate: no interval

    @property
    def n(self) -> int:
        return self.invited or 0

    @property
    def small_n_warning(self) -> bool:
        return self.invited is not None and self.invited < self.small_n_threshold

    def summary_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{
            "group": self.group, "invited": self.invited, "complete_I": self.complete, "partial_P": self.partial,
            "refusals_R": self.refusals, "non_contacts_NC": self.non_contacts, "other_O": self.other,
            "unknown_U": self.unknown, "rr1": self.rr1, "rr2": self.rr2, "formula": self.formula,
            "note": self.note, "small_n_warning": self.small_n_warning,
        }])

    def format(self, lang: Lang = "en", decimals: int = 1) -> str:
        if self.rr1 is None:
            return ("taux de réponse non calculable (population invitée non renseignée)" if lang == "fr"
                    else "response rate not computable (invited population not given)")
        pct = format_number(100 * self.rr1, decimals, lang)
        return f"RR1 = {self.complete}/{self.invited} ({pct} %) — {self.formula}"

    def render(self, lang: Lang = "en") -> str:
        s = f"{self.group}: {self.format(lang)}"
        if self.note and self.rr1 is not None:
            s += f" ({self.note})"
        return s + _small_n_note(self.n, self.small_n_threshold, lang) if self.invited else s


def response_rate(complete: int, partial: int = 0, *, invited: int | None = None, refusals: int | None = None,
                  non_contacts: int | None = None, other: int | None = None, unknown: int | None = None,
                  group: str = "all", small_n_threshold: int = 30) -> ResponseRateResult:
    """AAPOR RR1 = I / ((I + P) + (R + NC + O) + (UH + UO)); RR2 adds P to the numerator.

    The denominator is the invited count when known (invited cases whose disposition is not given are
    counted as unknown); otherwise the sum of the given dispositions; with neither, no rate.
    """
    known = {"refusals": refusals, "non_contacts": non_contacts, "other": other, "unknown": unknown}
    given = sum(v for v in known.values() if v is not None)
    accounted = complete + partial + given
    notes = []
    if invited is not None:
        if accounted > invited:
            raise ValueError(
                f"response rate of {group!r}: completes + partials + dispositions ({accounted}) exceed the "
                f"invited population ({invited}); check population.invited in the codebook"
            )
        rest = invited - accounted
        if rest:
            unknown = (unknown or 0) + rest
            notes.append(f"{rest} invited without a known disposition counted as non-response (UH/UO)")
        denominator = invited
    elif given:
        denominator = accounted
        notes.append("denominator = sum of the dispositions given (invited count not given)")
    else:
        return ResponseRateResult(group=group, invited=None, complete=complete, partial=partial, refusals=refusals,
                                  non_contacts=non_contacts, other=other, unknown=unknown, rr1=None, rr2=None,
                                  small_n_threshold=small_n_threshold,
                                  note="invited population not given in the codebook")
    return ResponseRateResult(
        group=group, invited=denominator, complete=complete, partial=partial, refusals=refusals,
        non_contacts=non_contacts, other=other, unknown=unknown, rr1=complete / denominator,
        rr2=(complete + partial) / denominator, small_n_threshold=small_n_threshold, note="; ".join(notes),
    )
