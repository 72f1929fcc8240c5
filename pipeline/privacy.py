"""Privacy as on the SNDS platform: small counts of people are masked, identifiers never published.

One module for every step and the report: primary and secondary small-cell suppression, the
masking of a single count, and the scan of a text for identifiers of the extract.

SNDS rule: no published aggregate may show a count of people between 1 and ``min_cell_count - 1``
(``report.min_cell_count``, default 10). Masking one cell is not enough when the table also shows the
totals it adds up to: the masked value would be recomputed by subtraction. *Secondary suppression*
then masks a second cell of the same margin (the smallest one, so as little information as possible is
lost), and repeats until no additive relation has exactly one masked cell.

The engine works on abstract cells and additive relations (``relations``: groups of cells whose
values are linked by one linear equation: a total and its parts, or two cells equal by construction),
so the same tested code serves two-way tables with margins and chained flow tables
(rows_in = rows_dropped + rows_out, and rows_out of one rule = rows_in of the next).

Zero counts are not masked by default: a zero identifies nobody, and the SNDS rule targets 1..min_cell_count-1.
Pass ``mask_zeros=True`` for the stricter reading.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import StudyConfig
from pipeline.io import PipelineError

Cell = Hashable
# Shown in place of a cell hidden only to protect another one (its value is not small).
SECONDARY_MARK = "×"


def is_small(value: float | None, min_cell_count: int, mask_zeros: bool = False) -> bool:
    """True when a count of people must be masked (primary suppression)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return False
    if value == 0:
        return mask_zeros
    return abs(value) < min_cell_count


def mask_count(count: int | None, min_cell_count: int) -> int | None:
    """``count``, or None when it is a small count of people that must not be published."""
    return None if is_small(count, min_cell_count) else count


# Columns of result tables that count people (the indicators' CSV outputs).
COUNT_COLUMNS = ("n", "n_units", "n_treated", "n_control", "deaths", "end_death", "end_study", "end_exit",
                 "patients", "weighted_n", "control_weighted")


def suppress_small_counts(frame: pd.DataFrame, min_cell_count: int,
                          columns: Sequence[str] = COUNT_COLUMNS) -> pd.DataFrame:
    """Mask the counts of people in (0, min_cell_count) of ``columns`` (primary suppression only) and
    flag each row: ``suppressed`` lists the masked columns, joined by ";"."""
    f = frame.copy()
    flags = pd.Series([""] * len(f), index=f.index, dtype=object)
    for col in columns:
        if col not in f.columns:
            continue
        v = pd.to_numeric(f[col], errors="coerce")
        small = (v > 0) & (v < min_cell_count)
        if small.any():
            f[col] = f[col].astype(object).where(~small, None)
            flags[small] = flags[small] + np.where(flags[small] == "", "", ";") + col
    f["suppressed"] = flags
    return f


def secondary_suppression(
    values: Mapping[Cell, float],
    primary: Iterable[Cell],
    relations: Sequence[Sequence[Cell]],
) -> set[Cell]:
    """All cells to mask: ``primary`` plus the cells needed so no relation has exactly one masked cell.

    A relation with exactly one masked cell lets a reader recompute it from the others; the smallest
    unmasked non-zero cell of that relation is masked too (a zero cell protects nothing, since a
    reader can guess it). Iterates to a fixed point, because a new mask can expose another relation.
    """
    masked = set(primary)
    order = {c: i for i, c in enumerate(values)}
    changed = True
    while changed:
        changed = False
        for relation in relations:
            hidden = [c for c in relation if c in masked]
            if len(hidden) != 1:
                continue
            candidates = [c for c in relation if c not in masked]
            if not candidates:
                continue
            nonzero = [c for c in candidates if values.get(c, 0) not in (0, None)] or candidates
            pick = min(nonzero, key=lambda c: (abs(values.get(c, 0) or 0), order.get(c, 0)))
            masked.add(pick)
            changed = True
    return masked


