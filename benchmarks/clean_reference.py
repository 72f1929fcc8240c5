"""The hand-written reference of the whole clean (benchmarks/clean_reference.sql): fill it in, run it
with the pipeline's DuckDB settings, and compare its tables with the pipeline's.

    python -m benchmarks.clean_reference --data data_samples/sample --out /tmp/ref   # run it alone

The script is the independent computation the cleaning benchmark times `equilibres clean` against
(benchmarks/bench_clean.py) and that tests/test_bench_clean.py checks on the committed sample, so the
two cannot drift apart silently. Only paths and configuration values are filled in here; the rules
are written in the SQL file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.config import StudyConfig
from pipeline.stages.cohort import quarter_starts
from pipeline.stages.dcir import ClaimsWindow
from pipeline.stages.ingest import ROSTER_CPX

SQL_PATH = Path(__file__).with_name("clean_reference.sql")
# The compared tables and the columns that identify a row (the pipeline's sort order).
OUTPUT_KEYS = {
    "persons": ["person_id"],
    "panel": ["person_id", "month"],
    "stays": ["person_id", "entry_date", "exit_date", "ETA_NUM", "RSA_NUM"],
    "cohort": ["treated", "index_date", "person_id"],
    "eol_daily": ["person_id", "care_date"],
}


def _lit(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_lit(v) for v in value) + "]"
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def _in_list(values: list[Any]) -> str:
    return ", ".join(_lit(v) for v in values) if values else "NULL"


def _category_conditions(config: StudyConfig, prefix: str) -> list[tuple[str, str]]:
    """(category, SQL condition) in assignment order; a category listing no criterion matches nothing."""
    out = []
    for name, cat in config.cleaning.categories.items():
        conds = [f"{prefix}{col} IN ({_in_list(vals)})" for col, vals in
                 (("PRS_NAT_REF", cat.prs_nat_ref), ("PSE_ACT_NAT", cat.pse_act_nat),
                  ("PSE_SPE_COD", cat.pse_spe_cod)) if vals]
        if conds:
            out.append((name, " AND ".join(conds)))
    return out


def placeholders(config: StudyConfig, files: dict[str, list[Path]], out: dict[str, Path]) -> dict[str, str]:
    """Values of the script's {{name}} placeholders: paths and study configuration."""
    s, c, k = config.study, config.cleaning, config.cohort
    w = ClaimsWindow.from_config(config)
    cats = _category_conditions(config, "n.")
    category_case = (f"CASE {' '.join(f'WHEN {cond} THEN {_lit(n)}' for n, cond in cats)} ELSE 'other' END"
                     if cats else "'other'")
    # amount_above_maximum: one limit, or one per category (the category of the raw line).
    limits = {name: float(c.max_line_amount(name)) for name in ["other", *c.categories]}
    if len(set(limits.values())) == 1:
        amount_limit = repr(limits["other"])
    else:
        whens = " ".join(f"WHEN {cond} THEN {limits[n]!r}" for n, cond in _category_conditions(config, ""))
        amount_limit = f"CASE {whens} ELSE {limits['other']!r} END"
    stay_cats = [f"WHEN starts_with(upper(strip_ws(GRG_GHM)), {_lit(prefix)}) THEN {_lit(name)}"
                 for name, cat in c.stay_categories.items() for prefix in cat.grg_ghm_prefixes]
    names = list(c.category_names)
    spend = [f"spend_{n}" for n in names]
    regions = [f"WHEN p.dpt IN ({_in_list(d)}) THEN {_lit(r)}" for r, d in s.regions.items() if d]
    groups = [f"WHEN a.IMB_ALD_NUM IN ({_in_list(n)}) THEN {_lit(g)}" for g, n in c.ald_groups.items() if n]
    complex_flags = [f for f in k.complex_flags if f in ROSTER_CPX]
    return_codes = " AND ".join(f"coalesce(strip_ws({col}) = '0', false)" for col in
                                ("NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET", "PMS_RET", "DAT_RET"))
    month_start = dt.date(s.claims_start.year, s.claims_start.month, 1)
    floats_panel = [*spend, "spend_hospital", "nursing_acts", "experiment_hours"]
    floats_eol = [*spend, "nursing_acts", "experiment_hours"]
    values = {
        **{key: _lit([str(p) for p in paths]) for key, paths in files.items()},
        **{f"out_{name}": _lit(path) for name, path in out.items()},
        "claims_start": str(s.claims_start), "claims_end": str(s.claims_end),
        "claims_month_start": str(month_start),
        "inclusion_start": str(s.inclusion_start), "inclusion_end": str(s.inclusion_end),
        "max_birth_year": str(s.claims_end.year),
        "max_care_after_flux_days": str(c.max_care_after_flux_days),
        "amount_limit": amount_limit,
        "stay_category_case": f"CASE {' '.join(stay_cats)} END" if stay_cats else "NULL::VARCHAR",
        "dpn_qlf_ok": "DPN_QLF IS DISTINCT FROM 71" if c.drop_dpn_qlf_71 else "true",
        "bse_prs_nat_ok": "BSE_PRS_NAT IS DISTINCT FROM 0" if c.drop_bse_prs_nat_0 else "true",
        "flux_ok": f"NOT coalesce(FLX_DIS_DTD > DATE '{w.flux_cutoff}', false)" if c.apply_flux_window else "true",
        "category_case": category_case,
        "experiment_codes": _in_list(list(c.experiment.prs_nat_ref)),
        "eol_days": str(c.eol_daily_days),
        "tolerance_days": str(c.death_claim_tolerance_days),
        "return_codes_ok": return_codes if c.drop_bad_return_codes else "true",
        "ghm_90_ok": "NOT coalesce(starts_with(GRG_GHM, '90'), false)" if c.drop_ghm_90 else "true",
        "finess_ok": (f"NOT coalesce(strip_ws(ETA_NUM) IN ({_in_list(list(c.duplicate_geographic_finess))}), false)"
                      if c.drop_duplicate_geographic_finess else "true"),
        "roster_flags": ", ".join(f"coalesce({f}, 0)::TINYINT AS {f}" for f in ROSTER_CPX),
        "persons_flags": ", ".join(f"coalesce(r.{f}, 0)::TINYINT AS {f}" for f in ROSTER_CPX),
        "persons_flags_p": ", ".join(f"p.{f}" for f in ROSTER_CPX),
        "cohort_flags": ", ".join(f"{f}::TINYINT AS {f}" for f in ROSTER_CPX),
        "complex_expr": ("greatest(0, " + ", ".join(f"coalesce(r.{f}, 0)" for f in complex_flags) + ")::TINYINT"
                         if complex_flags else "0::TINYINT"),
        "region_case": f"CASE {' '.join(regions)} END" if regions else "NULL::VARCHAR",
        "spend_by_category": ", ".join(f"sum(CASE WHEN category = {_lit(n)} THEN euros ELSE 0.0 END) AS spend_{n}"
                                       for n in names),
        "spend_by_category_c": ", ".join(
            f"sum(CASE WHEN c.category = {_lit(n)} THEN c.euros ELSE 0.0 END) AS spend_{n}" for n in names),
        "spend_coalesced": ", ".join(f"coalesce(d.{col}, 0.0) AS {col}" for col in spend),
        "nursing_sum": " + ".join(["0.0", *[f"spend_{n}" for n in k.nursing_categories]]),
        "total_sum": " + ".join(["0.0", *spend, "spend_hospital"]),
        "history_months": str(k.history_months),
        "quarters": ", ".join(f"DATE '{q}'" for q in quarter_starts(s.inclusion_start, s.inclusion_end)),
        "ald_group_case": f"CASE {' '.join(groups)} END" if groups else "NULL::VARCHAR",
        "departements": _in_list(s.departements),
        "min_prior_nursing_cost": repr(float(k.min_prior_nursing_cost)),
        "round_panel": ", ".join(f"round({col}, 6) AS {col}" for col in floats_panel),
        "round_eol": ", ".join(f"round({col}, 6) AS {col}" for col in floats_eol),
    }
    return values


