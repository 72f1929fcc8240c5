"""Numbers, amounts, percentages and dates in the report's language, and one cell by its declared kind.

French: "11 400 €", "−21 %", "0,83"; English: "€11,400", "−21%", "0.83". A missing value is shown
as an em dash, never as "nan" or "None".
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from pipeline.privacy import SECONDARY_MARK

NBSP = "\u00a0"
NNBSP = "\u202f"  # narrow no-break space: French thousands separator
MINUS = "\u2212"
MISSING = "—"
FRENCH_MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
                 "novembre", "décembre")


def is_num(x: Any) -> bool:
    """A finite number (booleans are flags, not numbers)."""
    if x is None or isinstance(x, bool):
        return False
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def as_float(x: Any) -> float | None:
    return float(x) if is_num(x) else None


def is_missing(x: Any) -> bool:
    if x is None:
        return True
    try:
        return isinstance(x, float | int) and math.isnan(float(x))
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class Formatter:
    """Locale-aware number formatting for one report language."""

    lang: str = "fr"

    def number(self, x: Any, decimals: int = 0, signed: bool = False) -> str:
        if is_missing(x):
            return MISSING
        x = float(x)
        if round(x, decimals) == 0:
            x = 0.0  # avoids "−0"
        body = f"{abs(x):,.{decimals}f}"
        if self.lang == "fr":
            body = body.replace(",", NNBSP).replace(".", ",")
        sign = MINUS if x < 0 else ("+" if signed and x > 0 else "")
        return sign + body

    def integer(self, x: Any) -> str:
        return self.number(x, 0)

    def eur(self, x: Any, decimals: int = 0, signed: bool = False) -> str:
        if is_missing(x):
            return MISSING
        if abs(float(x)) >= 1e6:
            return self.meur(x, signed=signed)
        n = self.number(x, decimals, signed)
        if self.lang == "fr":
            return f"{n}{NBSP}€"
        sign = n[0] if n[0] in (MINUS, "+") else ""
        return f"{sign}€{n[len(sign):]}"

    def meur(self, x: Any, signed: bool = False) -> str:
        n = self.number(float(x) / 1e6, 1, signed)
        if self.lang == "fr":
            return f"{n}{NBSP}M€"
        sign = n[0] if n[0] in (MINUS, "+") else ""
        return f"{sign}€{n[len(sign):]}M"

    def pct(self, x: Any, decimals: int = 0, signed: bool = False) -> str:
        """``x`` is a share (0.21 → 21 %)."""
        if is_missing(x):
            return MISSING
        n = self.number(float(x) * 100, decimals, signed)
        return f"{n}{NBSP}%" if self.lang == "fr" else f"{n}%"

    def value(self, x: Any, unit: str | None, precise: bool = True) -> str:
        """A value in its indicator unit (see docs/CONTRACTS.md, section 4)."""
        if is_missing(x):
            return MISSING
        d = 1 if precise else 0
        u = (unit or "").lower()
        if u == "share":
            return self.pct(x, d)
        if u == "relative_difference":
            return self.pct(x, d, signed=True)
        if u == "eur_per_patient":
            return self.eur(x)
        if u == "eur_per_patient_year":
            return self.eur(x) + ("/patient/an" if self.lang == "fr" else "/patient/year")
        if u == "eur_per_year":
            return self.eur(x) + ("/an" if self.lang == "fr" else "/year")
        if u.startswith("eur"):
            return self.eur(x)
        if u == "score_0_10":
            return self.number(x, 1) + "/10"
        if u in ("count", "patient_years"):
            return self.integer(x)
        return self.number(x, 2)

    def published(self, x: Any, unit: str | None) -> str:
        """A published figure, with no more precision than it was published with."""
        if is_missing(x):
            return MISSING
        u = (unit or "").lower()
        if u in ("share", "relative_difference"):
            d = 0 if abs(float(x) * 100 - round(float(x) * 100)) < 1e-9 else 1
            return self.pct(x, d, signed=u == "relative_difference")
        return self.value(x, unit, precise=True)

    def ci(self, lo: Any, hi: Any, unit: str | None) -> str:
        if is_missing(lo) or is_missing(hi):
            return MISSING
        # Bounds carry the unit's number format but not its "/patient/year" suffix (read from the value).
        u = "eur" if (unit or "").startswith("eur") else unit
        return f"[{self.value(lo, u)}{self.ci_separator}{self.value(hi, u)}]"

    @property
    def ci_separator(self) -> str:
        return f"{NBSP}; " if self.lang == "fr" else ", "

    def date(self, d: Any) -> str:
        if is_missing(d) or d == "":
            return MISSING
        if isinstance(d, str):
            try:
                d = dt.date.fromisoformat(d[:10])
            except ValueError:
                return d
        if isinstance(d, dt.datetime):
            d = d.date()
        if self.lang == "fr":
            return f"{d.day} {FRENCH_MONTHS[d.month - 1]} {d.year}"
        return d.strftime("%-d %B %Y")

    def size(self, n_bytes: Any) -> str:
        """A file size in kB / MB (decimal units, as file managers show them)."""
        if not is_num(n_bytes):
            return MISSING
        x = float(n_bytes)
        unit = ("ko", "Mo", "Go") if self.lang == "fr" else ("kB", "MB", "GB")
        if x >= 1e9:
            return f"{self.number(x / 1e9, 1)}{NBSP}{unit[2]}"
        if x >= 1e6:
            return f"{self.number(x / 1e6, 1)}{NBSP}{unit[1]}"
        return f"{self.number(max(x / 1e3, 0.1 if x else 0), 1)}{NBSP}{unit[0]}"

    def masked(self, threshold: int) -> str:
        return f"<{NBSP}{threshold}"

    def secondary(self) -> str:
        return SECONDARY_MARK

    def cell(self, v: Any, kind: str, label: Any) -> str:
        """One table cell of declared ``kind`` (:data:`pipeline.result_tables.KINDS`, or ``ratio`` /
        ``number1`` for by-row values); ``label(value)`` translates a text value."""
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return MISSING
        if kind == "text" or not is_num(v):
            return label(v)
        x = float(v)
        if kind == "count":
            return self.integer(x)
        if kind == "share":
            return self.pct(x, 1)
        if kind == "eur":
            return self.eur(x)
        if kind == "score":
            return self.number(x, 1)
        if kind == "smd":
            return self.number(x, 3)
        if kind == "ratio":
            return self.number(x, 2)
        if kind == "number1":
            return self.number(x, 1)
        if x.is_integer():
            return self.integer(x)
        return self.number(x, 0 if abs(x) >= 100 else 2 if abs(x) >= 1 else 3)

    def parameter(self, v: Any, yes_no: tuple[str, str]) -> str:
        """A saved parameter value: lists joined, booleans as yes/no, floats without trailing zeros."""
        if isinstance(v, bool):
            return yes_no[0] if v else yes_no[1]
        if isinstance(v, dict):
            return "; ".join(f"{k} = {self.parameter(x, yes_no)}" for k, x in v.items()) or MISSING
        if isinstance(v, list | tuple):
            return ", ".join(self.parameter(x, yes_no) for x in v) or MISSING
        if v is None:
            return MISSING
        if is_num(v) and not isinstance(v, int):
            return self.number(v, 3).rstrip("0").rstrip(",.") if not float(v).is_integer() else self.integer(v)
        return str(v)


def flatten(settings: Any, prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``section.key`` → value."""
    out: dict[str, Any] = {}
    if not isinstance(settings, dict):
        return out
    for k, v in settings.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
