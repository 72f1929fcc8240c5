"""Section 4: hospitalisation, end of life and spending by category, ÉQUILIBRES vs matched controls."""

from __future__ import annotations

import pandas as pd

from pipeline.privacy import is_small
from reports import figures
from reports.context import Block, ReportContext, Section
from reports.format import as_float
from reports.records import arm_chart, indicator_rows, section_of
from reports.tables import frame_table


def build(ctx: ReportContext) -> Section:
    s = Section("hospitalisation", ctx.t("sec_hospitalisation"))
    s.blocks.append(ctx.p(ctx.t("hosp_intro", days=ctx.saved("indicators").indicators.eol_window_days)))
    # The indicators in two short tables, the follow-up and the end of life, each under ten rows or so.
    ids = [r for r in ctx.records if section_of(r) == "hospitalisation"]
    eol_ids = [r for r in ids if r.startswith("eol_")]
    for caption, exclude in (("tab_indicators_followup", set(eol_ids)), ("tab_indicators_eol", set(ids) - set(eol_ids))):
        tab = indicator_rows(ctx, "hospitalisation", exclude=exclude, caption=ctx.t(caption))
        if tab:
            s.blocks.append(tab)
    chart = arm_chart(ctx, eol_ids, ctx.t("fig_eol"))
    if chart:
        s.blocks.append(chart)
    # Every end-of-life measure (one row per spending category) is a reference table: its spending by
    # category is drawn here, the table is in the annex.
    if ctx.results.has("eol"):
        eol = ctx.results.table("eol")
        figure = eol_spending_figure(ctx, eol)
        if figure is not None:
            s.blocks.append(figure)
        s.blocks.append(ctx.annex_pointer())
        ctx.to_annex("hospitalisation", lambda: frame_table(ctx, "eol", eol, ctx.t("tab_eol"), annex=True))
    elif not ctx.results.ran("eol"):
        s.blocks.append(ctx.notice_missing("eol"))
    for key, cap in (("hospitalisation", "tab_hosp"), ("followup", "tab_followup")):
        if ctx.results.has(key):
            s.blocks.append(frame_table(ctx, key, ctx.results.table(key), ctx.t(cap)))
        elif not ctx.results.ran(key):
            s.blocks.append(ctx.notice_missing(key))
    s.blocks.extend(spending_blocks(ctx))
    return s


def eol_spending_figure(ctx: ReportContext, eol: pd.DataFrame) -> Block | None:
    """End-of-life spending per decedent by category, ÉQUILIBRES vs controls (the ``spending_<category>``
    rows of eol.csv but their total; a row whose counts or values are masked is left out)."""
    categories = category_labels(ctx)
    names, treated, control = [], [], []
    for _, row in eol.iterrows():
        measure = str(row.get("measure", ""))
        cat = measure.removeprefix("spending_")
        if cat == measure or cat == "total":
            continue
        t, c = as_float(row.get("treated")), as_float(row.get("control"))
        counts = [as_float(row.get(n)) for n in ("n_treated", "n_control")]
        if t is None or c is None or any(n is None or is_small(n, ctx.k) for n in counts):
            continue
        names.append(categories.get(cat) or ctx.value(cat))
        treated.append(t)
        control.append(c)
    if len(names) < 2:
        return None
    png = figures.grouped_bars(names, {ctx.t("col_treated"): treated, ctx.t("col_control"): control},
                               ctx.t("axis_eur_per_decedent"), lambda v: ctx.fmt.eur(v))
    sep = " : " if ctx.lang == "fr" else ": "
    alt = "; ".join(f"{n}{sep}{ctx.fmt.eur(t)} / {ctx.fmt.eur(c)}" for n, t, c in zip(names, treated, control, strict=True))
    return ctx.figure(ctx.t("fig_eol_spending"), png, alt=f"{ctx.t('col_treated')} / {ctx.t('col_control')} — {alt}")


def category_labels(ctx: ReportContext) -> dict[str, str]:
    categories = ctx.saved("clean").cleaning.categories
    return {k: (v.label_fr if ctx.lang == "fr" else v.label_en) for k, v in categories.items()}


def spending_chart(ctx: ReportContext, width: float = 6.8) -> tuple[bytes, str] | None:
    """(PNG, alt text) of the spending per patient by category, ÉQUILIBRES vs controls."""
    df = ctx.results.table("spending_by_category")
    if df is None or df.empty or not {"treated", "control"} <= set(df.columns):
        return None
    labels = category_labels(ctx)
    # The perimeter total would dwarf the categories it sums: the chart shows the categories only.
    arms = df[~df["category"].astype(str).str.lower().isin(["total", "all", "perimeter"])]
    names = [labels.get(c, ctx.value(c)) for c in arms["category"].astype(str)]
    treated = list(pd.to_numeric(arms["treated"]).fillna(0))
    control = list(pd.to_numeric(arms["control"]).fillna(0))
    png = figures.grouped_bars(names, {ctx.t("col_treated"): treated, ctx.t("col_control"): control},
                               ctx.t("axis_eur_per_patient"), lambda v: ctx.fmt.eur(v), fig_width=width)
    sep = " : " if ctx.lang == "fr" else ": "
    alt = "; ".join(f"{n}{sep}{ctx.fmt.eur(t)} / {ctx.fmt.eur(c)}" for n, t, c in zip(names, treated, control, strict=True))
    return png, f"{ctx.t('col_treated')} / {ctx.t('col_control')} — {alt}"


def spending_blocks(ctx: ReportContext) -> list[Block]:
    """Spending per patient by category: bars of both arms, then the table."""
    df = ctx.results.table("spending_by_category")
    if df is None or df.empty:
        return [] if ctx.results.ran("spending_by_category") else [ctx.notice_missing("spending_by_category")]
    labels = category_labels(ctx)
    blocks = []
    chart = spending_chart(ctx)
    if chart is not None:
        blocks.append(ctx.figure(ctx.t("fig_spending"), chart[0], alt=chart[1]))
    df = df.copy()
    df["category"] = df["category"].map(lambda c: labels.get(str(c), ctx.value(c)))
    # One row per category: the chart here, the table in the annex.
    blocks.append(ctx.annex_pointer())
    ctx.to_annex("hospitalisation", lambda: frame_table(ctx, "spending_by_category", df, ctx.t("tab_spending"),
                                                        annex=True))
    return blocks
