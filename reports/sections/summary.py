"""Section 1: every published figure beside the value reproduced from the data, and their agreement."""

from __future__ import annotations

from markupsafe import Markup, escape

from pipeline.privacy import is_small
from reports import figures
from reports.context import ReportContext, Section
from reports.records import SCALE_DEPENDENT, agreement, published_at_scale


def build(ctx: ReportContext) -> Section:
    s = Section("summary", ctx.t("sec_summary"))
    tol = ctx.config.report.agreement_tolerance
    s.blocks.append(ctx.p(ctx.html("summary_intro", tol=ctx.fmt.pct(tol))))
    # Size of the extract relative to the study (synthetic extracts; 1 for a real extract), as saved
    # by `equilibres indicators`.
    scale = ctx.extract_scale()
    investment = ctx.saved("indicators").economics.programme_investment_eur
    if scale != 1.0:
        s.blocks.append(ctx.p(ctx.t("summary_scaled", scale=ctx.fmt.number(scale, 2),
                                    ids=", ".join(ctx.label_of(k) for k in sorted(SCALE_DEPENDENT)))))
    rows, labels, rel, rlo, rhi = [], [], [], [], []
    counts = {"agrees": 0, "close": 0, "differs": 0, "missing": 0, "input": 0, "masked": 0}
    # The list of published figures is the study's (config [published]); each value is its record's.
    keys = list(ctx.config.published)
    for key in keys:
        published = published_at_scale(key, ctx.published_of(key), scale, investment)
        rec = ctx.records.get(key)
        unit = ctx.unit_of(key)
        label = ctx.label_of(key)
        status, value, lo, hi, n = agreement(rec, published, tol)
        masked = rec is not None and ctx.rec_masked(rec)
        if masked:
            # The comparison itself would tell something about the hidden value.
            ctx.n_masked += 1
            status = "masked"
        counts[status] += 1
        mk = ctx.fmt.masked(ctx.k)
        rows.append([
            label,
            ctx.fmt.published(published, unit),
            ctx.fmt.secondary() if masked else ctx.fmt.value(value, unit),
            ctx.fmt.secondary() if masked else ctx.fmt.ci(lo, hi, unit),
            mk if (masked or (n is not None and is_small(n, ctx.k))) else ctx.fmt.integer(n),
            Markup(f'<span class="status {status}">{escape(ctx.t("status_" + status))}</span>'),
        ])
        if value is not None and published not in (0, None) and not masked and status != "input":
            labels.append(label)
            rel.append(value / published - 1)
            rlo.append(None if lo is None else lo / published - 1)
            rhi.append(None if hi is None else hi / published - 1)
    ctx.agreement_counts = {k: v for k, v in counts.items() if v}
    s.blocks.append(ctx.table(
        ctx.t("sec_summary"),
        [ctx.t("col_indicator"), ctx.t("col_published"), ctx.t("col_reproduced"), ctx.t("col_ci"),
         ctx.t("col_n"), ctx.t("col_status")],
        rows, align=["l", "r", "r", "r", "r", "c"], cls="summary"))
    parts = [ctx.plural(f"count_{k}", counts[k]) for k in ("agrees", "close", "differs", "missing", "masked", "input")
             if counts[k]]
    s.blocks.append(ctx.p(ctx.t("summary_counts", total=ctx.fmt.integer(len(keys)), parts=join_list(ctx, parts))))
    if labels:
        png = figures.agreement_plot(labels, rel, rlo, rhi, tol, ctx.t("fig_summary"),
                                     lambda v: ctx.fmt.pct(v, 0, signed=True))
        s.blocks.append(ctx.figure(ctx.t("fig_summary"), png, cls="pagebreak-before"))
    return s


def join_list(ctx: ReportContext, parts: list[str]) -> str:
    """"a, b and c" in the report language."""
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + ctx.t("and_last") + parts[-1]
