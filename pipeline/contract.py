"""The SNDS input contract as pandera schemas, and `equilibres validate`.

Each input table (IR_BEN_R, IR_IMB_R, ER_PRS_F, T_MCOaaB/C/VALO, EQUILIBRES_ROSTER) has a pandera
schema built from :mod:`pipeline.contract_spec` (names, types and code lists of docs/CONTRACTS.md §1).
Validation runs inside DuckDB: each file is opened as a DuckDB relation (CSV as text, SAS staged to
a raw Parquet), its values are converted to the contract types with the readers' SQL, and

1. conversion failures (text in amounts, unparseable dates) are counted in SQL;
2. value rules (code lists, ranges, lengths, patterns, missing values, impossible dates) run through
   pandera's Ibis backend (``pandera.ibis``) on the DuckDB table — the table is never loaded into
   pandas, only the failing values are;
3. duplicated line keys are counted in SQL (pandera-ibis reports uniqueness failures as an
   expression, not as rows, so counts and examples come from DuckDB directly);
4. the plausibility rules (:mod:`pipeline.plausibility`) run on the typed table, and the key columns
   of each file are kept for the checks across tables (:mod:`pipeline.table_links`: roster, claims,
   ALDs and PMSI stays that do not link to IR_BEN_R or to their T_MCOaaB stay), run once every file
   is read.

Validation is lazy: every violation of every file is collected, then rendered at once. Sentinels
(1600-01-01, birth year 1600, 2099-12-31) are valid values. Identifiers are masked in examples.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from pipeline.config import StudyConfig
from pipeline.contract_spec import (
    CARE_DATE_COLUMNS,
    IDENTIFIER_COLUMNS,
    MAX_DATE,
    MIN_DATE,
    TABLES,
    ColumnSpec,
    TableSpec,
)
from pipeline.io import PipelineError
from pipeline.readers import (
    failure_expression,
    find_tables,
    mask_identifier,
    match_columns,
    open_source,
    pmsi_year,
    pmsi_year_groups,
    quote_identifier,
    source_columns,
    source_dialect,
    typed_select,
)

__all__ = ["Violation", "ValidationReport", "validate_extract", "ibis_schema", "pandas_schema", "TABLES"]


# ------------------------------------------------------------------------------------------------
# Schemas
def _date_bounds(spec: TableSpec, col: ColumnSpec, config: StudyConfig | None) -> tuple[dt.date, dt.date]:
    """Accepted date range: sentinels included; care dates must be plausible for the study."""
    if config is not None and col.name in CARE_DATE_COLUMNS.get(spec.key, ()):
        return dt.date(1990, 1, 1), dt.date(config.study.claims_end.year + 3, 12, 31)
    return MIN_DATE, MAX_DATE


def _checks(spec: TableSpec, col: ColumnSpec, config: StudyConfig | None, Check: Any) -> list[Any]:
    checks = []
    if col.isin is not None:
        checks.append(Check.isin(sorted(col.isin)))
    if col.min_value is not None or col.max_value is not None:
        lo = col.min_value if col.min_value is not None else -1e300
        hi = col.max_value if col.max_value is not None else 1e300
        checks.append(Check.in_range(lo, hi))
    if col.str_length is not None:
        lo, hi = (col.str_length, col.str_length) if isinstance(col.str_length, int) else col.str_length
        checks.append(Check.str_length(lo, hi))
    if col.regex is not None:
        checks.append(Check.str_matches(col.regex))
    if col.kind == "date":
        lo, hi = _date_bounds(spec, col, config)
        checks.append(Check.in_range(lo, hi))
    return checks


def ibis_schema(key: str, config: StudyConfig | None = None, columns: list[str] | None = None):
    """The pandera (Ibis backend) schema of an input table; ``columns`` restricts it."""
    import ibis.expr.datatypes as idt
    import pandera.ibis as pa

    types = {"str": idt.String(), "int": idt.Int64(), "float": idt.Float64(), "date": idt.Date()}
    spec = TABLES[key]
    cols = {
        c.name: pa.Column(types[c.kind], checks=_checks(spec, c, config, pa.Check), nullable=c.nullable,
                          description=c.description or None)
        for c in spec.columns if columns is None or c.name in columns
    }
    return pa.DataFrameSchema(cols, name=spec.label, strict=False)


def pandas_schema(key: str, config: StudyConfig | None = None):
    """The same contract for an in-memory table (e.g. the output of ``readers.read_table``)."""
    import pandera.pandas as pa

    spec = TABLES[key]
    dtypes = {"str": object, "int": "int64", "float": "float64", "date": "datetime64[ms]"}
    cols = {}
    for c in spec.columns:
        checks = [ch for ch in _checks(spec, c, config, pa.Check)]
        if c.kind == "date":
            lo, hi = _date_bounds(spec, c, config)
            checks[-1] = pa.Check.in_range(__import__("pandas").Timestamp(lo), __import__("pandas").Timestamp(hi))
        cols[c.name] = pa.Column(dtypes[c.kind] if not (c.kind == "int" and c.nullable) else None,
                                 checks=checks, nullable=c.nullable, coerce=False)
    return pa.DataFrameSchema(cols, name=spec.label, strict=False, unique=list(spec.unique) or None)


# ------------------------------------------------------------------------------------------------
# Report
@dataclass(frozen=True)
class Violation:
    file: str
    table: str
    column: str | None
    rule: str
    count: int
    examples: list[dict[str, Any]] = field(default_factory=list)
    hint: str = ""
    # "note": a plausibility finding cleaning handles with an audited rule (pipeline/plausibility.py);
    # reported, but it does not fail validation.
    severity: str = "error"

    def render(self) -> str:
        where = f"{self.file} [{self.table}]" + (f" column {self.column}" if self.column else "")
        head = f"- {where}: {self.rule} — {self.count:,} row(s)" if self.count >= 0 else f"- {where}: {self.rule}"
        lines = [head]
        if self.hint:
            lines.append(f"    {self.hint}")
        for ex in self.examples:
            lines.append("    e.g. " + ", ".join(f"{k}={v}" for k, v in ex.items()))
        return "\n".join(lines)


@dataclass
class ValidationReport:
    data_dir: Path
    violations: list[Violation]
    files_checked: list[str]
    rows_checked: dict[str, int]
    read_as: dict[str, str] = field(default_factory=dict)  # file -> how it was read (CSV separator, encoding)
    notes: list[Violation] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Plausibility notes travel with the violations of their file; they are reported apart.
        self.notes = [*self.notes, *(v for v in self.violations if v.severity == "note")]
        self.violations = [v for v in self.violations if v.severity != "note"]

    @property
    def ok(self) -> bool:
        return not self.violations

    def render(self) -> str:
        out = [f"Validation of the extract in {self.data_dir} against the SNDS input contract"]
        for f in self.files_checked:
            how = f"; {self.read_as[f]}" if f in self.read_as else ""
            out.append(f"  checked {f} ({self.rows_checked.get(f, 0):,} rows{how})")
        if self.notes:
            out.append(f"{len(self.notes)} note(s) — not violations: implausible values or links that cleaning drops "
                       "or flags and counts in audit/attrition.csv, or findings to check (each says which):")
            out += [v.render() for v in self.notes]
        if self.violations:
            out.append(f"{len(self.violations)} violation(s):")
            out += [v.render() for v in self.violations]
            files = len({v.file for v in self.violations})
            out.append(f"FAILED: {len(self.violations)} violation(s) in {files} file(s); fix the extract "
                       "(or the [extract] settings) and run `equilibres validate` again.")
        else:
            out.append(f"OK: {len(self.files_checked)} file(s), {len(set(self.rows_checked))} checked, "
                       "no violation.")
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "violations": [v.__dict__ for v in self.violations],
                "notes": [v.__dict__ for v in self.notes],
                "files_checked": self.files_checked, "rows_checked": self.rows_checked, "read_as": self.read_as}


def _show(column: str, value: Any) -> str:
    if value is None:
        return "NULL"
    if column in IDENTIFIER_COLUMNS:
        return mask_identifier(value)
    return repr(value.isoformat() if isinstance(value, dt.date) else value)


def _context_columns(spec: TableSpec, column: str | None) -> list[str]:
    cols = [c for c in (spec.unique or ("BEN_NIR_PSA",)) if c in spec.names][:3]
    if column and column not in cols:
        cols.append(column)
    return cols


# ------------------------------------------------------------------------------------------------
# Validation
def validate_extract(data_dir: Path, config: StudyConfig, max_examples: int = 3, *, notes: bool = True
                     ) -> ValidationReport:
    """Check every table file of ``data_dir``; collect every violation (nothing is raised for data).
    ``notes=False`` leaves out the plausibility notes (values cleaning drops or flags with an audited
    rule, so the audit trail counts them anyway); refusals are always checked."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise PipelineError(f"Extract directory {data_dir} does not exist: give the directory of the extract "
                            "to `equilibres validate`.")
    search = find_tables(data_dir, config)
    violations: list[Violation] = []
    for key, msg in search.missing.items():
        violations.append(Violation(file=str(data_dir), table=TABLES[key].label, column=None,
                                    rule="table present", count=-1, hint=msg))
    for key, msg in search.conflicts.items():
        violations.append(Violation(file=str(data_dir), table=TABLES[key].label, column=None,
                                    rule="one set of files per table", count=-1, hint=msg))
    files: list[str] = []
    rows: dict[str, int] = {}
    read_as: dict[str, str] = {}
    import ibis

    from pipeline.table_links import LinkKeys

    with tempfile.TemporaryDirectory(prefix="eq_validate_") as tmpdir:
        # One disk-backed DuckDB for the whole run: big tables spill instead of filling memory.
        db = ibis.duckdb.connect(str(Path(tmpdir) / "v.duckdb"), threads=config.engine.duckdb_threads,
                                 memory_limit=config.engine.duckdb_memory_limit)
        try:
            links = LinkKeys(db.con)
            for key, paths in search.found.items():
                links.expect(key, len(paths))
                for path in paths:
                    # Files are named by their path under the extract (parts of a directory share names).
                    name = search.name(path)
                    files.append(name)
                    year = pmsi_year(path, key, config) if TABLES[key].per_year else None
                    n, vs = _validate_file(db, Path(tmpdir), path, TABLES[key], config, max_examples,
                                           whole_table=len(paths) == 1, notes=notes,
                                           keep_keys=partial(links.add, TABLES[key], "typed", file=name, year=year))
                    rows[name] = n
                    violations.extend(replace(v, file=name) if v.file == path.name else v for v in vs)
                    dialect = _dialect_or_none(path, config, TABLES[key])
                    if dialect is not None:
                        read_as[name] = dialect.describe()
                violations += _keys_across_files(db.con, Path(tmpdir), TABLES[key], paths, search, config,
                                                 max_examples)
                if notes:
                    violations += _notes_across_files(db, Path(tmpdir), TABLES[key], paths, config, max_examples)
            violations += [Violation(f.file, f.table, f.column, f.rule, f.count, f.examples, f.hint,
                                     severity="error" if f.refuse else "note")
                           for f in links.findings(config, max_examples, notes=notes)]
        finally:
            db.disconnect()
    return ValidationReport(data_dir=data_dir, violations=violations, files_checked=files, rows_checked=rows,
                            read_as=read_as)