def reference_statements(config: StudyConfig, files: dict[str, list[Path]], out: dict[str, Path]) -> list[str]:
    """The reference script with its placeholders filled, one SQL statement per item."""
    if config.cohort.control_index != "quarterly":
        raise ValueError("the reference script covers cohort.control_index = 'quarterly' (the default) only")
    values = placeholders(config, files, out)
    text = SQL_PATH.read_text(encoding="utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    missing = sorted(set(re.findall(r"\{\{(\w+)\}\}", body)) - set(values))
    if missing:
        raise KeyError(f"clean_reference.sql uses unknown placeholder(s) {', '.join(missing)}")
    body = re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], body)
    return [st.strip() for st in re.split(r";\s*\n", body) if st.strip()]


def reference_outputs(out_dir: Path) -> dict[str, Path]:
    return {name: Path(out_dir) / f"{name}.parquet" for name in OUTPUT_KEYS}


def run_reference(data: Path, out_dir: Path, config: StudyConfig, spill: Path | None = None) -> dict[str, Any]:
    """Run the script on the extract ``data`` (Parquet) into ``out_dir`` with the pipeline's DuckDB
    settings (threads, memory limit, spill directory); return seconds, kept euros and output paths."""
    import duckdb

    from pipeline.runner import locate_extract

    tables = locate_extract(Path(data), config)
    out = reference_outputs(out_dir)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    statements = reference_statements(config, tables, out)
    e = config.engine
    spill = spill or Path(out_dir) / "duckdb_spill"
    spill.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"memory_limit": e.duckdb_memory_limit, "threads": e.duckdb_threads,
                                 "temp_directory": str(spill)})
    con.execute("SET enable_progress_bar = false")
    steps: dict[str, float] = {}
    t0 = time.perf_counter()
    for st in statements:
        ts = time.perf_counter()
        con.execute(st)
        m = re.match(r"(?:CREATE TEMP (?:TABLE|MACRO) (\w+)|COPY .*? TO '[^']*?(\w+)\.parquet')", st, re.S)
        name = (m.group(1) or m.group(2) + ".parquet") if m else st[:30]
        steps[name] = round(steps.get(name, 0.0) + time.perf_counter() - ts, 3)
    seconds = time.perf_counter() - t0
    kept = con.execute("SELECT sum(euros) FROM claims").fetchone()[0]
    con.close()
    return {"seconds": round(seconds, 3), "kept_euros": round(float(kept or 0.0), 2), "steps": steps,
            "outputs": {k: str(v) for k, v in out.items()}}


