"""Long-term illness (ALD, IR_IMB_R): linked periods, the ALDs active at a date, and ALD groups."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from pipeline.contract_spec import LIFETIME_ALD_END, SENTINEL_DATE
from pipeline.stages.ingest import IR_IMB_R_TYPES, cast_to_contract
from pipeline.stages.rules import AuditRow, audit_from_fates, fate_expr, flag_row, rule

# -- rules ---------------------------------------------------------------------------------------


@rule("ald", "flag")
def ald_open_ended(t: ir.Table) -> ir.BooleanValue:
    """IMB_ALD_DTF = 1600-01-01 is an open-ended ALD: end set to null (active from its start on) — fiches/requete_type_ald"""
    return t.IMB_ALD_DTF == ibis.date(SENTINEL_DATE)


@rule("ald", "flag")
def ald_lifetime_2099(t: ir.Table) -> ir.BooleanValue:
    """IMB_ALD_DTF = 2099-12-31 is an old lifetime ALD: kept, active from its start on — fiches/beneficiaires_ald"""
    return t.IMB_ALD_DTF == ibis.date(LIFETIME_ALD_END)


@rule("ald", "flag")
def ald_overlapping_renewal(t: ir.Table) -> ir.BooleanValue:
    """A renewal adds a row overlapping the previous period of the same ALD: periods are read as a union — fiches/beneficiaires_ald"""
    w = ibis.window(group_by=[t.person_id, t.IMB_ALD_NUM], order_by=[t.IMB_ALD_DTD, t.IMB_ALD_DTF])
    prev_end = t.ald_end.lag().over(w)
    prev_start = t.IMB_ALD_DTD.lag().over(w)
    return prev_start.notnull() & (prev_end.isnull() | (prev_end >= t.IMB_ALD_DTD))


@rule("ald", "drop")
def ald_link_to_beneficiary(t: ir.Table) -> ir.BooleanValue:
    """ALD rows whose BEN_NIR_PSA/BEN_RNG_GEM is not in IR_BEN_R cannot be attributed: dropped — fiches/fiche_beneficiaire"""
    return t.person_id.isnull()


@rule("ald", "drop")
def ald_start_unknown(t: ir.Table) -> ir.BooleanValue:
    """ALD rows without a start date (IMB_ALD_DTD null or 1600-01-01) cannot be placed in time: dropped — fiches/requete_type_ald"""
    return t.IMB_ALD_DTD.isnull() | (t.IMB_ALD_DTD == ibis.date(SENTINEL_DATE))


ALD_DROP_RULES = [ald_link_to_beneficiary, ald_start_unknown]


# -- stage functions -----------------------------------------------------------------------------


def ald_linked(ir_imb_r: ir.Table, key_map: ir.Table) -> ir.Table:
    """IR_IMB_R rows with contract types, open-ended ends as null, person_id and a drop ``fate``."""
    t = cast_to_contract(ir_imb_r, IR_IMB_R_TYPES, "IR_IMB_R")
    t = t.left_join(key_map, ["BEN_NIR_PSA", "BEN_RNG_GEM"]).select(t, key_map.person_id)
    t = t.mutate(ald_end=ibis.cases((ald_open_ended(t), ibis.null("date")), else_=t.IMB_ALD_DTF))
    return t.mutate(fate=fate_expr(t, ALD_DROP_RULES))


def ald_periods(linked: ir.Table) -> ir.Table:
    """The kept ALD periods: person_id, IMB_ALD_NUM, start, end (null = open-ended), IMB_ETM_NAT."""
    kept = linked.filter(linked.fate == 0)
    return kept.select(
        "person_id", "IMB_ALD_NUM", ald_start=kept.IMB_ALD_DTD, ald_end=kept.ald_end,
        IMB_ETM_NAT=kept.IMB_ETM_NAT,
    )


def ald_group_of(num: ir.IntegerValue, groups: dict[str, list[int]]) -> ir.StringValue:
    """The configured group of an ALD number (first group listing it), null when none does."""
    branches = [(num.isin(list(nums)), ibis.literal(name)) for name, nums in groups.items() if nums]
    if not branches:
        return ibis.null("string")
    return ibis.cases(*branches, else_=ibis.null("string"))


def ald_active_at(periods: ir.Table, index: ir.Table, groups: dict[str, list[int]]) -> ir.Table:
    """For each (person_id, index_date) of ``index``: ald (0/1) and ald_group at that date.

    Active at d: start <= d and (end >= d or end null); 2099-12-31 ends are simply far in the future,
    and overlapping renewals only add rows that are active at the same dates. ``ald_group`` is the
    group of the active ALDs when they all fall in one group, 'multiple' when in several, 'none' when
    no ALD is active, and 'ungrouped' when active ALDs belong to no configured group.
    """
    keys = index.select("person_id", "index_date").distinct()
    p = periods
    joined = keys.join(
        p,
        (keys.person_id == p.person_id) & (p.ald_start <= keys.index_date)
        & (p.ald_end.isnull() | (p.ald_end >= keys.index_date)),
    ).select(keys.person_id, keys.index_date, group=ald_group_of(p.IMB_ALD_NUM, groups))
    per_key = joined.group_by(["person_id", "index_date"]).aggregate(
        n_groups=joined.group.nunique(), any_group=joined.group.min(),
    )
    out = keys.left_join(per_key, ["person_id", "index_date"]).select(keys, per_key.n_groups, per_key.any_group)
    active = out.n_groups.notnull()
    return out.select(
        "person_id", "index_date",
        ald=active.cast("int8"),
        ald_group=ibis.cases(
            (~active, ibis.literal("none")),
            (out.n_groups > 1, ibis.literal("multiple")),
            (out.n_groups == 1, out.any_group),
            else_=ibis.literal("ungrouped"),
        ),
    )


def audit_ald(linked: ir.Table) -> list[AuditRow]:
    """Audit rows of the ALD rules (one aggregate for the drops, one for the flags)."""
    t = linked
    by_fate = t.group_by("fate").aggregate(n=t.count()).execute()
    counts = dict(zip(by_fate["fate"].astype(int), by_fate["n"].astype(int), strict=True))
    n = sum(counts.values())
    rows = audit_from_fates(ALD_DROP_RULES, counts, {}, rows_in=n)
    kept = t.filter(t.fate == 0)
    overlap = kept.mutate(_ov=ald_overlapping_renewal(kept))
    flags = overlap.aggregate(
        open_ended=ald_open_ended(overlap).fill_null(False).cast("int64").sum(),
        lifetime=ald_lifetime_2099(overlap).fill_null(False).cast("int64").sum(),
        renewals=overlap._ov.fill_null(False).cast("int64").sum(),
    ).execute().iloc[0]
    n_kept = counts.get(0, 0)
    rows += [
        flag_row(ald_open_ended, n_kept, int(flags["open_ended"] or 0)),
        flag_row(ald_lifetime_2099, n_kept, int(flags["lifetime"] or 0)),
        flag_row(ald_overlapping_renewal, n_kept, int(flags["renewals"] or 0)),
    ]
    return rows
