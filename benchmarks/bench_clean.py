"""Cleaning benchmark: time and peak memory of `equilibres clean` (DuckDB) against a hand-written
DuckDB script of the whole clean, its DCIR stage against one hand-written statement of the same
rules and a plain pandas implementation, and the same clean on Spark local[2] against DuckDB.
Results: benchmarks/results/clean.json (Spark: clean_spark.json with --spark-only).

    python -m benchmarks.bench_clean                 # scale 1 extract (+ a >= 100 M-line one if smaller)
    python -m benchmarks.bench_clean --quick         # tiny version (seconds)
    python -m benchmarks.bench_clean --scale 0.1 --lines 0 --no-spark   # one extract only
    python -m benchmarks.bench_clean --spark-only --spark-scale 0.1     # Spark local[2] vs DuckDB

What is measured (each run in a fresh subprocess, so ru_maxrss is its own peak):
- whole clean: `equilibres clean` from a fresh build directory (input checks, every stage, audit,
  manifest) against benchmarks/clean_reference.sql (the same tables written by one DuckDB script, same
  threads, memory limit and spill directory, no audit), in ABBA order; every table of both is
  compared (sorted on its key, floats within 1e-6 + 1e-9 relative) and so are the kept euros.
- ours: the DCIR stage of the runner (read ER_PRS_F, every rule, netting, categories, summary written
  to Parquet, and the audit query), lines/s = ER_PRS_F lines / stage seconds.
- hand SQL: one DuckDB COPY statement applying the same DCIR rules (filters, netting, person link,
  end-of-life care days, categories) and giving the stage's kept table (person × month × care day, a
  spending column per category), with the same memory/thread settings, no audit, no line-key check.
  Both results are cross-checked (the kept tables compared row by row, the kept euros to the cent).
- pandas: the same rules on the first ``--pandas-lines`` lines (pandas needs the table in memory),
  timed and extrapolated linearly to the whole extract; the JSON says it is extrapolated.
- Spark: the whole clean on Spark local[2] and on DuckDB on the same extract, every output and the
  audit trail compared.
The >= 100 M-line extract, when the base extract is smaller, is built by replicating its tables with
shifted identifiers (every replica is a new set of persons with the same claims), not by generating it.
Every run also records its CPU seconds (user + system of its process, all DuckDB threads: on a machine
shared with other jobs they move less than wall times) and the load averages before and after it.
With ``--baseline-code DIR`` (a copy of the code to compare with, e.g. the previous commit), the whole
clean of that code joins the rotation (reference, ours, baseline; then in reverse order), so before and
after are measured in the same runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import queue as queue_mod
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.io import peak_rss_mb


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (every thread, DuckDB's included)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _use_code(code: str | None) -> None:
    """Import the pipeline from ``code`` (a copy of the repository) instead of this one, in a fresh
    benchmark process: the baseline of a before/after comparison."""
    if not code:
        return
    sys.path.insert(0, str(Path(code).resolve()))
    for name in [m for m in sys.modules if m == "pipeline" or m.startswith("pipeline.")]:
        del sys.modules[name]

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "work" / "clean"
RESULTS = ROOT / "benchmarks" / "results" / "clean.json"
SPARK_RESULTS = RESULTS.with_name("clean_spark.json")
OUTPUT_NAMES = ("persons", "panel", "stays", "cohort", "eol_daily")

TARGET_WHOLE_VS_REFERENCE = 0.8
TARGET_VS_HAND_SQL = 0.9
TARGET_VS_PANDAS = 3.0
TARGET_PEAK_GIB = 8.0


# -- extracts ------------------------------------------------------------------------------------


def ensure_extract(scale: float, seed: int) -> Path:
    from data_samples.generator import generate_extract
    from pipeline.config import load_config

    out = WORK / f"extract_s{scale}_seed{seed}"
    if not (out / "truth.json").exists():
        print(f"   generating a scale-{scale} extract in {out}", flush=True)
        generate_extract(out, scale=scale, seed=seed, truth_path=None, fmt="parquet", confounding=None,
                         config=load_config())
    return out


def replicate_extract(base: Path, min_lines: int) -> Path:
    """An extract of at least ``min_lines`` ER_PRS_F lines: the base tables repeated k times, each
    replica with its identifiers shifted (first two characters replaced by the replica number)."""
    import duckdb
    import pyarrow.parquet as pq

    base_lines = pq.ParquetFile(base / "ER_PRS_F.parquet").metadata.num_rows
    k = max(1, -(-min_lines // base_lines))
    out = WORK / f"replicated_{base.name}_x{k}"
    done = out / ".complete"
    if done.exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    print(f"   replicating {base.name} x{k} ({k * base_lines:,} ER_PRS_F lines) into {out}", flush=True)
    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{WORK / 'tmp'}'")

    def shifted(col: str) -> str:
        # replica r > 0: the first two characters replaced by a 2-letter lowercase prefix; generated ids
        # never use those letters, so replicas cannot collide with each other or with the original
        # ('x' is left out: x-filled NIR_ANO_17 mean "invalid" in PMSI).
        letters = "ghijklmnopqrstuvwyz"
        n = len(letters)
        return (f"CASE WHEN r.i = 0 THEN {col} ELSE "
                f"substr('{letters}', (r.i // {n}) + 1, 1) || substr('{letters}', (r.i % {n}) + 1, 1) "
                f"|| substr({col}, 3) END")

    def copy(name: str, id_cols: list[str]) -> None:
        src = str(base / name)
        cols = con.execute(f"SELECT * FROM read_parquet('{src}') LIMIT 0").description
        select = ", ".join(
            f'{shifted(c[0])} AS "{c[0]}"' if c[0] in id_cols else f't."{c[0]}"' for c in cols
        )
        con.execute(f"COPY (SELECT {select} FROM read_parquet('{src}') t, range({k}) r(i)) "
                    f"TO '{out / name}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)")

    copy("ER_PRS_F.parquet", ["BEN_NIR_PSA", "ORG_CLE_NUM"])  # ORG_CLE_NUM keeps the 9-column line key unique
    copy("IR_BEN_R.parquet", ["BEN_NIR_PSA", "BEN_IDT_ANO"])
    copy("IR_IMB_R.parquet", ["BEN_NIR_PSA"])
    copy("EQUILIBRES_ROSTER.parquet", ["BEN_NIR_PSA"])
    for p in base.glob("T_MCO*.parquet"):  # hospital stays: replica 0 only (small tables)
        shutil.copy(p, out / p.name)
    done.write_text("ok")
    return out


# -- the three implementations (each run in a fresh process) ------------------------------------


def run_ours(data: str, build: str, engine: str = "duckdb", code: str | None = None) -> dict[str, Any]:
    _use_code(code)
    from pipeline.config import load_config
    from pipeline.paths import BuildPaths
    from pipeline.runner import run as clean_extract

    cfg = load_config()
    if engine == "spark":
        cfg = cfg.with_overrides({"engine": {"name": "spark", "spark_master": "local[2]"}})
    t0, c0 = time.perf_counter(), cpu_seconds()
    result = clean_extract(BuildPaths(Path(build), Path(data)), cfg, force=True)
    total, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    stages = {s.name: {"seconds": round(s.seconds, 3), "peak_rss_mb": s.peak_rss_mb} for s in result.stages}
    peak = max(peak_rss_mb(), max(s["peak_rss_mb"] for s in stages.values()))
    import duckdb
    import pandas as pd

    # Kept euros for the cross-check, summed in DuckDB: the summary has ~100 M rows at 127 M lines,
    # far too many to load into pandas (and the peak above is taken before this check).
    summary = Path(build) / "clean" / "_stages" / "dcir" / "claims_summary.parquet"
    kept = duckdb.connect().execute(f"SELECT sum(euros) FROM read_parquet('{summary}') WHERE fate = 0").fetchone()[0]
    att = pd.read_csv(Path(build) / "audit" / "attrition.csv")
    paths = BuildPaths(Path(build))
    checks = json.loads(paths.clean_manifest.read_text(encoding="utf-8")).get("input_checks") or {}
    return {"total_seconds": round(total, 3), "cpu_seconds": round(cpu, 3),
            "input_checks_seconds": checks.get("seconds"), "stages": stages,
            "peak_rss_mb": round(peak, 1), "kept_euros": round(float(kept), 2), "audit_rows": len(att),
            "outputs": {name: str(getattr(paths, name)) for name in OUTPUT_NAMES}}


def run_ours_dcir(data: str, build: str) -> dict[str, Any]:
    """The runner's DCIR stage alone (same StageDef, same backend settings, audit included), on a
    build where ``run_ours`` already ran the ingest stage: the repeated measurement of "ours"."""
    from pipeline.clean_stages import STAGES, StageContext
    from pipeline.config import load_config
    from pipeline.engine import make_backend
    from pipeline.io import file_hash
    from pipeline.paths import BuildPaths
    from pipeline.runner import locate_extract, stage_inputs

    cfg = load_config()
    paths = BuildPaths(Path(build))
    tables = locate_extract(Path(data), cfg)

    stage = next(s for s in STAGES if s.name == "dcir")
    # The runner's staging (Parquet in place, other formats converted once), done before the timer
    # as the runner does it before its stages.
    staged = {k: stage_inputs(tables[k], [file_hash(f) for f in tables[k]], k, paths, cfg) for k in stage.inputs}
    con = make_backend(cfg.engine, paths.root)
    ctx = StageContext(config=cfg, paths=paths, con=con, staged=staged.__getitem__,
                       stage_dir=paths.clean / "_stages")
    t0, c0 = time.perf_counter(), cpu_seconds()
    _, audit = stage.run(ctx)
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    con.disconnect()
    return {"seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3), "peak_rss_mb": round(peak_rss_mb(), 1),
            "audit_rows": len(audit)}


def hand_sql(config: Any, files: dict[str, list[Path]], ingest: Path, dest: str) -> str:
    """The DCIR stage as one hand-written DuckDB statement (no audit, no line-key check): the same
    rules and the same kept table as the stage (person x care month x care day, one spending column per
    category, the end-of-life ranges computed from the same possible deaths), for the comparison with
    the DCIR stage. ``ingest``: the ingest stage's outputs (person map, persons, NIR map), as the stage
    reads them."""
    from benchmarks.clean_reference import placeholders
    from pipeline.stages.dcir import NETTING_KEY, ClaimsWindow

    w = ClaimsWindow.from_config(config)
    v = placeholders(config, files, {})
    c = config.cleaning
    key = ", ".join(NETTING_KEY)
    spend = ",\n             ".join(f"sum(CASE WHEN category = '{n}' THEN euros ELSE 0.0 END) AS spend_{n}"
                                   for n in c.category_names)
    year = "CAST(regexp_extract(filename, 'MCO(\\d\\d)', 1) AS INTEGER) AS pmsi_year"
    return f"""
    COPY (
      WITH deaths AS (
        SELECT person_id, ben_death_date AS death_date FROM read_parquet('{ingest / "persons_base.parquet"}')
        WHERE ben_death_date IS NOT NULL
        UNION ALL
        SELECT m.person_id, c.EXE_SOI_DTF
        FROM (SELECT ETA_NUM, RSA_NUM, SOR_MOD, {year} FROM read_parquet({v["MCO_B"]}, filename = true)) b
        JOIN (SELECT ETA_NUM, RSA_NUM, NIR_ANO_17, EXE_SOI_DTF, {year} FROM read_parquet({v["MCO_C"]}, filename = true)) c
          USING (pmsi_year, ETA_NUM, RSA_NUM)
        JOIN read_parquet('{ingest / "nir_map.parquet"}') m ON c.NIR_ANO_17 = m.BEN_NIR_PSA
        WHERE trim(b.SOR_MOD) = '9' AND c.EXE_SOI_DTF IS NOT NULL
      ), ranges AS (
        SELECT person_id, min(death_date) - INTERVAL ({c.eol_daily_days - 1}) DAY AS eol_from, max(death_date) AS eol_to
        FROM deaths GROUP BY person_id
      ), lines AS (
        SELECT * FROM read_parquet({v["ER_PRS_F"]})
        WHERE {v["dpn_qlf_ok"]} AND {v["bse_prs_nat_ok"]}
          AND EXE_SOI_DTD BETWEEN DATE '{w.claims_start}' AND DATE '{w.claims_end}'
          AND {v["flux_ok"]}
          AND NOT coalesce(EXE_SOI_DTD > FLX_DIS_DTD + INTERVAL ({v["max_care_after_flux_days"]}) DAY, false)
          AND NOT coalesce(abs(BSE_REM_MNT) > {v["amount_limit"]}, false)
      ), netted AS (
        SELECT {key}, sum(PRS_ACT_QTE) AS qty, sum(BSE_REM_MNT) AS euros
        FROM lines GROUP BY {key} HAVING sum(PRS_ACT_QTE) > 0
      ), claims AS (
        SELECT m.person_id, date_trunc('month', n.EXE_SOI_DTD)::DATE AS month,
               CASE WHEN n.EXE_SOI_DTD BETWEEN r.eol_from AND r.eol_to THEN n.EXE_SOI_DTD END AS care_date,
               {v["category_case"]} AS category, n.*
        FROM netted n JOIN read_parquet('{ingest / "key_map.parquet"}') m USING (BEN_NIR_PSA, BEN_RNG_GEM)
        LEFT JOIN ranges r ON r.person_id = m.person_id
      )
      SELECT person_id, month, care_date,
             {spend},
             sum(CASE WHEN category = 'nursing_acts' AND coalesce(CPL_MAJ_TOP < 2, true) THEN qty ELSE 0.0 END)
               AS nursing_acts,
             sum(CASE WHEN PRS_NAT_REF IN ({v["experiment_codes"]}) THEN qty ELSE 0.0 END) AS experiment_hours,
             max(EXE_SOI_DTD) AS last_care
      FROM claims GROUP BY person_id, month, care_date
    ) TO '{dest}' (FORMAT parquet)
    """


def _kept_columns(config: Any) -> list[str]:
    """The columns of the stage's kept rows that the hand-written statement gives too (same names, types)."""
    from pipeline.stages.dcir import summary_amount_columns

    return ["person_id", "month", "care_date", *summary_amount_columns(config.cleaning), "last_care"]


