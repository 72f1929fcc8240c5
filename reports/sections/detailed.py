"""Annex section: the full reference tables of the evidence chapters (every covariate of the balance,
the scenario grid, every matching specification, generalisability, negative controls), each under
the title of its chapter. The chapters show a chart or a short table and point here."""

from __future__ import annotations

from reports.context import ReportContext, Section


def build(ctx: ReportContext) -> Section:
    s = Section("detailed", ctx.t("sec_detailed"))
    s.blocks.append(ctx.p(ctx.t("detailed_intro")))
    shown = None
    for section_id, make in ctx.annex_tables:
        block = make()
        if block is None:
            continue
        if section_id != shown:
            s.blocks.append({"kind": "h3", "text": ctx.t(f"sec_{section_id}")})
            shown = section_id
        s.blocks.append(block)
    if shown is None:
        s.blocks.append(ctx.p(ctx.t("detailed_none")))
    return s
