"""Reading the cached cleaning and matching outputs the indicators need (never recomputing them)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pandas as pd

from indicators.outcomes import ClaimsData
from indicators.schemas import (
    MATCHED,
    PERSONS,
    STAYS_COLUMNS,
    check_parquet_columns,
    panel_columns,
    validate_frame,
)
from pipeline.config import StudyConfig
from pipeline.io import BuildPaths, PipelineError

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
    if not (paths.matching / "matched.parquet").exists():
        raise PipelineError(
            f"Matching output {paths.matching / 'matched.parquet'} is missing. Run "
            f"`equilibres match --out {paths.root}` first."
        )
    return paths


def _stamp(paths: list[Path]) -> tuple:
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)


def load_claims(build: Path, config: StudyConfig) -> ClaimsData:
    """Persons in memory, panel and stays as parquet paths queried by DuckDB; cached per build."""
    paths = BuildPaths(Path(build))
    for p in (paths.persons, paths.panel, paths.stays):
        if not p.exists():
            raise PipelineError(f"{p} is missing. Run `equilibres clean --data <extract> --out {paths.root}` first.")
    key = (_stamp([paths.persons, paths.panel, paths.stays]), config.fingerprint("study", "cleaning"))
    if key in _CLAIMS_CACHE:
        return _CLAIMS_CACHE[key]
    fix = f"Re-run `equilibres clean --out {paths.root} --force`."
    check_parquet_columns(paths.panel, panel_columns(config), "person × month panel", fix)
    check_parquet_columns(paths.stays, STAYS_COLUMNS, "MCO stays", fix)
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
                        config.engine.duckdb_threads)
    _CLAIMS_CACHE.clear()
    _CLAIMS_CACHE[key] = claims
    return claims


def _available(path: Path, wanted: list[str]) -> list[str]:
    import pyarrow.parquet as pq

    have = set(pq.read_schema(path).names)
    return [c for c in wanted if c in have]


def _data_end(last_month: dt.date | None, config: StudyConfig) -> dt.date:
    if last_month is None:
        return config.study.claims_end
    end = (pd.Timestamp(last_month) + pd.offsets.MonthEnd(0)).date()
    return min(end, config.study.claims_end)


def load_matched(build: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The matched cohort (validated) and the pairs table when present."""
    paths = require_inputs(build)
    path = paths.matching / "matched.parquet"
    matched = pd.read_parquet(path)
    matched = prepare_matched(matched, path)
    pairs_path = paths.matching / "pairs.parquet"
    pairs = pd.read_parquet(pairs_path) if pairs_path.exists() else None
    return matched, pairs


def prepare_matched(matched: pd.DataFrame, where: Path | str = "matched frame") -> pd.DataFrame:
    m = matched.copy()
    for c in ("unit_id", "person_id"):
        if c in m.columns:
            m[c] = m[c].astype(str)
    if len(m) == 0:
        raise PipelineError(f"{where} has no rows: matching found no pairs. Check the matching settings "
                            f"(caliper, exact covariates) and re-run `equilibres match`.")
    return validate_frame(MATCHED, m, where)
