"""The synthesis that opens the report: the headline results in large type (reproduced value, 95 %
interval, published value, agreement, diagnostics verdict), four charts and a few sentences of
conclusions and limits written from the numbers.

Published figures appear only as the "published" value of a headline; every sentence is filled with
reproduced values, so the text says what this build found, not what was published.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from pipeline.results import IndicatorRecord
from reports import figures
from reports.context import Block, ReportContext, Section
from reports.format import is_num
from reports.records import agreement, arm_keys, published_at_scale
from reports.sections.hospitalisation import spending_chart

# The headlines, in reading order: (card id, indicator ids shown on the card).
HEADLINES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("eol_hosp", ("eol_hosp_rate",)),
    ("eol_spending", ("eol_spending_treated", "eol_spending_control")),
    ("avoided", ("avoided_spending_share", "avoided_spending_per_patient_year")),
    ("net", ("net_savings_year", "programme_investment")),
    ("unmatched", ("unmatched_share_complex",)),
    ("surveys", ("patients_qol_improved", "caregivers_supported", "patients_needs_met")),
)
# Survey figures drawn in the synthesis chart (shares with a published value).
SURVEY_HIGHLIGHTS = ("patients_qol_improved", "patients_home_support", "caregivers_supported",
                     "patients_needs_met", "nurses_coordination", "nurses_more_solicited")


@dataclass(frozen=True)
class Headline:
    """One reproduced figure as the synthesis shows it (formatted strings, or masked)."""

    id: str
    label: str
    value: str
    ci: str
    published: str
    status: str
    verdict: str | None  # the diagnostics verdict id of sensitivity/summary.json; None: not run
    raw: IndicatorRecord | None


def build(ctx: ReportContext) -> Section:
    s = Section("synthesis", ctx.t("sec_synthesis"))
    s.blocks.append(ctx.p(ctx.t("synthesis_intro")))
    scale = saved_extract_scale(ctx)
    if scale != 1.0:
        s.blocks.append(ctx.p(ctx.t("synthesis_scaled", scale=ctx.fmt.pct(scale, 2 if scale < 0.1 else 0))))
    cards = []
    for card_id, ids in HEADLINES:
        items = [h for h in (headline(ctx, rid, scale) for rid in ids) if h is not None]
        if items:
            cards.append({"id": card_id, "title": ctx.t(f"headline_{card_id}"), "items": items})
    s.blocks.append({"kind": "headlines", "cards": cards, "labels": {
        "ci": ctx.t("col_ci"), "published": ctx.t("hl_published"), "diagnostics": ctx.t("hl_diagnostics"),
        **{f"status_{k}": ctx.t(f"status_{k}") for k in ("agrees", "close", "differs", "missing", "input", "masked")},
        "not_run": ctx.t("verdict_not_run")}, "verdicts": verdict_labels(ctx)})
    s.blocks.append({"kind": "h3", "text": ctx.t("synthesis_conclusions")})
    s.blocks.append({"kind": "list", "items": conclusions(ctx, scale)})
    s.blocks.append({"kind": "h3", "text": ctx.t("synthesis_limits")})
    s.blocks.append({"kind": "list", "items": limits(ctx)})
    charts = [b for b in (eol_chart(ctx), spending_figure(ctx), savings_chart(ctx, scale), survey_chart(ctx)) if b]
    if charts:
        s.blocks.append({"kind": "grid", "blocks": charts})
    return s


def saved_extract_scale(ctx: ReportContext) -> float:
    """Size of the extract relative to the study, as `equilibres indicators` saved it (1 for a real one)."""
    return ctx.extract_scale()


# A figure whose diagnostics are those of another headline (both arms of a difference).
VERDICT_OF = {"eol_spending_treated": "eol_spending_difference", "eol_spending_control": "eol_spending_difference"}


def verdict_of(ctx: ReportContext, indicator_id: str) -> str | None:
    """The diagnostics verdict of ``indicator_id`` in sensitivity/summary.json: None when the step
    did not run, ``not_assessed`` when it ran without assessing this figure."""
    summary = ctx.results.sensitivity
    if summary is None:
        return None
    diagnostics = summary.headline(VERDICT_OF.get(indicator_id, indicator_id))
    return diagnostics.verdict if diagnostics is not None else "not_assessed"


def verdict_labels(ctx: ReportContext) -> dict[str, str]:
    out = {"not_assessed": ctx.value("not_assessed")}
    for h in ctx.results.sensitivity.headlines if ctx.results.sensitivity is not None else ():
        out[h.verdict] = ctx.value(h.verdict)
    return out


def headline(ctx: ReportContext, rid: str, scale: float) -> Headline | None:
    rec = ctx.records.get(rid)
    published = ctx.published_of(rid)
    if rec is None and published is None:
        return None
    investment = ctx.saved("indicators").economics.programme_investment_eur
    if published is not None:
        published = published_at_scale(rid, published, scale, investment)
    unit = ctx.unit_of(rid)
    status, value, lo, hi, _n = agreement(rec, published, ctx.config.report.agreement_tolerance) \
        if published is not None else ("missing" if rec is None else "input", None, None, None, None)
    masked = rec is not None and ctx.rec_masked(rec)
    if published is None and rec is not None:
        value, lo, hi = rec.value, rec.ci_low, rec.ci_high
    if masked:
        ctx.n_masked += 1
        status = "masked"
    mk = ctx.fmt.secondary()
    return Headline(
        id=rid, label=ctx.label_of(rid),
        value=mk if masked else ctx.fmt.value(value, unit) if rec is not None else ctx.t("status_missing"),
        ci=mk if masked else ctx.fmt.ci(lo, hi, unit),
        published=ctx.fmt.published(published, unit) if published is not None else "",
        status=status, verdict=verdict_of(ctx, rid), raw=None if masked else rec)


def shown(ctx: ReportContext, rid: str) -> IndicatorRecord | None:
    """The record ``rid`` when it has a value that may be shown (not masked)."""
    rec = ctx.records.get(rid)
    if rec is None or not is_num(rec.value) or ctx.rec_masked(rec):
        return None
    return rec


def v(ctx: ReportContext, rec: IndicatorRecord, x: Any = None) -> str:
    return ctx.fmt.value(rec.value if x is None else x, ctx.unit_of(rec.id))


def ci(ctx: ReportContext, rec: IndicatorRecord) -> str:
    return ctx.fmt.ci(rec.ci_low, rec.ci_high, ctx.unit_of(rec.id))


def excludes_zero(rec: IndicatorRecord) -> bool | None:
    if rec.ci_low is None or rec.ci_high is None:
        return None
    return rec.ci_low > 0 or rec.ci_high < 0


def conclusions(ctx: ReportContext, scale: float) -> list[Markup]:
    """Plain-language sentences, each filled with reproduced values only."""
    out: list[Markup] = []
    hosp = shown(ctx, "eol_hosp_rate")
    if hosp is not None:
        t_key, c_key = arm_keys(hosp)
        arms = hosp.arm_values
        clear = excludes_zero(hosp)
        key = "concl_eol_hosp_clear" if clear else "concl_eol_hosp_unclear"
        out.append(ctx.html(key, rel=ctx.fmt.pct(hosp.value, 0, signed=True), ci=ci(ctx, hosp),
                            treated=ctx.fmt.pct(arms.get(t_key), 0) if t_key else "—",
                            control=ctx.fmt.pct(arms.get(c_key), 0) if c_key else "—"))
    t, c = shown(ctx, "eol_spending_treated"), shown(ctx, "eol_spending_control")
    diff = shown(ctx, "eol_spending_difference")
    if t is not None and c is not None:
        clear = excludes_zero(diff) if diff is not None else None
        out.append(ctx.html("concl_eol_spending_diff" if clear else "concl_eol_spending_same",
                            treated=v(ctx, t), control=v(ctx, c)))
    share, per = shown(ctx, "avoided_spending_share"), shown(ctx, "avoided_spending_per_patient_year")
    if share is not None and per is not None:
        out.append(ctx.html("concl_avoided", share=v(ctx, share), share_ci=ci(ctx, share), per=v(ctx, per)))
    net, gross = shown(ctx, "net_savings_year"), shown(ctx, "gross_savings_year")
    investment = ctx.saved("indicators").economics.programme_investment_eur
    if net is not None:
        positive = net.ci_low is not None and net.ci_low > 0
        negative = net.ci_high is not None and net.ci_high < 0
        key = "concl_net_positive" if positive else "concl_net_negative" if negative else "concl_net_unclear"
        out.append(ctx.html(key, net=v(ctx, net), ci=ci(ctx, net), investment=ctx.fmt.eur(investment),
                            gross=v(ctx, gross) if gross is not None else "—"))
    unmatched = shown(ctx, "unmatched_share_complex")
    if unmatched is not None:
        out.append(ctx.html("concl_unmatched", share=v(ctx, unmatched)))
    surveys = [r for r in (shown(ctx, k) for k in SURVEY_HIGHLIGHTS[:4]) if r is not None]
    if surveys:
        lo = min(float(r.value) for r in surveys)
        out.append(ctx.html("concl_surveys", low=ctx.fmt.pct(lo, 0), n=ctx.fmt.integer(len(surveys))))
    tol = ctx.config.report.agreement_tolerance
    counts = {"agrees": 0, "close": 0, "differs": 0}
    for key in ctx.config.published:
        pub = published_at_scale(key, ctx.published_of(key), scale, investment)
        rec = ctx.records.get(key)
        if rec is not None and ctx.rec_masked(rec):
            continue
        status = agreement(rec, pub, tol)[0]
        if status in counts:
            counts[status] += 1
    total = sum(counts.values())
    if total:
        out.append(Markup(escape(ctx.plural("concl_agreement", counts["agrees"], total=total))))
    return out


def limits(ctx: ReportContext) -> list[str]:
    items = list(ctx.t("synthesis_limit_items"))
    if ctx.results.sensitivity is None:
        items.append(ctx.t("synthesis_limit_no_diagnostics"))
    return items


def eol_chart(ctx: ReportContext) -> Block | None:
    """End of life by arm: hospitalisation rate and spending per decedent."""
    panels = []
    hosp = shown(ctx, "eol_hosp_rate")
    if hosp is not None:
        t_key, c_key = arm_keys(hosp)
        if t_key and c_key and is_num(hosp.arm_values[t_key]) and is_num(hosp.arm_values[c_key]):
            panels.append((ctx.t("fig_syn_eol_hosp"), float(hosp.arm_values[t_key]), float(hosp.arm_values[c_key]),
                           lambda x: ctx.fmt.pct(x, 0)))
    t, c = shown(ctx, "eol_spending_treated"), shown(ctx, "eol_spending_control")
    if t is not None and c is not None:
        panels.append((ctx.t("fig_syn_eol_spending"), float(t.value), float(c.value), lambda x: ctx.fmt.eur(x)))
    if not panels:
        return None
    png = figures.arm_panels(panels, (ctx.t("col_treated"), ctx.t("col_control")))
    sep = " : " if ctx.lang == "fr" else ": "
    alt = "; ".join(f"{p[0]}{sep}{ctx.t('col_treated')} {p[3](p[1])}, {ctx.t('col_control')} {p[3](p[2])}"
                    for p in panels)
    return ctx.figure(ctx.t("fig_syn_eol"), png, alt=alt)


def spending_figure(ctx: ReportContext) -> Block | None:
    made = spending_chart(ctx, width=4.6)
    if made is None:
        return None
    png, alt = made
    return ctx.figure(ctx.t("fig_spending"), png, alt=alt)


def savings_chart(ctx: ReportContext, scale: float) -> Block | None:
    """Gross savings against the investment, and the net savings, with their intervals."""
    rows = []
    for rid in ("gross_savings_year", "programme_investment", "net_savings_year"):
        rec = shown(ctx, rid)
        if rec is not None:
            sign = -1.0 if rid == "programme_investment" else 1.0
            rows.append((ctx.label_of(rid), sign * float(rec.value),
                         None if rec.ci_low is None else sign * rec.ci_low,
                         None if rec.ci_high is None else sign * rec.ci_high, rid))
    if len(rows) < 2:
        return None
    colors = {"gross_savings_year": figures.TREATED_COLOR, "programme_investment": figures.CONTROL_COLOR,
              "net_savings_year": "#7a9e7e"}
    png = figures.interval_bars([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                                [r[3] for r in rows], lambda x: ctx.fmt.eur(x), ctx.t("fig_syn_savings_axis"),
                                colors=[colors[r[4]] for r in rows], width=4.6)
    alt = "; ".join(f"{r[0]} : {ctx.fmt.eur(r[1])}" for r in rows)
    return ctx.figure(ctx.t("fig_syn_savings"), png, alt=alt)


def survey_chart(ctx: ReportContext) -> Block | None:
    recs = [r for r in (shown(ctx, k) for k in SURVEY_HIGHLIGHTS) if r is not None and ctx.unit_of(r.id) == "share"]
    if not recs:
        return None
    png = figures.interval_bars([ctx.label_of(r.id) for r in recs], [float(r.value) for r in recs],
                                [r.ci_low for r in recs], [r.ci_high for r in recs], lambda x: ctx.fmt.pct(x, 0),
                                published=[ctx.published_of(r.id) for r in recs],
                                published_label=ctx.t("col_published"), xlim=(0, 1.12), width=4.6)
    alt = "; ".join(f"{ctx.label_of(r.id)} : {ctx.fmt.pct(r.value, 0)}" for r in recs)
    return ctx.figure(ctx.t("fig_syn_surveys"), png, alt=alt)
