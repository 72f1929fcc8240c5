"""Section 2: the intervention, the data, the study period and the cohort flow with its cleaning rules."""

from __future__ import annotations

import pandas as pd

from pipeline.config import StudySettings
from pipeline.privacy import suppress_flow
from reports import figures
from reports.context import Block, ReportContext, Section
from reports.format import MISSING, is_num
from reports.i18n import has_text
from reports.tables import cleaning_table, flow_table

FLOW_RULES = ("extract", "cleaned", "eligible", "matched", "unmatched")


def study_facts(ctx: ReportContext, st: StudySettings) -> Block:
    """Inclusion period, claims window and regions of the study."""
    period = lambda a, b: ctx.t("from_to", a=ctx.fmt.date(a), b=ctx.fmt.date(b))  # noqa: E731
    return {"kind": "dl", "pairs": [
        (ctx.t("period_inclusion"), period(st.inclusion_start, st.inclusion_end)),
        (ctx.t("period_claims"), period(st.claims_start, st.claims_end)),
        (ctx.t("regions"), "; ".join(f"{r} ({', '.join(d)})" for r, d in st.regions.items())),
    ]}


def build(ctx: ReportContext) -> Section:
    st = ctx.saved("clean").study
    s = Section("intervention", ctx.t("sec_intervention"))
    regions = ", ".join(st.regions.keys()) or MISSING
    s.blocks.append(ctx.p(ctx.html("intervention_text", label=st.article51_label or st.name, regions=regions)))
    s.blocks.append(ctx.p(ctx.t("data_sources_text")))
    s.blocks.append(study_facts(ctx, st))
    flow = flow_rows(ctx)
    if flow is not None and not flow.empty:
        s.blocks.append(flow_figure(ctx, flow))
        s.blocks.append(flow_table(ctx, flow, ctx.t("fig_flow")))
    # The rule-by-rule table (one row per cleaning rule) is a reference table: in the annex.
    s.blocks.append(ctx.annex_pointer("cleaning_pointer"))

    def rules() -> Block:
        block = cleaning_table(ctx, with_source=True)
        ctx.cleaning_table_number = ctx.n_tables
        return block
    ctx.to_annex("intervention", rules)
    return s


def flow_rows(ctx: ReportContext) -> pd.DataFrame | None:
    """The cohort-flow rows (stage 'cohort') of the cleaning and matching attrition tables."""
    frames = [ctx.results.table(k) for k in ("attrition", "attrition_matching") if ctx.results.has(k)]
    if not frames:
        return None
    rows = pd.concat(frames, ignore_index=True)
    flow = rows[rows["stage"].astype(str) == "cohort"].drop_duplicates("rule", keep="last")
    order = {r: i for i, r in enumerate(FLOW_RULES)}
    flow = flow.assign(_o=flow["rule"].map(lambda r: order.get(r, len(order)))).sort_values("_o", kind="stable")
    return flow.drop(columns="_o").reset_index(drop=True)


def flow_figure(ctx: ReportContext, flow: pd.DataFrame) -> Block:
    """Boxes extract → cleaned → eligible → matched (exclusions on the side), then the
    ÉQUILIBRES patients without a control (the `unmatched` rule counts treated patients only)."""
    sup = suppress_flow(flow, ctx.k)
    mk = ctx.fmt.masked(ctx.k)

    def cell(i: int, col: str) -> str:
        if not sup.mask.at[i, col]:
            return ctx.fmt.integer(flow.at[i, col])
        return mk if sup.is_primary(i, col) else ctx.fmt.secondary()

    boxes: list[tuple[str, str]] = []
    side: list[tuple[int, str, str] | None] = []
    sep = " : " if ctx.lang == "fr" else ": "
    for i, row in flow.iterrows():
        rule = str(row["rule"])
        key = f"flow_{rule}"
        label = ctx.t(key) if has_text(key, ctx.lang) else ctx.value(rule)
        if rule == "unmatched":
            boxes.append((ctx.t("flow_unmatched_box"), f"{cell(i, 'rows_dropped')} / {cell(i, 'rows_in')}"))
            continue
        if i > 0 and is_num(row.get("rows_in")) and is_num(flow.at[i - 1, "rows_out"]) and \
                float(row["rows_in"]) != float(flow.at[i - 1, "rows_out"]):
            # The unit changes (persons → cohort rows, one per person and candidate index date).
            boxes.append((ctx.t("flow_cohort_rows"), cell(i, "rows_in")))
        side_label = (ctx.t(f"flow_side_{rule}") if has_text(f"flow_side_{rule}", ctx.lang)
                      else f"{label}{sep}{ctx.t('flow_excluded')}")
        if rule in ("eligible", "matched"):
            label = ctx.t(f"flow_{rule}_rows")
        boxes.append((label, cell(i, "rows_out")))
        dropped = row.get("rows_dropped")
        if len(boxes) > 1 and is_num(dropped) and float(dropped) > 0:
            side.append((len(boxes) - 2, side_label, cell(i, "rows_dropped")))
    return ctx.figure(ctx.t("fig_flow"), figures.flow_diagram(boxes, side))