@dataclass(frozen=True)
class SuppressedTable:
    """A table and the boolean mask of its cells hidden for confidentiality (same shape/labels)."""

    values: pd.DataFrame
    mask: pd.DataFrame
    min_cell_count: int
    primary: pd.DataFrame | None = None  # cells masked because they are small themselves

    def is_primary(self, row: Hashable, col: Hashable) -> bool:
        return bool(self.primary.at[row, col]) if self.primary is not None else bool(self.mask.at[row, col])

    @property
    def n_masked(self) -> int:
        return int(self.mask.to_numpy().sum())

    def display(self, placeholder: str | None = None, secondary: str = SECONDARY_MARK) -> pd.DataFrame:
        """Values as objects: small cells shown as "< min_cell_count", secondary ones as ``secondary``."""
        out = self.values.astype(object).copy()
        out[self.mask] = secondary
        prim = self.primary if self.primary is not None else self.mask
        out[prim & self.mask] = placeholder if placeholder is not None else f"< {self.min_cell_count}"
        return out


def suppress_counts(
    table: pd.DataFrame,
    count_columns: Sequence[str],
    min_cell_count: int,
    *,
    row_total: str | None = None,
    total_row: Hashable | None = None,
    derived: Mapping[str, str] | None = None,
    mask_zeros: bool = False,
) -> SuppressedTable:
    """Primary and secondary suppression of the counts of people in ``count_columns``.

    ``row_total``: a column (among ``count_columns``) holding the sum of the other count columns of
    its row. ``total_row``: the index label of a row holding the column sums. Relations are built only
    for the margins that are actually shown. ``derived``: {column: count_column} for values computed
    from a count (a share, a mean over the group): they are masked with their count.
    """
    missing = [c for c in count_columns if c not in table.columns]
    if missing:
        raise KeyError(f"suppress_counts: columns {missing} not in table (columns: {list(table.columns)})")
    if row_total is not None and row_total not in count_columns:
        raise ValueError(f"row_total {row_total!r} must be one of count_columns {list(count_columns)}")
    if total_row is not None and total_row not in table.index:
        raise KeyError(f"total_row {total_row!r} not in table index")

    values: dict[Cell, float] = {}
    for r in table.index:
        for c in count_columns:
            v = table.at[r, c]
            values[(r, c)] = None if pd.isna(v) else float(v)
    primary = {cell for cell, v in values.items() if is_small(v, min_cell_count, mask_zeros)}

    relations: list[list[Cell]] = []
    parts_cols = [c for c in count_columns if c != row_total]
    if row_total is not None:
        for r in table.index:
            relations.append([(r, row_total), *[(r, c) for c in parts_cols]])
    if total_row is not None:
        body = [r for r in table.index if r != total_row]
        for c in count_columns:
            relations.append([(total_row, c), *[(r, c) for r in body]])

    masked = secondary_suppression(values, primary, relations)
    mask = _to_mask(table, masked)
    for col, source in (derived or {}).items():
        if col in mask.columns and source in mask.columns:
            mask[col] = mask[col] | mask[source]
    return SuppressedTable(values=table, mask=mask, min_cell_count=min_cell_count, primary=_to_mask(table, primary))


def suppress_flow(
    flow: pd.DataFrame,
    min_cell_count: int,
    *,
    person_rows: Sequence[bool] | pd.Series | None = None,
    columns: tuple[str, str, str] = ("rows_in", "rows_dropped", "rows_out"),
    mask_zeros: bool = False,
) -> SuppressedTable:
    """Suppression for a chained flow table (an attrition table).

    Each row satisfies rows_in = rows_dropped + rows_out; consecutive rows are linked when rows_out
    of one equals rows_in of the next (the same count shown twice). Only rows counting people
    (``person_rows``, default all) get primary suppression; secondary suppression may touch any cell
    linked to a masked one.
    """
    c_in, c_drop, c_out = columns
    for c in columns:
        if c not in flow.columns:
            raise KeyError(f"suppress_flow: column {c!r} missing (columns: {list(flow.columns)})")
    people = pd.Series(True if person_rows is None else list(person_rows), index=flow.index)
    values: dict[Cell, float] = {}
    for r in flow.index:
        for c in columns:
            v = flow.at[r, c]
            values[(r, c)] = None if pd.isna(v) else float(v)
    primary = {
        (r, c) for r in flow.index for c in columns
        if bool(people[r]) and is_small(values[(r, c)], min_cell_count, mask_zeros)
    }
    relations: list[list[Cell]] = [[(r, c_in), (r, c_drop), (r, c_out)] for r in flow.index]
    idx = list(flow.index)
    for a, b in zip(idx, idx[1:], strict=False):
        if values[(a, c_out)] is not None and values[(a, c_out)] == values[(b, c_in)]:
            relations.append([(a, c_out), (b, c_in)])
    masked = secondary_suppression(values, primary, relations)
    return SuppressedTable(values=flow, mask=_to_mask(flow, masked), min_cell_count=min_cell_count,
                           primary=_to_mask(flow, primary))


