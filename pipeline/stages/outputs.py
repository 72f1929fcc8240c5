"""The cleaning outputs of docs/CONTRACTS.md section 2: persons, the person × month panel, stays and
the decedents' DCIR spending per care day before death (eol_daily)."""

from __future__ import annotations

import datetime as dt

import ibis
import ibis.expr.types as ir

from pipeline.config import StudyConfig
from pipeline.stages.dcir import spend_column, summary_amount_columns
from pipeline.stages.ingest import ROSTER_CPX
from pipeline.stages.pmsi import HOSPITAL
from pipeline.stages.rules import month_of

PERSONS_COLUMNS = [
    "person_id", "BEN_SEX_COD", "birth_date", "dpt", "region", "death_date", "death_source",
    "death_flag_error", "treated", "inclusion_date", "exit_date", "team_id", *ROSTER_CPX, "complex",
    "last_claim_date",
]
STAYS_COLUMNS = ["person_id", "ETA_NUM", "RSA_NUM", "entry_date", "exit_date", "SEJ_NBJ", "SOR_MOD", "GRG_GHM",
                 "is_seance", "cost", "stay_category"]


def spend_columns(config: StudyConfig) -> list[str]:
    """Panel spending columns: one per DCIR category (configured order), 'other', then hospital."""
    return [spend_column(c) for c in config.cleaning.category_names] + [spend_column(HOSPITAL)]


def panel_columns(config: StudyConfig) -> list[str]:
    return ["person_id", "month", *spend_columns(config), "hosp_stays", "hosp_days", "seances", "nursing_acts",
            "experiment_hours"]


def eol_daily_columns(config: StudyConfig) -> list[str]:
    """Columns of eol_daily: the panel's DCIR columns, by care day instead of month."""
    return ["person_id", "care_date", *summary_amount_columns(config.cleaning)]


def region_of(dpt: ir.StringValue, regions: dict[str, list[str]]) -> ir.StringValue:
    """The study region of a département (null outside the regions of the experiment)."""
    branches = [(dpt.isin(list(dpts)), ibis.literal(name)) for name, dpts in regions.items() if dpts]
    if not branches:
        return ibis.null("string")
    return ibis.cases(*branches, else_=ibis.null("string"))


def persons_table(persons: ir.Table, death: ir.Table, roster: ir.Table, config: StudyConfig) -> ir.Table:
    """One row per person: identity, residence, death, experiment membership, complex-care flags."""
    p = persons.left_join(death, "person_id").select(
        persons, death.death_date, death.death_source, death.death_flag_error, death.last_claim_date
    )
    p = p.left_join(roster, "person_id").select(p, *[roster[c] for c in roster.columns if c != "person_id"])
    treated = p.inclusion_date.notnull()
    flags = {c: p[c].fill_null(0).cast("int8") for c in ROSTER_CPX}
    complex_cols = [c for c in config.cohort.complex_flags if c in ROSTER_CPX]
    any_complex = ibis.literal(0, "int8")
    for c in complex_cols:
        any_complex = ibis.greatest(any_complex, flags[c])
    return p.select(
        "person_id",
        BEN_SEX_COD=p.BEN_SEX_COD.cast("int32"),
        birth_date=p.birth_date,
        dpt=p.dpt,
        region=region_of(p.dpt, config.study.regions),
        death_date=p.death_date,
        death_source=p.death_source,
        death_flag_error=p.death_flag_error.fill_null(0).cast("int8"),
        treated=treated.cast("int8"),
        inclusion_date=p.inclusion_date,
        exit_date=p.exit_date,
        team_id=p.team_id,
        **flags,
        complex=any_complex.cast("int8"),
        last_claim_date=p.last_claim_date,
    )


def dcir_amounts(claims_kept: ir.Table, keys: list[str], config: StudyConfig) -> ir.Table:
    """Kept DCIR claims (summary rows) summed by ``keys``: spending per category, nursing act count,
    experiment hours — the one definition behind the panel and eol_daily."""
    c = claims_kept
    return c.group_by(keys).aggregate(**{col: c[col].sum() for col in summary_amount_columns(config.cleaning)})