def run_hand_sql(data: str, build: str) -> dict[str, Any]:
    import duckdb

    from pipeline.config import load_config
    from pipeline.engine import duckdb_spill_dir
    from pipeline.runner import locate_extract
    from pipeline.stages.dcir import spend_column

    cfg = load_config()
    ingest = Path(build) / "clean" / "_stages" / "ingest"
    dest = Path(build) / "hand_sql_summary.parquet"
    e = cfg.engine
    files = locate_extract(Path(data), cfg)
    con = duckdb.connect(config={"memory_limit": e.duckdb_memory_limit, "threads": e.duckdb_threads,
                                 "temp_directory": str(duckdb_spill_dir(e, Path(build)))})
    con.execute("SET enable_progress_bar = false")
    t0, c0 = time.perf_counter(), cpu_seconds()
    con.execute(hand_sql(cfg, files, ingest, str(dest)))
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    spend = " + ".join(spend_column(c) for c in cfg.cleaning.category_names)
    kept = con.execute(f"SELECT sum({spend}) FROM read_parquet('{dest}')").fetchone()[0]
    return {"seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3), "peak_rss_mb": round(peak_rss_mb(), 1),
            "kept_euros": round(float(kept), 2)}


def compare_kept(build: Path) -> list[str]:
    """Differences between the DCIR stage's kept rows (the summary's claim rows, ``dcir.kept_claims``)
    and the hand-written statement's table, matched on person, month and care day."""
    import ibis

    from benchmarks.clean_reference import compare_tables
    from pipeline.config import load_config
    from pipeline.stages.dcir import kept_claims

    cols = _kept_columns(load_config())
    summary = build / "clean" / "_stages" / "dcir" / "claims_summary.parquet"
    ours = build / "stage_kept.parquet"
    con = ibis.duckdb.connect()
    con.to_parquet(kept_claims(con.read_parquet(summary)).select(cols), ours)
    con.disconnect()
    return compare_tables(ours, build / "hand_sql_summary.parquet", ["person_id", "month", "care_date"])


