"""`equilibres clean`: run the cleaning stages with caching, the audit trail and a manifest.

The runner is the only part of cleaning that touches files. Each stage has a fingerprint: a hash of
its code, the parameters it reads, the hashes of the extract files it reads and the fingerprints of
the stages it depends on. A stage whose fingerprint matches its last successful run (and whose
outputs are still in place) is skipped; otherwise it runs and writes its outputs atomically, then a
small record (``clean/_stages/<stage>.json``) with the fingerprint, output hashes, audit rows, time
and memory. ``audit/attrition.csv`` and ``clean/manifest.json`` are written last, the manifest only
after every output it lists is complete.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import ibis.expr.types as ir

from pipeline.config import StudyConfig
from pipeline.engine import engine_name, make_backend, read_parquet, stop_spark, write_parquet
from pipeline.input_checks import check_inputs, diagnose_read_failure, out_of_memory_error
from pipeline.io import (
    PipelineError,
    atomic_write_json,
    atomic_write_text,
    build_lock,
    restore_on_failure,
)
from pipeline.paths import BuildPaths
from pipeline.stages import ald as ald_stage
from pipeline.stages import cohort as cohort_stage
from pipeline.stages import dcir as dcir_stage
from pipeline.stages import deaths as deaths_stage
from pipeline.stages import ingest as ingest_stage
from pipeline.stages import outputs as outputs_stage
from pipeline.stages import pmsi as pmsi_stage
from pipeline.stages.rules import AUDIT_COLUMNS, AuditRow

log = logging.getLogger("equilibres.clean")

PACKAGE = "equilibres-eval"
# Files at most this large are hashed in full (sha256, streamed); larger ones by size, mtime and a
# sha256 of 32 evenly spaced 1 MiB blocks plus the last one, so a 10 GB extract is fingerprinted in
# well under a second. Any rewrite of a file changes its mtime, so the sample cannot miss an edit
# made by a normal tool.
FULL_HASH_MAX_BYTES = 256 * 1024 * 1024
SAMPLE_BLOCKS = 32
BLOCK = 1024 * 1024

TABLE_KEYS = ["IR_BEN_R", "IR_IMB_R", "ER_PRS_F", "MCO_B", "MCO_C", "MCO_VALO", "ROSTER"]


# -- hashing -------------------------------------------------------------------------------------


def file_hash(path: Path) -> dict[str, Any]:
    """A content fingerprint of one file (method recorded beside it)."""
    path = Path(path)
    st = path.stat()
    h = hashlib.sha256()
    if st.st_size <= FULL_HASH_MAX_BYTES:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(BLOCK), b""):
                h.update(chunk)
        return {"sha256": h.hexdigest(), "size": st.st_size, "method": "sha256"}
    h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    with open(path, "rb") as fh:
        step = max(1, (st.st_size - BLOCK) // SAMPLE_BLOCKS)
        for off in [*range(0, st.st_size - BLOCK, step)][:SAMPLE_BLOCKS] + [st.st_size - BLOCK]:
            fh.seek(off)
            h.update(fh.read(BLOCK))
    return {"sha256": h.hexdigest(), "size": st.st_size, "method": "sampled-sha256+size+mtime"}


def code_version() -> dict[str, str]:
    """Package version and a hash of the cleaning code (stages, engine, readers)."""
    here = Path(__file__).parent
    files = sorted((here / "stages").glob("*.py")) + [here / "engine.py"]
    for extra in ("readers.py",):
        if (here / extra).exists():
            files.append(here / extra)
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    try:
        version = metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        version = "0+unknown"
    return {"package_version": version, "stages_sha256": h.hexdigest()}


def _fingerprint(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _peak_rss_mb() -> float:
    """Peak resident memory so far of this process, of its finished children, and of live children
    (the Spark JVM), in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return round(max(own, kids, _live_children_peak_mb()), 1)


def _live_children_peak_mb() -> float:
    me = str(os.getpid())
    peak = 0.0
    try:
        entries = os.listdir("/proc")
    except OSError:  # pragma: no cover - not Linux
        return 0.0
    parents: dict[str, str] = {}
    for pid in entries:
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                parents[pid] = fh.read().rsplit(")", 1)[1].split()[1]
        except OSError:
            continue
    descendants, frontier = set(), {me}
    while frontier:
        nxt = {p for p, pp in parents.items() if pp in frontier and p not in descendants}
        descendants |= nxt
        frontier = nxt
    for pid in descendants:
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            continue
    return peak


# -- stage definitions ---------------------------------------------------------------------------


