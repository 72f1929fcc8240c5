"""PMSI MCO hospital stays: yearly tables unioned, standard exclusions, linkage to persons, costs.

Each valid stay also gets a ``stay_category``: the first ``cleaning.stay_categories`` category whose
GRG_GHM prefix it matches (e.g. ``cataract``, GHM root 02C05), else ``hospital``. Only ``hospital`` stays
are in the headline hospitalisation and hospital-spending indicators; the others are negative-control
outcomes (docs/indicators.md, "Negative controls and empirical calibration").
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path

import ibis
import ibis.expr.types as ir
import pandas as pd

from pipeline.config import CleaningSettings, StudyConfig
from pipeline.stages.ingest import cast_to_contract
from pipeline.stages.rules import (
    AuditRow,
    Rule,
    audit_from_fates,
    fate_expr,
    flag_row,
    in_list,
    rule,
)

# The stay category of the hospital perimeter (the panel's spend_hospital, hosp_stays...).
HOSPITAL = "hospital"

MCO_B_TYPES = {
    "ETA_NUM": "string", "RSA_NUM": "int64", "SEJ_NBJ": "int32", "ENT_MOD": "string", "SOR_MOD": "string",
    "GRG_GHM": "string", "SOR_ANN": "string", "SOR_MOI": "string",
}
RETURN_CODES = ["NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET", "PMS_RET", "DAT_RET"]
MCO_C_TYPES = {
    "ETA_NUM": "string", "RSA_NUM": "int64", "NIR_ANO_17": "string", "EXE_SOI_DTD": "date",
    "EXE_SOI_DTF": "date", **{c: "string" for c in RETURN_CODES},
}
MCO_VALO_TYPES = {"ETA_NUM": "string", "RSA_NUM": "int64", "MNT_TOT_AM": "float64", "VALO": "int32"}

SEANCES_CMD = "28"
ERROR_CMD = "90"
DEATH_EXIT = "9"


def pmsi_year_of(path: Path) -> int:
    """The two-digit PMSI year in a file name such as T_MCO19B.parquet (19)."""
    m = re.search(r"MCO(\d{2})", Path(path).name.upper())
    if not m:
        raise ValueError(f"cannot read the PMSI year from file name {Path(path).name!r} (expected T_MCOaa...)")
    return int(m.group(1))


def union_years(tables: Sequence[tuple[int, ir.Table]], types: dict[str, str], name: str) -> ir.Table:
    """Yearly tables with contract types, tagged with their PMSI year and stacked."""
    parts = [cast_to_contract(t, types, f"{name} (year {year:02d})").mutate(pmsi_year=ibis.literal(year, "int32"))
             for year, t in tables]
    if not parts:
        raise ValueError(f"no {name} table given")
    return parts[0] if len(parts) == 1 else ibis.union(*parts, distinct=False)


# -- rules ---------------------------------------------------------------------------------------


@rule("pmsi", "drop")
def bad_return_codes(t: ir.Table, cleaning: CleaningSettings, window: tuple[dt.date, dt.date]) -> ir.BooleanValue:
    """Drop stays whose linkage return codes (NIR_RET … DAT_RET) are not all '0' — fiches/requete_type_pmsi_mco"""
    ok = ibis.literal(True)
    for c in RETURN_CODES:
        ok = ok & (t[c].strip() == "0").fill_null(False)
    return ~ok


@rule("pmsi", "drop")
def nir_x_filled(t: ir.Table, cleaning: CleaningSettings, window: tuple[dt.date, dt.date]) -> ir.BooleanValue:
    """Drop stays whose NIR_ANO_17 is missing or made of x (no usable patient identifier) — SCALPEL3 McoFilters.scala"""
    nir = t.NIR_ANO_17.strip()
    return nir.isnull() | (nir.upper().replace("X", "") == "")


@rule("pmsi", "drop")
def ghm_90_error(t: ir.Table, cleaning: CleaningSettings, window: tuple[dt.date, dt.date]) -> ir.BooleanValue:
    """Drop stays grouped in CMD 90 (GRG_GHM '90…', grouping errors) — fiches/requete_type_pmsi_mco"""
    return t.GRG_GHM.startswith(ERROR_CMD)


@rule("pmsi", "drop")
def duplicate_geographic_finess(t: ir.Table, cleaning: CleaningSettings,
                                window: tuple[dt.date, dt.date]) -> ir.BooleanValue:
    """Drop stays declared under the geographical FINESS of AP-HP, AP-HM, HCL (duplicates of the legal FINESS) — SCALPEL3 McoFilters.scala"""
    return in_list(t.ETA_NUM.strip(), cleaning.duplicate_geographic_finess)


@rule("pmsi", "drop")
def stay_window(t: ir.Table, cleaning: CleaningSettings, window: tuple[dt.date, dt.date]) -> ir.BooleanValue:
    """Drop stays without an exit date or ending outside [claims_start, claims_end] — fiches/requete_type_pmsi_mco"""
    d = t.EXE_SOI_DTF
    return d.isnull() | (d < ibis.date(window[0])) | (d > ibis.date(window[1]))


@rule("pmsi", "drop")
def stay_link_to_beneficiary(t: ir.Table, cleaning: CleaningSettings,
                             window: tuple[dt.date, dt.date]) -> ir.BooleanValue:
    """Drop stays whose NIR_ANO_17 is not a BEN_NIR_PSA of IR_BEN_R (no person to attribute them to) — fiches/fiche_beneficiaire"""
    return t.person_id.isnull()


@rule("pmsi", "flag")
def seance(t: ir.Table) -> ir.BooleanValue:
    """Séances (CMD 28: dialysis, chemotherapy, radiotherapy sessions) are kept apart from full stays — fiches/requete_type_pmsi_mco"""
    return t.GRG_GHM.startswith(SEANCES_CMD).fill_null(False)


@rule("pmsi", "flag")
def stay_not_valued(t: ir.Table) -> ir.BooleanValue:
    """Stays not valued (VALO 0 or missing) cost 0 (MNT_TOT_AM is what the Assurance Maladie paid) — fiches/depenses_hopital_public"""
    return t.VALO.isnull() | (t.VALO == 0) | t.MNT_TOT_AM.isnull()




@rule("pmsi", "flag")
def stay_outside_hospital_perimeter(t: ir.Table) -> ir.BooleanValue:
    """Stays of a cleaning.stay_categories category (GRG_GHM prefix, e.g. cataract surgery 02C05) are kept but counted apart from the hospital perimeter (negative controls; GHM roots from the ATIH Manuel des GHM, CMD 02, racine 02C05) — fiches/requete_type_pmsi_mco"""
    return (t.stay_category != HOSPITAL).fill_null(False)


def stay_category(ghm: ir.StringValue, cleaning: CleaningSettings) -> ir.StringValue:
    """The first ``cleaning.stay_categories`` category whose GRG_GHM prefix the stay matches, else
    ``hospital`` (a missing GHM is ``hospital``)."""
    code = ghm.strip().upper()
    branches = [(code.startswith(prefix), ibis.literal(name))
                for name, cat in cleaning.stay_categories.items() for prefix in cat.grg_ghm_prefixes]
    if not branches:
        return ibis.literal(HOSPITAL)
    return ibis.cases(*branches, else_=ibis.literal(HOSPITAL)).fill_null(HOSPITAL)


STAY_RULES: list[Rule] = [bad_return_codes, nir_x_filled, ghm_90_error, duplicate_geographic_finess, stay_window,
                          stay_link_to_beneficiary]


# Rows of the stage's table that are not stays: the line-key checks of the three PMSI tables, made in
# the stage's query (``rules.with_check_row``); their RSA_NUM is the number of lines whose key
# (ETA_NUM, RSA_NUM within a year) repeats another's.
KEY_CHECK_FATES = {"MCO_B": -1, "MCO_C": -2, "MCO_VALO": -3}
STAY_KEY = ["pmsi_year", "ETA_NUM", "RSA_NUM"]


def stay_rules_enabled(cleaning: CleaningSettings) -> list[bool]:
    return [cleaning.drop_bad_return_codes, True, cleaning.drop_ghm_90, cleaning.drop_duplicate_geographic_finess,
            True, True]


# -- stage functions -----------------------------------------------------------------------------


def mco_stays(b: ir.Table, c: ir.Table, valo: ir.Table, nir_map: ir.Table, config: StudyConfig) -> ir.Table:
    """Every MCO stay (B ⋈ C ⋈ VALO, all years) with person_id, is_seance, stay_category, cost and a
    drop ``fate``.

    ``b``, ``c`` and ``valo`` are the stacked yearly tables (``union_years``); RSA_NUM is unique within
    an establishment and a year, hence the year in the join keys.
    """
    keys = ["pmsi_year", "ETA_NUM", "RSA_NUM"]
    valo_one = valo.group_by(keys).aggregate(MNT_TOT_AM=valo.MNT_TOT_AM.sum(), VALO=valo.VALO.max())
    s = b.left_join(c, keys).select(b, *[c[col] for col in MCO_C_TYPES if col not in ("ETA_NUM", "RSA_NUM")])
    s = s.left_join(valo_one, keys).select(s, valo_one.MNT_TOT_AM, valo_one.VALO)
    s = s.left_join(nir_map, s.NIR_ANO_17 == nir_map.BEN_NIR_PSA).select(s, nir_map.person_id)
    window = (config.study.claims_start, config.study.claims_end)
    s = s.mutate(
        is_seance=seance(s).cast("int8"),
        stay_category=stay_category(s.GRG_GHM, config.cleaning),
        cost=ibis.cases((stay_not_valued(s), 0.0), else_=s.MNT_TOT_AM),
        not_valued=stay_not_valued(s).cast("int8"),
    )
    return s.mutate(fate=fate_expr(s, STAY_RULES, stay_rules_enabled(config.cleaning),
                                   cleaning=config.cleaning, window=window))


def stays_valid(stays: ir.Table) -> ir.Table:
    """The contract's stays table: one row per valid MCO stay."""
    s = stays.filter(stays.fate == 0)
    return s.select(
        "person_id", "ETA_NUM", "RSA_NUM", entry_date=s.EXE_SOI_DTD, exit_date=s.EXE_SOI_DTF,
        SEJ_NBJ=s.SEJ_NBJ, SOR_MOD=s.SOR_MOD, GRG_GHM=s.GRG_GHM, is_seance=s.is_seance, cost=s.cost,
        stay_category=s.stay_category,
    )


