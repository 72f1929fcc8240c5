"""Find and read the tables of an SNDS extract, whatever its format, with the contract types.

Formats (from the file extension): Parquet; CSV as exported from SAS/Oracle, Excel or other tools
(separator and encoding detected when the configured ones do not fit, see :mod:`pipeline.csv_dialect`;
dates ``01JAN2021:00:00:00``, ISO or ``DD/MM/YYYY``; decimal comma tolerated); SAS7BDAT and XPT
through pyreadstat. Which files hold which table (one file, one per period, a directory of parts;
PMSI per year, each year one file, several or a directory of parts) is :mod:`pipeline.extract_files`;
its names are re-exported here. Conversion to the contract types is one SQL
projection run by DuckDB, shared by every format, so the same extract in any format gives the same
table. A value that does not convert is never silently turned into a missing value: the reader
raises :class:`ContractTypeError` naming file, column, count and (masked) examples.

``stage_as_parquet`` converts a non-Parquet input to a typed Parquet file by streaming (DuckDB
``read_csv`` for CSV, ``pyreadstat.read_file_in_chunks`` for SAS): a big CSV is never held in memory.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import StudyConfig
from pipeline.contract_spec import IDENTIFIER_COLUMNS, TABLES, ColumnSpec, TableSpec
from pipeline.csv_dialect import CsvDialect, detect_dialect, duckdb_csv_source
from pipeline.extract_files import (  # noqa: F401 - re-exported: the readers' public names
    FORMAT_PREFERENCE,
    TABLE_KEYS,
    ContractTypeError,
    MissingTableError,
    TableSearch,
    UnreadableFileError,
    display_name,
    find_tables,
    locate_tables,
    pmsi_year,
    pmsi_year_groups,
    stem_regex,
    table_pattern,
)
from pipeline.io import PipelineError

SAS_CHUNK_ROWS = 200_000
SAS_EPOCH = dt.date(1960, 1, 1)
ARROW_TYPES = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "date": pa.date32()}
# Text dates besides ISO (cast directly): SAS DATETIME20./DATE9. exports, French DD/MM/YYYY, compact.
DATE_FORMATS = ("%d%b%Y:%H:%M:%S", "%d%b%Y:%H:%M:%S.%f", "%d%b%Y:%H:%M", "%d%b%Y", "%d/%m/%Y",
                "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%Y%m%d")


# ------------------------------------------------------------------------------------------------
# Typed projection (DuckDB SQL), shared by every format
def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def resolve_spec(table: str) -> TableSpec:
    key = table.upper()
    if key in TABLES:
        return TABLES[key]
    for spec in TABLES.values():
        if stem_regex(spec.label.replace("aa", "{aa}")).match(key) or spec.label.upper() == key:
            return spec
    raise KeyError(f"Unknown table {table!r}; expected one of {', '.join(TABLES)}")


def cast_expression(col: ColumnSpec, src: str, source_type: str) -> str:
    """SQL turning source column ``src`` (DuckDB type ``source_type``) into the contract type."""
    st = source_type.upper()
    is_text = st.startswith("VARCHAR") or st == "BLOB"
    is_num = any(st.startswith(t) for t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                                           "USMALLINT", "UINTEGER", "UBIGINT", "DECIMAL", "DOUBLE", "FLOAT"))
    s = quote_identifier(src)
    if col.kind == "str":
        if is_text:
            return f"NULLIF(TRIM({s}), '')"
        if is_num:  # SAS stores some codes as numbers: 8.0 -> '8'
            return (f"CASE WHEN {s} IS NULL THEN NULL WHEN {s} = TRUNC({s}) THEN CAST(CAST({s} AS BIGINT) AS VARCHAR)"
                    f" ELSE CAST({s} AS VARCHAR) END")
        return f"CAST({s} AS VARCHAR)"
    if col.kind == "int":
        if is_text:
            t = f"NULLIF(REPLACE(TRIM({s}), ',', '.'), '')"
            return f"CASE WHEN TRY_CAST({t} AS DOUBLE) = TRUNC(TRY_CAST({t} AS DOUBLE)) THEN TRY_CAST(TRY_CAST({t} AS DOUBLE) AS BIGINT) END"
        if is_num:
            return f"CASE WHEN {s} = TRUNC({s}) THEN TRY_CAST({s} AS BIGINT) END"
        return f"TRY_CAST({s} AS BIGINT)"
    if col.kind == "float":
        if is_text:
            return f"TRY_CAST(NULLIF(REPLACE(TRIM({s}), ',', '.'), '') AS DOUBLE)"
        return f"TRY_CAST({s} AS DOUBLE)"
    if col.kind == "date":
        if st == "DATE":
            return s
        if st.startswith("TIMESTAMP"):
            return f"CAST({s} AS DATE)"
        if is_text:
            t = f"NULLIF(TRIM({s}), '')"
            tries = [f"TRY_CAST(TRY_STRPTIME({t}, '{f}') AS DATE)" for f in DATE_FORMATS]
            tries.insert(0, f"TRY_CAST({t} AS DATE)")
            return f"COALESCE({', '.join(tries)})"
        return f"TRY_CAST({s} AS DATE)"
    raise ValueError(col.kind)


def failure_expression(col: ColumnSpec, src: str, source_type: str) -> str:
    """SQL boolean: the source value is present but does not convert."""
    s = quote_identifier(src)
    present = f"({s} IS NOT NULL AND TRIM(CAST({s} AS VARCHAR)) <> '')"
    return f"({present} AND ({cast_expression(col, src, source_type)}) IS NULL)"


def mask_identifier(value: object) -> str:
    """A few characters of an identifier, never the whole of it."""
    text = "" if value is None else str(value)
    return text[:3] + "…" if len(text) > 3 else "…"


def _connect():
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads TO 2")
    return con


def source_dialect(path: Path, config: StudyConfig, table: TableSpec | None = None) -> CsvDialect | None:
    """How a CSV file is read (separator, encoding; detected when the configured ones do not fit the
    contract's columns of ``table``); None for other formats."""
    if Path(path).suffix.lower() != ".csv":
        return None
    return detect_dialect(Path(path), config, table.names if table is not None else None,
                          table.label if table is not None else "the table")


def describe_source(path: Path, table: str, config: StudyConfig) -> dict[str, object]:
    """How a file of the extract is read, for the manifest: format, and for CSV separator and encoding."""
    dialect = source_dialect(path, config, resolve_spec(table))
    return dialect.as_record() if dialect is not None else {"format": Path(path).suffix.lower().lstrip(".")}


def _csv_source(con, path: Path, config: StudyConfig, table: TableSpec | None, scratch: Path | None) -> str:
    """A DuckDB FROM clause for the CSV (every column as text), checked to parse in full."""
    dialect = source_dialect(path, config, table)
    src = duckdb_csv_source(path, dialect, scratch)
    try:
        # Reading the whole file once shows a malformed row here rather than deep inside a query.
        con.execute(f"SELECT COUNT(*) FROM {src}").fetchall()
    except Exception as err:  # noqa: BLE001 - DuckDB raises several types for a bad row
        first = str(err).splitlines()[0]
        raise UnreadableFileError(
            f"Cannot read CSV file {path} (read as {dialect.describe()}): {first}. A row with more fields than "
            "the header usually holds an unquoted separator (a decimal comma in a comma-separated file: quote "
            "the field) or a stray quote; fix the export, or set [extract] csv_separator / csv_encodings."
        ) from None
    return src


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def source_columns(con, from_clause: str) -> dict[str, str]:
    """Column name -> DuckDB type of a FROM clause."""
    rows = con.execute(f"DESCRIBE SELECT * FROM {from_clause}").fetchall()
    return {r[0]: r[1] for r in rows}


def match_columns(spec: TableSpec, available: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Contract column -> source column (case-insensitive), and the contract columns not found."""
    upper = {k.strip().upper(): k for k in available}
    mapping, missing = {}, []
    for c in spec.columns:
        if c.name.upper() in upper:
            mapping[c.name] = upper[c.name.upper()]
        else:
            missing.append(c.name)
    return mapping, missing


def typed_select(spec: TableSpec, available: dict[str, str], mapping: dict[str, str]) -> str:
    return ", ".join(f"{cast_expression(c, mapping[c.name], available[mapping[c.name]])} AS {quote_identifier(c.name)}"
                     for c in spec.columns if c.name in mapping)


def _check_conversions(con, from_clause: str, spec: TableSpec, available: dict[str, str],
                       mapping: dict[str, str], path: Path) -> None:
    cols = [c for c in spec.columns if c.name in mapping]
    if not cols:
        return
    sums = ", ".join(f"SUM(CASE WHEN {failure_expression(c, mapping[c.name], available[mapping[c.name]])} "
                     f"THEN 1 ELSE 0 END)" for c in cols)
    counts = con.execute(f"SELECT {sums} FROM {from_clause}").fetchall()[0]
    bad = [(c, int(n or 0)) for c, n in zip(cols, counts, strict=True) if n]
    if not bad:
        return
    lines = [f"{path}: values that do not convert to the contract type ({spec.label}):"]
    for c, n in bad:
        src = mapping[c.name]
        ex = con.execute(f"SELECT DISTINCT CAST({quote_identifier(src)} AS VARCHAR) FROM {from_clause} WHERE "
                         f"{failure_expression(c, src, available[src])} LIMIT 3").fetchall()
        shown = [mask_identifier(e[0]) if c.name in IDENTIFIER_COLUMNS else repr(e[0]) for e in ex]
        lines.append(f"  - column {c.name}: {n:,} value(s) are not {c.kind} (e.g. {', '.join(shown)})")
    lines.append("Fix the export (types, date format, decimal separator) or run `equilibres validate` for "
                 "a full report.")
    raise ContractTypeError("\n".join(lines))


def _require_columns(spec: TableSpec, missing: list[str], available: dict[str, str], path: Path,
                     config: StudyConfig | None = None) -> None:
    if missing:
        import difflib

        hints = []
        for m in missing:
            close = difflib.get_close_matches(m.upper(), [a.upper() for a in available], n=1, cutoff=0.7)
            hints.append(f"{m}" + (f" (found {close[0]}: renamed?)" if close else ""))
        how = ""
        dialect = source_dialect(path, config, spec) if config is not None else None
        if dialect is not None:
            how = (f" (read as {len(available)} column(s): {dialect.describe()}; set [extract] csv_separator / "
                   "csv_encodings if that is wrong)")
        raise ContractTypeError(f"{path}: column(s) of {spec.label} missing: {', '.join(hints)}{how}. Export them "
                                "under their SNDS names.")


# ------------------------------------------------------------------------------------------------
# SAS (pyreadstat)
def _sas_reader(path: Path):
    import pyreadstat

    return pyreadstat.read_sas7bdat if path.suffix.lower() == ".sas7bdat" else pyreadstat.read_xport


def _sas_format_kind(fmt: str | None) -> str | None:
    if not fmt:
        return None
    f = fmt.upper().rstrip("0123456789.")
    if f.startswith(("DATETIME", "E8601DT", "IS8601DT", "NLDATM", "DATEAMPM")):
        return "datetime"
    if f.startswith(("DATE", "DDMMYY", "MMDDYY", "YYMMDD", "E8601DA", "IS8601DA", "EURDF", "NLDATE", "MINGUO",
                     "WEEKDATE", "WORDDATE", "JULIAN", "MONYY", "YYMM", "YYQ")):
        return "date"
    return None


def iter_sas_arrow(path: Path, chunk_rows: int = SAS_CHUNK_ROWS) -> Iterator[pa.Table]:
    """SAS7BDAT/XPT as Arrow chunks; SAS dates (days since 1960) and datetimes (seconds) -> date32."""
    import numpy as np
    import pyreadstat

    path = Path(path)
    reader = _sas_reader(path)
    try:
        for frame, meta in pyreadstat.read_file_in_chunks(reader, str(path), chunksize=chunk_rows,
                                                          disable_datetime_conversion=True):
            arrays, names = [], []
            for name in frame.columns:
                kind = _sas_format_kind((meta.original_variable_types or {}).get(name))
                s = frame[name]
                if kind in ("date", "datetime") and s.dtype.kind == "f":
                    days = np.floor(s.to_numpy() / (86400.0 if kind == "datetime" else 1.0))
                    valid = ~np.isnan(days)
                    out = np.full(days.size, np.datetime64("NaT"), dtype="datetime64[D]")
                    out[valid] = np.datetime64(SAS_EPOCH) + days[valid].astype(np.int64)
                    arrays.append(pa.array(out, type=pa.date32()))
                elif s.dtype == object:
                    arrays.append(pa.array([None if (v is None or v == "") else str(v) for v in s], type=pa.string()))
                else:
                    arrays.append(pa.array(s.to_numpy(), from_pandas=True))
                names.append(name)
            yield pa.Table.from_arrays(arrays, names=names)
    except PipelineError:
        raise
    except Exception as err:  # pyreadstat raises its own types
        raise UnreadableFileError(f"Cannot read SAS file {path}: {err}. Check that it is a valid "
                                  f"{path.suffix.lower()} file.") from None


# ------------------------------------------------------------------------------------------------
def open_source(con, path: Path, config: StudyConfig, sas_staging: Path | None = None,
                table: TableSpec | None = None) -> str:
    """A DuckDB FROM clause reading ``path`` raw (CSV all text; SAS staged to a raw Parquet first).

    ``sas_staging`` is a scratch path: the raw Parquet of a SAS file, or (as ``.utf8.csv``) the UTF-8
    copy of a cp1252 CSV. ``table`` lets the CSV reader detect the separator from its column names."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            pq.read_schema(path)
        except Exception as err:  # noqa: BLE001
            raise UnreadableFileError(f"Cannot read Parquet file {path}: {err} The file is truncated or is "
                                      "not Parquet (an interrupted copy?): copy or export it again.") from None
        return f"read_parquet('{_sql_path(path)}')"
    if suffix == ".csv":
        scratch = None if sas_staging is None else sas_staging.with_name(sas_staging.stem + ".utf8.csv")
        return _csv_source(con, path, config, table, scratch)
    if suffix in (".sas7bdat", ".xpt"):
        if sas_staging is None:
            raise ValueError("SAS input needs a staging path")
        writer = None
        try:
            for chunk in iter_sas_arrow(path):
                if writer is None:
                    writer = pq.ParquetWriter(sas_staging, chunk.schema)
                writer.write_table(chunk.cast(writer.schema) if chunk.schema != writer.schema else chunk)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise UnreadableFileError(f"SAS file {path} has no rows or columns.")
        return f"read_parquet('{_sql_path(sas_staging)}')"
    raise UnreadableFileError(f"{path}: unsupported format {suffix}; use .parquet, .csv, .sas7bdat or .xpt.")


def _typed_arrow(path: Path, spec: TableSpec, config: StudyConfig) -> pa.Table:
    path = Path(path)
    con = _connect()
    with tempfile.TemporaryDirectory(prefix="eq_read_") as tmpdir:
        src = open_source(con, path, config, sas_staging=Path(tmpdir) / "raw.parquet", table=spec)
        available = source_columns(con, src)
        mapping, missing = match_columns(spec, available)
        _require_columns(spec, missing, available, path, config)
        _check_conversions(con, src, spec, available, mapping, path)
        table = con.sql(f"SELECT {typed_select(spec, available, mapping)} FROM {src}").to_arrow_table()
    schema = pa.schema([pa.field(c.name, ARROW_TYPES[c.kind]) for c in spec.columns])
    return table.cast(schema)


def read_table(path: Path, table: str, config: StudyConfig) -> pd.DataFrame:
    """One table file as a DataFrame with the contract types (str object, int64 — Int64 when missing
    values exist — float64, dates datetime64[ms]; sentinel dates such as 1600-01-01 are kept)."""
    spec = resolve_spec(table)
    arrow = _typed_arrow(Path(path), spec, config)
    frame = arrow.to_pandas(date_as_object=False, coerce_temporal_nanoseconds=False)
    for c in spec.columns:
        if c.kind == "int" and frame[c.name].isna().any():
            frame[c.name] = frame[c.name].astype("Int64")
        elif c.kind == "int":
            frame[c.name] = frame[c.name].astype("int64")
        elif c.kind == "date":
            frame[c.name] = frame[c.name].astype("datetime64[ms]")
    return frame


def _arrow_kind_ok(kind: str, t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if kind == "str":
        return pa.types.is_string(t) or pa.types.is_large_string(t)
    if kind == "int":
        return pa.types.is_integer(t)
    if kind == "float":
        return pa.types.is_floating(t) or pa.types.is_integer(t)
    if kind == "date":
        return pa.types.is_date32(t)
    return False


def parquet_needs_conversion(path: Path, table: str) -> bool:
    """Whether a Parquet input must go through the typed conversion before the cleaning reads it.

    Files whose columns carry the contract types under their exact names are read in place (no
    copy); a column stored with another type (amounts as text, dates as timestamps or strings) or
    under another case sends the file through :func:`stage_as_parquet`, whose conversion counts
    the values that do not convert instead of failing deep inside a query. Raises
    :class:`UnreadableFileError` when the footer cannot be read, :class:`ContractTypeError` when
    contract columns are missing.
    """
    path = Path(path)
    spec = resolve_spec(table)
    try:
        schema = pq.read_schema(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a bad footer
        raise UnreadableFileError(f"Cannot read Parquet file {path} ({spec.label}): {err} The file is truncated "
                                  "or is not Parquet (an interrupted copy?): copy or export it again.") from None
    available = {n: str(t) for n, t in zip(schema.names, schema.types, strict=True)}
    mapping, missing = match_columns(spec, available)
    _require_columns(spec, missing, available, path)
    return any(mapping[c.name] != c.name or not _arrow_kind_ok(c.kind, schema.field(mapping[c.name]).type)
               for c in spec.columns)


def read_in_place(files: list[Path], table: str) -> list[bool]:
    """Which files of one table the cleaning reads as they are (the others go through
    :func:`stage_as_parquet`): Parquet files with the contract's column types; when a table is in
    several files, only if all are such files with one schema, since the stages stack them."""
    # Other types (amounts stored as text…) go through the typed conversion, which counts the values
    # that do not convert instead of failing deep inside a query.
    keep = [Path(f).suffix.lower() == ".parquet" and not parquet_needs_conversion(f, table) for f in files]
    if len(files) > 1:
        same = all(keep) and len({pq.read_schema(f).remove_metadata().to_string() for f in files}) == 1
        keep = [same] * len(files)
    return keep


def stage_as_parquet(path: Path, table: str, dest: Path, config: StudyConfig,
                     convert_parquet: bool = False) -> Path:
    """A typed Parquet copy of a non-Parquet input (streamed, written atomically); Parquet is returned as is
    unless ``convert_parquet`` (a Parquet input whose column types differ from the contract).

    ``dest`` is a directory (the file is ``dest/<stem>.parquet``) or a path ending in ``.parquet``.
    """
    path = Path(path)
    if path.suffix.lower() == ".parquet" and not convert_parquet:
        return path
    spec = resolve_spec(table)
    dest = Path(dest)
    target = dest if dest.suffix.lower() == ".parquet" else dest / f"{path.stem}.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    con = _connect()
    try:
        with tempfile.TemporaryDirectory(prefix="eq_stage_", dir=target.parent) as tmpdir:
            src = open_source(con, path, config, sas_staging=Path(tmpdir) / "raw.parquet", table=spec)
            available = source_columns(con, src)
            mapping, missing = match_columns(spec, available)
            _require_columns(spec, missing, available, path, config)
            _check_conversions(con, src, spec, available, mapping, path)
            con.execute(f"COPY (SELECT {typed_select(spec, available, mapping)} FROM {src}) TO "
                        f"'{_sql_path(tmp)}' (FORMAT PARQUET, COMPRESSION ZSTD, ROW_GROUP_SIZE 1000000)")
        os.replace(tmp, target)
    finally:
        con.close()
        if tmp.exists():
            tmp.unlink()
    return target
