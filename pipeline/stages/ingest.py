"""Ingest: contract types, sentinels to nulls, départements, and one identifier per person.

Stage functions are pure Ibis: tables in, a table out. The runner reads the extract (Parquet staged by
``pipeline.readers``), calls them, writes their results and the audit rows computed by ``audit_*``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir

from pipeline.contract_spec import SENTINEL_DATE, UNKNOWN_BIRTH_YEAR
from pipeline.io import PipelineError
from pipeline.stages.rules import AuditRow, audit_from_fates, fate_expr, flag_row, rule

# Contract types (docs/CONTRACTS.md, section 1) of the columns each stage uses.
IR_BEN_R_TYPES = {
    "BEN_NIR_PSA": "string", "BEN_RNG_GEM": "int32", "BEN_IDT_ANO": "string", "BEN_SEX_COD": "int32",
    "BEN_NAI_ANN": "string", "BEN_NAI_MOI": "string", "BEN_RES_DPT": "string", "BEN_DCD_DTE": "date",
}
IR_IMB_R_TYPES = {
    "BEN_NIR_PSA": "string", "BEN_RNG_GEM": "int32", "IMB_ALD_NUM": "int32", "IMB_ALD_DTD": "date",
    "IMB_ALD_DTF": "date", "IMB_ETM_NAT": "int32", "MED_MTF_COD": "string",
}
ROSTER_CPX = ["CPX_SOCIAL", "CPX_AIDANT", "CPX_PALLIATIF", "CPX_PSY", "CPX_HANDICAP", "CPX_PEDIATRIE"]
ROSTER_TYPES = {
    "BEN_NIR_PSA": "string", "EQL_EQP_ID": "string", "EQL_DPT": "string", "EQL_INC_DTE": "date",
    "EQL_SOR_DTE": "date", **{c: "int8" for c in ROSTER_CPX},
}


def cast_to_contract(table: ir.Table, types: dict[str, str], table_name: str) -> ir.Table:
    """Select the contract columns of ``table`` with their contract types."""
    missing = [c for c in types if c not in table.columns]
    if missing:
        raise PipelineError(
            f"{table_name}: column(s) {', '.join(missing)} missing (found {', '.join(table.columns)}). "
            "Check the extract against docs/CONTRACTS.md section 1 (run `equilibres validate`)."
        )
    return table.select(*[table[c].cast(t).name(c) for c, t in types.items()])


def _is_sentinel(col: ir.DateValue) -> ir.BooleanValue:
    return col == ibis.date(SENTINEL_DATE)


# -- rules ---------------------------------------------------------------------------------------


@rule("ingest", "flag")
def death_date_sentinel(t: ir.Table) -> ir.BooleanValue:
    """BEN_DCD_DTE = 1600-01-01 means alive or unknown, not a date: set to null — fiches/fiche_beneficiaire"""
    return _is_sentinel(t.BEN_DCD_DTE)


@rule("ingest", "flag")
def birth_year_unknown(t: ir.Table) -> ir.BooleanValue:
    """Birth year 1600 (or missing) means unknown: birth date set to null — fiches/fiche_beneficiaire"""
    return t.BEN_NAI_ANN.isnull() | (t.BEN_NAI_ANN == UNKNOWN_BIRTH_YEAR)


@rule("ingest", "flag")
def birth_year_in_future(t: ir.Table, max_year: int) -> ir.BooleanValue:
    """Birth year BEN_NAI_ANN after the end of the claims window (born after the data ends): birth date set to null — fiches/fiche_beneficiaire"""
    year = t.BEN_NAI_ANN.strip()
    # CASE, not AND: only 4-digit years are cast (an AND may evaluate the cast on every row).
    return ibis.cases((year.re_search(r"^[0-9]{4}$"), year.cast("int32") > max_year), else_=False)


@rule("ingest", "flag")
def sex_unknown(t: ir.Table) -> ir.BooleanValue:
    """BEN_SEX_COD other than 1 or 2 (0, 9) means unknown: set to null — fiches/variables_sociodemo"""
    return ~t.BEN_SEX_COD.isin([1, 2]) | t.BEN_SEX_COD.isnull()


@rule("ingest", "flag")
def corsica_departement_variant(t: ir.Table) -> ir.BooleanValue:
    """Corsica coded 201/202 is normalised to 02A/02B — fiches/localisation_geographique_beneficiaires"""
    return t.BEN_RES_DPT.isin(["201", "202"])


@rule("ingest", "flag")
def departement_undetermined(t: ir.Table) -> ir.BooleanValue:
    """Département 020/209 (Corsica, undetermined) cannot be located: set to null — fiches/localisation_geographique_beneficiaires"""
    return t.BEN_RES_DPT.isin(["020", "209"])


@rule("ingest", "merge")
def unify_persons(t: ir.Table) -> ir.Value:
    """A person with several BEN_NIR_PSA/BEN_RNG_GEM is one person_id (BEN_IDT_ANO, else BEN_NIR_PSA) — fiches/fiche_beneficiaire"""
    ano = t.BEN_IDT_ANO.strip()
    # Without BEN_IDT_ANO, twins sharing a BEN_NIR_PSA are told apart by their rank.
    nir = ibis.cases(
        (t.BEN_RNG_GEM.isnull() | (t.BEN_RNG_GEM == 1), t.BEN_NIR_PSA),
        else_=t.BEN_NIR_PSA + ibis.literal(":") + t.BEN_RNG_GEM.cast("string"),
    )
    return ibis.cases((ano.isnull() | (ano == ""), nir), else_=ano)


# -- stage functions -----------------------------------------------------------------------------


def normalise_departement(col: ir.StringValue) -> ir.StringValue:
    """3-character département: left-pad numeric codes, Corsica 201/202 → 02A/02B, 020/209 → null."""
    code = col.strip().upper()
    code = ibis.cases((code.length() < 3, code.lpad(3, "0")), else_=code)
    return ibis.cases(
        (code == "201", ibis.literal("02A")),
        (code == "202", ibis.literal("02B")),
        (code.isin(["020", "209", ""]), ibis.null("string")),
        else_=code,
    )


def beneficiaries_normalised(ir_ben_r: ir.Table, max_birth_year: int = 9999) -> ir.Table:
    """IR_BEN_R with contract types, sentinels as nulls, normalised départements and a person_id.

    Birth years after ``max_birth_year`` (the year of ``study.claims_end``) are implausible and taken as
    unknown (``birth_year_in_future``)."""
    t = cast_to_contract(ir_ben_r, IR_BEN_R_TYPES, "IR_BEN_R")
    year_ok = (~birth_year_unknown(t) & t.BEN_NAI_ANN.re_search(r"^[0-9]{4}$")
               & ~birth_year_in_future(t, max_birth_year).fill_null(False))
    year = t.BEN_NAI_ANN.cast("int32")
    month_raw = t.BEN_NAI_MOI.cast("int32")
    month_ok = month_raw.between(1, 12).fill_null(False)
    month = ibis.cases((month_ok, month_raw), else_=7)
    # 15th of the birth month, or 1 July when the month is unknown (middle of the interval).
    day = ibis.cases((month_ok, 15), else_=1)
    birth = ibis.cases((year_ok, ibis.date(year, month, day)), else_=ibis.null("date"))
    # Earliest possible birth day, used to recognise a death dated before birth.
    floor_month = ibis.cases((month_ok, month_raw), else_=1)
    birth_floor = ibis.cases((year_ok, ibis.date(year, floor_month, 1)), else_=ibis.null("date"))
    return t.mutate(
        person_id=unify_persons(t),
        BEN_SEX_COD=ibis.cases((sex_unknown(t), ibis.null("int32")), else_=t.BEN_SEX_COD),
        birth_date=birth,
        birth_floor=birth_floor,
        dpt=normalise_departement(t.BEN_RES_DPT),
        ben_death_date=ibis.cases((death_date_sentinel(t), ibis.null("date")), else_=t.BEN_DCD_DTE),
    )


def persons_unified(beneficiaries: ir.Table) -> ir.Table:
    """One row per person_id; several rows of a person are merged (known values win over nulls)."""
    b = beneficiaries
    return b.group_by("person_id").aggregate(
        BEN_SEX_COD=b.BEN_SEX_COD.max(),
        birth_date=b.birth_date.min(),
        birth_floor=b.birth_floor.min(),
        dpt=b.dpt.max(),
        ben_death_date=b.ben_death_date.min(),
        # identities (BEN_NIR_PSA, BEN_RNG_GEM) merged into this person
        n_nir=(b.BEN_NIR_PSA + ibis.literal(":") + b.BEN_RNG_GEM.cast("string")).nunique(),
    )


def person_key_map(beneficiaries: ir.Table) -> ir.Table:
    """(BEN_NIR_PSA, BEN_RNG_GEM) → person_id, the link of DCIR claims and ALD rows to persons."""
    b = beneficiaries
    return b.group_by(["BEN_NIR_PSA", "BEN_RNG_GEM"]).aggregate(person_id=b.person_id.min())


def person_nir_map(beneficiaries: ir.Table) -> ir.Table:
    """BEN_NIR_PSA → person_id for sources without BEN_RNG_GEM (PMSI NIR_ANO_17, the roster).

    Twins share a BEN_NIR_PSA and differ by rank; such sources cannot tell them apart, so the
    smallest person_id is taken (a known SNDS limitation of PMSI linkage).
    """
    b = beneficiaries
    return b.group_by("BEN_NIR_PSA").aggregate(person_id=b.person_id.min())


def audit_ingest(ir_ben_r: ir.Table, max_birth_year: int = 9999) -> list[AuditRow]:
    """Audit rows of the ingest rules, from one aggregate over IR_BEN_R and one over persons."""
    t = cast_to_contract(ir_ben_r, IR_BEN_R_TYPES, "IR_BEN_R")
    flags = [death_date_sentinel, birth_year_unknown, birth_year_in_future, sex_unknown,
             corsica_departement_variant, departement_undetermined]
    agg = t.aggregate(
        n=t.count(),
        **{r.name: (r(t, max_birth_year) if r is birth_year_in_future else r(t)).fill_null(False)
           .cast("int64").sum() for r in flags},
    ).execute().iloc[0]
    persons = persons_unified(beneficiaries_normalised(ir_ben_r, max_birth_year))
    pagg = persons.aggregate(n=persons.count(), multi=(persons.n_nir > 1).cast("int64").sum()).execute().iloc[0]
    n = int(agg["n"])
    rows = [flag_row(r, n, int(agg[r.name] or 0)) for r in flags]
    rows.append(AuditRow.for_rule(unify_persons, rows_in=n, rows_out=int(pagg["n"]),
                                  rows_flagged=int(pagg["multi"] or 0)))
    return rows


# -- the experiment roster -----------------------------------------------------------------------


@rule("roster", "flag")
def roster_exit_sentinel(t: ir.Table) -> ir.BooleanValue:
    """EQL_SOR_DTE = 1600-01-01 means still included: exit set to null (SNDS sentinel convention) — fiches/fiche_beneficiaire"""
    return _is_sentinel(t.EQL_SOR_DTE)


@dataclass(frozen=True)
class InclusionPeriod:
    """The study's inclusion period [inclusion_start, inclusion_end] (study settings)."""

    start: dt.date = dt.date(1900, 1, 1)
    end: dt.date = dt.date(2099, 12, 31)