def run_reference_clean(data: str, out: str) -> dict[str, Any]:
    """benchmarks/clean_reference.sql on the extract, with the pipeline's DuckDB settings."""
    from benchmarks.clean_reference import run_reference
    from pipeline.config import load_config
    from pipeline.engine import duckdb_spill_dir

    cfg = load_config()
    shutil.rmtree(out, ignore_errors=True)
    c0 = cpu_seconds()
    r = run_reference(Path(data), Path(out), cfg, spill=duckdb_spill_dir(cfg.engine, Path(out)))
    return {**r, "cpu_seconds": round(cpu_seconds() - c0, 3), "peak_rss_mb": round(peak_rss_mb(), 1)}


def run_pandas(data: str, build: str, n_lines: int) -> dict[str, Any]:
    """The same DCIR rules in plain pandas on the first ``n_lines`` lines."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.config import load_config
    from pipeline.stages.dcir import NETTING_KEY, ClaimsWindow

    cfg = load_config()
    w = ClaimsWindow.from_config(cfg)
    pf = pq.ParquetFile(Path(data) / "ER_PRS_F.parquet")
    batches, got = [], 0
    for b in pf.iter_batches(batch_size=1_000_000):
        batches.append(b)
        got += b.num_rows
        if got >= n_lines:
            break
    t0 = time.perf_counter()
    df = pa.Table.from_batches(batches).slice(0, n_lines).to_pandas()
    km = pd.read_parquet(Path(build) / "clean" / "_stages" / "ingest" / "key_map.parquet")
    care = pd.to_datetime(df.EXE_SOI_DTD)
    keep = ((df.DPN_QLF != 71) & (df.BSE_PRS_NAT != 0) & (care >= pd.Timestamp(w.claims_start))
            & (care <= pd.Timestamp(w.claims_end)) & ~(pd.to_datetime(df.FLX_DIS_DTD) > pd.Timestamp(w.flux_cutoff)))
    df = df[keep]
    net = df.groupby(NETTING_KEY, dropna=False, sort=False).agg(qty=("PRS_ACT_QTE", "sum"),
                                                                 euros=("BSE_REM_MNT", "sum")).reset_index()
    net = net[net.qty > 0].merge(km, on=["BEN_NIR_PSA", "BEN_RNG_GEM"])
    cat = pd.Series("other", index=net.index)
    assigned = pd.Series(False, index=net.index)
    for name, c in cfg.cleaning.categories.items():
        cond = pd.Series(True, index=net.index)
        for col, vals in (("PRS_NAT_REF", c.prs_nat_ref), ("PSE_ACT_NAT", c.pse_act_nat),
                          ("PSE_SPE_COD", c.pse_spe_cod)):
            if vals:
                cond &= net[col].isin(vals)
        cat[cond & ~assigned] = name
        assigned |= cond
    net["category"] = cat
    net["month"] = pd.to_datetime(net.EXE_SOI_DTD).dt.to_period("M").dt.to_timestamp()
    net["acts"] = net.qty.where(net.CPL_MAJ_TOP < 2, 0.0)
    net["hours"] = net.qty.where(net.PRS_NAT_REF.isin(cfg.cleaning.experiment.prs_nat_ref), 0.0)
    out = net.groupby(["person_id", "month", "category"], sort=False).agg(
        euros=("euros", "sum"), acts=("acts", "sum"), hours=("hours", "sum"), last_care=("EXE_SOI_DTD", "max"))
    seconds = time.perf_counter() - t0
    return {"lines": int(min(got, n_lines)), "seconds": round(seconds, 3), "peak_rss_mb": round(peak_rss_mb(), 1),
            "rows_out": len(out)}


def _worker(fn_name: str, kwargs: dict[str, Any], queue: Any) -> None:
    try:
        queue.put(("ok", globals()[fn_name](**kwargs)))
    except BaseException as err:  # report, do not hang the parent
        queue.put(("error", f"{type(err).__name__}: {err}"))


def in_subprocess(fn_name: str, **kwargs: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(fn_name, kwargs, queue))
    proc.start()
    while True:  # a child killed by the OS (out of memory) puts nothing in the queue: do not wait forever
        try:
            status, value = queue.get(timeout=5)
            break
        except queue_mod.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"{fn_name} died with exit code {proc.exitcode} (killed: out of memory?)") from None
    proc.join()
    if status != "ok":
        raise RuntimeError(f"{fn_name} failed: {value}")
    return value


# -- one extract ---------------------------------------------------------------------------------


def _abba(label: str, runs: dict[str, tuple[str, Any]], repeat: int) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Time runs (``runs``: key -> (title, function returning (seconds, result))) in ABBA order.

    The shared machine's speed drifts by +-25 % from one minute to the next, so the contenders are timed
    in rounds, each run in a fresh process, in the order of ``runs`` in even rounds and in reverse in odd
    ones (ABBA; ABC CBA for three), so that a steady drift favours none; medians are compared. Each run's
    CPU seconds and the load averages before and after it are kept in ``last[key]["runs"]``."""
    keys = list(runs)
    times: dict[str, list[float]] = {k: [] for k in keys}
    last: dict[str, Any] = {}
    record: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
    for i in range(repeat):
        for which in (keys if i % 2 == 0 else keys[::-1]):
            title, fn = runs[which]
            print(f"   [{label}] {title} ({i + 1}/{repeat})", flush=True)
            before = _loadavg()
            seconds, last[which] = fn()
            times[which].append(seconds)
            record[which].append({"round": i + 1, "seconds": seconds, "cpu_seconds": last[which].get("cpu_seconds"),
                                  "load_before": before, "load_after": _loadavg()})
    for k in keys:
        last[k]["runs"] = record[k]
    return times, last


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Unix
        return None