def _keys_across_files(con, tmpdir: Path, spec: TableSpec, paths: list[Path], search, config: StudyConfig,
                       k: int) -> list[Violation]:
    """A table in several files (by period, parts): line keys found in two files (overlapping periods, a
    part copied twice), which cleaning would count twice. A PMSI table is checked year by year (RSA_NUM
    is unique within a year): across the numbered files or parts of one year. Files that do not read are
    already violations."""
    if len(paths) < 2 or not spec.unique:
        return []
    if not spec.per_year:
        return _keys_across(con, tmpdir, spec, paths, search, config, k, f"{len(paths)} files of {spec.label}")
    out = []
    for year, idx in pmsi_year_groups(paths, spec.key, config).items():
        if len(idx) > 1:
            out += _keys_across(con, tmpdir, spec, [paths[i] for i in idx], search, config, k,
                                f"{len(idx)} files of {spec.label} {year}")
    return out


def _keys_across(con, tmpdir: Path, spec: TableSpec, paths: list[Path], search, config: StudyConfig, k: int,
                 where: str) -> list[Violation]:
    """The line keys of ``paths`` (the files of one table, or of one PMSI year) found in two of them."""
    keys_spec = TableSpec(spec.key, spec.label, tuple(spec.column(u) for u in spec.unique))
    selects = []
    for i, path in enumerate(paths):
        try:
            src = open_source(con, path, config, sas_staging=tmpdir / f"keys_{i}.parquet", table=spec)
            available = source_columns(con, src)
        except PipelineError:
            return []
        mapping, missing = match_columns(keys_spec, available)
        if missing:
            return []
        selects.append(f"SELECT {typed_select(keys_spec, available, mapping)}, {i} AS _file FROM {src}")
    keys = ", ".join(quote_identifier(u) for u in spec.unique)
    union = " UNION ALL ".join(selects)
    # One 64-bit hash per line keeps the grouping small; a hit is recounted on the key columns.
    if not con.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM ({union}) GROUP BY hash({keys}) "
                       "HAVING MIN(_file) <> MAX(_file))").fetchone()[0]:
        return []
    n, = con.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM ({union}) GROUP BY {keys} "
                     "HAVING MIN(_file) <> MAX(_file))").fetchone()
    if not n:
        return []
    ex = con.execute(f"SELECT {keys}, LIST(DISTINCT _file ORDER BY _file) FROM ({union}) GROUP BY {keys} "
                     f"HAVING MIN(_file) <> MAX(_file) LIMIT {k}").fetchall()
    examples = [{**{u: _show(u, v) for u, v in zip(spec.unique, r[:-1], strict=True)},
                 "files": " and ".join(search.name(paths[i]) for i in r[-1])} for r in ex]
    return [Violation(where, spec.label, "+".join(spec.unique),
                      "line key unique across the files of the table", int(n), examples,
                      hint="the same line is in two files (overlapping periods, a part copied twice) and would be "
                           "counted twice; keep each line in one file only.")]


