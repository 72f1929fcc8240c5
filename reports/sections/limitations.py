"""Section 8: the limitations of the study (fixed texts)."""

from __future__ import annotations

from reports.context import ReportContext, Section


def build(ctx: ReportContext) -> Section:
    s = Section("limitations", ctx.t("sec_limitations"))
    s.blocks.append({"kind": "list", "items": list(ctx.t("limitations"))})
    return s
