"""Section 6: the patient, caregiver and nurse surveys (response rates, items, Likert answers,
nurses' scores before and after ÉQUILIBRES)."""

from __future__ import annotations

import pandas as pd

from pipeline.paths import step_outputs
from pipeline.results import IndicatorRecord
from reports import figures
from reports.context import Block, ReportContext, Section
from reports.format import is_num
from reports.records import indicator_rows, section_of, wrap
from reports.tables import frame_table


def build(ctx: ReportContext) -> Section:
    s = Section("surveys", ctx.t("sec_surveys"))
    if not ctx.results.ran("survey_indicators") and not any(ctx.results.has(k) for k in step_outputs("surveys", "csv")):
        s.blocks.append(ctx.notice_missing("survey_indicators"))
        return s
    sp = ctx.saved("surveys").surveys
    s.blocks.append(ctx.p(ctx.t("surveys_intro", ci_method=sp.proportion_ci, small=sp.small_n_threshold)))
    if ctx.results.has("response_rates"):
        s.blocks.append(frame_table(ctx, "response_rates", ctx.results.table("response_rates"),
                                    ctx.t("tab_response_rates")))
    # The survey figures: the shares drawn (with the published ones), the scores as a short table, every
    # figure in one table in the annex.
    recs = [r for r in ctx.records.values() if section_of(r.id) == "surveys"]
    chart = shares_chart(ctx, recs)
    if chart is not None:
        s.blocks.append(chart)
    tab = None
    if chart is None:
        tab = indicator_rows(ctx, "surveys", caption=ctx.t("tab_survey_items"))
        if tab:
            s.blocks.append(tab)
    else:
        scores = {r.id for r in recs if ctx.unit_of(r.id) == "score_0_10"}
        short = indicator_rows(ctx, "surveys", exclude={r.id for r in recs} - scores, caption=ctx.t("tab_survey_scores"))
        if short:
            s.blocks.append(short)
        s.blocks.append(ctx.annex_pointer())
        ctx.to_annex("surveys", lambda: indicator_rows(ctx, "surveys", caption=ctx.t("tab_survey_items"), annex=True))
    s.blocks.extend(likert_blocks(ctx))
    s.blocks.extend(before_after_blocks(ctx))
    if ctx.results.has("survey_items") and not tab and chart is None:
        s.blocks.append(frame_table(ctx, "survey_items", ctx.results.table("survey_items"),
                                    ctx.t("tab_survey_items")))
    return s


def shares_chart(ctx: ReportContext, recs: list[IndicatorRecord]) -> Block | None:
    """The survey shares with their intervals and, as diamonds, the published figures (masked ones left
    out); None when fewer than two can be drawn."""
    shown = [r for r in recs if ctx.unit_of(r.id) == "share" and is_num(r.value) and not ctx.rec_masked(r)]
    if len(shown) < 2:
        return None
    png = figures.interval_bars([ctx.label_of(r.id) for r in shown], [float(r.value) for r in shown],
                                [r.ci_low for r in shown], [r.ci_high for r in shown], lambda x: ctx.fmt.pct(x, 0),
                                published=[r.published for r in shown], published_label=ctx.t("col_published"),
                                xlim=(0, 1.12))
    sep = " : " if ctx.lang == "fr" else ": "
    alt = "; ".join(f"{ctx.label_of(r.id)}{sep}{ctx.fmt.pct(r.value, 0)}" + (
        f" ({ctx.t('col_published').lower()} {ctx.fmt.pct(r.published, 0)})" if r.published is not None else "")
        for r in shown)
    return ctx.figure(ctx.t("fig_survey_shares"), png, alt=alt)


def question_texts(ctx: ReportContext) -> dict[tuple[str, str], str]:
    """(survey_id, question_id) → question text in the report language, from items.csv."""
    items = ctx.results.table("survey_items")
    col = f"text_{ctx.lang}"
    if items is None or items.empty or col not in items.columns:
        return {}
    sub = items.dropna(subset=[col]).drop_duplicates(["survey_id", "question_id"])
    return {(str(a), str(b)): str(t) for a, b, t in zip(sub["survey_id"], sub["question_id"], sub[col], strict=True)}


