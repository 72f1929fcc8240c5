"""Write synthetic tables with the contract types, byte-for-byte deterministically.

Parquet: fixed writer options, no pandas metadata, no timestamps. CSV: as exported by SAS/Oracle
(``;``, SAS datetimes ``01JAN2021:00:00:00``). XPT: SAS transport v8 through pyreadstat (long names),
the only SAS format pyreadstat can write — it stands in for SAS7BDAT, which shares the reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.contract_spec import TableSpec
from pipeline.io import PipelineError
from pipeline.readers import ARROW_TYPES

PARQUET_OPTIONS: dict[str, Any] = dict(compression="zstd", compression_level=1, use_dictionary=True,
                                       write_statistics=True, version="2.6")
# Unique on (almost) every row: the writer would build a dictionary for each row group only to drop it.
NO_DICTIONARY = frozenset({"DCT_ORD_NUM"})
# ER_PRS_F is written one row group per chunk of persons (about 1 M rows); bigger tables are split.
PARQUET_ROW_GROUP_MAX_ROWS = 4_000_000
FORMATS = ("parquet", "csv", "xpt")
SUFFIX = {"parquet": ".parquet", "csv": ".csv", "xpt": ".xpt"}


class GenerationError(PipelineError):
    """The generator cannot run with these arguments."""


def arrow_schema(spec: TableSpec) -> pa.Schema:
    """Contract types; a column the contract declares non-nullable is a REQUIRED Parquet column (no
    definition levels to encode: about a third cheaper to write)."""
    return pa.schema([pa.field(c.name, ARROW_TYPES[c.kind], nullable=c.nullable) for c in spec.columns])


def parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """The fixed writer options, with a dictionary for every column but those of NO_DICTIONARY."""
    return {**PARQUET_OPTIONS, "use_dictionary": [n for n in schema.names if n not in NO_DICTIONARY]}


def to_arrow(columns: dict[str, np.ndarray], spec: TableSpec) -> pa.Table:
    arrays = []
    for c in spec.columns:
        v = columns[c.name]
        if c.kind == "date":
            arrays.append(pa.array(np.asarray(v, dtype="datetime64[D]"), type=pa.date32()))
        elif c.kind == "str":
            arrays.append(pa.array(np.asarray(v, dtype=object), type=pa.string()))
        else:
            arrays.append(pa.array(v, type=ARROW_TYPES[c.kind]))
    return pa.Table.from_arrays(arrays, schema=arrow_schema(spec))


def sas_datetime_strings(arr: pa.Array) -> pa.Array:
    """date32 -> '01JAN2021:00:00:00', as SAS exports DATETIME20. columns."""
    ts = pc.cast(arr, pa.timestamp("s"))
    return pc.utf8_upper(pc.strftime(ts, format="%d%b%Y:%H:%M:%S", locale="C"))


def _csv_ready(table: pa.Table) -> pa.Table:
    cols = []
    for f, col in zip(table.schema, table.columns, strict=True):
        cols.append(sas_datetime_strings(col) if pa.types.is_date(f.type) else col)
    return pa.Table.from_arrays(cols, names=table.column_names)


class TableWriter:
    """Streaming writer for one table in one format (chunks are appended in order)."""

    def __init__(self, path: Path, spec: TableSpec, fmt: str):
        self.path, self.spec, self.fmt = Path(path), spec, fmt
        self.schema = arrow_schema(spec)
        self._writer: Any = None
        self._xpt_parts: list[pa.Table] = []
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        table = table.cast(self.schema)
        self.rows += table.num_rows
        if self.fmt == "parquet":
            if self._writer is None:
                self._writer = pq.ParquetWriter(self.path, self.schema, **parquet_options(self.schema))
            self._writer.write_table(table, row_group_size=max(1, min(table.num_rows, PARQUET_ROW_GROUP_MAX_ROWS)))
        elif self.fmt == "csv":
            t = _csv_ready(table)
            if self._writer is None:
                opts = pacsv.WriteOptions(delimiter=";", quoting_style="needed", include_header=True)
                self._writer = pacsv.CSVWriter(self.path, t.schema, write_options=opts)
            self._writer.write_table(t)
        elif self.fmt == "xpt":
            self._xpt_parts.append(table)
        else:  # pragma: no cover - checked by the generator
            raise ValueError(self.fmt)

    def close(self) -> None:
        if self.fmt in ("parquet", "csv"):
            if self._writer is None:  # empty table: still write the header / schema
                self.write(self.schema.empty_table())
            self._writer.close()
        elif self.fmt == "xpt":
            write_xpt(pa.concat_tables(self._xpt_parts) if self._xpt_parts else self.schema.empty_table(),
                      self.path, self.spec)


def write_table(path: Path, columns: dict[str, np.ndarray] | pa.Table, spec: TableSpec, fmt: str) -> int:
    table = columns if isinstance(columns, pa.Table) else to_arrow(columns, spec)
    w = TableWriter(path, spec, fmt)
    w.write(table)
    w.close()
    return table.num_rows


def write_xpt(table: pa.Table, path: Path, spec: TableSpec) -> None:
    """SAS transport v8 (long names). Dates become SAS dates (python date objects keep year 1600)."""
    import pandas as pd
    import pyreadstat

    data: dict[str, Any] = {}
    formats: dict[str, str] = {}
    for c in spec.columns:
        col = table.column(c.name)
        if c.kind == "date":
            data[c.name] = pd.Series(col.to_pylist(), dtype=object)
            formats[c.name] = "DATE9"
        elif c.kind == "str":
            data[c.name] = pd.Series([("" if v is None else v) for v in col.to_pylist()], dtype=object)
        else:
            data[c.name] = col.to_pandas().astype("float64" if c.kind == "float" else "Int64").astype("float64")
    frame = pd.DataFrame(data)
    table_name = spec.label.replace("aa", "")[:32]
    pyreadstat.write_xport(frame, str(path), file_format_version=8, table_name=table_name,
                           variable_format=formats)
