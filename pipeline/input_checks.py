"""Checks the cleaning makes on its inputs, and the diagnosis of read failures.

``equilibres validate`` is the full contract check; cleaning cannot re-run all of it on every
extract, but a few defects would otherwise give a quietly wrong result or a raw engine error deep in
a stage, so it checks them on every input file it reads:

* the table has rows (an empty ER_PRS_F would give a cohort without claims, not an error), read from
  the Parquet footers before any stage (:func:`check_inputs`: no data is read);
* the line key of the contract (``contract_spec.TABLES[key].unique``) identifies a line: a
  duplicated ER_PRS_F line (the nine join keys) would be summed by regularisation netting and its
  euros counted twice; a duplicated stay (ETA_NUM, RSA_NUM within a PMSI year) or beneficiary
  (BEN_NIR_PSA, BEN_RNG_GEM) likewise. The roster is not checked here: duplicate roster rows are an
  audited cleaning rule (``roster_one_row_per_person``).

The key check is not a pass of its own: it rides on the first query of the stage that reads the
table (:data:`pipeline.clean_stages.STAGES`, ``key_checks``): :func:`repeated_line_keys` is one more
branch of that query, whose result the stage writes beside its output (a check row, ``fate`` < 0);
IR_BEN_R's key is the grouping key of the ingest stage's person map, so its check is a row count.
The stage hands the count to the runner, which stops the run with :func:`duplicate_key_error` (an
exact recount naming the file, the key, the counts and an example) when lines repeat. Readability,
missing columns and column types are checked when the runner stages the input
(:func:`pipeline.readers.parquet_needs_conversion`).

When a stage fails with an engine error, :func:`diagnose_read_failure` reads the stage's input
files in full: a corrupt data page (the footer intact, so nothing is noticed before) becomes an
:class:`~pipeline.readers.UnreadableFileError` naming the file; any other error is left as it is,
so real bugs stay visible.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pyarrow.parquet as pq

from pipeline.config import StudyConfig
from pipeline.contract_spec import IDENTIFIER_COLUMNS, TABLES
from pipeline.io import PipelineError
from pipeline.readers import UnreadableFileError, display_name, mask_identifier, pmsi_year_groups

# Tables whose line key is checked by cleaning (see the module docstring for the roster).
KEY_CHECKED = ("IR_BEN_R", "ER_PRS_F", "MCO_B", "MCO_C", "MCO_VALO")
INPUT_CHECKS = ["table has rows (Parquet footers, before the stages)",
                "line key unique (" + ", ".join(KEY_CHECKED) + "), in the first query of the stage reading the table"]


class EmptyTableError(PipelineError):
    """An input table has no rows."""


class DuplicateKeyError(PipelineError):
    """Lines of an input table share the contract's line key."""


@dataclass(frozen=True)
class FileCheck:
    """What cleaning checked of one input file: its rows, and whether its line key was checked by an
    earlier run (``cached``: the stage that checks it is up to date, so it did not read the file)."""

    file: str
    table: str
    rows: int
    duplicate_keys: int
    cached: bool

    def as_record(self) -> dict[str, Any]:
        return {"file": self.file, "table": self.table, "rows": self.rows, "duplicate_keys": self.duplicate_keys,
                "cached": self.cached}