def stays_by_fate(stays: ir.Table) -> pd.DataFrame:
    """Every MCO stay in one aggregate by fate (index): what the audit rows and the line-key checks read."""
    s = stays
    by_fate = s.group_by("fate").aggregate(
        n=s.count(), euros=s.cost.sum(), seances=s.is_seance.cast("int64").sum(),
        not_valued=s.not_valued.cast("int64").sum(),
        outside=stay_outside_hospital_perimeter(s).cast("int64").sum(),
        repeated=s.RSA_NUM.sum(where=s.fate < 0),
    ).execute().set_index("fate")
    by_fate.index = by_fate.index.astype(int)
    return by_fate


def repeated_keys(by_fate: pd.DataFrame) -> dict[str, int]:
    """Lines of each PMSI table whose key repeats another's, from the check rows (0 without one)."""
    return {key: int(by_fate.loc[fate, "repeated"] or 0) if fate in by_fate.index else 0
            for key, fate in KEY_CHECK_FATES.items()}


def audit_pmsi(stays: ir.Table, cleaning: CleaningSettings) -> list[AuditRow]:
    """Audit rows of the PMSI rules from one aggregate by fate (euros: MNT_TOT_AM of valued stays)."""
    return stays_audit_rows(stays_by_fate(stays), cleaning)


def stays_audit_rows(by_fate: pd.DataFrame, cleaning: CleaningSettings) -> list[AuditRow]:
    """Audit rows of the PMSI rules from the stays' aggregate by fate (:func:`stays_by_fate`)."""
    by_fate = by_fate[by_fate.index >= 0]
    counts = by_fate["n"].astype(int).to_dict()
    euros = by_fate["euros"].fillna(0).astype(float).to_dict()
    rows = audit_from_fates(STAY_RULES, counts, euros, rows_in=sum(counts.values()),
                            enabled=stay_rules_enabled(cleaning))
    kept = int(counts.get(0, 0))
    rows.append(flag_row(seance, kept, int(by_fate["seances"].get(0, 0) or 0)))
    rows.append(flag_row(stay_not_valued, kept, int(by_fate["not_valued"].get(0, 0) or 0)))
    rows.append(flag_row(stay_outside_hospital_perimeter, kept, int(by_fate["outside"].get(0, 0) or 0)))
    return rows
