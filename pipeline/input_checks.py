"""Checks the cleaning runs on its inputs before any stage reads them, and the diagnosis of read failures.

``equilibres validate`` is the full contract check; cleaning cannot re-run all of it on every
extract, but a few defects would otherwise give a quietly wrong result or a raw engine error deep in
a stage, so it checks them on every input file it is about to read:

* the table has rows (an empty ER_PRS_F would give a cohort without claims, not an error);
* the line key of the contract (``contract_spec.TABLES[key].unique``) identifies a line: a
  duplicated ER_PRS_F line (the nine join keys) would be summed by regularisation netting and its
  euros counted twice; a duplicated stay (ETA_NUM, RSA_NUM) or beneficiary (BEN_NIR_PSA,
  BEN_RNG_GEM) likewise. The roster is not checked here: duplicate roster rows are an audited
  cleaning rule (``roster_one_row_per_person``).

The key check reads only the key columns and groups them by one 64-bit hash (exact recount on a
hit), in DuckDB within the engine's memory limit (it spills beyond it). A file that passes is
recorded under ``<build>/tmp/checks/`` by its content hash, so an unchanged input is checked once.
Readability, missing columns and column types are checked when the runner stages the input
(:func:`pipeline.readers.parquet_needs_conversion`).

When a stage fails with an engine error, :func:`diagnose_read_failure` reads the stage's input
files in full: a corrupt data page (the footer intact, so nothing is noticed before) becomes an
:class:`~pipeline.readers.UnreadableFileError` naming the file; any other error is left as it is,
so real bugs stay visible.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.config import StudyConfig
from pipeline.contract_spec import TABLES
from pipeline.io import PipelineError, atomic_write_json
from pipeline.readers import UnreadableFileError, display_name

CHECK_VERSION = 1
# Tables whose line key is checked by cleaning (see the module docstring for the roster).
KEY_CHECKED = ("IR_BEN_R", "ER_PRS_F", "MCO_B", "MCO_C", "MCO_VALO")


class EmptyTableError(PipelineError):
    """An input table has no rows."""


class DuplicateKeyError(PipelineError):
    """Lines of an input table share the contract's line key."""


@dataclass(frozen=True)
class FileCheck:
    file: str
    table: str
    rows: int
    duplicate_keys: int
    cached: bool

    def as_record(self) -> dict[str, Any]:
        return {"file": self.file, "table": self.table, "rows": self.rows, "duplicate_keys": self.duplicate_keys,
                "cached": self.cached}


def _connect(config: StudyConfig, spill: Path):
    import duckdb

    spill.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SET threads TO {int(config.engine.duckdb_threads)}")
    con.execute(f"SET memory_limit = '{config.engine.duckdb_memory_limit}'")
    con.execute(f"SET temp_directory = '{str(spill).replace(chr(39), chr(39) * 2)}'")
    con.execute("SET enable_progress_bar = false")
    return con


def _duplicate_keys(con, path: str, keys: str) -> tuple[int, int]:
    """(key values occurring more than once, rows carrying them) in one Parquet file.

    Grouping on one 64-bit hash of the key columns instead of the columns themselves keeps the hash
    table small (one integer per line rather than nine values, one of them a string): grouping on the
    nine columns of 171 M ER_PRS_F lines filled the 8 GB memory limit. Lines sharing a hash
    but not a key (a collision, about 1 in 10^11 pairs) can only raise a false alarm, so a hit is
    counted again on the columns themselves and only that exact count is reported."""
    hashed = con.execute(
        f"SELECT COUNT(*) FROM (SELECT 1 FROM read_parquet('{path}') GROUP BY hash({keys}) HAVING COUNT(*) > 1)"
    ).fetchone()[0]
    if not hashed:
        return 0, 0
    return con.execute(
        f"SELECT COUNT(*), COALESCE(SUM(n), 0) FROM (SELECT COUNT(*) AS n FROM "
        f"read_parquet('{path}') GROUP BY {keys} HAVING COUNT(*) > 1)"
    ).fetchone()