def parquet_rows(files: Sequence[Path]) -> int:
    """Rows of Parquet files, from their footers (no data read)."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def check_inputs(staged: dict[str, list[Path]], sources: dict[str, list[Path]], key_checked: set[str],
                 data_dir: Path | None = None) -> dict[str, Any]:
    """Rows of every file of the tables in ``staged`` (their Parquet footers); raise
    :class:`EmptyTableError` on a table without rows. ``key_checked``: the tables whose line key the
    stages about to run check (the others were checked by the run that wrote their stages' outputs).
    The summary (time, rows per file) goes into the manifest."""
    t0 = time.perf_counter()
    files: list[dict[str, Any]] = []
    for key, paths in staged.items():
        spec = TABLES[key]
        srcs = sources[key]
        rows = [parquet_rows([f]) for f in paths]
        if paths and sum(rows) == 0:
            names = ", ".join(f"{display_name(s, data_dir)}: 0 rows" for s in srcs)
            raise EmptyTableError(
                f"Input table {spec.label} has no rows ({names}) in {srcs[0].parent}: the export is empty or "
                "was cut short. Export the table again; every table of docs/CONTRACTS.md section 1 must have rows."
            )
        cached = key in KEY_CHECKED and key not in key_checked
        files += [FileCheck(display_name(s, data_dir), spec.label, n, 0, cached).as_record()
                  for s, n in zip(srcs, rows, strict=True)]
    return {"seconds": round(time.perf_counter() - t0, 3), "files": files, "checks": list(INPUT_CHECKS)}


# -- the line-key check, inside a stage's query ---------------------------------------------------


def repeated_line_keys(table: ir.Table, keys: Sequence[str], *, exact: bool = False) -> ir.Table:
    """One row, ``repeated``: the lines of ``table`` whose line key (``keys``) is that of another line,
    the first line of each key not counted (0 when the key identifies a line).

    ``exact=False`` (DuckDB only) sorts one 64-bit hash of the key columns and compares each hash with
    the one before it: a sort of one integer per line costs about half a hash grouping of the same
    integers (2.5 s against 5 s of CPU for 17 M ER_PRS_F lines), and grouping on the nine columns
    themselves filled the 8 GB memory limit at 171 M lines. Lines sharing a hash but not a key (about
    1 in 10^11 pairs) only raise a false alarm, which :func:`duplicate_key_error` clears by an exact
    recount. ``exact=True`` groups on the columns themselves: Spark's ``hash`` has 32 bits (collisions
    every run at this size) and a window over one unpartitioned table runs on a single task there.
    """
    if exact:
        g = table.group_by(list(keys)).aggregate(n=table.count())
        g = g.filter(g.n > 1)
        return g.aggregate(repeated=(g.n - 1).sum().fill_null(0).cast("int64"))
    s = table.select(h=_duckdb_hash(ibis.struct({k: table[k] for k in keys})))
    s = s.mutate(previous=s.h.lag().over(ibis.window(order_by=s.h)))
    return s.aggregate(repeated=(s.h == s.previous).fill_null(False).cast("int64").sum().fill_null(0))


@ibis.udf.scalar.builtin(name="hash")
def _duckdb_hash(value) -> dt.uint64:  # noqa: ANN001 - any type
    """DuckDB's unsigned 64-bit ``hash``, as it is (Ibis' ``hash()`` converts it to a signed integer
    through a bit string; the check only compares hashes)."""


def _connect(config: StudyConfig, spill: Path):
    import duckdb

    spill.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SET threads TO {int(config.engine.duckdb_threads)}")
    con.execute(f"SET memory_limit = '{config.engine.duckdb_memory_limit}'")
    con.execute(f"SET temp_directory = '{str(spill).replace(chr(39), chr(39) * 2)}'")
    con.execute("SET enable_progress_bar = false")
    return con


def _key_sql(key: str) -> tuple[str, str]:
    """The key columns of ``key`` as a SQL list, and as one list of their values as text (an example)."""
    unique = TABLES[key].unique
    return (", ".join('"' + k + '"' for k in unique),
            "[" + ", ".join(f'CAST("{k}" AS VARCHAR)' for k in unique) + "]")


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _example(key: str, values: Sequence[Any], copies: int) -> str:
    """One repeated key as messages show it (identifiers masked)."""
    shown = [f"{c}={mask_identifier(v) if c in IDENTIFIER_COLUMNS else v}"
             for c, v in zip(TABLES[key].unique, values, strict=True)]
    return f"{', '.join(shown)} ({copies} copies)"


def duplicate_key_error(key: str, files: list[Path], sources: list[Path], config: StudyConfig, spill: Path,
                        data_dir: Path | None = None) -> DuplicateKeyError | None:
    """After a stage's check found repeated line keys in table ``key``: the exact diagnosis, as the
    error to raise (file, key columns, counts, an example, what to do), or None when the columns
    themselves repeat nowhere (a hash collision of :func:`repeated_line_keys`).

    Each (staged, typed Parquet) file is checked alone first, then the files together (a table in
    several files; a PMSI table within each year, across the parts of that year). ``sources`` are the
    extract's files, named in messages by their path under ``data_dir``."""
    spec = TABLES[key]
    cols, example = _key_sql(key)
    con = _connect(config, spill)
    try:
        for f, src in zip(files, sources, strict=True):
            try:
                row = con.execute(
                    f"SELECT COUNT(*), COALESCE(SUM(n), 0), ARG_MAX(example, n), MAX(n) FROM (SELECT COUNT(*) AS n, "
                    f"{example} AS example FROM read_parquet({_quoted(f)}) GROUP BY {cols} HAVING COUNT(*) > 1)"
                ).fetchone()
            except Exception:
                diagnosed = diagnose_read_failure([f], {Path(f): src})
                if diagnosed is None:
                    raise
                return diagnosed  # type: ignore[return-value]
            dup_keys, dup_lines, values, copies = row
            if dup_keys:
                what = ("nine join keys" if key == "ER_PRS_F" else "line key")
                consequence = {
                    "ER_PRS_F": "regularisation netting would sum the copies and count their euros twice",
                    "IR_BEN_R": "a beneficiary would be counted twice",
                }.get(key, "a stay would be counted twice")
                return DuplicateKeyError(
                    f"{src} ({spec.label}): {dup_keys:,} value(s) of the {what} ({', '.join(spec.unique)}) occur "
                    f"more than once, on {dup_lines:,} rows in all (rule: line key unique; e.g. "
                    f"{_example(key, values, copies)}); {consequence}. The extract was probably concatenated "
                    "twice or badly joined: remove the duplicate rows (keep one per key) and run again; "
                    "`equilibres validate DIR` lists them."
                )
        # A PMSI table is keyed within a year: its files are compared within each year.
        groups = (pmsi_year_groups(sources, key, config).values() if spec.per_year else [range(len(files))])
        for idx in (list(g) for g in groups if len(g) > 1):
            err = _repeated_across_files(con, key, [files[i] for i in idx], [sources[i] for i in idx], data_dir)
            if err is not None:
                return err
    finally:
        con.close()
    return None


