"""The robustness diagnostics of `equilibres sensitivity` (issue 14) in the sensitivity chapter: the
verdict per headline (E-value, Rosenbaum Γ, minimum detectable effect, pre-trend test), the negative
controls, an event-study chart per outcome, the cumulative incidence and the generalisability table.

Everything is read from ``sensitivity/`` (``summary.json`` as :class:`~pipeline.facts.SensitivitySummary`,
and its declared tables); when the step has not run, one "not run" notice says so. Nothing is
estimated here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd
from markupsafe import Markup

from pipeline.facts import HeadlineDiagnostics
from pipeline.privacy import is_small
from reports import figures
from reports.context import Block, ReportContext
from reports.format import MISSING, as_float, is_num
from reports.sections.matching import cov_label
from reports.tables import frame_table


def column(df: pd.DataFrame, *names: str) -> str | None:
    """The first of ``names`` that is a column of ``df``."""
    return next((n for n in names if n in df.columns), None)


# Columns left out of the annex tables so that they fit the page: the outcome id (its label is shown)
# and technical flags; the calibrated log ratio (its exponential, the calibrated value, is shown).
ANNEX_DROPPED = {"negative_controls": ("outcome", "estimable", "transform", "calibrated_log_ratio",
                                       "calibrated_log_ci_low", "calibrated_log_ci_high")}


def blocks(ctx: ReportContext) -> list[Block]:
    summary = ctx.results.sensitivity
    tables = ("event_study", "cumulative_incidence", "negative_controls", "generalisability")
    if summary is None and not any(ctx.results.has(k) for k in tables):
        return [{"kind": "h3", "text": ctx.t("diag_title")},
                ctx.notice_missing("sensitivity_summary") if "sensitivity_summary" in ctx.results.missing
                else {"kind": "notice", "title": ctx.t("not_run"), "html": ctx.t("diag_not_run")}]
    out: list[Block] = [{"kind": "h3", "text": ctx.t("diag_title")}, ctx.p(ctx.t("diag_intro"))]
    head = headline_table(ctx, summary.headlines if summary is not None else ())
    if head:
        out.append(head)
    nc = summary.negative_controls if summary is not None else None
    if nc is not None and nc.systematic_error_mean is not None:
        out.append(ctx.p(ctx.t(
            "diag_negative_controls", n=ctx.fmt.integer(nc.n), mean=ctx.fmt.number(nc.systematic_error_mean, 3),
            ci=ctx.fmt.ci(nc.systematic_error_ci_low, nc.systematic_error_ci_high, "number"))))
    out.extend(event_study_blocks(ctx))
    out.extend(incidence_blocks(ctx))
    # One row per covariate (generalisability) or per negative control: reference tables in the annex;
    # the generalisability is drawn here.
    chart = generalisability_chart(ctx)
    if chart is not None:
        out.append(chart)
    in_annex = False
    for key, caption in (("generalisability", "tab_generalisability"), ("negative_controls", "tab_negative_controls")):
        df = ctx.results.table(key)
        if df is not None and not df.empty:
            df = with_labels(ctx, df)
            ctx.to_annex("sensitivity", lambda key=key, df=df, caption=caption: frame_table(
                ctx, key, df, ctx.t(caption), annex=True, drop=ANNEX_DROPPED.get(key, ())))
            in_annex = True
    if in_annex:
        out.append(ctx.annex_pointer("annex_pointer_many"))
    return out


def with_labels(ctx: ReportContext, df: pd.DataFrame) -> pd.DataFrame:
    """A row without a label in the report language (a headline beside the negative controls) takes
    its indicator's label, so that the outcome id column can be left out."""
    col = f"label_{ctx.lang}"
    if "outcome" not in df.columns or col not in df.columns:
        return df
    missing = df[col].isna() | (df[col].astype(str).str.strip() == "")
    return df.assign(**{col: [ctx.label_of(str(o)) if m else v
                              for o, v, m in zip(df["outcome"], df[col], missing, strict=True)]})


def generalisability_chart(ctx: ReportContext) -> Block | None:
    """|SMD| per covariate between the matched patients and all ÉQUILIBRES patients, and the complex
    patients without a control (generalisability.csv), as a love plot."""
    df = ctx.results.table("generalisability")
    if df is None or df.empty or "covariate" not in df.columns:
        return None
    all_col = column(df, "smd_matched_vs_all")
    unm_col = column(df, "smd_matched_vs_unmatched_complex")
    if all_col is None and unm_col is None:
        return None
    covs = [cov_label(ctx, str(c)) for c in df["covariate"]]

    def smds(col: str | None, counts: Sequence[str]) -> list[float | None]:
        """The column's SMDs; None where a group it compares has fewer than k people (masked)."""
        if col is None:
            return [None] * len(df)
        out = []
        for _, row in df.iterrows():
            ns = [row.get(c) for c in counts if c in df.columns]
            small = any(not is_num(n) or is_small(float(n), ctx.k) for n in ns)
            out.append(None if small else as_float(row[col]))
        return out
    first = smds(all_col, ("n_matched_treated", "n_all_treated"))
    second = smds(unm_col, ("n_matched_treated", "n_unmatched_complex"))
    if all(v is None for v in (*first, *second)):
        return None
    png = figures.love_plot(covs, first, second, {"before": ctx.t("gen_vs_all"), "after": ctx.t("gen_vs_unmatched"),
                                                 "left_out": ctx.t("love_left_out")},
                            xlabel="|SMD|" if ctx.lang == "en" else "|DMS|")
    sep = " : " if ctx.lang == "fr" else ": "
    alt = "; ".join(f"{c}{sep}{ctx.fmt.number(a, 2)} / {ctx.fmt.number(b, 2)}" for c, a, b in zip(covs, first, second, strict=True))
    return ctx.figure(ctx.t("fig_generalisability"), png, alt=f"{ctx.t('fig_generalisability')} — {alt}")


def headline_table(ctx: ReportContext, headlines: Sequence[HeadlineDiagnostics]) -> Block | None:
    def num(x: float | None, digits: int) -> str:
        return ctx.fmt.number(x, digits) if x is not None else MISSING

    rows = []
    for h in headlines:
        rows.append([
            ctx.label_of(h.id), num(h.evalue, 2), num(h.evalue_ci, 2), num(h.rosenbaum_gamma, 2), num(h.mdrr, 2),
            num(h.pretrend_p, 3),
            Markup('<span class="verdict verdict-{}">{}</span>').format(h.verdict, ctx.value(h.verdict)),
            "; ".join(reason_text(ctx, r) for r in h.reasons) or MISSING,
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
