"""Reading the cached cleaning and matching outputs the indicators need (never recomputing them)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pandas as pd

from indicators.outcomes import ClaimsData
from pipeline.config import StudyConfig
from pipeline.io import PipelineError
from pipeline.paths import BuildPaths
from pipeline.tables import MATCHED, PERSONS, STAYS, eol_daily_contract, panel_contract, validate_frame

# Columns of the cleaning outputs the indicators read (the cleaning writes more).
STAYS_READ = ["person_id", "entry_date", "exit_date", "SEJ_NBJ", "SOR_MOD", "is_seance", "cost"]
PANEL_READ_EXCLUDED = ("hosp_stays", "hosp_days", "seances")  # stays come from the stays table
_PERSON_COLS = ["person_id", "treated", "inclusion_date", "exit_date", "death_date", "death_source",
                "death_flag_error"]

# One loaded ClaimsData per build directory, reused while its input files are unchanged (sweep).
_CLAIMS_CACHE: dict[tuple, ClaimsData] = {}


def require_inputs(build: Path) -> BuildPaths:
    """Check the cleaning and matching outputs exist; say which command to run if not."""
    paths = BuildPaths(Path(build))
    missing_clean = [p for p in (paths.persons, paths.panel, paths.stays) if not p.exists()]
    if missing_clean:
        raise PipelineError(
            f"Cleaning outputs missing in {paths.clean}: {[p.name for p in missing_clean]}. Run "
            f"`equilibres clean --data <extract> --out {paths.root}` first."
        )
    if not paths.output("matched").exists():
        raise PipelineError(
            f"Matching output {paths.output('matched')} is missing. Run "
            f"`equilibres match --out {paths.root}` first."
        )
    return paths


def _stamp(paths: list[Path]) -> tuple:
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)


def load_claims(build: Path, config: StudyConfig) -> ClaimsData:
    """Persons in memory; panel, stays and eol_daily as parquet paths queried by DuckDB; cached per build."""
    paths = BuildPaths(Path(build))
    for p in (paths.persons, paths.panel, paths.stays):
        if not p.exists():
            raise PipelineError(f"{p} is missing. Run `equilibres clean --data <extract> --out {paths.root}` first.")
    if not paths.eol_daily.exists():
        raise PipelineError(
            f"{paths.eol_daily} (decedents' DCIR spending per care day, read by the end-of-life indicators) "
            f"is missing: the cleaning outputs predate it. Re-run `equilibres clean --data <extract> --out "
            f"{paths.root}`."
        )
    key = (_stamp([paths.persons, paths.panel, paths.stays, paths.eol_daily]),
           config.fingerprint("study", "cleaning"))
    if key in _CLAIMS_CACHE:
        return _CLAIMS_CACHE[key]
    fix = f"Re-run `equilibres clean --out {paths.root} --force`."
    panel = panel_contract(config)
    panel.subset([c for c in panel.columns if c not in PANEL_READ_EXCLUDED]).check(paths.panel, fix, types=False)
    STAYS.subset(STAYS_READ).check(paths.stays, fix, types=False)
    eol_daily_contract(config).check(paths.eol_daily, fix, types=False)
    _check_eol_days(paths, config)
    cols = _available(paths.persons, _PERSON_COLS)
    persons = validate_frame(PERSONS, pd.read_parquet(paths.persons, columns=cols), paths.persons)
    con = duckdb.connect()
    try:
        last = con.execute(f"SELECT max(CAST(month AS DATE)) FROM read_parquet('{paths.panel.as_posix()}')"
                           ).fetchone()[0]
    finally:
        con.close()
    data_end = _data_end(last, config)
    claims = ClaimsData(persons.set_index("person_id"), paths.panel, paths.stays, data_end,
                        eol_daily=paths.eol_daily, threads=config.engine.duckdb_threads)
    _CLAIMS_CACHE.clear()
    _CLAIMS_CACHE[key] = claims
    return claims


def _check_eol_days(paths: BuildPaths, config: StudyConfig) -> None:
    """eol_daily must cover the end-of-life window: compare the days the cleaning run kept (its
    manifest) with indicators.eol_window_days (the configuration only checks its own two values)."""
    import json

    if not paths.clean_manifest.exists():
        return
    cleaning = json.loads(paths.clean_manifest.read_text(encoding="utf-8")).get("parameters", {}).get("cleaning", {})
    kept = cleaning.get("eol_daily_days")
    window = config.indicators.eol_window_days
    if kept is not None and int(kept) < window:
        raise PipelineError(
            f"{paths.eol_daily} holds the {kept} days before each death (cleaning.eol_daily_days of the "
            f"cleaning run, {paths.clean_manifest}), fewer than indicators.eol_window_days = {window}. Re-run "
            f"`equilibres clean --data <extract> --out {paths.root}` with cleaning.eol_daily_days >= {window}."
        )


def _available(path: Path, wanted: list[str]) -> list[str]:
    import pyarrow.parquet as pq

    have = set(pq.read_schema(path).names)
    return [c for c in wanted if c in have]


def _data_end(last_month: dt.date | None, config: StudyConfig) -> dt.date:
    if last_month is None:
        return config.study.claims_end
    end = (pd.Timestamp(last_month) + pd.offsets.MonthEnd(0)).date()
    return min(end, config.study.claims_end)


def load_matched(build: Path) -> pd.DataFrame:
    """The matched cohort (validated): one row per (unit, matched set), every membership included."""
    path = require_inputs(build).output("matched")
    return prepare_matched(pd.read_parquet(path), path)


def prepare_matched(matched: pd.DataFrame, where: Path | str = "matched frame") -> pd.DataFrame:
    m = matched.copy()
    for c in ("unit_id", "person_id"):
        if c in m.columns:
            m[c] = m[c].astype(str)
    if len(m) == 0:
        raise PipelineError(f"{where} has no rows: matching found no pairs. Check the matching settings "
                            f"(caliper, exact covariates) and re-run `equilibres match`.")
    return validate_frame(MATCHED, m, where)