def _repeated_across_files(con, key: str, files: list[Path], sources: list[Path],
                           data_dir: Path | None) -> DuplicateKeyError | None:
    """A table in several files (by year, by month, parts): a line key found in two files is a line
    extracted twice (overlapping periods, a part copied twice); each file alone passed."""
    spec = TABLES[key]
    cols, example_sql = _key_sql(key)
    source = f"read_parquet([{', '.join(_quoted(f) for f in files)}], filename = true, union_by_name = true)"
    n_keys, first = con.execute(
        f"SELECT COUNT(*), ARG_MAX({{'files': files, 'example': example, 'n': n}}, n) FROM (SELECT LIST(DISTINCT "
        f"filename ORDER BY filename) AS files, {example_sql} AS example, COUNT(*) AS n FROM {source} GROUP BY "
        f"{cols} HAVING COUNT(*) > 1)"
    ).fetchone()
    if not n_keys:
        return None
    example_files, example, copies = first["files"], first["example"], first["n"]
    by_staged = {str(f): s for f, s in zip(files, sources, strict=True)}
    names = [display_name(by_staged.get(f, Path(f)), data_dir) for f in example_files]
    return DuplicateKeyError(
        f"Input table {spec.label} is in {len(files)} files and {n_keys:,} line key(s) ({', '.join(spec.unique)}) "
        f"occur in more than one of them (e.g. in {' and '.join(names[:2])}: {_example(key, example, copies)}): "
        "the files overlap (a year file beside its month files, a part copied twice), and the lines would be "
        f"counted twice. Keep each line in one file only (extract {data_dir or sources[0].parent})."
    )


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
