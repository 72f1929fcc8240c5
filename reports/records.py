"""Indicator records in the report: grouped into sections, compared with the published figures,
listed in tables and drawn side by side (ÉQUILIBRES vs controls)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

from pipeline.results import IndicatorRecord
from reports import figures
from reports.context import Block, ReportContext
from reports.format import MISSING, is_num

# Indicator ids are grouped into sections by prefix (first match wins).
SECTION_PREFIXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("matching", ("unmatched",)),
    ("economics", ("avoided", "programme", "net_savings", "gross_savings", "caseload", "return_per", "investment",
                   "econ", "cost_")),
    ("surveys", ("patients_", "caregivers_", "nurses_", "survey")),
    ("sensitivity", ("did_", "sweep", "regression")),
    ("hospitalisation", ("",)),
)

# Published figures that grow with the size of the population studied: on a synthetic extract of scale s
# they are compared with the published value at that scale (the investment is fixed, so net savings
# = (published net + investment) × s − investment).
SCALE_DEPENDENT = frozenset({"caseload_patient_years", "gross_savings_year", "net_savings_year"})


def section_of(indicator_id: str) -> str:
    for section, prefixes in SECTION_PREFIXES:
        if any(indicator_id.startswith(p) for p in prefixes):
            return section
    return "hospitalisation"


def published_at_scale(key: str, published: float, scale: float, investment: float) -> float:
    """The published figure ``key`` as it would be on an extract ``scale`` times the study's size."""
    if key not in SCALE_DEPENDENT or scale == 1.0:
        return published
    if key == "net_savings_year":
        return (published + investment) * scale - investment
    return published * scale


def agreement(rec: IndicatorRecord | None, published: float, tol: float
              ) -> tuple[str, float | None, float | None, float | None, float | None]:
    """(status, value, ci_low, ci_high, n) of one published figure against its reproduced record."""
    if rec is None or not is_num(rec.value):
        return "missing", None, None, None, None
    value, lo, hi = float(rec.value), rec.ci_low, rec.ci_high
    n = float(rec.n) if rec.n is not None else None
    if rec.method.strip().lower() == "input":
        # A study parameter shown for completeness: it is an input, so "agreement" means nothing.
        return "input", value, lo, hi, n
    if lo is not None and hi is not None and min(lo, hi) <= published <= max(lo, hi):
        return "agrees", value, lo, hi, n
    if published != 0 and abs(value - published) / abs(published) <= tol:
        return "close", value, lo, hi, n
    if published == 0 and abs(value) <= tol:
        return "close", value, lo, hi, n
    return "differs", value, lo, hi, n


def arm_unit(unit: str, values: Sequence[Any]) -> str:
    nums = [float(v) for v in values if is_num(v)]
    if unit == "relative_difference":
        return "share" if nums and all(0 <= v <= 1 for v in nums) else "number"
    if unit == "share" and any(v > 1 for v in nums):
        # A share of spending avoided carries each arm's spending per patient-year, not a share.
        return "eur_per_patient_year"
    return unit


def arm_keys(rec: IndicatorRecord) -> tuple[str | None, str | None]:
    """The keys of the ÉQUILIBRES and control values among a record's ``arm_values``."""
    arms = rec.arm_values
    treated = next((k for k in arms if str(k).lower().startswith("treated")), None)
    control = next((k for k in arms if str(k).lower().startswith("control")), None)
    return treated, control


def wrap(label: str, width: int) -> str:
    return "\n".join(textwrap.wrap(label, width)) or label


def indicator_rows(ctx: ReportContext, section: str, exclude: set[str] | None = None,
                   caption: str | None = None, annex: bool = False) -> Block | None:
    """The indicators of ``section``: both arms, value, interval, n and the published figure
    (``annex``: a reference table, drawn collapsed in the HTML)."""
    recs = [r for r in ctx.records.values() if section_of(r.id) == section and r.id not in (exclude or set())]
    if not recs:
        return None
    rows = []
    for rec in recs:
        unit = ctx.unit_of(rec.id)
        masked = ctx.rec_masked(rec)
        mk = ctx.fmt.secondary()
        arms = rec.arm_values
        t_key, c_key = arm_keys(rec)
        a_unit = arm_unit(unit, [arms.get(t_key), arms.get(c_key)])
        pub = rec.published
        rows.append([
            ctx.label_of(rec.id),
            mk if masked else ctx.fmt.value(arms.get(t_key), a_unit) if t_key else MISSING,
            mk if masked else ctx.fmt.value(arms.get(c_key), a_unit) if c_key else MISSING,
            mk if masked else ctx.fmt.value(rec.value, unit),
            mk if masked else ctx.fmt.ci(rec.ci_low, rec.ci_high, unit),
            ctx.fmt.masked(ctx.k) if masked else ctx.fmt.integer(rec.n),
            ctx.fmt.published(pub, unit) if pub is not None else MISSING,
        ])
        if masked:
            ctx.n_masked += 1
    cols = [ctx.t("col_indicator"), ctx.t("col_treated"), ctx.t("col_control"), ctx.t("value"),
            ctx.t("col_ci"), ctx.t("col_n"), ctx.t("col_published")]
    # Columns with no value in any row (no arm values, no published figure) are left out; a dash that
    # remains means "not applicable to this indicator" and the note says so.
    keep = [j for j in range(len(cols)) if j == 0 or any(r[j] != MISSING for r in rows)]
    cols, rows = [cols[j] for j in keep], [[r[j] for j in keep] for r in rows]
    note = ctx.masked_note()
    if any(c == MISSING for r in rows for c in r):
        note = Markup(f"{escape(ctx.t('dash_note'))} {note}")
    return ctx.table(caption or ctx.t("tab_indicators"), cols, rows, note=note, annex=annex)


def arm_chart(ctx: ReportContext, ids: Sequence[str], caption: str) -> Block | None:
    """Bars ÉQUILIBRES vs controls for the indicators of ``ids`` that carry both arm values."""
    panels = []
    for rid in ids:
        rec = ctx.records.get(rid)
        if rec is None or ctx.rec_masked(rec):
            continue
        t_key, c_key = arm_keys(rec)
        arms = rec.arm_values
        if t_key and c_key and is_num(arms[t_key]) and is_num(arms[c_key]):
            panels.append((ctx.label_of(rid), float(arms[t_key]), float(arms[c_key]),
                           arm_unit(ctx.unit_of(rid), [arms[t_key], arms[c_key]])))
    if not panels:
        return None
    # Small multiples, one panel per indicator, each with its own scale (at most four per chart).
    panels = panels[:4]
    png = figures.arm_panels([(g[0], g[1], g[2], (lambda v, u=g[3]: ctx.fmt.value(v, u, precise=False)))
                              for g in panels], (ctx.t("col_treated"), ctx.t("col_control")))
    alt = "; ".join(f"{g[0]} : {ctx.fmt.value(g[1], g[3])} / {ctx.fmt.value(g[2], g[3])}" for g in panels)
    return ctx.figure(caption, png, alt=f"{ctx.t('col_treated')} / {ctx.t('col_control')} — {alt}")
