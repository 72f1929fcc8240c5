"""Schemas of the tables the indicators read (CONTRACTS.md §2–3), checked at the boundary.

Only the columns the indicators use are required; extra columns are allowed. Frames read into memory
are validated with pandera (lazily: every failure at once); the panel, stays and eol_daily are
queried by DuckDB without loading them, so only their column names are checked against the parquet
schema.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pandera.pandas as pa
import pyarrow.parquet as pq

from pipeline.config import StudyConfig
from pipeline.io import PipelineError

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

STAYS_COLUMNS = ["person_id", "entry_date", "exit_date", "SEJ_NBJ", "SOR_MOD", "is_seance", "cost"]


def panel_columns(config: StudyConfig) -> list[str]:
    from indicators.outcomes import spend_categories

    return ["person_id", "month", *[f"spend_{c}" for c in spend_categories(config)], "nursing_acts",
            "experiment_hours"]


def eol_daily_columns(config: StudyConfig) -> list[str]:
    """Columns of clean/eol_daily.parquet the end-of-life indicators read (DCIR categories by care day)."""
    from indicators.outcomes import dcir_categories

    return ["person_id", "care_date", *[f"spend_{c}" for c in dcir_categories(config)], "nursing_acts",
            "experiment_hours"]


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


def check_parquet_columns(path: Path, required: list[str], what: str, fix: str) -> None:
    """Raise a PipelineError naming the missing columns of a parquet file."""
    have = set(pq.read_schema(path).names)
    missing = [c for c in required if c not in have]
    if missing:
        raise PipelineError(f"{path} ({what}) lacks columns {missing} (it has {len(have)} columns). {fix}")