@rule("roster", "drop")
def roster_link_to_beneficiary(t: ir.Table, period: InclusionPeriod) -> ir.BooleanValue:
    """Roster rows whose BEN_NIR_PSA is not in IR_BEN_R cannot be linked to claims: dropped — fiches/fiche_beneficiaire"""
    return t.person_id.isnull()


@rule("roster", "drop")
def roster_inclusion_unknown(t: ir.Table, period: InclusionPeriod) -> ir.BooleanValue:
    """Roster rows without an inclusion date cannot be given an index date: dropped — fiches/fiche_beneficiaire"""
    return t.EQL_INC_DTE.isnull() | _is_sentinel(t.EQL_INC_DTE)


@rule("roster", "drop")
def roster_inclusion_outside_study(t: ir.Table, period: InclusionPeriod) -> ir.BooleanValue:
    """Roster rows whose inclusion date EQL_INC_DTE is outside [inclusion_start, inclusion_end] (a typo or another experiment): dropped — fiches/fiche_beneficiaire"""
    return (t.EQL_INC_DTE < ibis.date(period.start)) | (t.EQL_INC_DTE > ibis.date(period.end))


@rule("roster", "drop")
def roster_one_row_per_person(t: ir.Table) -> ir.BooleanValue:
    """A person listed several times (several BEN_NIR_PSA) keeps the earliest inclusion — fiches/fiche_beneficiaire"""
    # Ranked within the rows of the same fate: a row dropped by an earlier rule (an unknown inclusion
    # dated 1600-01-01 sorts first) never displaces the person's kept row.
    w = ibis.window(group_by=[t.person_id, t.fate], order_by=[t.EQL_INC_DTE, t.EQL_EQP_ID, t.BEN_NIR_PSA])
    return ibis.row_number().over(w) > 0