def _to_mask(frame: pd.DataFrame, cells: Iterable[Cell]) -> pd.DataFrame:
    mask = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    for r, c in cells:
        mask.at[r, c] = True
    return mask


# ---------------------------------------------------------------------------------------------
# Identifiers of the extract must not appear in any published text.

ID_COLUMNS = {"IR_BEN_R": ("BEN_NIR_PSA", "BEN_IDT_ANO"), "EQUILIBRES_ROSTER": ("BEN_NIR_PSA", "EQL_EQP_ID")}
MIN_ID_LENGTH = 5  # shorter values (e.g. "1") are ordinary tokens and cannot be tested meaningfully


def extract_identifiers(data_dir: Path, config: StudyConfig) -> set[str]:
    """Every person and team identifier of the extract (IR_BEN_R, roster, PMSI C tables)."""
    from pipeline.readers import find_tables

    # The files the pipeline reads (a table may be split by period or into a directory of parts).
    found = find_tables(Path(data_dir), config).found
    ids: set[str] = set()
    for key, cols in (("IR_BEN_R", ID_COLUMNS["IR_BEN_R"]), ("ROSTER", ID_COLUMNS["EQUILIBRES_ROSTER"]),
                      ("MCO_C", ("NIR_ANO_17",))):
        for path in found.get(key, []):
            ids |= _read_id_columns(path, cols, config)
    return {i for i in ids if len(i) >= MIN_ID_LENGTH and i != "x" * len(i)}


def _read_id_columns(path: Path, cols: Sequence[str], config: StudyConfig) -> set[str]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            names = pq.read_schema(path).names
            frame = pd.read_parquet(path, columns=[c for c in cols if c in names])
        elif suffix == ".csv":
            from pipeline.csv_dialect import detect_dialect

            # Same separator and encoding as the readers (detected when the configured ones do not fit).
            dialect = detect_dialect(path, config, cols)
            frame = pd.read_csv(path, sep=dialect.separator, dtype=str,
                                encoding=dialect.encoding.replace("utf-8", "utf-8-sig"),
                                usecols=lambda c: c.strip().upper() in cols)
        elif suffix in (".sas7bdat", ".xpt"):
            import pyreadstat

            reader = pyreadstat.read_sas7bdat if suffix == ".sas7bdat" else pyreadstat.read_xport
            frame, _ = reader(str(path), usecols=list(cols))
        else:
            return set()
    except (OSError, ValueError) as err:
        raise PipelineError(f"Cannot read identifiers from {path} for the privacy check: {err}") from None
    out: set[str] = set()
    for c in frame.columns:
        out |= set(frame[c].dropna().astype(str).str.strip())
    return out


_DATA_URI = re.compile(r"data:[a-z/+]+;base64,[A-Za-z0-9+/=]+")
_TOKEN = re.compile(r"[A-Za-z0-9_]+")


def identifiers_in(text_: str, identifiers: set[str]) -> int:
    """How many distinct identifiers occur as whole tokens in ``text_`` (embedded images excluded)."""
    tokens = set(_TOKEN.findall(_DATA_URI.sub(" ", text_)))
    return len(tokens & identifiers)