def panel_table(claims_kept: ir.Table, stays: ir.Table, config: StudyConfig) -> ir.Table:
    """Person × month activity: spending per category, hospital stays/days/séances, acts, hours.

    DCIR spending is attributed to the care month; hospital stays, days, séances and their cost
    (MNT_TOT_AM) to the entry month, so a stay and its cost always fall in the same month. Only stays
    of the hospital perimeter count (``stay_category`` = 'hospital'; every stay of a table without that
    column): negative-control stays such as cataract surgery (``cleaning.stay_categories``) are outside
    every panel column.
    Months outside the claims window are left out. Missing person-months mean zero.
    """
    start = dt.date(config.study.claims_start.year, config.study.claims_start.month, 1)

    def in_window(t: ir.Table) -> ir.Table:
        return t.filter((t.month >= ibis.date(start)) & (t.month <= ibis.date(config.study.claims_end)))

    dcir = in_window(dcir_amounts(claims_kept, ["person_id", "month"], config))
    s = stays.filter(stays.stay_category == HOSPITAL) if "stay_category" in stays.columns else stays
    full = (s.is_seance == 0)
    by_entry = s.mutate(month=month_of(s.entry_date), full=full)
    hosp_use = in_window(by_entry).group_by(["person_id", "month"]).aggregate(
        **{f"spend_{HOSPITAL}": by_entry.cost.sum()},
        hosp_stays=by_entry.full.cast("int64").sum(),
        hosp_days=ibis.cases((by_entry.full, by_entry.SEJ_NBJ.cast("int64")), else_=0).sum(),
        seances=(~by_entry.full).cast("int64").sum(),
    )
    # The two sides are joined, not stacked and summed again: the person-months are already unique on
    # each side, and a second aggregation of millions of rows cost more than the join (a third of the
    # panel's time at 17 M lines). The values are those of the sum of the stacked rows: a side that
    # has the person-month gives its value (0 for a null when the other side has the person-month
    # too, as a sum would), a side that lacks it gives 0.
    d_key = dcir.select(_d_person=dcir.person_id, _d_month=dcir.month, **{c: dcir[c] for c in dcir.columns
                                                                          if c not in ("person_id", "month")})
    j = d_key.outer_join(hosp_use, (d_key._d_person == hosp_use.person_id) & (d_key._d_month == hosp_use.month))
    on_d, on_h = j._d_person.notnull(), j.person_id.notnull()

    def side(value: ir.Value, present: ir.BooleanValue, other: ir.BooleanValue, zero: ir.Value) -> ir.Value:
        return ibis.cases((present & ~other, value), else_=value.fill_null(zero))

    zero_f, zero_i = ibis.literal(0.0), ibis.literal(0, "int64")
    dcir_cols = summary_amount_columns(config.cleaning)
    out = j.select(
        person_id=ibis.coalesce(j._d_person, j.person_id),
        month=ibis.coalesce(j._d_month, j.month),
        **{c: side(j[c], on_d, on_h, zero_f) for c in dcir_cols},
        **{f"spend_{HOSPITAL}": side(j[f"spend_{HOSPITAL}"], on_h, on_d, zero_f)},
        **{c: side(j[c], on_h, on_d, zero_i).cast("int32") for c in ("hosp_stays", "hosp_days", "seances")},
    )
    return out.select(*panel_columns(config))


def eol_daily_table(claims_kept: ir.Table, persons: ir.Table, config: StudyConfig) -> ir.Table:
    """Kept DCIR spending per decedent × care day over the ``cleaning.eol_daily_days`` days before
    death (death day included): same rules, netting, categories and sums as the panel.

    Decedents are persons with a death date not flagged as an error. Their claims come from the
    summary rows the DCIR stage keyed by day (``care_date``), which cover every possible death date;
    the final death date picks its window here. Missing person-days mean zero.
    """
    days = config.cleaning.eol_daily_days
    p = persons.filter(persons.death_date.notnull() & (persons.death_flag_error == 0))
    p = p.select("person_id", "death_date")
    c = claims_kept.filter(claims_kept.care_date.notnull())
    j = c.join(p, "person_id")
    j = j.filter((j.care_date >= j.death_date - ibis.interval(days=days - 1)) & (j.care_date <= j.death_date))
    return dcir_amounts(j, ["person_id", "care_date"], config).select(*eol_daily_columns(config))
