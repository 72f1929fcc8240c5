"""DCIR outpatient claims (ER_PRS_F): standard quality rules, regularisation netting, categories.

The whole stage is one query: every line gets a ``fate`` (the first rule that drops it, 0 = kept),
identical lines are netted within their fate, linked to persons, and the result is summarised:
kept claims by person and care month with a spending column per category (claim rows), and the
audit's counters of every fate (fate rows). Spending, act counts and the audit trail (rows and
euros per rule) all come from that summary, so the extract is read once and the audit costs no
extra scan. The same query checks ER_PRS_F's line key (a branch of it, whose count is one more row
of the summary: ``FATE_KEY_CHECK``).

Kept claims of a person who may have died are also keyed by care day (``care_date``) over the
``cleaning.eol_daily_days`` days before each possible death date, so the outputs stage can write the
end-of-life spending per care day (``clean/eol_daily.parquet``) from the same summary: the care-day
key rides on the person join the stage already makes, and splits only those persons' last months.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import pandas as pd

from pipeline.config import CleaningSettings, StudyConfig
from pipeline.io import PipelineError
from pipeline.stages.ingest import cast_to_contract
from pipeline.stages.pmsi import DEATH_EXIT
from pipeline.stages.rules import (
    DISABLED_PREFIX_FR,
    AuditRow,
    Rule,
    audit_from_fates,
    fate_expr,
    flag_row,
    in_list,
    month_of,
    rule,
)

ER_PRS_F_TYPES = {
    "BEN_NIR_PSA": "string", "BEN_RNG_GEM": "int32", "EXE_SOI_DTD": "date", "EXE_SOI_DTF": "date",
    "FLX_DIS_DTD": "date", "PRS_NAT_REF": "int32", "PRS_ACT_QTE": "float64", "BSE_REM_MNT": "float64",
    "BSE_PRS_NAT": "int32", "DPN_QLF": "int32", "CPL_MAJ_TOP": "int32", "PSE_ACT_NAT": "int32",
    "PSE_SPE_COD": "int32",
}

# Regularisation netting groups lines that describe the same care: same beneficiary, same care
# dates, same prestation, same professional, same complement/surcharge status and qualifiers. The
# nine ER_PRS_F join keys (flux dates and emitter, organism, order numbers) are left out on purpose:
# a correction arrives in a later flux, so it differs from the original line only by those keys and
# by the sign of its quantity and amounts (SNDS documentation, fiches/sas_prestation_dcir).
NETTING_KEY = [
    "BEN_NIR_PSA", "BEN_RNG_GEM", "EXE_SOI_DTD", "EXE_SOI_DTF", "PRS_NAT_REF", "PSE_ACT_NAT",
    "PSE_SPE_COD", "CPL_MAJ_TOP", "DPN_QLF", "BSE_PRS_NAT",
]


@dataclass(frozen=True)
class ClaimsWindow:
    """Care dates accepted and the last flux date accepted (claims_end + flux_lag_months), and the
    plausibility limits of a line: days its care may start after its flux date, and the maximum
    |BSE_REM_MNT| per spending-category code (index 0 = 'other', then the configured categories; empty =
    no limit)."""

    claims_start: dt.date
    claims_end: dt.date
    flux_cutoff: dt.date
    max_care_after_flux_days: int = 31
    amount_limits: tuple[float, ...] = ()

    @classmethod
    def from_config(cls, config: StudyConfig) -> ClaimsWindow:
        s, c = config.study, config.cleaning
        limits = tuple(c.max_line_amount(name) for name in ["other", *c.categories])
        return cls(s.claims_start, s.claims_end, add_months(s.claims_end, s.flux_lag_months),
                   c.max_care_after_flux_days, limits)


def add_months(d: dt.date, months: int) -> dt.date:
    """``d`` plus ``months`` calendar months, clipped to the end of the month (31 Dec + 6 = 30 Jun)."""
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    return dt.date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


# -- drop rules, applied to each line in this order ----------------------------------------------


@rule("dcir", "drop")
def dpn_qlf_71(t: ir.Table, w: ClaimsWindow) -> ir.BooleanValue:
    """Drop DPN_QLF = 71 lines: public-hospital activity sent for information only, paid elsewhere — fiches/sas_prestation_dcir"""
    return t.DPN_QLF == 71


@rule("dcir", "drop")
def bse_prs_nat_0(t: ir.Table, w: ClaimsWindow) -> ir.BooleanValue:
    """Drop BSE_PRS_NAT = 0 lines: no reimbursed prestation behind the line — fiches/montant_soins_de_ville"""
    return t.BSE_PRS_NAT == 0


@rule("dcir", "drop")
def care_window(t: ir.Table, w: ClaimsWindow) -> ir.BooleanValue:
    """Drop lines whose care start EXE_SOI_DTD is missing or outside [claims_start, claims_end] — fiches/sas_prestation_dcir"""
    d = t.EXE_SOI_DTD
    return d.isnull() | (d < ibis.date(w.claims_start)) | (d > ibis.date(w.claims_end))


@rule("dcir", "drop")
def flux_window(t: ir.Table, w: ClaimsWindow) -> ir.BooleanValue:
    """Drop lines paid in a flux month after claims_end + flux_lag_months (18 flux months per care year) — fiches/sas_prestation_dcir"""
    return t.FLX_DIS_DTD > ibis.date(w.flux_cutoff)


@rule("dcir", "drop")
def care_after_flux(t: ir.Table, w: ClaimsWindow) -> ir.BooleanValue:
    """Drop lines whose care starts more than max_care_after_flux_days after their flux date FLX_DIS_DTD (a flux pays care already given) — fiches/sas_prestation_dcir"""
    return t.EXE_SOI_DTD > t.FLX_DIS_DTD + ibis.interval(days=w.max_care_after_flux_days)


@rule("dcir", "drop")
def amount_above_maximum(t: ir.Table, w: ClaimsWindow) -> ir.BooleanValue:
    """Drop lines whose amount BSE_REM_MNT, in absolute value, exceeds the plausible maximum of their spending category (a corrupted amount) — fiches/montant_soins_de_ville"""
    # ``line_category`` is the category code of ``line_category_expr`` (claims_with_fate adds it).
    if not w.amount_limits:
        return ibis.literal(False)
    if len(set(w.amount_limits)) == 1:
        limit = ibis.literal(w.amount_limits[0])
    else:
        limit = ibis.literal(list(w.amount_limits))[t.line_category]
    return t.BSE_REM_MNT.abs() > limit


@rule("dcir", "merge")
def regularisation_netting(t: ir.Table) -> ir.BooleanValue:
    """Sum identical lines (NETTING_KEY) and keep groups whose summed quantity is > 0 — fiches/sas_prestation_dcir"""
    return t.qty.isnull() | (t.qty <= 0)


@rule("dcir", "drop")
def link_to_beneficiary(t: ir.Table) -> ir.BooleanValue:
    """Drop claims whose BEN_NIR_PSA/BEN_RNG_GEM is not in IR_BEN_R (no person to attribute them to) — fiches/fiche_beneficiaire"""
    return t.person_no.isnull()  # person_no: the integer identity of the person the map gives (person_keys)


@rule("dcir", "flag")
def cpl_maj_top_not_an_act(t: ir.Table) -> ir.BooleanValue:
    """CPL_MAJ_TOP >= 2 lines (surcharges, flat participations) count in euros but not as acts — fiches/sas_prestation_dcir"""
    return t.CPL_MAJ_TOP >= 2


# The plausibility rules (care_after_flux, amount_above_maximum) come after the standard ones: they
# name implausible lines among those the SNDS rules would keep.
LINE_RULES: list[Rule] = [dpn_qlf_71, bse_prs_nat_0, care_window, flux_window, care_after_flux,
                          amount_above_maximum]
FATE_NETTED = len(LINE_RULES) + 1
FATE_UNLINKED = len(LINE_RULES) + 2
# The summary row that is not claims: the check of ER_PRS_F's line key, made in the stage's query
# (``rules.with_check_row``); its ``n_lines`` is the number of lines whose key repeats another's.
FATE_KEY_CHECK = -1


def line_rules_enabled(cleaning: CleaningSettings) -> list[bool]:
    return [cleaning.drop_dpn_qlf_71, cleaning.drop_bse_prs_nat_0, True, cleaning.apply_flux_window, True, True]


# -- categories ----------------------------------------------------------------------------------


def category_codes(cleaning: CleaningSettings) -> dict[str, int]:
    """The code of each spending category in ``category_code_expr``: 0 for 'other', then 1, 2... in
    the configured order."""
    return {name: code for code, name in enumerate(["other", *cleaning.categories])}


def category_code_expr(t: ir.Table, cleaning: CleaningSettings) -> ir.IntegerValue:
    """The spending category of a line as a small code: 1 + the index of the first configured
    category whose criteria all hold, 0 ('other') when none does.

    Within a category every listed criterion must hold (PRS_NAT_REF, PSE_ACT_NAT, PSE_SPE_COD), with
    OR inside a list; a category listing no criterion matches nothing. A null code fails its
    criterion (a CASE branch whose condition is null is not taken). The claims summary compares this
    8-bit code, not a name, in its per-category sums (``claims_summary``).
    """
    branches = []
    codes = category_codes(cleaning)
    for name, cat in cleaning.categories.items():
        code = codes[name]
        criteria = [
            in_list(t[col], values)
            for col, values in (("PRS_NAT_REF", cat.prs_nat_ref), ("PSE_ACT_NAT", cat.pse_act_nat),
                                ("PSE_SPE_COD", cat.pse_spe_cod))
            if values
        ]
        if not criteria:
            continue
        cond = criteria[0]
        for c in criteria[1:]:
            cond = cond & c
        branches.append((cond, ibis.literal(code, "int8")))
    if not branches:
        return ibis.literal(0, "int8")
    return ibis.cases(*branches, else_=ibis.literal(0, "int8"))


# -- end-of-life care days ----------------------------------------------------------------------


def possible_deaths(persons_base: ir.Table, mco_b: ir.Table, mco_c: ir.Table, nir_map: ir.Table) -> ir.Table:
    """person_id → death_date, one row per date a person may turn out to have died on: the IR_BEN_R
    date (sentinel already null) and the exit of every PMSI stay with SOR_MOD 9, before any PMSI rule.

    The death date the outputs stage settles on (IR_BEN_R if plausible, else the earliest valid PMSI
    death exit) is always one of these; the DCIR stage cannot wait for it, since it also needs the PMSI
    rules and this stage's own last care dates. ``mco_b`` and ``mco_c`` are the stacked yearly tables
    (``pmsi.union_years``); the person link is the PMSI stage's (NIR_ANO_17 = BEN_NIR_PSA).
    """
    keys = ["pmsi_year", "ETA_NUM", "RSA_NUM"]
    b = mco_b.filter(mco_b.SOR_MOD.strip() == DEATH_EXIT).select(*keys)
    s = b.join(mco_c, keys).select(mco_c.NIR_ANO_17, death_date=mco_c.EXE_SOI_DTF)
    pmsi = s.join(nir_map, s.NIR_ANO_17 == nir_map.BEN_NIR_PSA).select(nir_map.person_id, s.death_date)
    ben = persons_base.select("person_id", death_date=persons_base.ben_death_date)
    both = ibis.union(ben, pmsi, distinct=False)
    return both.filter(both.death_date.notnull())


def eol_day_ranges(deaths: ir.Table, days: int) -> ir.Table:
    """person_id → eol_from, eol_to: the care days whose kept claims are keyed by day, from ``days − 1``
    days before a person's earliest possible death to the latest one (one range per person, so the
    person join never repeats a claim; persons whose sources disagree get a wider range)."""
    g = deaths.group_by("person_id").aggregate(first=deaths.death_date.min(), last=deaths.death_date.max())
    return g.select("person_id", eol_from=g["first"] - ibis.interval(days=days - 1), eol_to=g["last"])


# -- stage functions -----------------------------------------------------------------------------


def claims_with_fate(er_prs_f: ir.Table, window: ClaimsWindow, cleaning: CleaningSettings) -> ir.Table:
    """ER_PRS_F lines with contract types and the number of the line rule that drops them (0 kept)."""
    t = with_line_category(cast_to_contract(er_prs_f, ER_PRS_F_TYPES, "ER_PRS_F"), window, cleaning)
    return t.mutate(fate=fate_expr(t, LINE_RULES, line_rules_enabled(cleaning), w=window))


def with_line_category(t: ir.Table, window: ClaimsWindow, cleaning: CleaningSettings) -> ir.Table:
    """ER_PRS_F lines with ``line_category``, the category code ``amount_above_maximum`` reads (only
    computed when the limits differ by category)."""
    if len(set(window.amount_limits)) > 1:
        return t.mutate(line_category=category_code_expr(t, cleaning))
    return t


def person_keys(key_map: ir.Table, eol_ranges: ir.Table | None = None) -> ir.Table:
    """The person map (BEN_NIR_PSA, BEN_RNG_GEM → person_id) with integer identities and the
    person's end-of-life range: ``key_no`` numbers the (BEN_NIR_PSA, BEN_RNG_GEM) pairs, ``person_no``
    the persons, ``eol_from``/``eol_to`` (null without a possible death, see ``eol_day_ranges``).

    The stage groups and joins tens of millions of rows on these integers rather than on the
    17-character BEN_NIR_PSA and person_id strings, which DuckDB compares through pointers: about a
    quarter less CPU for the netting of 17 M lines. The numbering is internal to one query."""
    if eol_ranges is not None:
        key_map = key_map.left_join(eol_ranges, "person_id").select(
            key_map, eol_ranges.eol_from, eol_ranges.eol_to)
    else:
        key_map = key_map.mutate(eol_from=ibis.null("date"), eol_to=ibis.null("date"))
    return key_map.mutate(
        key_no=ibis.row_number().over(order_by=[key_map.BEN_NIR_PSA, key_map.BEN_RNG_GEM]).cast("int64"),
        person_no=ibis.dense_rank().over(order_by=key_map.person_id).cast("int64"),
    )


def claims_linked(lines: ir.Table, keys: ir.Table) -> ir.Table:
    """ER_PRS_F lines with the ``key_no`` of their BEN_NIR_PSA/BEN_RNG_GEM (null when IR_BEN_R lacks it)."""
    k = keys.select("BEN_NIR_PSA", "BEN_RNG_GEM", "key_no")
    return lines.left_join(k, ["BEN_NIR_PSA", "BEN_RNG_GEM"]).select(lines, k.key_no)


def claims_netted(lines: ir.Table, cleaning: CleaningSettings) -> ir.Table:
    """Identical lines netted within their fate; kept groups with summed quantity <= 0 get FATE_NETTED.

    ``lines`` are linked (``claims_linked``): a linked line's BEN_NIR_PSA/BEN_RNG_GEM are replaced by
    their ``key_no`` in the grouping (the same groups, on one integer); only unlinked lines keep them.
    Lines already dropped by a line rule are grouped too (never with kept lines: the fate is part of
    the key), which only serves the audit: ``n_lines`` keeps their count. ``regularised`` is 1 for a
    netted line that contained a negative line.
    """
    unlinked = lines.key_no.isnull()
    t = lines.mutate(
        BEN_NIR_PSA=ibis.cases((unlinked, lines.BEN_NIR_PSA), else_=ibis.null("string")),
        BEN_RNG_GEM=ibis.cases((unlinked, lines.BEN_RNG_GEM), else_=ibis.null("int32")),
    )
    is_negative = (t.PRS_ACT_QTE < 0) | (t.BSE_REM_MNT < 0)
    if cleaning.net_regularisations:
        g = t.group_by(["key_no", *NETTING_KEY, "fate"]).aggregate(
            n_lines=t.count(),
            qty=t.PRS_ACT_QTE.sum(),
            euros=t.BSE_REM_MNT.sum(),
            regularised=is_negative.fill_null(False).cast("int8").max(),
        )
        netted = regularisation_netting(g)  # never null: a null sum counts as netted away
        return g.mutate(fate=ibis.cases(((g.fate == 0) & netted, ibis.literal(FATE_NETTED, "int8")),
                                        else_=g.fate).cast("int8"))
    return t.select(
        "key_no", *NETTING_KEY, "fate", n_lines=ibis.literal(1, "int64"), qty=t.PRS_ACT_QTE, euros=t.BSE_REM_MNT,
        regularised=is_negative.fill_null(False).cast("int8"),
    )


# The panel's act count is the quantity of this category's lines (CONTRACTS.md: nursing_acts).
NURSING_ACTS = "nursing_acts"


def spend_column(category: str) -> str:
    """The summary's (and the panel's) spending column of a DCIR category."""
    return f"spend_{category}"


def summary_amount_columns(cleaning: CleaningSettings) -> list[str]:
    """The amounts of the claims summary that the outputs stage sums: spending per category (configured
    order, then 'other'), the nursing act count and the experiment hours (CONTRACTS.md: the panel's
    DCIR columns)."""
    return [*(spend_column(c) for c in cleaning.category_names), "nursing_acts", "experiment_hours"]


def claims_summary(netted: ir.Table, keys: ir.Table, cleaning: CleaningSettings) -> ir.Table:
    """Netted claims linked to persons and summarised (the stage output), in two kinds of rows:

    - claim rows: kept claims by person, care month and care day (end-of-life ranges only), fate 0,
      with one spending column per category: person_id, month, care_date (EXE_SOI_DTD inside the
      person's end-of-life range, else null), spend_<category> (euros of each category,
      ``summary_amount_columns``), nursing_acts (quantity of nursing_acts lines with CPL_MAJ_TOP < 2),
      experiment_hours (quantity of experiment payments), last_care (latest EXE_SOI_DTD); their
      counters are null;
    - fate rows: one per fate (kept ones included), person_id, month and care_date null, with the
      audit counters: n_lines (ER_PRS_F lines), n_groups (netted lines), n_regularised (netted lines
      that contained a negative line), lines_not_an_act (lines with CPL_MAJ_TOP >= 2), euros
      (BSE_REM_MNT), abs_euros (sum of the netted lines' absolute amounts); their amounts are null.

    ``keys``: the person map of :func:`person_keys`. The panel is one row per person and month with a
    column per category, so the claim rows are too (keyed by category they had five times the rows,
    written here and read back by the outputs stage). The audit counters are aggregated apart, by fate
    only, because every aggregate of the large person × month grouping costs one state per group and
    one update per netted line: 22 states made that grouping spill at 42 M lines (8 GB, twice the
    time) where the 16 the panel needs fit; the netted lines then feed two aggregates, which DuckDB
    does from one materialised copy. Persons are grouped on their integer ``person_no`` and named
    after grouping; ``n_lines`` is summed as float64, exact for counts below 2**53, which avoids
    DuckDB's 128-bit integer sum state. The end-of-life ranges travel with the (small) person map, so
    the claims meet them in the person join already made.
    """
    k = keys.select("key_no", "person_no", "eol_from", "eol_to")
    t = netted.left_join(k, "key_no").select(netted, k.person_no, k.eol_from, k.eol_to)
    # Only what the two aggregates read, so the materialised copy is narrow.
    t = t.select(
        "person_no", "EXE_SOI_DTD", "n_lines", "regularised", "euros", "qty",
        fate=ibis.cases(((t.fate == 0) & link_to_beneficiary(t), ibis.literal(FATE_UNLINKED, "int8")),
                        else_=t.fate).cast("int8"),
        care_date=ibis.cases((t.EXE_SOI_DTD.between(t.eol_from, t.eol_to), t.EXE_SOI_DTD), else_=ibis.null("date")),
        category_code=category_code_expr(t, cleaning),
        is_act=(t.CPL_MAJ_TOP < 2).fill_null(True),
        is_experiment=in_list(t.PRS_NAT_REF, list(cleaning.experiment.prs_nat_ref)).fill_null(False),
    )
    return ibis.union(_claim_rows(t, keys, cleaning), _fate_rows(t, cleaning), distinct=False)


def _claim_rows(t: ir.Table, keys: ir.Table, cleaning: CleaningSettings) -> ir.Table:
    """The summary's claim rows from the netted lines of :func:`claims_summary` (counters null)."""
    zero = ibis.literal(0.0)
    c = t.filter(t.fate == 0)
    c = c.mutate(month=month_of(c.EXE_SOI_DTD))
    codes = category_codes(cleaning)
    spend = {spend_column(name): ibis.cases((c.category_code == codes[name], c.euros), else_=zero).sum()
             for name in cleaning.category_names}
    nursing_code = codes.get(NURSING_ACTS)
    nursing = (ibis.cases(((c.category_code == nursing_code) & c.is_act, c.qty), else_=zero).sum()
               if nursing_code is not None else zero)
    s = c.group_by(["person_no", "month", "care_date"]).aggregate(
        **spend,
        nursing_acts=nursing,
        experiment_hours=ibis.cases((c.is_experiment, c.qty), else_=zero).sum(),
        last_care=c.EXE_SOI_DTD.max(),
    )
    names = keys.select("person_no", "person_id").distinct()
    s = s.left_join(names, "person_no").select(s, names.person_id)
    null_int, null_float = ibis.null("int64"), ibis.null("float64")
    return s.select(
        "person_id", "month", "care_date", fate=ibis.literal(0, "int8"), n_lines=null_int, n_groups=null_int,
        n_regularised=null_int, lines_not_an_act=null_int, euros=null_float, abs_euros=null_float,
        **{a: s[a] for a in summary_amount_columns(cleaning)}, last_care=s.last_care,
    )


def _fate_rows(t: ir.Table, cleaning: CleaningSettings) -> ir.Table:
    """The summary's fate rows from the netted lines of :func:`claims_summary`: the audit counters of
    each fate (person, month, care day and amounts null)."""
    n_lines = t.n_lines.cast("float64")
    g = t.group_by("fate").aggregate(
        n_lines=n_lines.sum(),
        n_groups=t.count().cast("int64"),
        n_regularised=t.regularised.cast("int64").sum(),
        lines_not_an_act=ibis.cases((t.is_act, ibis.literal(0.0)), else_=n_lines).sum(),
        euros=t.euros.sum(),
        abs_euros=t.euros.abs().sum(),
    )
    return g.select(
        person_id=ibis.null("string"), month=ibis.null("date"), care_date=ibis.null("date"), fate=g.fate,
        n_lines=g.n_lines.cast("int64"), n_groups=g.n_groups, n_regularised=g.n_regularised,
        lines_not_an_act=g.lines_not_an_act.cast("int64"), euros=g.euros, abs_euros=g.abs_euros,
        **{a: ibis.null("float64") for a in summary_amount_columns(cleaning)}, last_care=ibis.null("date"),
    )


def dcir_stage(er_prs_f: ir.Table, key_map: ir.Table, config: StudyConfig,
               eol_ranges: ir.Table | None = None) -> ir.Table:
    """The DCIR stage: raw ER_PRS_F and the person map to the claims summary (kept claims keyed by
    care day inside ``eol_ranges``, see ``eol_day_ranges``; none when it is not given)."""
    window = ClaimsWindow.from_config(config)
    keys = person_keys(key_map, eol_ranges)
    lines = claims_linked(claims_with_fate(er_prs_f, window, config.cleaning), keys)
    return claims_summary(claims_netted(lines, config.cleaning), keys, config.cleaning)


def kept_claims(summary: ir.Table) -> ir.Table:
    """The claim rows of the claims summary (kept claims by person, month and care day)."""
    return summary.filter((summary.fate == 0) & summary.person_id.notnull())


# -- audit ---------------------------------------------------------------------------------------


def claims_by_fate(summary: ir.Table) -> pd.DataFrame:
    """The claims summary in one aggregate by fate (index): everything the audit rows, the usable-claims
    check and the line-key check read, from one pass over the summary's small columns."""
    s = summary
    by_fate = s.group_by("fate").aggregate(
        n_lines=s.n_lines.sum(), n_groups=s.n_groups.sum(), n_reg=s.n_regularised.sum(), euros=s.euros.sum(),
        abs_euros=s.abs_euros.sum(), cpl2=s.lines_not_an_act.sum(),
    ).execute().set_index("fate")
    by_fate.index = by_fate.index.astype(int)
    return by_fate


def repeated_lines(by_fate: pd.DataFrame) -> int:
    """ER_PRS_F lines whose line key repeats another's, from the check row of the summary (0 without one)."""
    if FATE_KEY_CHECK not in by_fate.index:
        return 0
    return int(by_fate.loc[FATE_KEY_CHECK, "n_lines"] or 0)


def audit_dcir(summary: ir.Table, cleaning: CleaningSettings) -> list[AuditRow]:
    """Audit rows of every DCIR rule from one aggregate of the (small) claims summary."""
    return claims_audit_rows(claims_by_fate(summary), cleaning)


def claims_audit_rows(by_fate: pd.DataFrame, cleaning: CleaningSettings) -> list[AuditRow]:
    """Audit rows of every DCIR rule from the summary's aggregate by fate (:func:`claims_by_fate`)."""
    by_fate = by_fate[by_fate.index >= 0]

    def get(fate: int | Sequence[int], col: str) -> float:
        fates = [fate] if isinstance(fate, int) else list(fate)
        return float(by_fate.loc[by_fate.index.isin(fates), col].fillna(0).sum())

    total_lines = int(get(list(by_fate.index), "n_lines"))
    line_counts = {i: int(get(i, "n_lines")) for i in range(1, len(LINE_RULES) + 1)}
    line_euros = {i: get(i, "euros") for i in range(1, len(LINE_RULES) + 1)}
    rows = audit_from_fates(LINE_RULES, line_counts, line_euros, rows_in=total_lines,
                            enabled=line_rules_enabled(cleaning))
    entering = [0, FATE_NETTED, FATE_UNLINKED]
    lines_in = int(get(entering, "n_lines"))
    groups_out = int(get([0, FATE_UNLINKED], "n_groups"))
    net = AuditRow.for_rule(
        regularisation_netting, rows_in=lines_in, rows_out=groups_out,
        euros_dropped=get(FATE_NETTED, "euros"), rows_flagged=int(get(entering, "n_reg")),
    )
    if not cleaning.net_regularisations:
        net.description = f"(disabled by configuration) {net.description}"
        net.description_fr = DISABLED_PREFIX_FR + net.description_fr
    rows.append(net)
    kept_groups = int(get(0, "n_groups"))
    rows.append(AuditRow.for_rule(link_to_beneficiary, rows_in=groups_out, rows_out=kept_groups,
                                  euros_dropped=get(FATE_UNLINKED, "euros")))
    rows.append(flag_row(cpl_maj_top_not_an_act, kept_groups, int(get(0, "cpl2"))))
    return rows


# -- failing early -------------------------------------------------------------------------------


# What to do when a rule leaves no usable claim, by the rule that dropped most of them.
_NO_CLAIMS_ADVICE = {
    "link_to_beneficiary": "none of the claims' BEN_NIR_PSA/BEN_RNG_GEM is in IR_BEN_R: export ER_PRS_F and "
                           "IR_BEN_R from the same extract (same pseudonymisation)",
    "care_window": "their care dates EXE_SOI_DTD fall outside [study.claims_start, study.claims_end]: check the "
                   "extract's years or the [study] dates",
    "flux_window": "their flux dates FLX_DIS_DTD are after claims_end + flux_lag_months: check the [study] dates",
    "amount_above_maximum": "their amounts BSE_REM_MNT exceed the plausible maximum: check the amount column's "
                            "format (cents? a shifted column?) or [cleaning] max_line_amount_eur",
    "care_after_flux": "their care dates follow their flux dates: check that EXE_SOI_DTD and FLX_DIS_DTD are not "
                       "swapped, or [cleaning] max_care_after_flux_days",
    "regularisation_netting": "their quantities PRS_ACT_QTE net to zero or less: check the sign of PRS_ACT_QTE",
}


def check_claims_usable(by_fate: pd.DataFrame, audit: Sequence[AuditRow], where: str = "") -> None:
    """Stop the DCIR stage when no claim line survives its rules, or the kept lines carry no amount
    (BSE_REM_MNT null or zero everywhere): no spending, no prior nursing cost, hence no eligible
    control and an empty matching much later. ``by_fate`` is the summary's aggregate
    (:func:`claims_by_fate`). The message names the rule, the column and what to do; ``where`` (the
    extract directory) is added to it."""
    rows = [a for a in audit if a.stage == "dcir" and a.rows_dropped > 0]
    kept = by_fate.loc[by_fate.index == 0]
    n_kept = int(kept["n_groups"].fillna(0).sum())
    euros = float(kept["abs_euros"].fillna(0).sum())
    table = "ER_PRS_F" + (f" in {where}" if where else "")
    if n_kept == 0:
        total = next((a.rows_in for a in audit if a.stage == "dcir"), 0)
        worst = max(rows, key=lambda a: a.rows_dropped, default=None)
        why = (f"; rule {worst.rule} drops the most ({worst.rows_dropped:,} of its {worst.rows_in:,} input rows): "
               f"{_NO_CLAIMS_ADVICE.get(worst.rule, worst.description)}" if worst else "")
        raise PipelineError(
            f"{table}: no claim line survives cleaning — none of its {total:,} line(s) is kept{why}. Without "
            "claims there is no spending and no cohort: fix the extract or the setting named, then run again "
            "(`equilibres validate` shows examples).")
    if euros == 0:
        raise PipelineError(
            f"{table}, column BSE_REM_MNT: the {n_kept:,} kept claim line(s) carry no amount (every "
            "BSE_REM_MNT is missing or 0), so spending and prior nursing costs would all be 0 and no control "
            "eligible (check kept_claims_have_amounts). Export BSE_REM_MNT (the amount "
            "reimbursed) with its values and run again.")
