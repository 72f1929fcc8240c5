"""The cleaning stages as the runner sees them: what each reads, which settings it depends on, and
how it turns the staged extract into its outputs (:data:`STAGES`, in run order).

A stage's ``run`` wires the pure table functions of :mod:`pipeline.stages` to parquet files through
the engine; the runner (:mod:`pipeline.runner`) decides which stages to run, and owns caching, the
audit trail and the manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ibis.expr.types as ir

from pipeline.config import StudyConfig
from pipeline.contract_spec import TABLES
from pipeline.engine import engine_name, read_parquet, write_parquet
from pipeline.input_checks import DuplicateKeyError, parquet_rows, repeated_line_keys
from pipeline.paths import BuildPaths
from pipeline.readers import pmsi_year_groups
from pipeline.stages import ald as ald_stage
from pipeline.stages import cohort as cohort_stage
from pipeline.stages import dcir as dcir_stage
from pipeline.stages import deaths as deaths_stage
from pipeline.stages import ingest as ingest_stage
from pipeline.stages import outputs as outputs_stage
from pipeline.stages import pmsi as pmsi_stage
from pipeline.stages.rules import AuditRow, with_check_row


def _refuse_repeated(key: str, repeated: int) -> None:
    """What a stage does with its line-key check when no runner diagnoses it (a stage run alone)."""
    if repeated:
        raise DuplicateKeyError(f"{TABLES[key].label}: {repeated:,} line(s) repeat the line key of another "
                                f"({', '.join(TABLES[key].unique)}); run `equilibres clean` for the files and "
                                "examples, or `equilibres validate DIR`.")


@dataclass
class StageContext:
    config: StudyConfig
    paths: BuildPaths
    con: Any
    staged: Callable[[str], list[Path]]
    stage_dir: Path
    # Called by a stage with the result of an input table's line-key check (lines whose key repeats
    # another's); the runner stops the run there with the exact diagnosis.
    key_checked: Callable[[str, int], None] = _refuse_repeated
    # The extract's files of each input table, in the order of ``staged`` (whose converted copies are
    # named by content hash): what a PMSI file's year is read from. None: the staged files' names.
    sources: Callable[[str], list[Path]] | None = None

    def out(self, stage: str, name: str) -> Path:
        return self.stage_dir / stage / f"{name}.parquet"

    def read(self, path: Path) -> ir.Table:
        return read_parquet(self.con, path)

    def repeated_keys(self, key: str, table: ir.Table, keys: tuple[str, ...] | None = None) -> ir.Table:
        """The line-key check of input ``key`` as a branch of a stage's query (one row, ``repeated``):
        by sorting one hash on DuckDB, by grouping the columns on Spark (see ``repeated_line_keys``)."""
        return repeated_line_keys(table, keys or TABLES[key].unique, exact=engine_name(self.con) == "spark")


@dataclass(frozen=True)
class StageDef:
    name: str
    inputs: tuple[str, ...]
    upstream: tuple[str, ...]
    params: Callable[[StudyConfig], dict[str, Any]]
    run: Callable[[StageContext], tuple[dict[str, Path], list[AuditRow]]]
    description: str
    # Inputs whose line key the stage checks in its first query of them (pipeline.input_checks).
    key_checks: tuple[str, ...] = ()


def _cleaning_subset(cfg: StudyConfig, keys: list[str]) -> dict[str, Any]:
    data = cfg.section("cleaning")
    return {k: data[k] for k in keys}


def _run_ingest(ctx: StageContext) -> tuple[dict[str, Path], list[AuditRow]]:
    con = ctx.con
    ben = read_parquet(con, ctx.staged("IR_BEN_R"))
    imb = read_parquet(con, ctx.staged("IR_IMB_R"))
    roster = read_parquet(con, ctx.staged("ROSTER"))
    max_birth_year = ctx.config.study.claims_end.year
    norm = ingest_stage.beneficiaries_normalised(ben, max_birth_year)
    outs = {
        "persons_base": ctx.out("ingest", "persons_base"),
        "key_map": ctx.out("ingest", "key_map"),
        "nir_map": ctx.out("ingest", "nir_map"),
    }
    write_parquet(con, ingest_stage.persons_unified(norm), outs["persons_base"], ["person_id"])
    n_keys = write_parquet(con, ingest_stage.person_key_map(norm), outs["key_map"], ["BEN_NIR_PSA", "BEN_RNG_GEM"])
    # IR_BEN_R's line key is the person map's grouping key: fewer map rows than lines means repeated keys.
    ctx.key_checked("IR_BEN_R", parquet_rows(ctx.staged("IR_BEN_R")) - n_keys)
    write_parquet(con, ingest_stage.person_nir_map(norm), outs["nir_map"], ["BEN_NIR_PSA"])
    key_map = read_parquet(con, outs["key_map"])
    nir_map = read_parquet(con, outs["nir_map"])
    audit = ingest_stage.audit_ingest(ben, max_birth_year)

    ald_all = ctx.out("ingest", "ald_linked")
    write_parquet(con, ald_stage.ald_linked(imb, key_map), ald_all,
                  ["BEN_NIR_PSA", "BEN_RNG_GEM", "IMB_ALD_NUM", "IMB_ALD_DTD", "IMB_ALD_DTF"])
    linked = read_parquet(con, ald_all)
    outs["ald_periods"] = ctx.out("ingest", "ald_periods")
    write_parquet(con, ald_stage.ald_periods(linked), outs["ald_periods"],
                  ["person_id", "IMB_ALD_NUM", "ald_start", "ald_end"])
    audit += ald_stage.audit_ald(linked)
    ald_all.unlink(missing_ok=True)

    roster_all = ctx.out("ingest", "roster_linked")
    period = ingest_stage.InclusionPeriod(ctx.config.study.inclusion_start, ctx.config.study.inclusion_end)
    write_parquet(con, ingest_stage.roster_linked(roster, nir_map, period), roster_all,
                  ["BEN_NIR_PSA", "EQL_INC_DTE", "EQL_EQP_ID"])
    rl = read_parquet(con, roster_all)
    outs["roster"] = ctx.out("ingest", "roster")
    write_parquet(con, ingest_stage.roster_persons(rl), outs["roster"], ["person_id"])
    audit += ingest_stage.audit_roster(rl)
    ingest_stage.check_roster_linked(audit, str(ctx.paths.data))
    roster_all.unlink(missing_ok=True)
    return outs, audit


def _run_dcir(ctx: StageContext) -> tuple[dict[str, Path], list[AuditRow]]:
    con = ctx.con
    prs = read_parquet(con, ctx.staged("ER_PRS_F"))
    key_map = read_parquet(con, ctx.out("ingest", "key_map"))
    # Care days kept per day for eol_daily: the windows of every possible death date (IR_BEN_R, PMSI
    # exits with SOR_MOD 9), a small table written first so the claims query joins a plain file.
    deaths = dcir_stage.possible_deaths(
        read_parquet(con, ctx.out("ingest", "persons_base")),
        pmsi_stage.union_years(_pmsi_tables(ctx, "MCO_B"), pmsi_stage.MCO_B_TYPES, "T_MCOaaB"),
        pmsi_stage.union_years(_pmsi_tables(ctx, "MCO_C"), pmsi_stage.MCO_C_TYPES, "T_MCOaaC"),
        read_parquet(con, ctx.out("ingest", "nir_map")),
    )
    ranges_path = ctx.out("dcir", "eol_ranges")
    write_parquet(con, dcir_stage.eol_day_ranges(deaths, ctx.config.cleaning.eol_daily_days), ranges_path,
                  ["person_id"])
    out = ctx.out("dcir", "claims_summary")
    summary = dcir_stage.dcir_stage(prs, key_map, ctx.config, read_parquet(con, ranges_path))
    # ER_PRS_F's line-key check is a branch of the same query, its result a row of the summary.
    summary = with_check_row(summary, ctx.repeated_keys("ER_PRS_F", prs), dcir_stage.FATE_KEY_CHECK, "n_lines")
    # Unsorted and unrounded: sorting or rounding tens of millions of rows would cost the stage time for
    # nothing (the outputs stage aggregates it again and rounds what it writes).
    write_parquet(con, summary, out, round_floats=False)
    ranges_path.unlink(missing_ok=True)
    # One pass over the summary's small columns gives the check, the audit and the usable-claims test.
    by_fate = dcir_stage.claims_by_fate(read_parquet(con, out))
    ctx.key_checked("ER_PRS_F", dcir_stage.repeated_lines(by_fate))
    audit = dcir_stage.claims_audit_rows(by_fate, ctx.config.cleaning)
    dcir_stage.check_claims_usable(by_fate, audit, str(ctx.paths.data))
    return {"claims_summary": out}, audit


def _pmsi_tables(ctx: StageContext, key: str) -> list[tuple[int, ir.Table]]:
    # One table per PMSI year, its files (numbered files, parts of a directory) stacked; the year is in
    # the names of the extract's files.
    staged = ctx.staged(key)
    years = pmsi_year_groups(ctx.sources(key) if ctx.sources else staged, key, ctx.config)
    return [(year % 100, read_parquet(ctx.con, [staged[i] for i in idx])) for year, idx in years.items()]


def _run_pmsi(ctx: StageContext) -> tuple[dict[str, Path], list[AuditRow]]:
    con = ctx.con
    b = pmsi_stage.union_years(_pmsi_tables(ctx, "MCO_B"), pmsi_stage.MCO_B_TYPES, "T_MCOaaB")
    c = pmsi_stage.union_years(_pmsi_tables(ctx, "MCO_C"), pmsi_stage.MCO_C_TYPES, "T_MCOaaC")
    v = pmsi_stage.union_years(_pmsi_tables(ctx, "MCO_VALO"), pmsi_stage.MCO_VALO_TYPES, "T_MCOaaVALO")
    nir_map = read_parquet(con, ctx.out("ingest", "nir_map"))
    out = ctx.out("pmsi", "stays_all")
    stays = pmsi_stage.mco_stays(b, c, v, nir_map, ctx.config)
    # The line-key checks of the three tables are branches of the same query, their results rows of it.
    for key, table in (("MCO_B", b), ("MCO_C", c), ("MCO_VALO", v)):
        stays = with_check_row(stays, ctx.repeated_keys(key, table, tuple(pmsi_stage.STAY_KEY)),
                               pmsi_stage.KEY_CHECK_FATES[key], "RSA_NUM")
    write_parquet(con, stays, out, pmsi_stage.STAY_KEY)
    by_fate = pmsi_stage.stays_by_fate(read_parquet(con, out))
    for key, repeated in pmsi_stage.repeated_keys(by_fate).items():
        ctx.key_checked(key, repeated)
    return {"stays_all": out}, pmsi_stage.stays_audit_rows(by_fate, ctx.config.cleaning)


def _run_outputs(ctx: StageContext) -> tuple[dict[str, Path], list[AuditRow]]:
    con, cfg, paths = ctx.con, ctx.config, ctx.paths
    persons_base = read_parquet(con, ctx.out("ingest", "persons_base"))
    roster = read_parquet(con, ctx.out("ingest", "roster"))
    summary = read_parquet(con, ctx.out("dcir", "claims_summary"))
    stays_all = read_parquet(con, ctx.out("pmsi", "stays_all"))
    claims = dcir_stage.kept_claims(summary)

    write_parquet(con, pmsi_stage.stays_valid(stays_all), paths.stays,
                  ["person_id", "entry_date", "exit_date", "ETA_NUM", "RSA_NUM"])
    stays = read_parquet(con, paths.stays)
    death = deaths_stage.deaths(
        persons_base, deaths_stage.pmsi_deaths(stays), deaths_stage.last_activity(claims, stays),
        cfg.cleaning.death_claim_tolerance_days,
    )
    death_path = ctx.out("outputs", "deaths")
    write_parquet(con, death, death_path, ["person_id"])
    death = read_parquet(con, death_path)
    audit = deaths_stage.audit_deaths(death)
    write_parquet(con, outputs_stage.persons_table(persons_base, death, roster, cfg), paths.persons, ["person_id"])
    write_parquet(con, outputs_stage.panel_table(claims, stays, cfg), paths.panel, ["person_id", "month"])
    write_parquet(con, outputs_stage.eol_daily_table(claims, read_parquet(con, paths.persons), cfg), paths.eol_daily,
                  ["person_id", "care_date"])
    death_path.unlink(missing_ok=True)
    return {"persons": paths.persons, "panel": paths.panel, "stays": paths.stays, "eol_daily": paths.eol_daily}, audit


def _run_cohort(ctx: StageContext) -> tuple[dict[str, Path], list[AuditRow]]:
    con, cfg, paths = ctx.con, ctx.config, ctx.paths
    persons = read_parquet(con, paths.persons)
    panel = read_parquet(con, paths.panel)
    periods = read_parquet(con, ctx.out("ingest", "ald_periods"))
    # The candidate rows (the prior-window join of the whole panel) are written once: the cohort query
    # reads them three times and would otherwise compute them three times.
    candidates = ctx.out("cohort", "candidates")
    write_parquet(con, cohort_stage.candidate_rows(persons, panel, cfg), candidates, round_floats=False)
    write_parquet(con, cohort_stage.cohort_table(persons, panel, periods, cfg, read_parquet(con, candidates)),
                  paths.cohort, ["treated", "index_date", "person_id"])
    candidates.unlink(missing_ok=True)
    audit = cohort_flow(persons, read_parquet(con, paths.cohort))
    cohort_stage.check_cohort_usable(audit, str(paths.data))
    return {"cohort": paths.cohort}, audit


def cohort_flow(persons: ir.Table, cohort: ir.Table) -> list[AuditRow]:
    """Cohort-flow rows (stage 'cohort': extract, cleaned, eligible) and one row per ineligibility reason."""
    pa = persons.group_by("treated").aggregate(n=persons.count()).execute()
    n_treated = int(pa.loc[pa.treated == 1, "n"].sum())
    n_persons = int(pa["n"].sum())
    c = cohort
    people = c.group_by("treated").aggregate(n=c.person_id.nunique()).execute()
    in_treated = int(people.loc[people.treated == 1, "n"].sum())
    in_control = int(people.loc[people.treated == 0, "n"].sum())
    by = c.group_by(["treated", "ineligible_reason"]).aggregate(n=c.count()).execute()
    by["ineligible_reason"] = by["ineligible_reason"].where(by["ineligible_reason"].notna(), None)
    n_rows = int(by["n"].sum())
    elig = by[by["ineligible_reason"].isna()]
    e_t = int(elig.loc[elig.treated == 1, "n"].sum())
    e_c = int(elig.loc[elig.treated == 0, "n"].sum())
    rows = [
        AuditRow("cohort", "extract", n_persons, n_persons, 0, treated_rows=n_treated,
                 control_rows=n_persons - n_treated,
                 description="Persons in the extract after unification (treated = linked roster persons)",
                 source="docs/CONTRACTS.md#2-cleaning-outputs-buildclean"),
        AuditRow("cohort", "cleaned", n_persons, in_treated + in_control, n_persons - in_treated - in_control,
                 treated_rows=in_treated, control_rows=in_control,
                 description="Persons with a cohort row (treated at inclusion; controls with nursing care "
                             "before a candidate index)",
                 source="docs/cleaning.md#control-index-dates"),
        AuditRow("cohort", "eligible", n_rows, e_t + e_c, n_rows - e_t - e_c, treated_rows=e_t, control_rows=e_c,
                 unit="cohort_rows", description="Cohort rows (units) meeting every eligibility criterion",
                 source="docs/CONTRACTS.md#2-cleaning-outputs-buildclean"),
    ]
    remaining = n_rows
    for reason in cohort_stage.INELIGIBLE_REASONS:
        sub = by[by["ineligible_reason"] == reason]
        n = int(sub["n"].sum())
        rows.append(AuditRow("eligibility", reason, remaining, remaining - n, n,
                             treated_rows=int(sub.loc[sub.treated == 1, "n"].sum()),
                             control_rows=int(sub.loc[sub.treated == 0, "n"].sum()),
                             description=f"Cohort rows whose first failing criterion is {reason}",
                             source="docs/cleaning.md#eligibility"))
        remaining -= n
    return rows


STAGES: list[StageDef] = [
    StageDef(
        "ingest", ("IR_BEN_R", "IR_IMB_R", "ROSTER"), (),
        lambda c: {"tables": c.section("extract"),
                   "study": {k: str(getattr(c.study, k)) for k in ("inclusion_start", "inclusion_end", "claims_end")}},
        _run_ingest, "beneficiaries, person map, ALD periods, roster", key_checks=("IR_BEN_R",),
    ),
    StageDef(
        # T_MCOaaB/C only for the possible death dates (SOR_MOD 9 exits) of the end-of-life care days.
        "dcir", ("ER_PRS_F", "MCO_B", "MCO_C"), ("ingest",),
        lambda c: {
            "window": {k: str(getattr(c.study, k)) for k in ("claims_start", "claims_end", "flux_lag_months")},
            "cleaning": _cleaning_subset(c, ["drop_dpn_qlf_71", "drop_bse_prs_nat_0", "net_regularisations",
                                             "apply_flux_window", "categories", "experiment",
                                             "eol_daily_days", "max_line_amount_eur",
                                             "max_line_amount_by_category", "max_care_after_flux_days"]),
        },
        _run_dcir, "ER_PRS_F rules, netting, categories", key_checks=("ER_PRS_F",),
    ),
    StageDef(
        "pmsi", ("MCO_B", "MCO_C", "MCO_VALO"), ("ingest",),
        lambda c: {
            "window": [str(c.study.claims_start), str(c.study.claims_end)],
            "cleaning": _cleaning_subset(c, ["drop_ghm_90", "drop_bad_return_codes",
                                             "drop_duplicate_geographic_finess", "duplicate_geographic_finess"]),
        },
        _run_pmsi, "MCO stays, exclusions, costs", key_checks=("MCO_B", "MCO_C", "MCO_VALO"),
    ),
    StageDef(
        "outputs", (), ("ingest", "dcir", "pmsi"),
        lambda c: {
            "study": {"regions": c.study.regions, "claims_start": str(c.study.claims_start),
                      "claims_end": str(c.study.claims_end)},
            "cleaning": _cleaning_subset(c, ["death_claim_tolerance_days", "categories", "eol_daily_days"]),
            "complex_flags": c.cohort.complex_flags,
        },
        _run_outputs, "deaths, persons, panel, stays, end-of-life care days",
    ),
    StageDef(
        "cohort", (), ("ingest", "outputs"),
        lambda c: {"cohort": c.section("cohort"), "study": c.section("study"),
                   "ald_groups": c.cleaning.ald_groups, "categories": list(c.cleaning.category_names)},
        _run_cohort, "matching cohort and eligibility",
    ),
]
STAGE_NAMES = [s.name for s in STAGES]
