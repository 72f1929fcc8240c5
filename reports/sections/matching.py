"""Section 3: the matching as `equilibres match` ran it (saved parameters and sizes), covariate balance
before and after, and the ÉQUILIBRES patients left without a comparable control."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from pipeline.facts import MatchingFacts
from pipeline.privacy import is_small
from pipeline.result_tables import covariate_kind
from pipeline.results import StepParams
from reports import figures
from reports.context import Block, ReportContext, Section
from reports.format import MISSING, as_float, flatten, is_num
from reports.i18n import has_text
from reports.records import indicator_rows
from reports.tables import flow_table, frame_table

# Rows of the balance table in the body (the least balanced covariates after matching).
SHORT_BALANCE_ROWS = 10
# The settings and sizes of the matching shown in the body, in this order (all of them in the annex).
MAIN_SETTINGS = ("method", "exact", "on", "transform", "caliper", "caliper_scale", "caliper_width", "ratio",
                 "replace")
MAIN_SIZES = ("treated", "treated_matched", "unmatched_treated", "controls_matched", "pairs", "ess_controls",
              "strata_matched")


def build(ctx: ReportContext) -> Section:
    s = Section("matching", ctx.t("sec_matching"))
    s.blocks.append(ctx.p(ctx.t("matching_intro")))
    params = ctx.params("match")
    if params is not None:
        s.blocks.extend(settings_blocks(ctx, params))
    if ctx.results.has("attrition_matching"):
        am = ctx.results.table("attrition_matching")
        am = am[am["stage"].astype(str) != "cohort"]
        if not am.empty:
            s.blocks.append(flow_table(ctx, am.reset_index(drop=True), ctx.t("tab_matching_flow")))
    s.blocks.extend(balance_blocks(ctx))
    s.blocks.extend(unmatched_blocks(ctx))
    extra = indicator_rows(ctx, "matching", exclude={"unmatched_share_complex"})
    if extra:
        s.blocks.append(extra)
    return s


def settings_blocks(ctx: ReportContext, params: StepParams) -> list[Block]:
    """The matching's saved settings and sizes: the main ones in the body, all of them in the annex."""
    saved = params.config.section("matching") if "matching" in params.sections else {}
    flat = flatten(dict(sorted(saved.items())))
    facts = params.facts if isinstance(params.facts, MatchingFacts) else None
    if facts is not None and is_num(facts.caliper_width):
        flat["caliper_width"] = float(facts.caliper_width)
    blocks: list[Block] = []
    rows = {k: [Markup("<code>{}</code>").format(k), ctx.parameter(v)] for k, v in flat.items()}
    if rows:
        main = [rows[k] for k in MAIN_SETTINGS if k in rows]
        cols = [ctx.t("param"), ctx.t("value")]
        if len(main) < len(rows):
            blocks.append(ctx.table(ctx.t("tab_matching_params_main"), cols, main, align=["l", "l"], cls="params"))
            ctx.to_annex("matching", lambda: ctx.table(ctx.t("tab_matching_params"), cols, list(rows.values()),
                                                       align=["l", "l"], cls="params", annex=True))
        else:
            blocks.append(ctx.table(ctx.t("tab_matching_params"), cols, list(rows.values()), align=["l", "l"],
                                    cls="params"))
    sizes = facts.sizes.to_dict() if facts is not None else {}
    if sizes:
        shown = {k: [size_label(ctx, k), size_value(ctx, k, v)] for k, v in sizes.items()}
        main = [shown[k] for k in MAIN_SIZES if k in shown]
        cols = [ctx.t("col_group"), ctx.t("col_n")]
        blocks.append(ctx.table(ctx.t("tab_matching_sizes_main"), cols, main, note=ctx.masked_note()))
        ctx.to_annex("matching", lambda: ctx.table(ctx.t("tab_matching_sizes"), cols, list(shown.values()),
                                                   note=ctx.masked_note(), annex=True))
        blocks.append(ctx.annex_pointer("matching_settings_annex"))
    return blocks