def _pairwise(ref: list[float], ours: list[float]) -> float:
    import statistics

    return round(statistics.median(r / o for r, o in zip(ref, ours, strict=True)), 3)


def bench_whole_clean(data: Path, label: str, build: Path, repeat: int,
                      baseline_code: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """`equilibres clean` from a fresh build against benchmarks/clean_reference.sql, ABBA; outputs compared.
    With ``baseline_code``, that copy of the code cleans the extract in the same rotation (before/after).
    Returns the JSON part and the last run of ours (its build is left for the DCIR-stage runs)."""
    import statistics

    from benchmarks.clean_reference import compare_outputs

    ref_dir = WORK / f"reference_{label}"

    def ours() -> tuple[float, dict[str, Any]]:
        shutil.rmtree(build, ignore_errors=True)  # a fresh build: input checks and every stage run
        r = in_subprocess("run_ours", data=str(data), build=str(build))
        return r["total_seconds"], r

    def baseline() -> tuple[float, dict[str, Any]]:
        b = build.with_name(build.name + "_baseline")
        shutil.rmtree(b, ignore_errors=True)
        r = in_subprocess("run_ours", data=str(data), build=str(b), code=str(baseline_code))
        return r["total_seconds"], r

    def ref() -> tuple[float, dict[str, Any]]:
        r = in_subprocess("run_reference_clean", data=str(data), out=str(ref_dir))
        return r["seconds"], r

    contenders = {"ref": ("reference SQL of the whole clean", ref),
                  "ours": ("equilibres clean (fresh build)", ours)}
    if baseline_code is not None:
        contenders["baseline"] = (f"equilibres clean of {baseline_code} (fresh build)", baseline)
    times, last = _abba(label, contenders, repeat)
    diffs = compare_outputs(last["ours"]["outputs"], last["ref"]["outputs"])
    ours_med, ref_med = statistics.median(times["ours"]), statistics.median(times["ref"])
    cpu = {k: [r["cpu_seconds"] for r in last[k]["runs"]] for k in contenders}
    whole = {
        "seconds": round(ours_med, 3), "seconds_all": times["ours"],
        "reference_seconds": round(ref_med, 3), "reference_seconds_all": times["ref"],
        "cpu_seconds_all": cpu["ours"], "reference_cpu_seconds_all": cpu["ref"],
        "reference_peak_rss_mb": last["ref"]["peak_rss_mb"], "reference_steps": last["ref"].get("steps", {}),
        "ours_stages": {k: v["seconds"] for k, v in last["ours"]["stages"].items()},
        "ours_input_checks_seconds": last["ours"].get("input_checks_seconds"),
        "ratio": round(ref_med / ours_med, 3), "ratio_pairwise_median": _pairwise(times["ref"], times["ours"]),
        "cpu_ratio": round(statistics.median(cpu["ref"]) / statistics.median(cpu["ours"]), 3),
        "cpu_ratio_pairwise_median": _pairwise(cpu["ref"], cpu["ours"]),
        "runs": {k: last[k]["runs"] for k in contenders},
        "cross_check": {
            "tables_equal": not any(diffs.values()), "differences": {k: v for k, v in diffs.items() if v},
            "tables": list(diffs), "kept_euros_ours": last["ours"]["kept_euros"],
            "kept_euros_reference": last["ref"]["kept_euros"],
        },
        "note": "ratio = reference seconds / ours (>= 0.8 wanted): medians of ABBA-ordered runs, each in a fresh "
                "process; ours from a fresh build directory (input checks included), the reference writes the "
                "same five tables (same columns, types, order) without the audit trail; cpu_ratio: the same with "
                "CPU seconds; runs: every run with its load averages before and after",
    }
    if baseline_code is not None:
        b_med = statistics.median(times["baseline"])
        b_diffs = compare_outputs(last["baseline"]["outputs"], last["ref"]["outputs"])
        whole["baseline"] = {
            "code": str(baseline_code), "seconds": round(b_med, 3), "seconds_all": times["baseline"],
            "cpu_seconds_all": cpu["baseline"], "ratio": round(ref_med / b_med, 3),
            "ratio_pairwise_median": _pairwise(times["ref"], times["baseline"]),
            "cpu_ratio": round(statistics.median(cpu["ref"]) / statistics.median(cpu["baseline"]), 3),
            "cpu_ratio_pairwise_median": _pairwise(cpu["ref"], cpu["baseline"]),
            "ours_vs_baseline_time_ratio": round(b_med / ours_med, 3),
            "ours_vs_baseline_cpu_ratio": round(statistics.median(cpu["baseline"]) / statistics.median(cpu["ours"]), 3),
            "stages": {k: v["seconds"] for k, v in last["baseline"]["stages"].items()},
            "input_checks_seconds": last["baseline"].get("input_checks_seconds"),
            "tables_equal_reference": not any(b_diffs.values()),
            "kept_euros": last["baseline"]["kept_euros"],
        }
        shutil.rmtree(build.with_name(build.name + "_baseline"), ignore_errors=True)
    shutil.rmtree(ref_dir, ignore_errors=True)
    return whole, last["ours"]


def bench_extract(data: Path, label: str, pandas_lines: int, repeat: int, whole_repeat: int,
                  baseline_code: Path | None = None) -> dict[str, Any]:
    import statistics

    import pyarrow.parquet as pq

    lines = pq.ParquetFile(data / "ER_PRS_F.parquet").metadata.num_rows
    build = WORK / f"build_{label}"
    print(f"   [{label}] {lines:,} ER_PRS_F lines", flush=True)
    when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    whole, ours = bench_whole_clean(data, label, build, whole_repeat, baseline_code)
    # The DCIR stage alone against its hand-written statement, on the staged inputs of the last whole
    # clean. The DCIR time inside the whole clean is kept apart (`stages.dcir`): that process has
    # already run the input checks and the ingest stage, so its memory state is not the hand SQL's.

    def dcir() -> tuple[float, dict[str, Any]]:
        r = in_subprocess("run_ours_dcir", data=str(data), build=str(build))
        return r["seconds"], r

    def hand() -> tuple[float, dict[str, Any]]:
        r = in_subprocess("run_hand_sql", data=str(data), build=str(build))
        return r["seconds"], r

    times, last = _abba(label, {"hand": ("hand-written DuckDB statement of the DCIR rules", hand),
                                "ours": ("DCIR stage alone", dcir)}, repeat)
    ours_s, hand_s, hand_r = times["ours"], times["hand"], last["hand"]
    dcir_s, hand_med = statistics.median(ours_s), statistics.median(hand_s)
    ours_lps, hand_lps = lines / dcir_s, lines / hand_med
    out: dict[str, Any] = {
        "label": label,
        "when": when,
        "load_average_at_end": _loadavg(),
        "er_prs_f_lines": lines,
        "repeats": repeat,
        "whole_repeats": whole_repeat,
        "whole_clean": whole,
        "ours": {**{k: v for k, v in ours.items() if k not in ("outputs", "runs")}, "dcir_seconds": round(dcir_s, 3),
                 "dcir_seconds_all": ours_s, "dcir_runs": last["ours"]["runs"], "lines_per_s": round(ours_lps),
                 "note": "DCIR stage of the runner (every rule, netting, person link, categories, summary "
                         "written, audit query) in a fresh process, median of the ABBA-ordered runs; "
                         "total_seconds/stages/peak are the last whole clean"},
        "hand_sql": {**hand_r, "seconds": round(hand_med, 3), "seconds_all": hand_s, "lines_per_s": round(hand_lps),
                     "note": "one DuckDB COPY of the same rules giving the stage's kept table (person x month x "
                             "care day, a column per category, end-of-life ranges included), same memory/threads, "
                             "no audit, no line-key check; median"},
        "ratios": {"whole_clean_vs_reference": whole["ratio"], "ours_vs_hand_sql": round(ours_lps / hand_lps, 3),
                   "ours_vs_hand_sql_pairwise_median": _pairwise(hand_s, ours_s),
                   "whole_clean_vs_reference_cpu": whole["cpu_ratio"],
                   "ours_vs_hand_sql_cpu": round(statistics.median(r["cpu_seconds"] for r in last["hand"]["runs"])
                                                 / statistics.median(r["cpu_seconds"] for r in last["ours"]["runs"]), 3)},
        "cross_check": {"kept_euros_ours": ours["kept_euros"], "kept_euros_hand_sql": hand_r["kept_euros"],
                        "agree": abs(ours["kept_euros"] - hand_r["kept_euros"]) < 0.01 * max(1, lines / 1e6),
                        "kept_table_differences": compare_kept(build)},
    }
    out["targets"] = {
        f"whole_clean_vs_reference>={TARGET_WHOLE_VS_REFERENCE}": whole["ratio"] >= TARGET_WHOLE_VS_REFERENCE,
        f"dcir_vs_hand_sql>={TARGET_VS_HAND_SQL}": out["ratios"]["ours_vs_hand_sql"] >= TARGET_VS_HAND_SQL,
        f"peak<={TARGET_PEAK_GIB}GiB": ours["peak_rss_mb"] / 1024 <= TARGET_PEAK_GIB,
    }
    if pandas_lines:
        n_pd = min(pandas_lines, lines)
        print(f"   [{label}] pandas on {n_pd:,} lines", flush=True)
        pdr = in_subprocess("run_pandas", data=str(data), build=str(build), n_lines=n_pd)
        pandas_lps = pdr["lines"] / pdr["seconds"]
        out["pandas"] = {**pdr, "lines_per_s": round(pandas_lps),
                         "extrapolated_seconds_full": round(lines / pandas_lps, 1),
                         "note": f"run on the first {pdr['lines']:,} lines and extrapolated linearly to {lines:,} "
                                 "(a plain pandas run needs the whole table in memory)"}
        out["ratios"]["ours_vs_pandas"] = round(ours_lps / pandas_lps, 2)
        out["targets"][f"ours_vs_pandas>={TARGET_VS_PANDAS}"] = out["ratios"]["ours_vs_pandas"] >= TARGET_VS_PANDAS
    shutil.rmtree(build, ignore_errors=True)
    return out


def _machine() -> dict[str, Any]:
    import duckdb
    import ibis

    info = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
            "duckdb": duckdb.__version__, "ibis": ibis.__version__}
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        info["load_average_at_start"] = [round(x, 1) for x in os.getloadavg()]
    except (OSError, ValueError, AttributeError):  # pragma: no cover - not on Linux
        pass
    try:
        import pyspark

        info["pyspark"] = pyspark.__version__
    except ImportError:  # pragma: no cover - the spark extra is optional
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    from pipeline.config import load_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny version: committed sample, x2 replication")
    parser.add_argument("--scale", type=float, default=1.0, help="scale of the generated extract (default 1)")
    parser.add_argument("--seed", type=int, default=20240101)
    parser.add_argument("--data", type=Path, default=None, help="use this Parquet extract instead of generating")
    parser.add_argument("--lines", type=int, default=100_000_000,
                        help="also bench an extract of at least this many lines, by replication, when the base "
                             "extract is smaller (0 = skip)")
    parser.add_argument("--pandas-lines", type=int, default=5_000_000, help="lines given to pandas (0 = skip pandas)")
    parser.add_argument("--no-spark", action="store_true", help="skip the Spark run")
    parser.add_argument("--spark-only", action="store_true",
                        help="only the Spark local[2] / DuckDB comparison (results: clean_spark.json)")
    parser.add_argument("--spark-scale", type=float, default=0.1, help="scale of the Spark comparison's extract")
    parser.add_argument("--repeat", type=int, default=4,
                        help="pairs of DCIR-stage and hand-SQL runs, in ABBA order (medians compared)")
    parser.add_argument("--whole-repeat", type=int, default=2,
                        help="pairs of whole-clean and reference-script runs, in ABBA order")
    parser.add_argument("--big-repeat", type=int, default=2, help="the same pairs for the >= 100 M-line extract")
    parser.add_argument("--out", type=Path, default=None,
                        help="results file (default benchmarks/results/clean.json, clean_quick.json with --quick)")
    parser.add_argument("--work", type=Path, default=None,
                        help="directory for generated extracts and builds (default benchmarks/work/clean)")
    parser.add_argument("--baseline-code", type=Path, default=None,
                        help="a copy of the repository whose `equilibres clean` joins the whole-clean rotation "
                             "(before/after in the same runs)")
    parser.add_argument("--append", action="store_true",
                        help="add this run's entries to the results file instead of replacing it")
    parser.add_argument("--note", default=None, help="a note stored with this run's entries")
    args = parser.parse_args(argv)

    global WORK
    if args.work is not None:
        WORK = args.work.resolve()
    if args.out is None:  # a quick check must not overwrite the committed full results
        args.out = (RESULTS.with_name("clean_quick.json") if args.quick
                    else SPARK_RESULTS if args.spark_only else RESULTS)
    WORK.mkdir(parents=True, exist_ok=True)
    import pyarrow.parquet as pq

    if args.quick:
        from data_samples import SAMPLE_DIR

        base, label = SAMPLE_DIR, "sample"
        big_lines = 2 * pq.ParquetFile(SAMPLE_DIR / "ER_PRS_F.parquet").metadata.num_rows  # x2 replication
        pandas_lines = 100_000
    else:
        label, big_lines, pandas_lines = "", args.lines, args.pandas_lines
        base = None

    e = load_config().engine
    results: dict[str, Any] = {
        "benchmark": "clean_spark" if args.spark_only else "clean",
        "quick": args.quick,
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "settings": {"duckdb_threads": e.duckdb_threads, "duckdb_memory_limit": e.duckdb_memory_limit,
                     "spark_master": "local[2]", "spark_driver_memory": e.spark_driver_memory},
        "method": __doc__.split("What is measured")[1].strip() if "What is measured" in (__doc__ or "") else "",
        "runs": [],
    }

    earlier: list[dict[str, Any]] = []
    if args.append and args.out.exists():
        # Earlier entries keep the machine, date and method they were measured with.
        old = json.loads(args.out.read_text())
        for r in old.get("runs", []):
            earlier.append({**{k: old[k] for k in ("when", "machine", "method") if k in old and k not in r}, **r})
        results["earlier_scope"] = old.get("earlier_scope", []) + ([old["scope"]] if "scope" in old else [])

    def save() -> None:  # after every part, so a long run that fails later keeps what it measured
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**results, "runs": earlier + results["runs"]}, indent=2))

    if args.spark_only or (not args.no_spark and not args.quick):
        spark_data = (args.data if args.spark_only and args.data else ensure_extract(args.spark_scale, args.seed))
        from benchmarks.bench_clean_spark import bench_spark

        results["spark"] = bench_spark(spark_data, spark_data.name if args.spark_only and args.data
                                       else f"scale_{args.spark_scale}")
        save()
    if args.spark_only:
        print(f"   Spark local[2] / DuckDB: {results['spark']['spark_vs_duckdb_time_ratio']}x the time, outputs equal: "
              f"{results['spark']['outputs_equal']}; results: {args.out}")
        return 0 if results["spark"]["outputs_equal"] else 1

    if base is None:
        base = args.data or ensure_extract(args.scale, args.seed)
        label = f"scale_{args.scale}" if args.data is None else base.name
    base_lines = pq.ParquetFile(base / "ER_PRS_F.parquet").metadata.num_rows
    results["runs"].append(bench_extract(base, label, pandas_lines, 1 if args.quick else args.repeat,
                                         1 if args.quick else args.whole_repeat, args.baseline_code))
    if args.note:
        results["runs"][-1]["note"] = args.note
    save()
    if big_lines and base_lines < big_lines:
        big = replicate_extract(base, big_lines)
        results["runs"].append(bench_extract(big, big.name, pandas_lines, 1 if args.quick else args.big_repeat,
                                             1 if args.quick else args.big_repeat, args.baseline_code))
        save()
    for r in results["runs"]:
        print(f"   {r['label']}: whole clean {r['whole_clean']['seconds']} s vs reference "
              f"{r['whole_clean']['reference_seconds']} s (tables equal: {r['whole_clean']['cross_check']['tables_equal']}); "
              f"DCIR {r['ours']['lines_per_s']:,} lines/s vs hand SQL {r['hand_sql']['lines_per_s']:,}; peak "
              f"{r['ours']['peak_rss_mb']:.0f} MiB; ratios {r['ratios']}; targets {r['targets']}")
    if "spark" in results:
        print(f"   Spark local[2]: {results['spark']['spark_vs_duckdb_time_ratio']}x DuckDB's time")
    print(f"   results: {args.out}")
    equal = all(r["whole_clean"]["cross_check"]["tables_equal"] for r in results["runs"])
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
