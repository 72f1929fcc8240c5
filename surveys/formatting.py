"""What every survey result shares: number formatting (English, or French with a comma decimal), the
CI and small-sample wording, and the base classes giving a result its CI level and small-n warning."""

from __future__ import annotations

import math
from typing import Literal

Lang = Literal["en", "fr"]


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


def ci_word(level: float, lang: Lang) -> str:
    pct = format_number(100 * level, 0 if abs(100 * level - round(100 * level)) < 1e-9 else 1, lang)
    return f"IC {pct} %" if lang == "fr" else f"{pct} % CI"


def small_n_note(n: float, small_n_threshold: int, lang: Lang) -> str:
    if n >= small_n_threshold:
        return ""
    return (f" ⚠ petit effectif (n < {small_n_threshold})" if lang == "fr"
            else f" ⚠ small sample (n < {small_n_threshold})")


class SurveyResult:
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


class IntervalResult(SurveyResult):
    """A survey result with one estimate and its confidence interval."""

    ci_low: float
    ci_high: float

    def conf_int(self) -> tuple[float, float]:
        return (self.ci_low, self.ci_high)