def size_value(ctx: ReportContext, key: str, v: Any) -> str:
    """A saved size: counts of people masked below the threshold, shares as percentages."""
    is_share, is_count = "share" in key, not (key.startswith("ess") or "share" in key or "max" in key)
    if v is None or (is_count and is_small(v, ctx.k)):
        return ctx.fmt.masked(ctx.k)
    if is_share:
        return ctx.fmt.pct(v, 1)
    return ctx.fmt.integer(v) if is_count or "max" in key else ctx.fmt.number(v, 1)


def size_label(ctx: ReportContext, key: str) -> str:
    k = f"size_{key}"
    return ctx.t(k) if has_text(k, ctx.lang) else ctx.value(key)


def cov_label(ctx: ReportContext, cov: str) -> str:
    if "=" in cov:
        var, _, level = cov.partition("=")
        return f"{cov_label(ctx, var)} = {ctx.value(level)}"
    return ctx.value(cov)


def balance_blocks(ctx: ReportContext) -> list[Block]:
    """Means and standardised differences before and after matching, and the love plot."""
    bal = ctx.results.table("balance")
    if bal is None or bal.empty or "smd" not in bal.columns:
        return [ctx.notice_missing("balance")]
    numeric_cols = [c for c in ("mean_treated", "mean_control", "smd", "variance_ratio") if c in bal.columns]
    empty = bal.groupby(bal["covariate"].astype(str))[numeric_cols].apply(lambda g: g.isna().all().all())
    hidden = [c for c, e in empty.items() if e]
    covs = [c for c in dict.fromkeys(bal["covariate"].astype(str)) if c not in hidden]

    def get(cov: str, stage: str, col: str) -> Any:
        if col not in bal.columns:
            return None
        sel = bal[(bal["covariate"].astype(str) == cov)]
        if "stage" in bal.columns:
            sel = sel[sel["stage"].astype(str).str.lower() == stage]
        return sel[col].iloc[0] if len(sel) else None
    mean_cols = [c for c in ("mean_treated", "mean_control") if c in bal.columns]
    cols = [ctx.t("col_covariate")]
    for stage in ("before", "after"):
        cols += [f"{ctx.t(m.replace('mean_', 'col_mean_'))} ({ctx.t(stage).lower()})" for m in mean_cols]
    cols += [ctx.t("col_smd_before"), ctx.t("col_smd_after")]
    has_vr = "variance_ratio" in bal.columns
    if has_vr:
        cols += [ctx.t("col_vr_before"), ctx.t("col_vr_after")]
    rows, smds, short = [], [], []
    for cov in covs:
        row = [cov_label(ctx, cov)]
        for stage in ("before", "after"):
            for m in mean_cols:
                v = get(cov, stage, m)
                row.append(ctx.fmt.eur(v) if covariate_kind(cov) == "eur" else ctx.fmt.number(v, 2))
        b, a = as_float(get(cov, "before", "smd")), as_float(get(cov, "after", "smd"))
        row += [ctx.fmt.number(b, 3), ctx.fmt.number(a, 3)]
        if has_vr:
            row += [ctx.fmt.number(get(cov, "before", "variance_ratio"), 2),
                    ctx.fmt.number(get(cov, "after", "variance_ratio"), 2)]
        rows.append(row)
        if b is not None or a is not None:
            smds.append((cov_label(ctx, cov), b, a))
        short.append((abs(a) if a is not None else -1.0, abs(b) if b is not None else -1.0, len(short),
                      [row[0], *[ctx.fmt.eur(get(cov, "after", m)) if covariate_kind(cov) == "eur"
                                 else ctx.fmt.number(get(cov, "after", m), 2) for m in mean_cols],
                       ctx.fmt.number(b, 3), ctx.fmt.number(a, 3)]))
    has_denom = "smd_denominator" in bal.columns and bal["smd_denominator"].notna().any()
    denom = bal["smd_denominator"].dropna().astype(str).iloc[0] if has_denom else MISSING
    note = ctx.html("balance_note", denom=ctx.value(denom))
    if hidden:
        note = note + Markup(" ") + ctx.html("balance_hidden", n=len(hidden))
    # The body shows the covariates least balanced after matching; every covariate is in the annex.
    worst = sorted(short, key=lambda r: (-r[0], -r[1], r[2]))[:SHORT_BALANCE_ROWS]
    short_cols = [ctx.t("col_covariate"), *[f"{ctx.t(m.replace('mean_', 'col_mean_'))} ({ctx.t('after').lower()})"
                                            for m in mean_cols], ctx.t("col_smd_before"), ctx.t("col_smd_after")]
    blocks = [ctx.table(ctx.t("tab_balance_short"), short_cols, [r[3] for r in worst], note=note),
              ctx.annex_pointer("balance_short_all" if len(worst) == len(rows) else "balance_short_some",
                                n=len(worst), total=len(rows))]
    ctx.to_annex("matching", lambda: ctx.table(ctx.t("tab_balance"), cols, rows, note=note))
    if smds:
        png = figures.love_plot([c for c, _, _ in smds], [b for _, b, _ in smds], [a for _, _, a in smds],
                                {"before": ctx.t("before"), "after": ctx.t("after"), "left_out": ctx.t("love_left_out")},
                                xlabel="|SMD|" if ctx.lang == "en" else "|DMS|")
        blocks.append(ctx.figure(ctx.t("fig_love"), png))
    return blocks