def _dialect_or_none(path: Path, config: StudyConfig, spec: TableSpec):
    """How a CSV file was read, for the report; None for other formats or an unreadable CSV (already a violation)."""
    try:
        return source_dialect(path, config, spec)
    except PipelineError:
        return None


def _validate_file(db, tmpdir: Path, path: Path, spec: TableSpec, config: StudyConfig, k: int, *,
                   whole_table: bool = True, notes: bool = True,
                   keep_keys: Callable[[list[str]], None] | None = None) -> tuple[int, list[Violation]]:
    """Every contract rule on one file. ``keep_keys`` is called with the columns that converted while
    the file's typed table (``typed``) exists, to keep its keys for the checks across tables."""
    import duckdb

    try:
        return _validate_readable_file(db, tmpdir, path, spec, config, k, whole_table=whole_table, notes=notes,
                                       keep_keys=keep_keys)
    except duckdb.Error as err:
        # The footer read but the data does not decode (a corrupt page): one violation, not a crash.
        # An error on a file that reads in full is not the file's: let it show.
        from pipeline.input_checks import diagnose_read_failure

        if path.suffix.lower() != ".parquet" or diagnose_read_failure([path]) is None:
            raise
        first = str(err).splitlines()[0]
        return 0, [Violation(path.name, spec.label, None, "readable", -1,
                             hint=f"Cannot read the data of {path}: {first}. The file is damaged (corrupted in "
                                  "transfer?): copy or export it again.")]


