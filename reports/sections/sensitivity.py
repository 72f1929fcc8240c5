"""Section 7: sensitivity analyses (specification curve over the matching grid, difference-in-
differences, regression cross-check)."""

from __future__ import annotations

import pandas as pd

from pipeline.facts import SweepFacts
from pipeline.results import StepParams
from reports import diagnostics, figures
from reports.context import Block, ReportContext, Section
from reports.format import as_float
from reports.records import indicator_rows
from reports.tables import frame_table, unit_kind

# The settings that make a specification of the sweep (columns of sweep.csv), and where the main
# matching saved each of them (matching/params.json sections).
SPEC_SETTINGS = {"method": "matching", "caliper": "matching", "ratio": "matching", "transform": "matching",
                 "replace": "matching", "age_band_width": "cohort"}
SWEEP_SHOWN = ("spec", "method", "caliper", "ratio", "age_band_width", "transform", "replace",
               "n_treated_matched", "max_abs_smd_after", "unmatched_share_complex")


def build(ctx: ReportContext) -> Section:
    s = Section("sensitivity", ctx.t("sec_sensitivity"))
    s.blocks.append(ctx.p(ctx.t("sens_intro")))
    sw = ctx.results.table("sweep")
    if sw is None or sw.empty:
        s.blocks.append(ctx.notice_missing("sweep"))
    else:
        s.blocks.extend(sweep_blocks(ctx, sw))
    for key, cap in (("did", "tab_did"), ("regression_crosscheck", "tab_regression")):
        if ctx.results.has(key):
            s.blocks.append(frame_table(ctx, key, ctx.results.table(key), ctx.t(cap)))
        else:
            s.blocks.append(ctx.notice_missing(key))
    tab = indicator_rows(ctx, "sensitivity")
    if tab:
        s.blocks.append(tab)
    s.blocks.extend(diagnostics.blocks(ctx))
    return s


def sweep_blocks(ctx: ReportContext, sw: pd.DataFrame) -> list[Block]:
    """The spread of the estimate the sweep drew its curve for, the curve, and the specifications."""
    blocks: list[Block] = []
    sweep = ctx.params("sweep")
    est = sweep.facts.curve_estimate if sweep is not None and isinstance(sweep.facts, SweepFacts) else None
    est = est if est in sw.columns else None
    if est:
        vals = pd.to_numeric(sw[est], errors="coerce")
        kind = unit_kind(ctx.unit_of(est))
        blocks.append(ctx.p(ctx.t(
            "sweep_summary", n=len(sw), what=ctx.label_of(est),
            median=ctx.fmt.cell(vals.median(), kind, ctx.value), lo=ctx.fmt.cell(vals.min(), kind, ctx.value),
            hi=ctx.fmt.cell(vals.max(), kind, ctx.value))))
        if vals.notna().all():
            lo, hi = f"{est}_ci_low", f"{est}_ci_high"
            png = figures.specification_curve(
                list(vals), [as_float(x) for x in sw[lo]] if lo in sw.columns else [None] * len(sw),
                [as_float(x) for x in sw[hi]] if hi in sw.columns else [None] * len(sw),
                main_spec(sw, ctx.params("match")), ctx.label_of(est), ctx.t("sweep_rank"),
                (lambda v: ctx.fmt.pct(v, 0)) if kind == "share" else
                (lambda v: ctx.fmt.eur(v)) if kind == "eur" else (lambda v: ctx.fmt.number(v, 2)))
            blocks.append(ctx.figure(ctx.t("fig_spec_curve"), png))
    keep = [c for c in (*SWEEP_SHOWN, est) if c and c in sw.columns]
    # Every specification is a reference table: in the annex, the curve here.
    blocks.append(ctx.annex_pointer())
    ctx.to_annex("sensitivity", lambda: frame_table(
        ctx, "sweep", sw, ctx.t("tab_sweep"), max_rows=70, keep=list(dict.fromkeys(keep)),
        rename={c: ctx.label_of(c) for c in ("unmatched_share_complex", est) if c}, annex=True))
    return blocks


def main_spec(sw: pd.DataFrame, matching: StepParams | None) -> int | None:
    """Row of the sweep whose settings are those of the main matching (as `equilibres match` saved
    them), if exactly one is."""
    if matching is None:
        return None
    sel = pd.Series(True, index=sw.index)
    for name, section in SPEC_SETTINGS.items():
        if name in sw.columns:
            want = getattr(getattr(matching.config, section), name)
            sel &= sw[name].astype(str) == str(want)
    hits = sw.index[sel]
    return int(hits[0]) if len(hits) == 1 else None