def with_question_text(ctx: ReportContext, df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the question text in the report language (column ``text_<lang>``) after its keys."""
    texts = question_texts(ctx)
    if not texts:
        return df
    df = df.copy()
    df.insert(2, f"text_{ctx.lang}", [texts.get((str(a), str(b)), str(b)) for a, b in
                                     zip(df["survey_id"], df["question_id"], strict=True)])
    return df


def likert_blocks(ctx: ReportContext) -> list[Block]:
    """One stacked-bar chart per answer scale (bars of different scales cannot share a legend)."""
    df = ctx.results.table("likert")
    if df is None or df.empty:
        return []
    df = with_question_text(ctx, df)
    item = f"text_{ctx.lang}" if f"text_{ctx.lang}" in df.columns else "question_id"
    level = f"label_{ctx.lang}"
    several = df["survey_id"].nunique() > 1
    scales: dict[tuple[str, ...], list[tuple[str, list[float]]]] = {}
    for _, q in df.groupby(["survey_id", "question_id"], sort=False):
        levels = tuple(q[level].astype(str))
        shares = [float(x) if is_num(x) else 0.0 for x in q["share"]]
        label = str(q[item].iloc[0])
        if several:
            label = f"{label} ({ctx.value(q['survey_id'].iloc[0])})"
        scales.setdefault(levels, []).append((label, shares))
    blocks = []
    for levels, qs in sorted(scales.items(), key=lambda kv: -len(kv[1]))[:4]:
        if len(levels) < 2:
            continue
        png = figures.likert_stacked([wrap(q[0], 45) for q in qs], list(levels), [q[1] for q in qs],
                                     lambda v: ctx.fmt.pct(v))
        blocks.append(ctx.figure(ctx.t("fig_likert"), png))
    return blocks


BEFORE_AFTER_BODY = ("survey_id", "n_pairs", "mean_before", "mean_after", "mean_change", "change_ci_low",
                     "change_ci_high", "p_value")
BEFORE_AFTER_ANNEX = ("survey_id", "question_id", "n_incomplete", "before_ci_low", "before_ci_high", "median_before",
                      "after_ci_low", "after_ci_high", "median_after", "sd_change", "median_change", "n_unchanged",
                      "n_increased", "n_decreased", "wilcoxon_statistic")


def before_after_blocks(ctx: ReportContext) -> list[Block]:
    """The nurses' paired scores: the table, and a chart when the question texts are known."""
    df = ctx.results.table("before_after")
    if df is None or df.empty:
        return []
    df = with_question_text(ctx, df)
    text_col = f"text_{ctx.lang}"
    added = {text_col: "text"} if text_col in df.columns else {}
    # The body shows the means and the change; the other statistics (intervals of each mean, medians,
    # counts of increases, Wilcoxon statistic) are a second table in the annex: one table with all of
    # them is wider than the page.
    body = [BEFORE_AFTER_BODY[0], "text", *BEFORE_AFTER_BODY[1:]]  # text_<lang> is shown as "text"
    codes = df.drop(columns=[c for c in df.columns if c.startswith("text_")])  # the question id, not its text
    details = [c for c in BEFORE_AFTER_ANNEX if c in codes.columns]
    blocks = [frame_table(ctx, "before_after", df, ctx.t("tab_before_after"), added=added, keep=body)]
    if len(details) > 2:
        blocks.append(ctx.annex_pointer())
        ctx.to_annex("surveys", lambda: frame_table(ctx, "before_after", codes, ctx.t("tab_before_after_details"),
                                                    keep=details, annex=True))
    if added:
        png = figures.before_after([wrap(str(x), 25) for x in df[text_col]], list(pd.to_numeric(df["mean_before"])),
                                   list(pd.to_numeric(df["mean_after"])),
                                   {"before": ctx.t("before"), "after": ctx.t("after")}, "/10")
        blocks.append(ctx.figure(ctx.t("fig_before_after"), png))
    return blocks