ROSTER_DROP_RULES = [roster_link_to_beneficiary, roster_inclusion_unknown, roster_inclusion_outside_study]


def roster_linked(roster: ir.Table, nir_map: ir.Table, period: InclusionPeriod | None = None) -> ir.Table:
    """The roster with contract types, person_id, exit sentinel as null and a drop ``fate``.

    Rows surviving the link rules are then reduced to one per person (earliest inclusion); the
    duplicates get the fate of ``roster_one_row_per_person``.
    """
    t = cast_to_contract(roster, ROSTER_TYPES, "EQUILIBRES_ROSTER")
    t = t.left_join(nir_map, "BEN_NIR_PSA").select(t, nir_map.person_id)
    t = t.mutate(
        EQL_SOR_DTE=ibis.cases((roster_exit_sentinel(t), ibis.null("date")), else_=t.EQL_SOR_DTE),
        EQL_DPT=normalise_departement(t.EQL_DPT),
        sentinel_exit=roster_exit_sentinel(t).fill_null(False),
    )
    t = t.mutate(fate=fate_expr(t, ROSTER_DROP_RULES, period=period or InclusionPeriod()))
    # Duplicates are ranked among the rows kept by the link rules (same fate), so a dropped row never
    # hides a kept one.
    ranked = t.mutate(
        _dup=ibis.cases((t.fate == 0, roster_one_row_per_person(t)), else_=False)
    )
    dup_fate = len(ROSTER_DROP_RULES) + 1
    return ranked.mutate(
        fate=ibis.cases((ranked._dup, ibis.literal(dup_fate, "int8")), else_=ranked.fate)
    ).drop("_dup")