def _validate_readable_file(db, tmpdir: Path, path: Path, spec: TableSpec, config: StudyConfig, k: int, *,
                            whole_table: bool = True, notes: bool = True,
                            keep_keys: Callable[[list[str]], None] | None = None) -> tuple[int, list[Violation]]:
    out: list[Violation] = []
    name = path.name
    con = db.con
    con.execute("DROP TABLE IF EXISTS typed")
    if True:
        try:
            src = open_source(con, path, config, sas_staging=tmpdir / f"raw_{path.stem}.parquet", table=spec)
            available = source_columns(con, src)
        except PipelineError as err:
            return 0, [Violation(name, spec.label, None, "readable", -1, hint=str(err))]
        n_rows = int(con.execute(f"SELECT COUNT(*) FROM {src}").fetchall()[0][0])
        if n_rows == 0:
            # pandera-ibis reports spurious failures on an empty table: report the emptiness alone.
            return 0, [Violation(name, spec.label, None, "table has rows", 0,
                                 hint="the file has no rows: the export is empty or was cut short; export the "
                                      "table again.")]
        mapping, missing = match_columns(spec, available)
        import difflib

        for col in missing:
            close = difflib.get_close_matches(col.upper(), [a.upper() for a in available], n=1, cutoff=0.7)
            hint = (f"found {close[0]} instead: renamed? Export it as {col}." if close
                    else f"export the SNDS column {col}.")
            out.append(Violation(name, spec.label, col, "column present", -1, hint=hint))

        # 1. type conversion (text in amounts, unparseable dates…)
        converted = []
        for c in spec.columns:
            if c.name not in mapping:
                continue
            src_col = mapping[c.name]
            fail = failure_expression(c, src_col, available[src_col])
            n_fail = int(con.execute(f"SELECT COUNT(*) FROM {src} WHERE {fail}").fetchall()[0][0])
            if n_fail:
                ex_cols = [x for x in _context_columns(spec, None) if x in mapping and x != c.name]
                sel = ", ".join([f"CAST({quote_identifier(mapping[x])} AS VARCHAR)" for x in ex_cols] +
                                [f"CAST({quote_identifier(src_col)} AS VARCHAR)"])
                ex_rows = con.execute(f"SELECT {sel} FROM {src} WHERE {fail} LIMIT {k}").fetchall()
                examples = [{x: _show(x, v) for x, v in zip([*ex_cols, c.name], r, strict=True)} for r in ex_rows]
                out.append(Violation(name, spec.label, c.name, f"type {c.kind} ({available[src_col]} values that "
                                     f"do not convert)", n_fail, examples))
            else:
                converted.append(c.name)

        # 2. value rules with pandera on the typed DuckDB table
        sub = TableSpec(spec.key, spec.label, tuple(c for c in spec.columns if c.name in converted))
        if sub.columns:
            con.execute(f"CREATE TABLE typed AS SELECT {typed_select(sub, available, mapping)} FROM {src}")
            table = db.table("typed")
            out += _pandera_violations(db, table, spec, converted, config, name, k)
            # 3. duplicated line keys
            if spec.unique and all(u in converted for u in spec.unique):
                keys = ", ".join(quote_identifier(u) for u in spec.unique)
                n_dup = int(con.execute(
                    f"SELECT COALESCE(SUM(n), 0) FROM (SELECT COUNT(*) n FROM typed GROUP BY {keys} HAVING n > 1)"
                ).fetchall()[0][0])
                if n_dup:
                    ex = con.execute(f"SELECT {keys}, COUNT(*) n FROM typed GROUP BY {keys} HAVING n > 1 "
                                     f"LIMIT {k}").fetchall()
                    examples = [{**{u: _show(u, v) for u, v in zip(spec.unique, r[:-1], strict=True)},
                                 "copies": r[-1]} for r in ex]
                    out.append(Violation(name, spec.label, "+".join(spec.unique), "unique line key", n_dup,
                                         examples, hint="rows sharing the same key; the extract was "
                                         "probably concatenated twice or badly joined."))
            out += _plausibility_violations(table, spec, converted, config, name, k, whole_table=whole_table,
                                            notes=notes)
            if keep_keys is not None:
                keep_keys(converted)
            con.execute("DROP TABLE typed")
    return n_rows, out


