"""Schemas of the tables two steps exchange (docs/CONTRACTS.md §2–3), declared once.

The producer checks what it wrote and the consumer what it reads:

* cleaning checks each parquet file it wrote (persons, panel, stays, eol_daily, cohort) against
  :func:`clean_tables`: every column the later steps read is there, with the right kind of type;
* matching checks the cohort it reads the same way, and validates the matched cohort (pandera,
  :data:`MATCHED`) and the pairs (:data:`PAIRS`) before writing them;
* the indicators validate the persons and matched frames they load (pandera, lazily: every failure
  at once) and check the columns of the panel, stays and eol_daily files DuckDB queries in place.

Only the columns a consumer uses are required; extra columns are allowed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pandera.pandas as pa
import pyarrow as pyarrow
import pyarrow.parquet as pq

from pipeline.config import StudyConfig
from pipeline.io import PipelineError
from pipeline.stages import outputs

# ------------------------------------------------------------------------- frames held in memory
PERSONS = pa.DataFrameSchema(
    {
        "person_id": pa.Column(str, unique=True),
        "treated": pa.Column(int, pa.Check.isin([0, 1]), coerce=True),
        "inclusion_date": pa.Column("datetime64[ns]", nullable=True, coerce=True),
        "exit_date": pa.Column("datetime64[ns]", nullable=True, coerce=True),
        "death_date": pa.Column("datetime64[ns]", nullable=True, coerce=True),
        "death_source": pa.Column(str, nullable=True, required=False),
        "death_flag_error": pa.Column(int, pa.Check.isin([0, 1]), coerce=True, required=False),
    },
    strict=False,
    name="persons (clean/persons.parquet)",
)

# One row per (unit, matched set): a unit is a person at a time zero (``unit_id`` =
# ``<person_id>@<index_date>``); a control reused by several sets (matching with replacement) has one
# row per set, with its within-set weight.
MATCHED = pa.DataFrameSchema(
    {
        "unit_id": pa.Column(str),
        "person_id": pa.Column(str),
        "treated": pa.Column(int, pa.Check.isin([0, 1]), coerce=True),
        "index_date": pa.Column("datetime64[ns]", coerce=True),
        "weight": pa.Column(float, pa.Check.ge(0), coerce=True),
        "subclass": pa.Column(nullable=False),
    },
    strict=False,
    unique=["subclass", "unit_id"],
    name="matched cohort (matching/matched.parquet)",
)

# One row per (treated, control) pair of a matched set.
PAIRS = pa.DataFrameSchema(
    {
        "treated_id": pa.Column(str),
        "control_id": pa.Column(str),
        "subclass": pa.Column(nullable=False),
    },
    strict=False,
    name="matched pairs (matching/pairs.parquet)",
)


def validate_frame(schema: pa.DataFrameSchema, frame: pd.DataFrame, path: Path | str) -> pd.DataFrame:
    """Validate (and coerce) ``frame``; raise a PipelineError listing every failure."""
    try:
        return schema.validate(frame, lazy=True)
    except (pa.errors.SchemaErrors, pa.errors.SchemaError) as err:
        cases = getattr(err, "failure_cases", None)
        detail = (cases[["column", "check", "failure_case"]].head(10).to_string(index=False)
                  if cases is not None else str(err))
        raise PipelineError(
            f"{path} does not match the {schema.name} contract (docs/CONTRACTS.md):\n{detail}\n"
            f"Re-run the step that writes it."
        ) from None


# ------------------------------------------------------------------- parquet files queried in place
def _kind(t: pyarrow.DataType) -> str:
    if pyarrow.types.is_null(t):
        return "null"
    if pyarrow.types.is_string(t) or pyarrow.types.is_large_string(t):
        return "str"
    if pyarrow.types.is_integer(t):
        return "int"
    if pyarrow.types.is_floating(t):
        return "float"
    if pyarrow.types.is_date(t) or pyarrow.types.is_timestamp(t):
        return "date"
    return str(t)


@dataclass(frozen=True)
class ParquetTable:
    """The columns (name → kind: str, int, float or date) a parquet output holds."""

    key: str
    label: str
    columns: Mapping[str, str]

    def subset(self, names: Sequence[str]) -> ParquetTable:
        """The same table restricted to the columns a consumer reads."""
        return ParquetTable(self.key, self.label, {c: self.columns[c] for c in names})

    def check(self, path: Path, fix: str, *, types: bool = True) -> None:
        """Raise a PipelineError naming every missing column (and, with ``types``, every column of the
        wrong kind; a column of nulls only has no kind and passes)."""
        schema = pq.read_schema(path)
        have = {name: _kind(t) for name, t in zip(schema.names, schema.types, strict=True)}
        missing = [c for c in self.columns if c not in have]
        if missing:
            raise PipelineError(f"{path} ({self.label}) lacks columns {missing} (it has {len(have)} columns). {fix}")
        wrong = [f"{c} ({have[c]}, expected {k})" for c, k in self.columns.items()
                 if types and have[c] not in (k, "null")]
        if wrong:
            raise PipelineError(f"{path} ({self.label}) has columns of the wrong type: {', '.join(wrong)}. {fix}")


# The kind of every column of the cleaning outputs; spend_<category> columns are float, CPX_<flag> int.
KINDS = {
    "person_id": "str", "BEN_SEX_COD": "int", "birth_date": "date", "dpt": "str", "region": "str",
    "death_date": "date", "death_source": "str", "death_flag_error": "int", "treated": "int",
    "inclusion_date": "date", "exit_date": "date", "team_id": "str", "complex": "int", "last_claim_date": "date",
    "ETA_NUM": "str", "RSA_NUM": "int", "entry_date": "date", "SEJ_NBJ": "int", "SOR_MOD": "str",
    "GRG_GHM": "str", "is_seance": "int", "cost": "float", "stay_category": "str",
    "month": "date", "care_date": "date", "hosp_stays": "int", "hosp_days": "int", "seances": "int",
    "nursing_acts": "float", "experiment_hours": "float",
    "unit_id": "str", "index_date": "date", "age": "int", "eligible": "int", "at_risk_until": "date",
}


def kind_of(column: str) -> str:
    if column.startswith("spend_"):
        return "float"
    if column.startswith("CPX_"):
        return "int"
    return KINDS[column]


def parquet_table(key: str, label: str, columns: Sequence[str]) -> ParquetTable:
    return ParquetTable(key, label, {c: kind_of(c) for c in columns})


PERSONS_TABLE = parquet_table("persons", "persons", outputs.PERSONS_COLUMNS)
STAYS = parquet_table("stays", "MCO stays", outputs.STAYS_COLUMNS)
# The columns matching needs of the cohort (the matching settings may ask for more: checked there).
COHORT = parquet_table("cohort", "matching cohort",
                       ["unit_id", "person_id", "treated", "index_date", "age", "eligible"])


def panel_contract(config: StudyConfig) -> ParquetTable:
    """The person × month panel: spending per category, stays, acts and hours per month."""
    return parquet_table("panel", "person × month panel", outputs.panel_columns(config))


def eol_daily_contract(config: StudyConfig) -> ParquetTable:
    """Decedents' DCIR spending per care day (read by the end-of-life indicators)."""
    return parquet_table("eol_daily", "decedents' DCIR spending per care day", outputs.eol_daily_columns(config))


def clean_tables(config: StudyConfig) -> dict[str, ParquetTable]:
    """Every parquet output of cleaning with its columns, by output key (checked after cleaning)."""
    return {t.key: t for t in (PERSONS_TABLE, panel_contract(config), STAYS, eol_daily_contract(config), COHORT)}
