"""Small-sample survey statistics, each returning a frozen result object.

Every result records the method, alpha and n it used, flags a small sample (n below the study's
``surveys.small_n_threshold``), offers ``summary_frame()`` (one tidy row per estimate) and renders
itself as text (``render(lang)``, English or French with a comma decimal). Computing is separate from
rendering: the runner and the report only render. Charts are drawn by the report (:mod:`reports.figures`). This module
holds proportions and coded items; scores live in :mod:`surveys.scores`, response rates in
:mod:`surveys.response_rates` and the shared formatting in :mod:`surveys.formatting` (all importable
from here too).

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
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

from pipeline.stats import wilson_interval
from surveys.formatting import (
    IntervalResult,
    Lang,
    SurveyResult,
    ci_word,
    format_number,
    small_n_note,
)
from surveys.response_rates import RR1_FORMULA, ResponseRateResult, response_rate
from surveys.scores import PairedResult, ScoreResult, paired_change, score_summary, t_interval

ProportionMethod = Literal["wilson", "clopper-pearson"]

_METHOD_LABELS = {
    "wilson": {"en": "Wilson score interval", "fr": "intervalle de Wilson"},
    "clopper-pearson": {"en": "Clopper–Pearson exact interval", "fr": "intervalle exact de Clopper–Pearson"},
}


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



@dataclass(frozen=True)
class ProportionResult(IntervalResult):
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
        return f"{head} [{ci_word(self.ci_level, lang)} {lo}–{hi} %]"

    def render(self, lang: Lang = "en") -> str:
        prefix = f"{self.label}: " if self.label else ""
        return prefix + self.format(lang) + small_n_note(self.n, self.small_n_threshold, lang)


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
class FrequencyResult(SurveyResult):
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
        lines = [f"{self.label}" + small_n_note(self.n, self.small_n_threshold, lang)] if self.label else []
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


__all__ = [
    "RR1_FORMULA", "FrequencyResult", "Lang", "PairedResult", "ProportionMethod", "ProportionResult",
    "ResponseRateResult", "ScoreResult", "format_number", "frequency_table", "kish_effective_n", "likert_summary",
    "paired_change", "proportion", "proportion_interval", "response_rate", "score_summary", "t_interval",
    "weighted_proportion",
]