def _pandera_violations(db, table, spec: TableSpec, columns: list[str], config: StudyConfig, name: str,
                        k: int) -> list[Violation]:
    import pandera.errors as pe

    schema = ibis_schema(spec.key, config, columns)
    try:
        schema.validate(table, lazy=True)
        return []
    except pe.SchemaErrors as err:
        fc = err.failure_cases
    out = []
    fc = fc.copy()
    # pandera-ibis puts the column name inside dict-valued failure cases; recover it.
    def col_of(row) -> str | None:
        if isinstance(row["failure_case"], dict) and row["failure_case"]:
            return next(iter(row["failure_case"]))
        return row["column"] if isinstance(row["column"], str) else None

    def val_of(row) -> Any:
        v = row["failure_case"]
        return next(iter(v.values())) if isinstance(v, dict) and v else v

    fc["col"] = fc.apply(col_of, axis=1)
    fc["val"] = fc.apply(val_of, axis=1)
    for (col, check), grp in fc.groupby(["col", "check"], dropna=False, sort=False):
        check_s = str(check)
        if check_s.startswith("dtype("):
            out.append(Violation(name, spec.label, col, f"type: expected {check_s[6:-1]}, found {grp['val'].iloc[0]}",
                                 -1))
            continue
        rule = _rule_label(check_s, spec.column(col) if col in spec.names else None)
        ctx = [c for c in _context_columns(spec, col) if c in columns]
        examples = []
        count, values = int(len(grp)), grp["val"].drop_duplicates().head(k)
        if check_s == "not_nullable":
            # pandera-ibis gives the failing rows of a not-null check as one table expression: count in SQL.
            count = int(db.con.execute(f"SELECT COUNT(*) FROM typed WHERE {quote_identifier(col)} IS NULL")
                        .fetchall()[0][0])
            values = [None]
        for v in values:
            where = f"{quote_identifier(col)} IS NULL" if v is None or (isinstance(v, float) and v != v) else None
            params: list[Any] = []
            if where is None:
                where = f"{quote_identifier(col)} = ?"
                params = [v.date() if hasattr(v, "date") and spec.column(col).kind == "date" else v]
            r = db.con.execute(f"SELECT {', '.join(quote_identifier(c) for c in ctx)} FROM typed WHERE {where} LIMIT 1",
                               params).fetchall()
            if r:
                examples.append({c: _show(c, x) for c, x in zip(ctx, r[0], strict=True)})
        out.append(Violation(name, spec.label, col, rule, count, examples))
    return out