def check_table(key: str, files: list[Path], sources: list[Path], hashes: list[str], config: StudyConfig,
                cache_dir: Path, spill_dir: Path, data_dir: Path | None = None) -> list[FileCheck]:
    """Check the (staged, typed Parquet) ``files`` of one input table; raise on an empty table or
    duplicated line keys. ``sources`` are the files of the extract (named in messages, by their path
    under ``data_dir``: parts of a directory share names), ``hashes`` their sha256 (cache keys)."""
    spec = TABLES[key]
    results: list[FileCheck] = []
    con = None
    try:
        for f, src, h in zip(files, sources, hashes, strict=True):
            record = cache_dir / f"{key}.{h[:20]}.v{CHECK_VERSION}.json"
            if record.exists():
                try:
                    data = json.loads(record.read_text(encoding="utf-8"))
                    results.append(FileCheck(display_name(src, data_dir), spec.label, int(data["rows"]), 0,
                                             cached=True))
                    continue
                except (OSError, ValueError, KeyError):
                    pass
            rows = pq.ParquetFile(f).metadata.num_rows
            dup_keys = dup_lines = 0
            if key in KEY_CHECKED and spec.unique and rows:
                if con is None:
                    con = _connect(config, spill_dir)
                keys = ", ".join('"' + k + '"' for k in spec.unique)
                path = str(f).replace("'", "''")
                try:
                    dup_keys, dup_lines = _duplicate_keys(con, path, keys)
                except Exception:
                    diagnosed = diagnose_read_failure([f], {Path(f): src})
                    if diagnosed is None:
                        raise
                    raise diagnosed from None
            if dup_keys:
                what = ("nine join keys" if key == "ER_PRS_F" else "line key")
                consequence = {
                    "ER_PRS_F": "regularisation netting would sum the copies and count their euros twice",
                    "IR_BEN_R": "a beneficiary would be counted twice",
                }.get(key, "a stay would be counted twice")
                raise DuplicateKeyError(
                    f"{src} ({spec.label}): {dup_keys:,} value(s) of the {what} ({', '.join(spec.unique)}) occur "
                    f"more than once, on {dup_lines:,} rows in all; {consequence}. The extract was probably "
                    "concatenated twice or badly joined: remove the duplicate rows (keep one per key) and run "
                    "again; `equilibres validate DIR` shows examples."
                )
            results.append(FileCheck(display_name(src, data_dir), spec.label, rows, 0, cached=False))
            atomic_write_json(record, {"rows": rows, "table": spec.label, "file": display_name(src, data_dir)})
        if key in KEY_CHECKED and not spec.per_year and len(files) > 1:
            if con is None:
                con = _connect(config, spill_dir)
            _check_keys_across_files(con, key, files, sources, hashes, cache_dir, data_dir)
    finally:
        if con is not None:
            con.close()
    if files and sum(r.rows for r in results) == 0:
        names = ", ".join(f"{display_name(s, data_dir)}: 0 rows" for s in sources)
        raise EmptyTableError(
            f"Input table {spec.label} has no rows ({names}) in {sources[0].parent}: the export is empty or "
            "was cut short. Export the table again; every table of docs/CONTRACTS.md section 1 must have rows."
        )
    return results


