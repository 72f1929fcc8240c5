"""Indicator result objects: frozen, self-describing, rendering themselves (statsmodels-style).

An :class:`Indicator` is computed once and never changed; it knows what it measures (id, labels,
definition, population), how (method, CI level, replicates) and on whom (n). Rendering — a tidy frame
or a CONTRACTS.md §4 record — is separate from computing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pipeline.config import StudyConfig
from pipeline.results import IndicatorRecord, json_number


def _clean(x: Any) -> Any:
    """JSON-safe float (NaN/inf become None; whole numbers become floats too)."""
    try:
        xf = float(x)
    except (TypeError, ValueError):
        return x
    return json_number(xf)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its percentile confidence interval."""

    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    invalid_replicates: int = 0

    def conf_int(self) -> tuple[float | None, float | None]:
        return self.ci_low, self.ci_high

    def contains(self, x: float) -> bool:
        return self.ci_low is not None and self.ci_high is not None and self.ci_low <= x <= self.ci_high


@dataclass(frozen=True)
class Indicator:
    """One claims indicator with its uncertainty.

    ``arm_values`` holds secondary quantities (the arm rates behind a difference, a ratio, counts);
    ``arm_ci`` their intervals when they have one. ``n`` is the number of people (treated units) the
    value rests on; ``n_control`` the number of distinct matched control rows.
    """

    id: str
    label_fr: str
    label_en: str
    unit: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int | None
    method: str
    ci_level: float | None
    population: str
    definition: str
    arm_values: Mapping[str, float | None] = field(default_factory=dict)
    arm_ci: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    n_control: int | None = None
    replicates: int | None = None
    # French versions of the texts; the report falls back to the English ones when absent.
    method_fr: str | None = None
    population_fr: str | None = None
    definition_fr: str | None = None

    # -- statsmodels-like accessors ------------------------------------------------------------
    def conf_int(self) -> tuple[float | None, float | None]:
        return self.ci_low, self.ci_high

    @property
    def alpha(self) -> float | None:
        return None if self.ci_level is None else 1 - self.ci_level

    def summary_frame(self) -> pd.DataFrame:
        """Tidy frame: one row for the indicator value, one per arm value."""
        rows = [{"id": self.id, "quantity": "value", "estimate": _clean(self.value),
                 "ci_low": _clean(self.ci_low), "ci_high": _clean(self.ci_high), "unit": self.unit,
                 "n": self.n, "method": self.method, "ci_level": self.ci_level}]
        for name, v in self.arm_values.items():
            lo, hi = self.arm_ci.get(name, (None, None))
            rows.append({"id": self.id, "quantity": name, "estimate": _clean(v), "ci_low": _clean(lo),
                         "ci_high": _clean(hi), "unit": None, "n": None, "method": self.method,
                         "ci_level": self.ci_level if name in self.arm_ci else None})
        return pd.DataFrame(rows)

    def to_record(self, config: StudyConfig | None = None) -> IndicatorRecord:
        """The CONTRACTS.md §4 record; ``published`` comes from ``config.published`` only.

        Counts of people below ``report.min_cell_count`` are replaced by null (``n_suppressed``).
        """
        published = None if config is None else config.published.get(self.id)
        min_cell_count = None if config is None else config.report.min_cell_count
        n = self.n
        suppressed = n is not None and min_cell_count is not None and n < min_cell_count
        return IndicatorRecord(
            id=self.id, label_fr=self.label_fr, label_en=self.label_en, unit=self.unit,
            value=_clean(self.value), ci_low=_clean(self.ci_low), ci_high=_clean(self.ci_high),
            n=None if suppressed else n, method=self.method, population=self.population,
            definition=self.definition, published=published, ci_level=self.ci_level,
            method_fr=self.method_fr or None, population_fr=self.population_fr or None,
            definition_fr=self.definition_fr or None,
            arm_values={k: _clean(v) for k, v in self.arm_values.items()},
            arm_ci={k: (_clean(lo), _clean(hi)) for k, (lo, hi) in self.arm_ci.items()},
            replicates=self.replicates, n_suppressed=suppressed,
        )

    def __str__(self) -> str:  # compact one-liner for logs and render()
        ci = "" if self.ci_low is None else f" [{format_value(self.ci_low)}; {format_value(self.ci_high)}]"
        return f"{self.id}: {format_value(self.value)}{ci} ({self.unit}, n={self.n})"


def pct_fr(level: float) -> str:
    """A confidence level as French text: 0.95 → "95 %" (no-break space)."""
    return f"{100 * level:g}\u00a0%"


def number_fr(x: float) -> str:
    """A whole number as French text: 374000 → "374 000" (narrow no-break space)."""
    return f"{x:,.0f}".replace(",", "\u202f")


def format_value(x: float | None) -> str:
    """A number for the console summary ("NA" when missing)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "NA"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}".replace(",", " ")
    if ax >= 10:
        return f"{x:.1f}"
    return f"{x:.3f}"


def records_frame(indicators: list[Indicator], config: StudyConfig) -> pd.DataFrame:
    """Flat table of records (indicators.csv)."""
    keep = ["id", "label_fr", "label_en", "value", "ci_low", "ci_high", "n", "unit", "method", "published",
            "population", "definition"]
    return pd.DataFrame([{k: getattr(ind.to_record(config), k) for k in keep} for ind in indicators])