@dataclass
class StageContext:
    config: StudyConfig
    paths: BuildPaths
    con: Any
    staged: Callable[[str], list[Path]]
    stage_dir: Path

    def out(self, stage: str, name: str) -> Path:
        return self.stage_dir / stage / f"{name}.parquet"

    def read(self, path: Path) -> ir.Table:
        return read_parquet(self.con, path)


@dataclass(frozen=True)
class StageDef:
    name: str
    inputs: tuple[str, ...]
    upstream: tuple[str, ...]
    params: Callable[[StudyConfig], dict[str, Any]]
    run: Callable[[StageContext], tuple[dict[str, Path], list[AuditRow]]]
    description: str


def _cleaning_subset(cfg: StudyConfig, keys: list[str]) -> dict[str, Any]:
    data = cfg.section("cleaning")
    return {k: data[k] for k in keys}


def _run_ingest(ctx: StageContext) -> tuple[dict[str, Path], list[AuditRow]]:
    con = ctx.con
    ben = read_parquet(con, ctx.staged("IR_BEN_R"))
    imb = read_parquet(con, ctx.staged("IR_IMB_R"))
    roster = read_parquet(con, ctx.staged("ROSTER"))
    norm = ingest_stage.beneficiaries_normalised(ben)
    outs = {
        "persons_base": ctx.out("ingest", "persons_base"),
        "key_map": ctx.out("ingest", "key_map"),
        "nir_map": ctx.out("ingest", "nir_map"),
    }
    write_parquet(con, ingest_stage.persons_unified(norm), outs["persons_base"], ["person_id"])
    write_parquet(con, ingest_stage.person_key_map(norm), outs["key_map"], ["BEN_NIR_PSA", "BEN_RNG_GEM"])
    write_parquet(con, ingest_stage.person_nir_map(norm), outs["nir_map"], ["BEN_NIR_PSA"])
    key_map = read_parquet(con, outs["key_map"])
    nir_map = read_parquet(con, outs["nir_map"])
    audit = ingest_stage.audit_ingest(ben)

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
    write_parquet(con, ingest_stage.roster_linked(roster, nir_map), roster_all,
                  ["BEN_NIR_PSA", "EQL_INC_DTE", "EQL_EQP_ID"])
    rl = read_parquet(con, roster_all)
    outs["roster"] = ctx.out("ingest", "roster")
    write_parquet(con, ingest_stage.roster_persons(rl), outs["roster"], ["person_id"])
    audit += ingest_stage.audit_roster(rl)
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
    # Unsorted and unrounded: sorting or rounding tens of millions of rows would cost the stage time
    # for nothing (the outputs stage aggregates it again and rounds what it writes).
    write_parquet(con, summary, out, round_floats=False)
    ranges_path.unlink(missing_ok=True)
    audit = dcir_stage.audit_dcir(read_parquet(con, out), ctx.config.cleaning)
    return {"claims_summary": out}, audit


def _pmsi_tables(ctx: StageContext, key: str) -> list[tuple[int, ir.Table]]:
    return [(pmsi_stage.pmsi_year_of(p), read_parquet(ctx.con, p)) for p in ctx.staged(key)]