def compare_tables(ours: Path, ref: Path, keys: list[str], rtol: float = 1e-9, atol: float = 1e-6) -> list[str]:
    """Differences between two Parquet tables: columns and types, row count, and rows matched on
    ``keys`` with every value equal (floats within ``atol + rtol * |value|``); an empty list when they
    are equal. Run in DuckDB, so tables larger than memory compare too."""
    import duckdb
    import pyarrow.parquet as pq

    sa = [(f.name, str(f.type)) for f in pq.read_schema(ours)]
    sb = [(f.name, str(f.type)) for f in pq.read_schema(ref)]
    if sa != sb:
        return [f"schemas differ: pipeline {sa} vs reference {sb}"]
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    a, b = (str(p).replace("'", "''") for p in (ours, ref))
    na = con.execute(f"SELECT count(*) FROM read_parquet('{a}')").fetchone()[0]
    nb = con.execute(f"SELECT count(*) FROM read_parquet('{b}')").fetchone()[0]
    if na != nb:
        return [f"{na} rows in the pipeline's table, {nb} in the reference's"]
    floats = {name for name, typ in sa if typ in ("double", "float")}
    on = " AND ".join(f'a."{k}" IS NOT DISTINCT FROM b."{k}"' for k in keys)
    problems = []
    matched = con.execute(f"SELECT count(*) FROM read_parquet('{a}') a JOIN read_parquet('{b}') b ON {on}").fetchone()[0]
    if matched != na:
        problems.append(f"{matched} rows matched on {', '.join(keys)} out of {na} (keys differ or repeat)")
    for name, _ in sa:
        if name in keys:
            continue
        col = f'"{name}"'
        differs = (f"(a.{col} IS NULL) <> (b.{col} IS NULL) OR abs(a.{col} - b.{col}) > {atol} + {rtol} * abs(b.{col})"
                   if name in floats else f"a.{col} IS DISTINCT FROM b.{col}")
        n, example = con.execute(
            f"SELECT count(*), any_value(struct_pack({', '.join(f'{k} := a.{chr(34)}{k}{chr(34)}' for k in keys)}, "
            f"pipeline := a.{col}, reference := b.{col})) "
            f"FROM read_parquet('{a}') a JOIN read_parquet('{b}') b ON {on} WHERE {differs}").fetchone()
        if n:
            problems.append(f"column {name}: {n} row(s) differ, e.g. {example}")
    con.close()
    return problems


def compare_outputs(ours: dict[str, Path], ref: dict[str, Path]) -> dict[str, list[str]]:
    """Differences per output table (empty lists when every table agrees)."""
    return {name: compare_tables(Path(ours[name]), Path(ref[name]), keys) for name, keys in OUTPUT_KEYS.items()}


def main(argv: list[str] | None = None) -> int:
    from pipeline.config import load_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="Parquet extract")
    parser.add_argument("--out", type=Path, required=True, help="directory for the reference's tables")
    parser.add_argument("--config", type=Path, default=None, help="study configuration (default: built-in)")
    args = parser.parse_args(argv)
    r = run_reference(args.data, args.out, load_config(args.config))
    print(f"reference clean in {r['seconds']} s, kept euros {r['kept_euros']:,.2f}; tables in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