def roster_persons(linked: ir.Table) -> ir.Table:
    """One row per included person: person_id, inclusion/exit dates, team, département, CPX flags."""
    kept = linked.filter(linked.fate == 0)
    return kept.select(
        "person_id",
        inclusion_date=kept.EQL_INC_DTE,
        exit_date=kept.EQL_SOR_DTE,
        team_id=kept.EQL_EQP_ID,
        roster_dpt=kept.EQL_DPT,
        **{c: kept[c].fill_null(0).cast("int8") for c in ROSTER_CPX},
    )


def audit_roster(linked: ir.Table) -> list[AuditRow]:
    t = linked
    by_fate = t.group_by("fate").aggregate(n=t.count(), sentinel=t.sentinel_exit.cast("int64").sum()).execute()
    counts = dict(zip(by_fate["fate"].astype(int), by_fate["n"].astype(int), strict=True))
    n = sum(counts.values())
    rules = [*ROSTER_DROP_RULES, roster_one_row_per_person]
    rows = audit_from_fates(rules, counts, {}, rows_in=n)
    kept_sentinel = int(by_fate.loc[by_fate["fate"] == 0, "sentinel"].sum())
    rows.append(flag_row(roster_exit_sentinel, counts.get(0, 0), kept_sentinel))
    return rows


_NO_ROSTER_ADVICE = {
    "roster_link_to_beneficiary": ("BEN_NIR_PSA", "none of its BEN_NIR_PSA is in IR_BEN_R: export the roster with "
                                   "the pseudonymised identifiers of this SNDS extract (same pseudonymisation "
                                   "key), or add the patients to the IR_BEN_R extraction"),
    "roster_inclusion_unknown": ("EQL_INC_DTE", "every inclusion date is missing: export EQL_INC_DTE"),
    "roster_inclusion_outside_study": ("EQL_INC_DTE", "every inclusion date is outside [study.inclusion_start, "
                                       "study.inclusion_end]: check the date format of EQL_INC_DTE or the "
                                       "[study] inclusion dates"),
}


def check_roster_linked(audit: Sequence[AuditRow], where: str = "") -> None:
    """Stop the ingest stage when no roster patient survives its rules: there would be no treated
    patient, hence no cohort, and only an empty matching much later. Names the rule, the column and
    what to do; ``where`` (the extract directory) is added to the message."""
    names = {r.name for r in (*ROSTER_DROP_RULES, roster_one_row_per_person)}
    rows = [a for a in audit if a.stage == "roster" and a.rule in names]
    if not rows or rows[-1].rows_out > 0:
        return
    total = rows[0].rows_in
    worst = max(rows, key=lambda a: a.rows_dropped)
    column, advice = _NO_ROSTER_ADVICE.get(worst.rule, ("BEN_NIR_PSA", "check the roster"))
    table = "EQUILIBRES_ROSTER" + (f" in {where}" if where else "")
    raise PipelineError(
        f"{table}, column {column}: no ÉQUILIBRES patient can be used — rule {worst.rule} drops {worst.rows_dropped:,} "
        f"of the {total:,} roster row(s): {advice}. Without linked patients there is no cohort to evaluate; fix "
        "the roster and run again.")