def _run_pmsi(ctx: StageContext) -> tuple[dict[str, Path], list[AuditRow]]:
    con = ctx.con
    b = pmsi_stage.union_years(_pmsi_tables(ctx, "MCO_B"), pmsi_stage.MCO_B_TYPES, "T_MCOaaB")
    c = pmsi_stage.union_years(_pmsi_tables(ctx, "MCO_C"), pmsi_stage.MCO_C_TYPES, "T_MCOaaC")
    v = pmsi_stage.union_years(_pmsi_tables(ctx, "MCO_VALO"), pmsi_stage.MCO_VALO_TYPES, "T_MCOaaVALO")
    nir_map = read_parquet(con, ctx.out("ingest", "nir_map"))
    out = ctx.out("pmsi", "stays_all")
    write_parquet(con, pmsi_stage.mco_stays(b, c, v, nir_map, ctx.config), out, ["pmsi_year", "ETA_NUM", "RSA_NUM"])
    audit = pmsi_stage.audit_pmsi(read_parquet(con, out), ctx.config.cleaning)
    return {"stays_all": out}, audit


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
    write_parquet(con, cohort_stage.cohort_table(persons, panel, periods, cfg), paths.cohort,
                  ["treated", "index_date", "person_id"])
    audit = cohort_flow(persons, read_parquet(con, paths.cohort))
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
                 description="Cohort rows (units) meeting every eligibility criterion",
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
        lambda c: {"tables": c.section("extract")},
        _run_ingest, "beneficiaries, person map, ALD periods, roster",
    ),
    StageDef(
        # T_MCOaaB/C only for the possible death dates (SOR_MOD 9 exits) of the end-of-life care days.
        "dcir", ("ER_PRS_F", "MCO_B", "MCO_C"), ("ingest",),
        lambda c: {
            "window": {k: str(getattr(c.study, k)) for k in ("claims_start", "claims_end", "flux_lag_months")},
            "cleaning": _cleaning_subset(c, ["drop_dpn_qlf_71", "drop_bse_prs_nat_0", "net_regularisations",
                                             "apply_flux_window", "categories", "experiment",
                                             "eol_daily_days"]),
        },
        _run_dcir, "ER_PRS_F rules, netting, categories",
    ),
    StageDef(
        "pmsi", ("MCO_B", "MCO_C", "MCO_VALO"), ("ingest",),
        lambda c: {
            "window": [str(c.study.claims_start), str(c.study.claims_end)],
            "cleaning": _cleaning_subset(c, ["drop_ghm_90", "drop_bad_return_codes",
                                             "drop_duplicate_geographic_finess", "duplicate_geographic_finess"]),
        },
        _run_pmsi, "MCO stays, exclusions, costs",
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


# -- result --------------------------------------------------------------------------------------


@dataclass
class StageRun:
    name: str
    status: str  # "ran" or "cached"
    seconds: float
    peak_rss_mb: float
    fingerprint: str
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class CleanResult:
    """What a cleaning run did: stages run or reused, outputs and where the audit trail is."""

    build: Path
    engine: str
    stages: list[StageRun]
    outputs: dict[str, dict[str, Any]]
    attrition: Path
    manifest: Path
    seconds: float

    @property
    def up_to_date(self) -> bool:
        return all(s.status == "cached" for s in self.stages)

    @property
    def ran(self) -> list[str]:
        return [s.name for s in self.stages if s.status == "ran"]

    def render(self) -> str:
        if self.up_to_date:
            head = f"Cleaning outputs in {self.build / 'clean'} are up to date (nothing to do)."
        else:
            head = (f"Cleaning ({self.engine}) ran {', '.join(self.ran)} in {self.seconds:.1f} s; "
                    f"reused {', '.join(s.name for s in self.stages if s.status == 'cached') or 'nothing'}.")
        lines = [head]
        for s in self.stages:
            lines.append(f"  {s.name:<8} {s.status:<6} {s.seconds:7.1f} s  peak {s.peak_rss_mb:8.0f} MiB")
        for name, info in self.outputs.items():
            lines.append(f"  {name:<8} {info['rows']:>10,} rows  {info['path']}")
        lines.append(f"  audit    {self.attrition}")
        lines.append(f"  manifest {self.manifest}")
        return "\n".join(lines)


# -- the runner ----------------------------------------------------------------------------------


def _setup_log(paths: BuildPaths) -> logging.Handler:
    paths.logs.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(paths.logs / "clean.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def _locate(data_dir: Path, config: StudyConfig) -> dict[str, list[Path]]:
    from pipeline.readers import locate_tables

    if not Path(data_dir).is_dir():
        raise PipelineError(f"Extract directory {data_dir} does not exist: give the extract to --data.")
    tables = locate_tables(Path(data_dir), config)
    missing = [k for k in TABLE_KEYS if not tables.get(k)]
    if missing:
        raise PipelineError(
            f"Extract {data_dir} lacks table(s) {', '.join(missing)}: every table of docs/CONTRACTS.md "
            "section 1 is needed (run `equilibres validate` on the directory)."
        )
    return {k: [Path(p) for p in v] for k, v in tables.items()}


def _stage_record_path(paths: BuildPaths, name: str) -> Path:
    return paths.clean / "_stages" / f"{name}.json"


def _load_record(paths: BuildPaths, name: str) -> dict[str, Any] | None:
    p = _stage_record_path(paths, name)
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _outputs_intact(record: dict[str, Any]) -> bool:
    for info in record.get("outputs", {}).values():
        p = Path(info["path"])
        if not p.exists() or p.stat().st_size != info["size"] or p.stat().st_mtime_ns != info["mtime_ns"]:
            return False
    return True


def _describe_output(path: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sha256": file_hash(path)["sha256"], "rows": pq.ParquetFile(path).metadata.num_rows}


def run_clean(data_dir: Path, build: Path, config: StudyConfig, force: bool = False) -> CleanResult:
    """Clean the extract in ``data_dir`` into ``build`` (cached stage by stage); see the module doc."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    t0 = time.perf_counter()
    paths = BuildPaths(Path(build))
    # restore_on_failure: a run that fails after some stages wrote their outputs puts every file of
    # clean/ and audit/ back as it was, so outputs, stage records and manifest always agree.
    with build_lock(paths.root, "clean"), restore_on_failure(paths.root, paths.clean, paths.audit):
        handler = _setup_log(paths)
        try:
            tables = _locate(Path(data_dir), config)
            input_hashes = {k: [{"file": p.name, **file_hash(p)} for p in tables[k]] for k in TABLE_KEYS}
            code = code_version()
            fingerprints: dict[str, str] = {}
            for s in STAGES:
                fingerprints[s.name] = _fingerprint({
                    "stage": s.name, "code": code["stages_sha256"], "params": s.params(config),
                    "inputs": {k: [h["sha256"] for h in input_hashes[k]] for k in s.inputs},
                    "upstream": {u: fingerprints[u] for u in s.upstream},
                })
            records = {s.name: _load_record(paths, s.name) for s in STAGES}
            todo = [
                s.name for s in STAGES
                if force or records[s.name] is None or records[s.name].get("fingerprint") != fingerprints[s.name]
                or not _outputs_intact(records[s.name])
            ]
            manifest_ok = paths.clean_manifest.exists() and paths.attrition.exists()
            engine = config.engine.name
            log.info("clean start: engine=%s force=%s stages to run=%s", engine, force, ",".join(todo) or "none")
            if not todo and manifest_ok:
                log.info("clean: every stage up to date, nothing to do")
                runs = [StageRun(s.name, "cached", 0.0, 0.0, fingerprints[s.name], records[s.name]["outputs"])
                        for s in STAGES]
                return _result(paths, engine, runs, time.perf_counter() - t0)

            runs: list[StageRun] = []
            con = make_backend(config.engine, paths.root) if todo else None
            staged_cache: dict[str, list[Path]] = {}

            def staged(key: str) -> list[Path]:
                if key not in staged_cache:
                    staged_cache[key] = _stage_inputs(tables[key], input_hashes[key], key, paths, config)
                return staged_cache[key]

            ctx = StageContext(config=config, paths=paths, con=con, staged=staged,
                               stage_dir=paths.clean / "_stages")
            # Inputs of the stages to run: staged (typed) and checked (rows, line keys) before any stage.
            needed = list(dict.fromkeys(k for s in STAGES if s.name in todo for k in s.inputs))
            checks = check_inputs({k: staged(k) for k in needed}, {k: tables[k] for k in needed},
                                  {k: [h["sha256"] for h in input_hashes[k]] for k in needed}, config, paths.root)
            log.info("input checks: %d file(s) in %.1f s", len(checks["files"]), checks["seconds"])
            console = Console(stderr=True)
            try:
                with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), TimeElapsedColumn(),
                              console=console, transient=True, disable=not console.is_terminal) as progress:
                    for s in STAGES:
                        rec = records[s.name]
                        if s.name not in todo:
                            runs.append(StageRun(s.name, "cached", 0.0, 0.0, fingerprints[s.name], rec["outputs"]))
                            log.info("stage %s: up to date (fingerprint %s)", s.name, fingerprints[s.name])
                            continue
                        task = progress.add_task(f"{s.name}: {s.description}", total=None)
                        log.info("stage %s: running (fingerprint %s)", s.name, fingerprints[s.name])
                        ts = time.perf_counter()
                        (paths.clean / "_stages" / s.name).mkdir(parents=True, exist_ok=True)
                        try:
                            outs, audit = s.run(ctx)
                        except Exception as err:
                            if isinstance(err, PipelineError):
                                raise
                            oom = out_of_memory_error(err, s.name, config, paths.root)
                            if oom is not None:
                                raise oom from None
                            # A corrupt data page only shows when the engine decodes it: name the file.
                            files = [p for k in s.inputs for p in staged(k)]
                            diagnosed = diagnose_read_failure(files, dict(zip(files, [f for k in s.inputs for f in
                                                                                      tables[k]], strict=False)))
                            if diagnosed is None:
                                raise
                            raise diagnosed from None
                        seconds = time.perf_counter() - ts
                        peak = _peak_rss_mb()
                        described = {name: _describe_output(p) for name, p in outs.items()}
                        record = {
                            "stage": s.name, "fingerprint": fingerprints[s.name], "outputs": described,
                            "audit": [a.as_record() for a in audit], "seconds": round(seconds, 3),
                            "peak_rss_mb": peak, "engine": engine,
                            "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                        }
                        atomic_write_json(_stage_record_path(paths, s.name), record)
                        records[s.name] = record
                        runs.append(StageRun(s.name, "ran", seconds, peak, fingerprints[s.name], described))
                        log.info("stage %s: done in %.1f s, peak memory %.0f MiB, outputs %s", s.name, seconds,
                                 peak, ", ".join(f"{k}={v['rows']} rows" for k, v in described.items()))
                        progress.remove_task(task)
            finally:
                if con is not None and engine_name(con) == "spark":
                    stop_spark()
                elif con is not None:
                    con.disconnect()

            _write_attrition(paths, records)
            _write_manifest(paths, config, tables, input_hashes, code, runs, records, input_checks=checks)
            result = _result(paths, engine, runs, time.perf_counter() - t0)
            log.info("clean done in %.1f s: ran %s", result.seconds, ",".join(result.ran))
            return result
        except BaseException as err:  # interrupted runs (KeyboardInterrupt) are logged too
            log.error("clean failed: %s", type(err).__name__)
            raise
        finally:
            log.removeHandler(handler)
            handler.close()


def _result(paths: BuildPaths, engine: str, runs: list[StageRun], seconds: float) -> CleanResult:
    finals = {}
    for r in runs:
        for name, info in r.outputs.items():
            if Path(info["path"]).parent == paths.clean:
                finals[name] = info
    return CleanResult(build=paths.root, engine=engine, stages=runs, outputs=finals, attrition=paths.attrition,
                       manifest=paths.clean_manifest, seconds=seconds)


def _stage_inputs(files: list[Path], hashes: list[dict[str, Any]], key: str, paths: BuildPaths,
                  config: StudyConfig) -> list[Path]:
    """Parquet files for one input table: Parquet inputs as they are; CSV/SAS converted once into
    ``<build>/tmp/staged`` under a name carrying the source hash, and reused while it is unchanged."""
    from pipeline.readers import parquet_needs_conversion, stage_as_parquet

    out = []
    for f, h in zip(files, hashes, strict=True):
        # Parquet with the contract's column types is read in place; other types (amounts stored as
        # text…) go through the typed conversion, which counts values that do not convert.
        convert = f.suffix.lower() == ".parquet" and parquet_needs_conversion(f, key)
        if f.suffix.lower() == ".parquet" and not convert:
            out.append(f)
            continue
        target = paths.tmp / "staged" / f"{f.stem}.{h['sha256'][:16]}.parquet"
        if not target.exists():
            log.info("staging %s (%s) as Parquet", f.name, key)
            stage_as_parquet(f, key, target, config, convert_parquet=convert)
        out.append(target)
    return out


def _write_attrition(paths: BuildPaths, records: dict[str, dict[str, Any] | None]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=AUDIT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for name in STAGE_NAMES:
        for row in (records[name] or {}).get("audit", []):
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in AUDIT_COLUMNS})
    atomic_write_text(paths.attrition, buf.getvalue())


def _write_manifest(paths: BuildPaths, config: StudyConfig, tables: dict[str, list[Path]],
                    input_hashes: dict[str, Any], code: dict[str, str], runs: list[StageRun],
                    records: dict[str, dict[str, Any] | None], input_checks: dict[str, Any] | None = None) -> None:
    outputs = {}
    for r in runs:
        for name, info in r.outputs.items():
            if Path(info["path"]).parent == paths.clean:
                outputs[name] = {"path": os.path.relpath(info["path"], paths.root), "sha256": info["sha256"],
                                 "rows": info["rows"], "size": info["size"]}
    att = file_hash(paths.attrition)
    outputs["attrition"] = {"path": os.path.relpath(paths.attrition, paths.root), "sha256": att["sha256"],
                            "size": att["size"]}
    manifest = {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "engine": config.engine.name,
        "inputs": {k: [{**h, "table": k} for h in v] for k, v in input_hashes.items()},
        "input_hash_method": (f"sha256 of the whole file up to {FULL_HASH_MAX_BYTES // 2**20} MiB; above, sha256 of "
                              f"size, mtime and {SAMPLE_BLOCKS}+1 sampled 1 MiB blocks"),
        "parameters": {s: config.section(s) for s in ("study", "extract", "cleaning", "cohort", "engine")},
        "code": code,
        "stages": {
            r.name: {"status": r.status, "fingerprint": r.fingerprint,
                     "seconds": (records[r.name] or {}).get("seconds"),
                     "peak_rss_mb": (records[r.name] or {}).get("peak_rss_mb"),
                     "engine": (records[r.name] or {}).get("engine"),
                     "finished_at": (records[r.name] or {}).get("finished_at")}
            for r in runs
        },
        "outputs": outputs,
        "input_checks": input_checks,
    }
    atomic_write_json(paths.clean_manifest, manifest)
