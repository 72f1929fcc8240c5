"""The robustness diagnostics of `equilibres sensitivity` (issue 14) in the sensitivity chapter: the
verdict per headline (E-value, Rosenbaum Γ, minimum detectable effect, pre-trend test), the negative
controls, an event-study chart per outcome, the cumulative incidence and the generalisability table.

Everything is read from ``sensitivity/`` (``summary.json`` and its tables); when the step has not run,
one "not run" notice says so. Nothing is estimated here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pandas as pd
from markupsafe import Markup, escape

from pipeline.privacy import is_small
from reports import figures
from reports.context import Block, ReportContext
from reports.format import MISSING, as_float, is_num
from reports.i18n import column_label
from reports.loaders import declared
from reports.tables import frame_table


def column(df: pd.DataFrame, *names: str) -> str | None:
    """The first of ``names`` that is a column of ``df``."""
    return next((n for n in names if n in df.columns), None)


def blocks(ctx: ReportContext) -> list[Block]:
    summary = ctx.results.sensitivity
    tables = ("event_study", "cumulative_incidence", "negative_controls", "generalisability")
    if not summary and not any(ctx.results.has(k) for k in tables):
        return [{"kind": "h3", "text": ctx.t("diag_title")},
                ctx.notice_missing("sensitivity_summary") if "sensitivity_summary" in ctx.results.missing
                else {"kind": "notice", "title": ctx.t("not_run"), "html": ctx.t("diag_not_run")}]
    out: list[Block] = [{"kind": "h3", "text": ctx.t("diag_title")}, ctx.p(ctx.t("diag_intro"))]
    head = headline_table(ctx, summary.get("headlines") or [])
    if head:
        out.append(head)
    nc = summary.get("negative_controls")
    if isinstance(nc, dict) and is_num(nc.get("systematic_error_mean")):
        out.append(ctx.p(ctx.t(
            "diag_negative_controls", n=ctx.fmt.integer(nc.get("n")),
            mean=ctx.fmt.number(nc["systematic_error_mean"], 3),
            ci=ctx.fmt.ci(nc.get("systematic_error_ci_low"), nc.get("systematic_error_ci_high"), "number"))))
    out.extend(event_study_blocks(ctx))
    out.extend(incidence_blocks(ctx))
    for key, caption, annex in (("generalisability", "tab_generalisability", False),
                                ("negative_controls", "tab_negative_controls", True)):
        df = ctx.results.table(key)
        if df is not None and not df.empty:
            out.append(frame_table(ctx, key, df, ctx.t(caption), annex=annex) if declared(key)
                       else generic_table(ctx, df, ctx.t(caption)))
    return out


def headline_table(ctx: ReportContext, headlines: Sequence[Any]) -> Block | None:
    rows = []
    for h in headlines:
        if not isinstance(h, dict) or not h.get("id"):
            continue
        reasons = h.get("reasons") or []
        reasons = reasons if isinstance(reasons, list) else [reasons]
        rows.append([
            ctx.label_of(str(h["id"])),
            ctx.fmt.number(h.get("evalue"), 2) if is_num(h.get("evalue")) else MISSING,
            ctx.fmt.number(h.get("evalue_ci"), 2) if is_num(h.get("evalue_ci")) else MISSING,
            ctx.fmt.number(h.get("rosenbaum_gamma"), 2) if is_num(h.get("rosenbaum_gamma")) else MISSING,
            ctx.fmt.number(h.get("mdrr"), 2) if is_num(h.get("mdrr")) else MISSING,
            ctx.fmt.number(h.get("pretrend_p"), 3) if is_num(h.get("pretrend_p")) else MISSING,
            Markup(f'<span class="verdict verdict-{escape(h.get("verdict") or "none")}">'
                   f'{escape(ctx.value(h.get("verdict") or "not_run"))}</span>'),
            "; ".join(reason_text(ctx, str(r)) for r in reasons) or MISSING,
        ])
    if not rows:
        return None
    return ctx.table(ctx.t("tab_diagnostics"),
                     [ctx.t("col_indicator"), ctx.t("col_evalue"), ctx.t("col_evalue_ci"), ctx.t("col_gamma"),
                      ctx.t("col_mdrr"), ctx.t("col_pretrend"), ctx.t("col_verdict"), ctx.t("col_reasons")],
                     rows[:10], align=["l", "r", "r", "r", "r", "r", "c", "l"], note=ctx.t("diag_table_note"))


def reason_text(ctx: ReportContext, reason: str) -> str:
    """A reason of the verdict (``"check: what = 0.049 < 0.05"``) as the check's label and its
    comparison, numbers in the report's format (the producer's wording is English)."""
    check, _, rest = reason.partition(":")
    comparison = rest.rsplit(" = ", 1)[-1].strip() if " = " in rest else ""
    comparison = re.sub(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?",
                        lambda m: ctx.fmt.number(float(m.group()), 3).rstrip("0").rstrip(",.")
                        if abs(float(m.group())) < 100 else ctx.fmt.number(float(m.group()), 0), comparison)
    label = ctx.value(f"check_{check.strip()}")
    return f"{label} ({comparison})" if comparison else label


def event_study_blocks(ctx: ReportContext) -> list[Block]:
    df = ctx.results.table("event_study")
    if df is None or df.empty:
        return []
    month = column(df, "relative_month", "month", "event_time", "t")
    est = column(df, "estimate", "value", "coef")
    if month is None or est is None:
        return []
    lo, hi = column(df, "ci_low", "estimate_ci_low"), column(df, "ci_high", "estimate_ci_high")
    out_col = column(df, "outcome")
    out: list[Block] = []
    groups = df.groupby(out_col, sort=False) if out_col else [("", df)]
    for outcome, g in groups:
        g = g[pd.to_numeric(g[est], errors="coerce").notna()].sort_values(month)  # suppressed: not drawn
        if g.empty:
            continue
        label = ctx.label_of(str(outcome)) if outcome else ""
        png = figures.event_study([float(x) for x in g[month]], [float(x) for x in g[est]],
                                  [as_float(x) for x in g[lo]] if lo else [None] * len(g),
                                  [as_float(x) for x in g[hi]] if hi else [None] * len(g),
                                  label, ctx.t("axis_relative_month"), ctx.t("axis_estimate"))
        out.append(ctx.figure(ctx.t("fig_event_study", outcome=label), png,
                              alt=ctx.t("alt_event_study", outcome=label, n=len(g))))
    return out


def incidence_blocks(ctx: ReportContext) -> list[Block]:
    df = ctx.results.table("cumulative_incidence")
    if df is None or df.empty:
        return []
    time = column(df, "month", "day", "time")
    value = column(df, "estimate", "cumulative_incidence", "value")
    arm = column(df, "arm", "group")
    if time is None or value is None:
        return []
    df = df[pd.to_numeric(df[value], errors="coerce").notna()]  # suppressed points are not drawn
    curve_col = column(df, "curve")
    out: list[Block] = []
    for curve, c in (df.groupby(curve_col, sort=False) if curve_col else [("", df)]):
        curves = {}
        for name, g in (c.groupby(arm, sort=False) if arm else [("", c)]):
            if arm and not str(name).startswith(("treated", "control")):
                continue  # a derived row (the difference between the arms) is not a curve of its own
            g = g.sort_values(time)
            curves[ctx.t("col_treated") if str(name).startswith("treated") else
                   ctx.t("col_control") if str(name).startswith("control") else ctx.value(name)] = (
                [float(x) for x in g[time]], [float(x) for x in g[value]])
        png = figures.step_curves(curves, ctx.t("axis_months" if time == "month" else "axis_days"),
                                  ctx.t("axis_cumulative_incidence"), lambda v: ctx.fmt.pct(v, 0))
        what = ctx.value(str(curve)) if curve else ""
        out.append(ctx.figure(ctx.t("fig_cumulative_incidence", curve=what), png,
                              alt=ctx.t("alt_cumulative_incidence", curve=what, arms=", ".join(curves))))
    return out


def generic_table(ctx: ReportContext, df: pd.DataFrame, caption: str) -> Block:
    """A small sensitivity table (at most ten rows) whose columns are shown by their labels; a column
    of people counts (``n``, ``n_*``, ``count``) is masked below the small-cell threshold."""
    rows = []
    for _, r in df.head(10).iterrows():
        row = []
        for c, v in r.items():
            if not is_num(v):
                row.append(MISSING if v is None or v != v else ctx.value(v))
            elif str(c) == "n" or str(c).startswith("n_") or str(c) == "count":
                masked = is_small(float(v), ctx.k)
                ctx.n_masked += int(masked)
                row.append(ctx.fmt.masked(ctx.k) if masked else ctx.fmt.integer(v))
            else:
                row.append(ctx.fmt.number(v, 3 if abs(float(v)) < 1 else 1))
        rows.append(row)
    return ctx.table(caption, [column_label(str(c), ctx.lang) for c in df.columns], rows, note=ctx.masked_note())