def unmatched_blocks(ctx: ReportContext) -> list[Block]:
    """The share of complex-care patients without a control, and the unmatched patients by profile."""
    blocks: list[Block] = []
    rec = ctx.records.get("unmatched_share_complex")
    if rec is not None:
        masked = ctx.rec_masked(rec)
        value = ctx.fmt.masked(ctx.k) if masked else (
            ctx.fmt.value(rec.value, "share") + " " + ctx.fmt.ci(rec.ci_low, rec.ci_high, "share")
            if rec.ci_low is not None else ctx.fmt.value(rec.value, "share"))
        blocks.append(ctx.p(ctx.html("unmatched_text", value=value,
                                     published=ctx.fmt.published(rec.published, "share"))))
        any_reason = (rec.arm_values or {}).get("complex_unmatched_any_reason")
        if any_reason is not None and not masked:
            blocks.append(ctx.p(ctx.html("unmatched_any_reason_text", value=ctx.fmt.value(any_reason, "share"))))
    up = ctx.results.table("unmatched_profiles")
    if up is None or up.empty:
        blocks.append(ctx.notice_missing("unmatched_profiles"))
        return blocks
    means = [c for c in up.columns if c.startswith(("mean_matched_", "mean_unmatched_"))]
    reasons = [c for c in up.columns if c.startswith("share_reason_")]
    blocks.append(frame_table(ctx, "unmatched_profiles", up, ctx.t("tab_unmatched"), drop=[*means, *reasons],
                              rename={"profile": ctx.t("col_profile")}))
    covs = list(dict.fromkeys(c.split("_", 2)[2] for c in means))
    picks = [p for p in ("overall", "complex") if p in set(up["profile"].astype(str))]
    if covs and picks:
        sep = " : " if ctx.lang == "fr" else ": "
        cols = [ctx.t("col_covariate")]
        for p in picks:
            cols += [f"{ctx.value(p)}{sep}{ctx.t('flow_matched').lower()}",
                     f"{ctx.value(p)}{sep}{ctx.t('flow_unmatched').lower()}"]
        rows = []
        for cov in covs:
            row = [cov_label(ctx, cov)]
            for p in picks:
                r = up[up["profile"].astype(str) == p].iloc[0]
                for side in ("matched", "unmatched"):
                    v = r.get(f"mean_{side}_{cov}")
                    row.append(ctx.fmt.secondary() if not is_num(v) else
                               ctx.fmt.eur(v) if covariate_kind(cov) == "eur" else ctx.fmt.number(v, 1))
            rows.append(row)
        blocks.append(ctx.table(ctx.t("tab_unmatched_means"), cols, rows, note=ctx.masked_note()))
    return blocks
