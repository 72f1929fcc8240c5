"""The execution engines behind the cleaning stages: DuckDB (default, out-of-core) or Spark.

Stages are Ibis expressions only, so the same definitions compile to DuckDB SQL or Spark SQL. This
module owns everything backend-specific: connecting, reading Parquet, writing Parquet, and turning
what each engine writes into one normalised file (same column order, types and row order), so that
both engines produce identical outputs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from pipeline.config import EngineSettings
from pipeline.io import PipelineError, atomic_path


class EngineError(PipelineError):
    """The requested engine cannot start (missing package, Java, bad setting)."""


def duckdb_spill_dir(settings: EngineSettings, build: Path) -> Path:
    """The DuckDB spill directory: the configured one, or ``<build>/tmp/duckdb_spill``."""
    if settings.duckdb_temp_directory:
        return Path(settings.duckdb_temp_directory)
    return Path(build) / "tmp" / "duckdb_spill"


def make_backend(settings: EngineSettings, build: Path) -> Any:
    """Connect the Ibis backend named by ``settings.name`` with its resource settings."""
    if settings.name == "duckdb":
        return _duckdb_backend(settings, build)
    if settings.name == "spark":
        return _spark_backend(settings, build)
    raise EngineError(f"Unknown engine {settings.name!r}: use 'duckdb' or 'spark'.")


def _duckdb_backend(settings: EngineSettings, build: Path) -> Any:
    spill = duckdb_spill_dir(settings, build)
    spill.mkdir(parents=True, exist_ok=True)
    con = ibis.duckdb.connect(
        memory_limit=settings.duckdb_memory_limit,
        threads=settings.duckdb_threads,
        temp_directory=str(spill),
    )
    # The runner shows its own stage-level progress; DuckDB's bar would interleave with it.
    con.raw_sql("SET enable_progress_bar = false")
    return con


_SPARK_SESSION: Any = None


def _spark_backend(settings: EngineSettings, build: Path) -> Any:
    global _SPARK_SESSION
    try:
        from pyspark.sql import SparkSession
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise EngineError(
            "The Spark engine needs PySpark: install the 'spark' extra (pip install -e '.[spark]') "
            "and Java 17, or use --engine duckdb."
        ) from err
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)  # type: ignore[attr-defined]
    local_dir = Path(build) / "tmp" / "spark"
    local_dir.mkdir(parents=True, exist_ok=True)
    try:
        session = (
            SparkSession.builder.master(settings.spark_master)
            .appName("equilibres-clean")
            .config("spark.driver.memory", settings.spark_driver_memory)
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "4" if settings.spark_master.startswith("local") else "200")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.local.dir", str(local_dir))
            .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
            # SNDS sentinels (1600-01-01) predate the Gregorian switch: read and write dates as they
            # are (proleptic calendar, like DuckDB and Arrow) instead of rebasing them.
            .config("spark.sql.parquet.datetimeRebaseModeInRead", "CORRECTED")
            .config("spark.sql.parquet.datetimeRebaseModeInWrite", "CORRECTED")
            .config("spark.sql.parquet.int96RebaseModeInRead", "CORRECTED")
            .config("spark.sql.parquet.int96RebaseModeInWrite", "CORRECTED")
            .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
            .getOrCreate()
        )
    except Exception as err:  # pragma: no cover - depends on Java being present
        raise EngineError(
            f"Spark could not start ({type(err).__name__}: {err}). Check that Java 17 is installed "
            "(java -version) and SPARK_LOCAL_IP is set, or use --engine duckdb."
        ) from err
    session.sparkContext.setLogLevel("ERROR")
    _SPARK_SESSION = session
    return ibis.pyspark.connect(session)


def stop_spark() -> None:
    """Stop the Spark session started by this process, if any (tests and the benchmark call it)."""
    global _SPARK_SESSION
    if _SPARK_SESSION is not None:
        _SPARK_SESSION.stop()
        _SPARK_SESSION = None


def engine_name(con: Any) -> str:
    return "spark" if con.name == "pyspark" else con.name


_TABLE_COUNTER = 0


def read_parquet(con: Any, path: Path | list[Path]) -> ir.Table:
    """Read one Parquet file, or several with the same columns stacked, as an Ibis table."""
    global _TABLE_COUNTER
    paths = [Path(p) for p in path] if isinstance(path, list) else [Path(path)]
    if not paths:
        raise ValueError("read_parquet needs at least one file")
    if len(paths) > 1 and engine_name(con) == "spark":
        return ibis.union(*[read_parquet(con, p) for p in paths], distinct=False)
    _TABLE_COUNTER += 1
    name = "".join(ch if ch.isalnum() else "_" for ch in f"t{_TABLE_COUNTER}_{paths[0].stem.lower()}")
    if len(paths) == 1:
        return con.read_parquet(str(paths[0]), table_name=name)
    return con.read_parquet([str(p) for p in paths], table_name=name)


def write_parquet(con: Any, expr: ir.Table, path: Path, order_by: list[str] | None = None,
                  round_floats: bool = True) -> int:
    """Execute ``expr`` and write it to a single Parquet file at ``path`` atomically; return its rows.

    Columns are written with exactly the Ibis types of ``expr`` and rows sorted by ``order_by``, so
    both engines write the same file. DuckDB streams the result straight to the file (COPY ... TO),
    so outputs larger than memory are fine; the explicit casts matter because Ibis types a literal
    ``int8`` that DuckDB would otherwise store as INTEGER. Spark writes a directory of part files
    (range-partitioned when sorted, so part files are in order), rewritten batch by batch into one
    file with the same Arrow schema.

    Float columns are rounded (``_deterministic_floats``) unless ``round_floats`` is false, which
    only suits an unsorted intermediate table: its row order already depends on thread scheduling,
    so it is not byte-reproducible anyway, and whoever reads it rounds its own outputs.

    Pages are Snappy-compressed: writing the 13 M-row claims summary of a scale-0.1 extract
    uncompressed took more CPU (a quarter more bytes to write), and reading it back costs the same.
    """
    path = Path(path)
    if round_floats:
        expr = _deterministic_floats(expr)
    with atomic_path(path) as tmp:
        if engine_name(con) == "duckdb":
            _duckdb_copy(con, expr, tmp, order_by or [])
        else:
            if order_by:
                expr = expr.order_by(order_by)
            part_dir = tmp.with_name(tmp.name + ".spark")
            try:
                con.to_parquet(expr, part_dir, mode="overwrite")
                parts = sorted(part_dir.glob("part-*.parquet"))
                dataset = pads.dataset([str(p) for p in parts], format="parquet") if parts else None
                _rewrite_single(dataset, tmp, expr.schema().to_pyarrow())
            finally:
                shutil.rmtree(part_dir, ignore_errors=True)
    return pq.ParquetFile(path).metadata.num_rows


FLOAT_DECIMALS = 6


def _deterministic_floats(expr: ir.Table) -> ir.Table:
    """Float columns rounded to ``FLOAT_DECIMALS`` decimals (a millionth of a euro).

    A parallel SUM adds its partial sums in whatever order the threads finish, so two runs on the
    same input can differ in the last bits (1e-13 €) and the files would not be byte-identical.
    Amounts are whole cents, so their exact sums sit far from any 6-decimal rounding boundary and
    the rounding removes that noise without changing a value by more than 5e-7.
    """
    floats = [name for name, dtype in expr.schema().items() if dtype.is_floating()]
    if not floats:
        return expr
    return expr.mutate(**{name: expr[name].round(FLOAT_DECIMALS) for name in floats})


def _duckdb_copy(con: Any, expr: ir.Table, dest: Path, order_by: list[str]) -> None:
    from ibis.backends.sql.datatypes import DuckDBType

    # Registers the in-memory tables (ibis.memtable) the expression uses, as to_parquet would.
    con._run_pre_execute_hooks(expr)
    sql = con.compile(expr)
    cols = ", ".join(f'CAST("{name}" AS {DuckDBType.to_string(dtype)}) AS "{name}"'
                     for name, dtype in expr.schema().items())
    order = f" ORDER BY {', '.join(chr(34) + c + chr(34) for c in order_by)}" if order_by else ""
    target = str(dest).replace("'", "''")
    con.raw_sql(f"COPY (SELECT {cols} FROM ({sql}) AS _out{order}) TO '{target}' (FORMAT parquet)")


def _rewrite_single(dataset: pads.Dataset | None, dest: Path, schema: pa.Schema) -> None:
    """Rewrite a dataset into one Parquet file with the expression's schema (streaming by batch)."""
    target = pa.schema([pa.field(f.name, f.type, nullable=True) for f in schema])
    with pq.ParquetWriter(dest, target, compression="snappy") as writer:
        if dataset is None:
            writer.write_table(target.empty_table())
            return
        for batch in dataset.to_batches():
            table = pa.Table.from_batches([batch]).select(target.names)
            writer.write_table(table.cast(target))