def _rule_label(check: str, col: ColumnSpec | None) -> str:
    """A short, readable name for a pandera check (code lists are not printed in full)."""
    if check == "not_nullable":
        return "missing value (column not nullable)"
    if check.startswith("isin(") and col is not None and col.isin is not None:
        codes = sorted(col.isin)
        shown = ", ".join(map(str, codes[:6])) + (f", … ({len(codes)} codes)" if len(codes) > 6 else "")
        return f"code not in the contract list [{shown}]"
    if check.startswith("in_range("):
        return "value out of range " + check[len("in_range"):]
    if check.startswith("str_length("):
        return "wrong length " + check[len("str_length"):]
    if check.startswith("str_matches("):
        return "does not match pattern " + check[len("str_matches"):]
    return check


def _plausibility_violations(table, spec: TableSpec, columns: list[str], config: StudyConfig, name: str,
                             k: int, *, whole_table: bool = True, notes: bool = True) -> list[Violation]:
    """The plausibility rules (pipeline/plausibility.py) on one typed file: refusals as violations, what
    cleaning drops or flags as notes."""
    from pipeline.plausibility import plausibility_findings

    return [Violation(f.file, f.table, f.column, f.rule, f.count, f.examples, f.hint,
                      severity="error" if f.refuse else "note")
            for f in plausibility_findings(table, spec, columns, config, name, k, whole_table=whole_table,
                                           notes=notes)]


def _notes_across_files(db, tmpdir: Path, spec: TableSpec, paths: list[Path], config: StudyConfig, k: int
                        ) -> list[Violation]:
    """A table in several files: the plausibility notes that need all its lines (a regularisation and its
    original in two flux files), on the typed lines of every file together. Files that do not read, or
    lack a column, are already violations."""
    from pipeline.plausibility import whole_table_findings, whole_table_notes

    needs = sorted({c for cols in whole_table_notes(spec.key) for c in cols})
    if spec.per_year or len(paths) < 2 or not needs:
        return []
    sub = TableSpec(spec.key, spec.label, tuple(spec.column(c) for c in needs))
    con, selects = db.con, []
    for i, path in enumerate(paths):
        try:
            src = open_source(con, path, config, sas_staging=tmpdir / f"notes_{i}.parquet", table=spec)
            available = source_columns(con, src)
            mapping, missing = match_columns(sub, available)
            if missing or int(con.execute(f"SELECT COUNT(*) FROM {src} WHERE "
                                          + " OR ".join(failure_expression(c, mapping[c.name], available[mapping[c.name]])
                                                        for c in sub.columns)).fetchone()[0]):
                return []
        except PipelineError:
            return []
        selects.append(f"SELECT {typed_select(sub, available, mapping)} FROM {src}")
    con.execute("DROP TABLE IF EXISTS typed_all")
    con.execute("CREATE TABLE typed_all AS " + " UNION ALL ".join(selects))
    try:
        name = f"{len(paths)} files of {spec.label}"
        return [Violation(f.file, f.table, f.column, f.rule, f.count, f.examples, f.hint,
                          severity="error" if f.refuse else "note")
                for f in whole_table_findings(db.table("typed_all"), spec, needs, config, name, k)]
    finally:
        con.execute("DROP TABLE typed_all")
