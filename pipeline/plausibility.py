"""Plausibility of an extract's values: what `equilibres validate` reports and cleaning refuses early.

Values no real extract should hold are never silently accepted. Each is handled by one named rule:

* refused — ``column_mostly_null``: a contract column (not nullable in docs/CONTRACTS.md) whose
  share of missing values exceeds ``cleaning.max_null_share`` is an export that lost the column, not
  data to clean (ER_PRS_F with BSE_REM_MNT entirely null would give a cohort without spending, and
  an empty matching much later). `equilibres validate` reports it as a violation, and cleaning stops
  on it before any stage (:func:`check_null_shares`, from the Parquet footers' null counts);
* noted — ``nullable_column_mostly_null``: a column the contract lets be missing but missing on more
  than ``cleaning.max_null_share_nullable`` of a file's rows (EXE_SOI_DTF null on every line): often
  a wrong export, reported by `equilibres validate` as a note, not refused (:func:`nullable_mostly_null`);
* dropped or flagged, and counted in ``audit/attrition.csv`` — the cleaning rules
  ``amount_above_maximum`` and ``care_after_flux`` (pipeline/stages/dcir.py), ``birth_year_in_future``
  and ``roster_inclusion_outside_study`` (pipeline/stages/ingest.py), and ``regularisation_netting`` for
  negative lines without an original. `equilibres validate` evaluates the very same rule expressions
  on the file and lists them as *notes* with counts and examples (:func:`plausibility_findings`):
  they do not fail validation, since cleaning handles them and audits rows and euros.

Kept apart from :mod:`pipeline.contract` (the contract's types and code lists) so that the rules'
thresholds come from the study configuration in one place.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import pyarrow.parquet as pq

from pipeline.config import StudyConfig
from pipeline.contract_spec import IDENTIFIER_COLUMNS, SENTINEL_DATE, TABLES, TableSpec
from pipeline.io import PipelineError
from pipeline.readers import mask_identifier
from pipeline.stages import dcir
from pipeline.stages.dcir import NETTING_KEY
from pipeline.stages.ingest import InclusionPeriod, birth_year_in_future, roster_inclusion_outside_study

NULL_RULE = "column_mostly_null"
NULLABLE_NULL_RULE = "nullable_column_mostly_null"


class MostlyNullColumnError(PipelineError):
    """A contract column of an input table is entirely or mostly null."""


@dataclass(frozen=True)
class Finding:
    """One plausibility rule's result on one file: ``refuse`` findings are violations, the others notes
    on what cleaning will drop or flag (and count)."""

    file: str
    table: str
    column: str | None
    rule: str
    count: int
    examples: list[dict[str, Any]] = field(default_factory=list)
    hint: str = ""
    refuse: bool = False


def _share(n: int, total: int) -> str:
    return f"{100.0 * n / total:.1f} %" if total else "0 %"


# -- refused: columns entirely or mostly null ----------------------------------------------------


def checked_columns(spec: TableSpec) -> list[str]:
    """The columns whose null share is checked: those the contract says may not be missing."""
    return [c.name for c in spec.columns if not c.nullable]


def null_message(where: str, table: str, column: str, nulls: int, rows: int, limit: float) -> str:
    return (f"{where} ({table}), column {column}: {_share(nulls, rows)} of values are missing ({nulls:,} of "
            f"{rows:,} rows; rule {NULL_RULE}: at most [cleaning] max_null_share = {limit:.0%}). The export lost "
            f"this column's values: export {column} again with its values (or, if the extract really lacks "
            "them, raise max_null_share in a --config file).")


def parquet_null_counts(path: Path, columns: list[str]) -> tuple[int, dict[str, int]]:
    """Rows and null count per column of a Parquet file, from the footer's statistics where every row
    group has them (no data read), else by a DuckDB count of that column."""
    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(j).name for j in range(meta.num_columns)]
    counts: dict[str, int] = {}
    unknown: list[str] = []
    for col in columns:
        if col not in names:
            continue
        j = names.index(col)
        total = 0
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(j).statistics
            if stats is None or not stats.has_null_count:
                total = -1
                break
            total += stats.null_count
        if total < 0:
            unknown.append(col)
        else:
            counts[col] = total
    if unknown:
        import duckdb

        sql_path = str(path).replace("'", "''")
        exprs = ", ".join(f'COUNT(*) - COUNT("{c}")' for c in unknown)
        with duckdb.connect() as con:
            values = con.execute(f"SELECT {exprs} FROM read_parquet('{sql_path}')").fetchone()
        counts.update({c: int(v) for c, v in zip(unknown, values, strict=True)})
    return meta.num_rows, counts


def check_null_shares(staged: dict[str, list[Path]], sources: dict[str, list[Path]], config: StudyConfig
                      ) -> dict[str, dict[str, float]]:
    """Raise :class:`MostlyNullColumnError` when a checked column of a table (all its files together) is
    missing on more than ``cleaning.max_null_share`` of its rows; return the null shares above 0."""
    limit = config.cleaning.max_null_share
    found: dict[str, dict[str, float]] = {}
    problems: list[str] = []
    for key, files in staged.items():
        spec = TABLES[key]
        columns = checked_columns(spec)
        rows = 0
        nulls = dict.fromkeys(columns, 0)
        for f in files:
            n, counts = parquet_null_counts(Path(f), columns)
            rows += n
            for c, v in counts.items():
                nulls[c] += v
        if not rows:
            continue
        names = ", ".join(s.name for s in sources.get(key, files))
        for c in columns:
            if nulls[c]:
                found.setdefault(spec.label, {})[c] = round(nulls[c] / rows, 6)
            if nulls[c] / rows > limit:
                problems.append(null_message(names, spec.label, c, nulls[c], rows, limit))
    if problems:
        raise MostlyNullColumnError(" ".join(problems) + " (`equilibres validate DIR` lists every such column.)")
    return found


# -- noted: columns the contract lets be missing, missing almost everywhere ------------------------


def nullable_columns(spec: TableSpec) -> list[str]:
    """The columns the contract lets be missing (EXE_SOI_DTF, SEJ_NBJ, MNT_TOT_AM, return codes…)."""
    return [c.name for c in spec.columns if c.nullable]


def nullable_mostly_null(file: str, table: str, column: str, nulls: int, rows: int, config: StudyConfig
                         ) -> Finding | None:
    """A nullable column missing on more than ``cleaning.max_null_share_nullable`` of a file's rows: a note
    (rule ``nullable_column_mostly_null``), since a missing value is allowed but a column missing almost
    everywhere is usually a wrong export (a column not extracted, renamed, or in a format that did not
    convert) — docs/CONTRACTS.md §1 (nullable columns)."""
    limit = config.cleaning.max_null_share_nullable
    if not rows or nulls / rows <= limit:
        return None
    return Finding(file, table, column, NULLABLE_NULL_RULE, nulls, hint=(
        f"{_share(nulls, rows)} of values are missing ({nulls:,} of {rows:,} rows), above [cleaning] "
        f"max_null_share_nullable = {limit:.0%}. The contract lets {column} be missing, so this is not refused "
        f"and cleaning counts nothing for it, but a column missing almost everywhere is usually a wrong export "
        f"(not extracted, renamed, or in a format that did not convert): check the export of {column}, or raise "
        "max_null_share_nullable in a --config file if the extract really lacks it."))


# -- validate: every plausibility rule on one typed file -----------------------------------------


def _examples(table: Any, cond: Any, columns: list[str], k: int) -> list[dict[str, Any]]:
    rows = table.filter(cond).select(*columns).limit(k).execute()
    out = []
    for rec in rows.to_dict("records"):
        out.append({c: (mask_identifier(v) if c in IDENTIFIER_COLUMNS and v is not None
                        else v.date().isoformat() if isinstance(v, dt.datetime)
                        else v.isoformat() if isinstance(v, dt.date)
                        else "NULL" if v is None else repr(v)) for c, v in rec.items()})
    return out


def _count(table: Any, cond: Any) -> int:
    return int(table.filter(cond).count().execute())


def plausibility_findings(table: Any, spec: TableSpec, columns: list[str], config: StudyConfig, file: str,
                          k: int = 3, *, whole_table: bool = True, notes: bool = True) -> list[Finding]:
    """Every plausibility rule on one file, as an Ibis table with the contract's column names and types
    (``columns``: those that converted). Null shares are refused; the cleaning rules are notes.
    ``whole_table=False`` (the file is one of several holding the table) leaves out the notes that need
    every line of the table (:func:`whole_table_findings` runs them on the files together);
    ``notes=False`` only checks the refusals."""
    n_rows = int(table.count().execute())
    out: list[Finding] = []
    if not n_rows:
        return out
    limit = config.cleaning.max_null_share
    checked = [c for c in checked_columns(spec) if c in columns]
    optional = [c for c in nullable_columns(spec) if c in columns] if notes else []
    if checked or optional:
        agg = table.aggregate(**{c: table[c].isnull().cast("int64").sum() for c in checked + optional}
                              ).execute().iloc[0]
        for c in checked:
            nulls = int(agg[c] or 0)
            if nulls / n_rows > limit:
                out.append(Finding(file, spec.label, c, NULL_RULE, nulls, refuse=True, hint=(
                    f"{_share(nulls, n_rows)} of values are missing ({nulls:,} of {n_rows:,} rows), above [cleaning] "
                    f"max_null_share = {limit:.0%}: the export lost this column's values; export {c} again.")))
        out += [f for c in optional
                if (f := nullable_mostly_null(file, spec.label, c, int(agg[c] or 0), n_rows, config)) is not None]
    have = set(columns)
    for note in _NOTES.get(spec.key, ()) if notes else ():
        if set(note.needs) <= have and (whole_table or not note.whole_table):
            out += note.run(table, spec, config, file, k)
    return out


def whole_table_notes(key: str) -> list[tuple[str, ...]]:
    """The columns each whole-table note of ``key`` needs (empty if it has none)."""
    return [note.needs for note in _NOTES.get(key, ()) if note.whole_table]


def whole_table_findings(table: Any, spec: TableSpec, columns: list[str], config: StudyConfig, file: str,
                         k: int = 3) -> list[Finding]:
    """The notes that need every line of a table (a regularisation and its original may sit in two files
    of a table split by flux period), on the lines of all its files together."""
    have = set(columns)
    return [f for note in _NOTES.get(spec.key, ()) if note.whole_table and set(note.needs) <= have
            for f in note.run(table, spec, config, file, k)]


@dataclass(frozen=True)
class _Note:
    needs: tuple[str, ...]
    run: Any
    whole_table: bool = False  # needs every line of the table, not one file of it


def _line_rule_note(rule_name: str, column: str, hint: str):
    def run(table: Any, spec: TableSpec, config: StudyConfig, file: str, k: int) -> list[Finding]:
        w = dcir.ClaimsWindow.from_config(config)
        t = dcir.with_line_category(table, w, config.cleaning)
        cond = getattr(dcir, rule_name)(t, w).fill_null(False)
        n = _count(t, cond)
        if not n:
            return []
        euros = float(t.filter(cond).BSE_REM_MNT.sum().execute() or 0.0)
        ex = _examples(t, cond, ["BEN_NIR_PSA", "PRS_NAT_REF", "EXE_SOI_DTD", "FLX_DIS_DTD", "BSE_REM_MNT"], k)
        return [Finding(file, spec.label, column, rule_name, n, ex,
                        hint=f"{hint}; BSE_REM_MNT of these lines: {euros:,.2f} €. Cleaning drops them and counts "
                             f"rows and euros in audit/attrition.csv (rule {rule_name}, unless an earlier rule does).")]
    return run


def _orphan_negatives(table: Any, spec: TableSpec, config: StudyConfig, file: str, k: int) -> list[Finding]:
    t = table
    negative = ((t.PRS_ACT_QTE < 0) | (t.BSE_REM_MNT < 0)).fill_null(False)
    g = t.group_by(NETTING_KEY).aggregate(n=t.count(), qty=t.PRS_ACT_QTE.sum(), euros=t.BSE_REM_MNT.sum(),
                                          neg=negative.cast("int8").max())
    orphans = g.filter((g.neg == 1) & (g.qty.isnull() | (g.qty <= 0)))
    agg = orphans.aggregate(groups=orphans.count(), lines=orphans.n.sum(), euros=orphans.euros.sum()).execute()
    groups = int(agg["groups"].iloc[0] or 0)
    if not groups:
        return []
    lines = int(agg["lines"].iloc[0])
    euros = float(agg["euros"].iloc[0] or 0.0)
    ex = _examples(orphans, orphans.neg == 1,
                   ["BEN_NIR_PSA", "PRS_NAT_REF", "EXE_SOI_DTD", "qty", "euros"], k)
    return [Finding(file, spec.label, "PRS_ACT_QTE", "regularisation_netting", lines, ex, hint=(
        f"negative lines with no original to cancel: {groups:,} group(s) of identical lines (NETTING_KEY) sum to a "
        f"quantity ≤ 0 ({euros:,.2f} €). Cleaning drops them and counts rows and euros in audit/attrition.csv "
        "(rule regularisation_netting, among the groups it nets away)."))]


def _future_births(table: Any, spec: TableSpec, config: StudyConfig, file: str, k: int) -> list[Finding]:
    year = config.study.claims_end.year
    cond = birth_year_in_future(table, year).fill_null(False)
    n = _count(table, cond)
    if not n:
        return []
    return [Finding(file, spec.label, "BEN_NAI_ANN", "birth_year_in_future", n,
                    _examples(table, cond, ["BEN_NIR_PSA", "BEN_NAI_ANN"], k),
                    hint=f"birth years after {year} (the year of study.claims_end): cleaning takes these birth dates as "
                         "unknown (counted in audit/attrition.csv, rule birth_year_in_future); such persons are "
                         "ineligible (unknown_age).")]


def _inclusions_outside(table: Any, spec: TableSpec, config: StudyConfig, file: str, k: int) -> list[Finding]:
    s = config.study
    cond = roster_inclusion_outside_study(table, InclusionPeriod(s.inclusion_start, s.inclusion_end)).fill_null(False)
    # The 1600-01-01 sentinel is rule roster_inclusion_unknown's, not this one's.
    cond = cond & (table.EQL_INC_DTE != ibis.date(SENTINEL_DATE))
    n = _count(table, cond)
    if not n:
        return []
    return [Finding(file, spec.label, "EQL_INC_DTE", "roster_inclusion_outside_study", n,
                    _examples(table, cond, ["BEN_NIR_PSA", "EQL_INC_DTE"], k),
                    hint=f"inclusion dates outside [{s.inclusion_start}, {s.inclusion_end}] (study.inclusion_start, "
                         "inclusion_end): cleaning drops these roster rows and counts them in audit/attrition.csv "
                         "(rule roster_inclusion_outside_study).")]


_NOTES: dict[str, tuple[_Note, ...]] = {
    "ER_PRS_F": (
        _Note(("EXE_SOI_DTD", "FLX_DIS_DTD", "BSE_REM_MNT", "BEN_NIR_PSA", "PRS_NAT_REF"),
              _line_rule_note("care_after_flux", "EXE_SOI_DTD",
                              "care starting more than [cleaning] max_care_after_flux_days after the flux date "
                              "FLX_DIS_DTD that paid it")),
        _Note(("BSE_REM_MNT", "PRS_NAT_REF", "PSE_ACT_NAT", "PSE_SPE_COD", "BEN_NIR_PSA", "EXE_SOI_DTD",
               "FLX_DIS_DTD"),
              _line_rule_note("amount_above_maximum", "BSE_REM_MNT",
                              "amounts |BSE_REM_MNT| above the plausible maximum of their spending category "
                              "([cleaning] max_line_amount_by_category, else max_line_amount_eur)")),
        _Note(("BEN_NIR_PSA", "BEN_RNG_GEM", "EXE_SOI_DTD", "EXE_SOI_DTF", "PRS_NAT_REF", "PSE_ACT_NAT",
               "PSE_SPE_COD", "CPL_MAJ_TOP", "DPN_QLF", "BSE_PRS_NAT", "PRS_ACT_QTE", "BSE_REM_MNT"),
              _orphan_negatives, whole_table=True),
    ),
    "IR_BEN_R": (_Note(("BEN_NAI_ANN", "BEN_NIR_PSA"), _future_births),),
    "ROSTER": (_Note(("EQL_INC_DTE", "BEN_NIR_PSA"), _inclusions_outside),),
}
