"""Section 9: methods appendix (STROBE, RECORD, CHEERS items), from the settings each step saved."""

from __future__ import annotations

from markupsafe import Markup, escape

from reports.context import Block, ReportContext, Section
from reports.format import MISSING
from reports.sections.intervention import study_facts


def build(ctx: ReportContext) -> Section:
    s = Section("methods", ctx.t("sec_methods"))
    h = lambda key: {"kind": "h3", "text": ctx.t(key)}  # noqa: E731
    clean, match, indicators = ctx.saved("clean"), ctx.saved("match"), ctx.saved("indicators")
    st, cleaning = clean.study, clean.cleaning
    s.blocks.append(checklist_table(ctx))
    s.blocks += [h("m_design"), ctx.p(ctx.t("m_design_text"))]
    s.blocks += [h("m_setting"), study_facts(ctx, st)]
    s.blocks += [h("m_participants"), ctx.p(ctx.t(
        "m_participants_text", hist=clean.cohort.history_months,
        mincost=ctx.fmt.eur(clean.cohort.min_prior_nursing_cost)))]
    s.blocks += [h("m_sources"), ctx.p(ctx.t("m_sources_text"))]
    rows = [[(v.label_fr if ctx.lang == "fr" else v.label_en) + f" ({k})",
             ", ".join(map(str, v.prs_nat_ref)) or MISSING, ", ".join(map(str, v.pse_act_nat)) or MISSING,
             ", ".join(map(str, v.pse_spe_cod)) or MISSING] for k, v in cleaning.categories.items()]
    s.blocks += [h("m_codes"), ctx.table(ctx.t("m_codes"), [ctx.t("col_category"), "PRS_NAT_REF", "PSE_ACT_NAT",
                                                            "PSE_SPE_COD"],
                                         rows, align=["l", "l", "l", "l"], note=ctx.t("codes_note"))]
    if cleaning.ald_groups:
        rows = [[ctx.value(g), ", ".join(map(str, nums))] for g, nums in cleaning.ald_groups.items()]
        s.blocks.append(ctx.table(ctx.t("col_ald_group"), [ctx.t("col_ald_group"), ctx.t("col_ald_numbers")],
                                  rows, align=["l", "l"]))
    s.blocks += [h("m_cleaning"), ctx.p(ctx.t("m_cleaning_text", table=ctx.cleaning_table_number))]
    if ctx.records:
        s.blocks += [h("m_variables"), variables_table(ctx)]
    s.blocks += [h("m_missing"), ctx.p(ctx.t("m_missing_text"))]
    m, ind = match.matching, indicators.indicators
    s.blocks += [h("m_bias"), ctx.p(ctx.t(
        "m_bias_text", exact=", ".join(m.exact), on=m.on, transform=m.transform,
        caliper=f"{ctx.parameter(m.caliper)} ({ctx.value(m.caliper_scale)})", reps=ind.bootstrap_replicates,
        level=ctx.fmt.pct(ind.ci_level), did=ind.did_months))]
    e = indicators.economics
    categories = clean.cleaning.categories
    cats = ", ".join(ctx.value(c) if c not in categories else
                     (categories[c].label_fr if ctx.lang == "fr" else categories[c].label_en)
                     for c in ind.perimeter)
    s.blocks += [h("m_cheers"), {"kind": "dl", "pairs": [
        (ctx.t("cheers_perspective"), ctx.t("cheers_perspective_v")),
        (ctx.t("cheers_comparator"), ctx.t("cheers_comparator_v")),
        (ctx.t("cheers_horizon"), ctx.t("cheers_horizon_v", end=ctx.fmt.date(st.claims_end))),
        (ctx.t("cheers_costs"), ctx.t("cheers_costs_v", cats=cats, inv=ctx.fmt.eur(e.programme_investment_eur),
                                      rate=ctx.fmt.eur(e.hourly_rate_eur) + "/h")),
        (ctx.t("cheers_outcomes"), ctx.t("cheers_outcomes_v")),
        (ctx.t("cheers_uncertainty"), ctx.t("cheers_uncertainty_v")),
    ]}]
    return s


def checklist_table(ctx: ReportContext) -> Block:
    """The reporting-checklist items, each pointing to the chapter that answers it."""
    rows = [[item, topic, Markup(f'<a href="#{escape(sid)}">{escape(ctx.t("sec_" + sid))}</a>')]
            for item, topic, sid in ctx.t("checklist_items")]
    return ctx.table(ctx.t("tab_checklist"), [ctx.t("col_item"), ctx.t("col_topic"), ctx.t("col_answered_in")],
                     rows, align=["l", "l", "l"])


def variables_table(ctx: ReportContext) -> Block:
    """The definition, population and method of every indicator."""
    rows = [[ctx.label_of(r.id), ctx.rec_text(r, "definition"), ctx.rec_text(r, "population"),
             ctx.rec_text(r, "method")] for r in ctx.records.values()]
    return ctx.table(ctx.t("m_variables"), [ctx.t("col_indicator"), ctx.t("col_description"), "Population",
                                            ctx.t("col_method")], rows, align=["l", "l", "l", "l"], cls="small wrap")