def _check_keys_across_files(con, key: str, files: list[Path], sources: list[Path], hashes: list[str],
                             cache_dir: Path, data_dir: Path | None) -> None:
    """A table in several files (by year, by month, parts): a line key found in two files is a line
    extracted twice (overlapping periods, a part copied twice); each file alone passed."""
    import hashlib

    record = cache_dir / f"{key}.across.{hashlib.sha256(''.join(hashes).encode()).hexdigest()[:20]}.v{CHECK_VERSION}.json"
    if record.exists():
        return
    spec = TABLES[key]
    keys = ", ".join('"' + k + '"' for k in spec.unique)
    listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    source = f"read_parquet([{listed}], filename = true, union_by_name = true)"
    # Each file alone has no duplicate, so any repeated key is across files. One 64-bit hash per line
    # keeps the grouping small, as in _duplicate_keys; a hit is recounted on the columns themselves.
    hashed = con.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM {source} GROUP BY hash({keys}) HAVING COUNT(*) > 1)"
                         ).fetchone()[0]
    n_keys, example = con.execute(
        f"SELECT COUNT(*), ANY_VALUE(files) FROM (SELECT LIST(DISTINCT filename ORDER BY filename) AS files FROM "
        f"{source} GROUP BY {keys} HAVING COUNT(*) > 1)"
    ).fetchone() if hashed else (0, None)
    if n_keys:
        by_staged = {str(f): s for f, s in zip(files, sources, strict=True)}
        names = [display_name(by_staged.get(f, Path(f)), data_dir) for f in example]
        raise DuplicateKeyError(
            f"Input table {spec.label} is in {len(files)} files and {n_keys:,} line key(s) ({', '.join(spec.unique)}) "
            f"occur in more than one of them (e.g. in {' and '.join(names[:2])}): the files overlap (a year file "
            "beside its month files, a part copied twice), and the lines would be counted twice. Keep each line in "
            f"one file only (extract {data_dir or sources[0].parent})."
        )
    atomic_write_json(record, {"files": [display_name(s, data_dir) for s in sources], "table": spec.label})


def check_inputs(staged: dict[str, list[Path]], sources: dict[str, list[Path]], hashes: dict[str, list[str]],
                 config: StudyConfig, build: Path, data_dir: Path | None = None) -> dict[str, Any]:
    """Check every table in ``staged``; the summary (time, rows per file) goes into the manifest."""
    t0 = time.perf_counter()
    build = Path(build)
    cache = build / "tmp" / "checks"
    spill = build / "tmp" / "duckdb_spill"
    if config.engine.duckdb_temp_directory:
        spill = Path(config.engine.duckdb_temp_directory)
    files: list[dict[str, Any]] = []
    for key in staged:
        files += [c.as_record() for c in check_table(key, staged[key], sources[key], hashes[key], config,
                                                     cache, spill, data_dir)]
    return {"seconds": round(time.perf_counter() - t0, 3), "files": files,
            "checks": ["table has rows", "line key unique (" + ", ".join(KEY_CHECKED) + ")"]}


def diagnose_read_failure(files: list[Path], sources: dict[Path, Path] | None = None) -> PipelineError | None:
    """After an engine error in a stage: the first input file that cannot be read in full, as an
    :class:`UnreadableFileError`, or None when every file reads (the error is then not the input's)."""
    for f in files:
        try:
            pf = pq.ParquetFile(f)
            for _ in pf.iter_batches(batch_size=65_536):
                pass
        except Exception as err:  # noqa: BLE001 - any decoding failure means a damaged file
            src = (sources or {}).get(Path(f), Path(f))
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            return UnreadableFileError(
                f"{src}: the Parquet file is damaged — its footer reads but its data does not ({first}). "
                "It was probably corrupted in transfer: copy or export it again (`equilibres validate` checks "
                "every file)."
            )
    return None


class EngineMemoryError(PipelineError):
    """The engine could not run a stage within its memory limit."""


def out_of_memory_error(err: BaseException, stage: str, config: StudyConfig, build: Path) -> PipelineError | None:
    """An engine out-of-memory failure of ``stage`` as a message saying which limit and what to change;
    None for any other error."""
    name = type(err).__name__
    text = str(err)
    if name != "OutOfMemoryException" and "java.lang.OutOfMemoryError" not in text:
        return None
    first = text.strip().splitlines()[0] if text.strip() else name
    e = config.engine
    if e.name == "spark":
        setting = f"[engine] spark_driver_memory = {e.spark_driver_memory!r}"
    else:
        spill = Path(e.duckdb_temp_directory) if e.duckdb_temp_directory else Path(build) / "tmp" / "duckdb_spill"
        setting = (f"[engine] duckdb_memory_limit = {e.duckdb_memory_limit!r} with {e.duckdb_threads} thread(s), "
                   f"spilling to {spill}")
    return EngineMemoryError(
        f"Cleaning stage '{stage}' ran out of memory under {setting}: {first} Raise the memory limit in a "
        "--config file, lower duckdb_threads, or free disk space for the spill directory; outputs of the "
        "previous run were left as they were."
    )
