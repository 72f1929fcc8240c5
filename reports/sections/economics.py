"""Section 5: the economic evaluation (indicators, scenarios, net savings by scenario)."""

from __future__ import annotations

import pandas as pd

from pipeline.result_tables import column_kinds
from reports import figures
from reports.context import ReportContext, Section
from reports.i18n import column_label
from reports.records import indicator_rows
from reports.tables import frame_table

# Settings that define a scenario of economics_scenarios.csv; those that vary name the bars.
SCENARIO_SETTINGS = ("hourly_rate_eur", "investment_eur", "caseload_factor", "experiment_repriced")
NET_SAVINGS = "net_savings_year"


def build(ctx: ReportContext) -> Section:
    s = Section("economics", ctx.t("sec_economics"))
    economics = ctx.saved("indicators").economics
    s.blocks.append(ctx.p(ctx.t("econ_intro", investment=ctx.fmt.eur(economics.programme_investment_eur))))
    tab = indicator_rows(ctx, "economics")
    if tab:
        s.blocks.append(tab)
    sc = ctx.results.table("economics_scenarios")
    if sc is None or sc.empty:
        s.blocks.append(ctx.notice_missing("economics_scenarios"))
        return s
    if NET_SAVINGS in sc.columns and len(sc) <= 40:
        settings = [c for c in SCENARIO_SETTINGS if c in sc.columns and sc[c].nunique() > 1][:3]
        kinds = column_kinds("economics_scenarios", settings)
        names = [" · ".join(ctx.fmt.cell(r[c], kinds[c], ctx.value) for c in settings) or str(i + 1)
                 for i, (_, r) in enumerate(sc.iterrows())]
        png = figures.grouped_bars(names, {ctx.t("col_treated"): list(pd.to_numeric(sc[NET_SAVINGS]).fillna(0))},
                                   column_label(NET_SAVINGS, ctx.lang), lambda v: ctx.fmt.eur(v))
        s.blocks.append(ctx.figure(ctx.t("fig_scenarios") + (
            f" ({', '.join(column_label(c, ctx.lang) for c in settings)})" if settings else ""), png))
    # The full grid of scenarios is a reference table: in the annex, the chart here.
    s.blocks.append(ctx.annex_pointer())
    ctx.to_annex("economics", lambda: frame_table(ctx, "economics_scenarios", sc, ctx.t("tab_scenarios"), annex=True))
    return s
