"""Deaths: the first available source (IR_BEN_R, then PMSI exit mode 9), with implausible dates flagged."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from pipeline.stages.pmsi import DEATH_EXIT
from pipeline.stages.rules import AuditRow, flag_row, rule


@rule("deaths", "flag")
def death_before_birth(t: ir.Table) -> ir.BooleanValue:
    """A death dated before the birth month is impossible: that source's date is discarded and flagged — fiches/fiche_beneficiaire"""
    floor = t.birth_floor
    return ((t.ben_death_date < floor) | (t.pmsi_death_date < floor)).fill_null(False)


@rule("deaths", "flag")
def death_from_pmsi(t: ir.Table) -> ir.BooleanValue:
    """Death date taken from PMSI (SOR_MOD = 9 exit date) when IR_BEN_R has none — fiches/fiche_beneficiaire"""
    return (t.death_source == "PMSI").fill_null(False)


@rule("deaths", "flag")
def death_before_last_claim(t: ir.Table) -> ir.BooleanValue:
    """A death followed by care more than death_claim_tolerance_days later is flagged as an error — fiches/fiche_beneficiaire"""
    return (t.last_activity > t.death_date + t.tolerance_days.as_interval("D")).fill_null(False)


def pmsi_deaths(stays: ir.Table) -> ir.Table:
    """person_id → earliest exit date of a valid stay ending in death (SOR_MOD = '9')."""
    d = stays.filter(stays.SOR_MOD.strip() == DEATH_EXIT)
    return d.group_by("person_id").aggregate(pmsi_death_date=d.exit_date.min())


def last_activity(claims_kept: ir.Table, stays: ir.Table) -> ir.Table:
    """person_id → last care date in DCIR claims (last_claim_date) and last hospital entry (last_stay)."""
    dcir = claims_kept.group_by("person_id").aggregate(last_claim_date=claims_kept.last_care.max())
    hosp = stays.group_by("person_id").aggregate(last_stay=stays.entry_date.max())
    return dcir.outer_join(hosp, "person_id").select(
        person_id=ibis.coalesce(dcir.person_id, hosp.person_id),
        last_claim_date=dcir.last_claim_date,
        last_stay=hosp.last_stay,
    )


def deaths(persons: ir.Table, pmsi: ir.Table, activity: ir.Table, tolerance_days: int) -> ir.Table:
    """person_id → death_date, death_source, death_flag_error and the flags behind it.

    IR_BEN_R is the reference when it has a plausible date; PMSI fills in when it has none. Spark
    and DuckDB disagree on ``greatest`` with nulls, hence the explicit null handling.
    """
    p = persons.select("person_id", "birth_floor", "ben_death_date")
    t = p.left_join(pmsi, "person_id").select(p, pmsi.pmsi_death_date)
    t = t.left_join(activity, "person_id").select(t, activity.last_claim_date, activity.last_stay)
    t = t.mutate(
        last_activity=ibis.cases(
            (t.last_stay.isnull(), t.last_claim_date),
            (t.last_claim_date.isnull(), t.last_stay),
            (t.last_stay > t.last_claim_date, t.last_stay),
            else_=t.last_claim_date,
        ),
        tolerance_days=ibis.literal(int(tolerance_days), "int32"),
    )
    before_birth = death_before_birth(t)
    ben_ok = t.ben_death_date.notnull() & ~(t.ben_death_date < t.birth_floor).fill_null(False)
    pmsi_ok = t.pmsi_death_date.notnull() & ~(t.pmsi_death_date < t.birth_floor).fill_null(False)
    t = t.mutate(
        death_before_birth=before_birth,
        death_date=ibis.cases((ben_ok, t.ben_death_date), (pmsi_ok, t.pmsi_death_date), else_=ibis.null("date")),
        death_source=ibis.cases((ben_ok, ibis.literal("IR_BEN_R")), (pmsi_ok, ibis.literal("PMSI")),
                                else_=ibis.null("string")),
    )
    t = t.mutate(death_before_last_claim=death_before_last_claim(t))
    return t.select(
        "person_id", "death_date", "death_source", "last_claim_date",
        death_flag_error=(t.death_before_birth | t.death_before_last_claim).cast("int8"),
        death_before_birth=t.death_before_birth.cast("int8"),
        death_before_last_claim=t.death_before_last_claim.cast("int8"),
    )


def audit_deaths(d: ir.Table) -> list[AuditRow]:
    agg = d.aggregate(
        n=d.count(),
        before_birth=d.death_before_birth.cast("int64").sum(),
        from_pmsi=(d.death_source == "PMSI").fill_null(False).cast("int64").sum(),
        before_claim=d.death_before_last_claim.cast("int64").sum(),
    ).execute().iloc[0]
    n = int(agg["n"])
    return [
        flag_row(death_before_birth, n, int(agg["before_birth"] or 0)),
        flag_row(death_from_pmsi, n, int(agg["from_pmsi"] or 0)),
        flag_row(death_before_last_claim, n, int(agg["before_claim"] or 0)),
    ]
