"""Cleaning benchmark: ER_PRS_F throughput and peak memory of `equilibres clean` (DuckDB), compared in
the same run with a hand-written DuckDB SQL of the same DCIR rules and a plain pandas implementation,
plus the Spark local[2] time on the committed sample. Results: benchmarks/results/clean.json.

    python -m benchmarks.bench_clean                 # scale 1 extract, then a >= 100 M-line extract
    python -m benchmarks.bench_clean --quick         # tiny version (seconds)
    python -m benchmarks.bench_clean --scale 0.2 --lines 0   # one extract only, no replication

What is measured (each engine in a fresh subprocess, so ru_maxrss is its own peak):
- ours: the DCIR stage of the runner (read ER_PRS_F, every rule, netting, categories, summary written
  to Parquet, and the audit query), lines/s = ER_PRS_F lines / stage seconds; the whole clean time too.
- hand SQL: one DuckDB COPY statement applying the same rules (filters, netting, person link,
  categories, person × month × category summary), with the same memory/thread settings, no audit.
  Both results are cross-checked (kept euros must agree to the cent).
- pandas: the same rules on the first ``--pandas-lines`` lines (pandas needs the table in memory),
  timed and extrapolated linearly to the whole extract; the JSON says it is extrapolated.
The >= 100 M-line extract is built by replicating the scale-1 tables with shifted identifiers
(every replica is a new set of persons with the same claims), not by generating it.
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

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "work" / "clean"
RESULTS = ROOT / "benchmarks" / "results" / "clean.json"

TARGET_VS_HAND_SQL = 0.8
TARGET_VS_PANDAS = 3.0
TARGET_PEAK_GIB = 14.0


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


def run_ours(data: str, build: str, engine: str = "duckdb") -> dict[str, Any]:
    from pipeline.config import load_config
    from pipeline.paths import BuildPaths
    from pipeline.runner import run as clean_extract

    cfg = load_config()
    if engine == "spark":
        cfg = cfg.with_overrides({"engine": {"name": "spark", "spark_master": "local[2]"}})
    t0 = time.perf_counter()
    result = clean_extract(BuildPaths(Path(build), Path(data)), cfg, force=True)
    total = time.perf_counter() - t0
    stages = {s.name: {"seconds": round(s.seconds, 3), "peak_rss_mb": s.peak_rss_mb} for s in result.stages}
    peak = max(peak_rss_mb(), max(s["peak_rss_mb"] for s in stages.values()))
    import duckdb
    import pandas as pd

    # Kept euros for the cross-check, summed in DuckDB: the summary has ~100 M rows at 127 M lines,
    # far too many to load into pandas (and the peak above is taken before this check).
    summary = Path(build) / "clean" / "_stages" / "dcir" / "claims_summary.parquet"
    kept = duckdb.connect().execute(f"SELECT sum(euros) FROM read_parquet('{summary}') WHERE fate = 0").fetchone()[0]
    att = pd.read_csv(Path(build) / "audit" / "attrition.csv")
    return {"total_seconds": round(total, 3), "stages": stages, "peak_rss_mb": round(peak, 1),
            "kept_euros": round(float(kept), 2), "audit_rows": len(att)}


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
    t0 = time.perf_counter()
    _, audit = stage.run(ctx)
    seconds = time.perf_counter() - t0
    con.disconnect()
    return {"seconds": round(seconds, 3), "peak_rss_mb": round(peak_rss_mb(), 1), "audit_rows": len(audit)}


def hand_sql(config: Any, prs: str, key_map: str, dest: str) -> str:
    """The DCIR rules as one DuckDB statement (no audit), for the comparison."""
    from pipeline.stages.dcir import NETTING_KEY, ClaimsWindow

    w = ClaimsWindow.from_config(config)
    c = config.cleaning
    cats = []
    for name, cat in c.categories.items():
        conds = [f"{col} IN ({', '.join(str(v) for v in vals)})" for col, vals in
                 (("PRS_NAT_REF", cat.prs_nat_ref), ("PSE_ACT_NAT", cat.pse_act_nat),
                  ("PSE_SPE_COD", cat.pse_spe_cod)) if vals]
        if conds:
            cats.append(f"WHEN {' AND '.join(conds)} THEN '{name}'")
    exp = ", ".join(str(v) for v in c.experiment.prs_nat_ref)
    key = ", ".join(NETTING_KEY)
    return f"""
    COPY (
      WITH lines AS (
        SELECT * FROM read_parquet('{prs}')
        WHERE DPN_QLF IS DISTINCT FROM 71 AND BSE_PRS_NAT IS DISTINCT FROM 0
          AND EXE_SOI_DTD BETWEEN DATE '{w.claims_start}' AND DATE '{w.claims_end}'
          AND NOT (FLX_DIS_DTD > DATE '{w.flux_cutoff}')
      ), netted AS (
        SELECT {key}, sum(PRS_ACT_QTE) AS qty, sum(BSE_REM_MNT) AS euros
        FROM lines GROUP BY {key} HAVING sum(PRS_ACT_QTE) > 0
      )
      SELECT m.person_id, date_trunc('month', n.EXE_SOI_DTD) AS month,
             CASE {' '.join(cats)} ELSE 'other' END AS category,
             sum(n.euros) AS euros,
             sum(CASE WHEN n.CPL_MAJ_TOP < 2 THEN n.qty ELSE 0 END) AS acts,
             sum(CASE WHEN n.PRS_NAT_REF IN ({exp}) THEN n.qty ELSE 0 END) AS hours,
             max(n.EXE_SOI_DTD) AS last_care
      FROM netted n JOIN read_parquet('{key_map}') m USING (BEN_NIR_PSA, BEN_RNG_GEM)
      GROUP BY ALL
    ) TO '{dest}' (FORMAT parquet)
    """


def run_hand_sql(data: str, build: str) -> dict[str, Any]:
    import duckdb

    from pipeline.config import load_config
    from pipeline.engine import duckdb_spill_dir

    cfg = load_config()
    key_map = Path(build) / "clean" / "_stages" / "ingest" / "key_map.parquet"
    dest = Path(build) / "hand_sql_summary.parquet"
    e = cfg.engine
    con = duckdb.connect(config={"memory_limit": e.duckdb_memory_limit, "threads": e.duckdb_threads,
                                 "temp_directory": str(duckdb_spill_dir(e, Path(build)))})
    t0 = time.perf_counter()
    con.execute(hand_sql(cfg, str(Path(data) / "ER_PRS_F.parquet"), str(key_map), str(dest)))
    seconds = time.perf_counter() - t0
    kept = con.execute(f"SELECT sum(euros) FROM read_parquet('{dest}')").fetchone()[0]
    return {"seconds": round(seconds, 3), "peak_rss_mb": round(peak_rss_mb(), 1), "kept_euros": round(float(kept), 2)}


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


def bench_extract(data: Path, label: str, pandas_lines: int, repeat: int) -> dict[str, Any]:
    import statistics

    import pyarrow.parquet as pq

    lines = pq.ParquetFile(data / "ER_PRS_F.parquet").metadata.num_rows
    build = WORK / f"build_{label}"
    shutil.rmtree(build, ignore_errors=True)
    print(f"   [{label}] {lines:,} ER_PRS_F lines: whole clean (DuckDB)", flush=True)
    ours = in_subprocess("run_ours", data=str(data), build=str(build))
    # The shared machine's speed drifts by +-25 % from one minute to the next, so the DCIR stage
    # and the hand SQL are timed in pairs, each in a fresh process on the same staged inputs, in
    # ABBA order (hand first in even pairs, the stage first in odd ones) so that a steady drift
    # does not favour either; medians are compared. The DCIR time inside the whole clean above is
    # kept apart (`stages.dcir`): that process has already run the input checks and the ingest
    # stage, so its memory state is not the hand SQL's.
    runs = {"hand": ("hand-written DuckDB SQL", "run_hand_sql"), "ours": ("DCIR stage alone", "run_ours_dcir")}
    times: dict[str, list[float]] = {"hand": [], "ours": []}
    last: dict[str, dict[str, Any]] = {}
    for i in range(repeat):
        for which in (("hand", "ours") if i % 2 == 0 else ("ours", "hand")):
            title, fn = runs[which]
            print(f"   [{label}] {title} ({i + 1}/{repeat})", flush=True)
            last[which] = in_subprocess(fn, data=str(data), build=str(build))
            times[which].append(last[which]["seconds"])
    ours_s, hand_s, hand = times["ours"], times["hand"], last["hand"]
    n_pd = min(pandas_lines, lines)
    print(f"   [{label}] pandas on {n_pd:,} lines", flush=True)
    pdr = in_subprocess("run_pandas", data=str(data), build=str(build), n_lines=n_pd)
    pandas_lps = pdr["lines"] / pdr["seconds"]
    dcir_s = statistics.median(ours_s)
    hand_med = statistics.median(hand_s)
    ours_lps = lines / dcir_s
    hand_lps = lines / hand_med
    out = {
        "label": label,
        "er_prs_f_lines": lines,
        "repeats": repeat,
        "ours": {**ours, "dcir_seconds": round(dcir_s, 3), "dcir_seconds_all": ours_s, "lines_per_s": round(ours_lps),
                 "note": "DCIR stage of the runner (every rule, netting, person link, categories, summary "
                         "written, audit query) in a fresh process, median of the ABBA-ordered runs; "
                         "total_seconds/stages/peak are the whole clean"},
        "hand_sql": {**hand, "seconds": round(hand_med, 3), "seconds_all": hand_s, "lines_per_s": round(hand_lps),
                     "note": "one DuckDB COPY of the same rules, same memory/threads, no audit; median"},
        "pandas": {**pdr, "lines_per_s": round(pandas_lps),
                   "extrapolated_seconds_full": round(lines / pandas_lps, 1),
                   "note": f"run on the first {pdr['lines']:,} lines and extrapolated linearly to {lines:,} "
                           "(a plain pandas run needs the whole table in memory)"},
        "ratios": {"ours_vs_hand_sql": round(ours_lps / hand_lps, 3), "ours_vs_pandas": round(ours_lps / pandas_lps, 2),
                   "ours_vs_hand_sql_pairwise_median": round(statistics.median(
                       h / o for h, o in zip(hand_s, ours_s, strict=True)), 3)},
        "cross_check": {"kept_euros_ours": ours["kept_euros"], "kept_euros_hand_sql": hand["kept_euros"],
                        "agree": abs(ours["kept_euros"] - hand["kept_euros"]) < 0.01 * max(1, lines / 1e6)},
    }
    out["targets"] = {
        f"ours_vs_hand_sql>={TARGET_VS_HAND_SQL}": out["ratios"]["ours_vs_hand_sql"] >= TARGET_VS_HAND_SQL,
        f"ours_vs_pandas>={TARGET_VS_PANDAS}": out["ratios"]["ours_vs_pandas"] >= TARGET_VS_PANDAS,
        f"peak<={TARGET_PEAK_GIB}GiB": ours["peak_rss_mb"] / 1024 <= TARGET_PEAK_GIB,
    }
    shutil.rmtree(build, ignore_errors=True)
    return out


def bench_spark_sample() -> dict[str, Any]:
    from data_samples import SAMPLE_DIR

    build = WORK / "build_spark_sample"
    shutil.rmtree(build, ignore_errors=True)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    print("   Spark local[2] on the committed sample", flush=True)
    r = in_subprocess("run_ours", data=str(SAMPLE_DIR), build=str(build), engine="spark")
    shutil.rmtree(build, ignore_errors=True)
    import pyarrow.parquet as pq

    lines = pq.ParquetFile(SAMPLE_DIR / "ER_PRS_F.parquet").metadata.num_rows
    return {"er_prs_f_lines": lines, "total_seconds": r["total_seconds"], "stages": r["stages"],
            "peak_rss_mb_including_jvm": r["peak_rss_mb"],
            "note": "whole clean on Spark local[2] (session start-up included); dominated by per-query overhead"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny version: committed sample, x2 replication")
    parser.add_argument("--scale", type=float, default=1.0, help="scale of the generated extract (default 1)")
    parser.add_argument("--seed", type=int, default=20240101)
    parser.add_argument("--data", type=Path, default=None, help="use this Parquet extract instead of generating")
    parser.add_argument("--lines", type=int, default=100_000_000,
                        help="also bench an extract of at least this many lines, by replication (0 = skip)")
    parser.add_argument("--pandas-lines", type=int, default=5_000_000, help="lines given to pandas")
    parser.add_argument("--no-spark", action="store_true", help="skip the Spark run on the sample")
    parser.add_argument("--repeat", type=int, default=4,
                        help="pairs of DCIR-stage and hand-SQL runs, in ABBA order (medians compared)")
    parser.add_argument("--big-repeat", type=int, default=2, help="the same for the >= 100 M-line extract")
    parser.add_argument("--out", type=Path, default=None,
                        help="results file (default benchmarks/results/clean.json, clean_quick.json with --quick)")
    parser.add_argument("--work", type=Path, default=None,
                        help="directory for generated extracts and builds (default benchmarks/work/clean)")
    args = parser.parse_args(argv)

    global WORK
    if args.work is not None:
        WORK = args.work.resolve()
    if args.out is None:  # a quick check must not overwrite the committed full results
        args.out = RESULTS.with_name("clean_quick.json") if args.quick else RESULTS
    WORK.mkdir(parents=True, exist_ok=True)
    if args.quick:
        import pyarrow.parquet as pq

        from data_samples import SAMPLE_DIR

        base, label = SAMPLE_DIR, "sample"
        big_lines = 2 * pq.ParquetFile(SAMPLE_DIR / "ER_PRS_F.parquet").metadata.num_rows  # x2 replication
        pandas_lines = 100_000
    else:
        base = args.data or ensure_extract(args.scale, args.seed)
        label, big_lines, pandas_lines = f"scale_{args.scale}" if args.data is None else base.name, args.lines, args.pandas_lines

    results: dict[str, Any] = {
        "benchmark": "clean",
        "quick": args.quick,
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
        "runs": [],
    }

    def save() -> None:  # after every part, so a long run that fails later keeps what it measured
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))

    results["runs"].append(bench_extract(base, label, pandas_lines, 1 if args.quick else args.repeat))
    save()
    if big_lines:
        big = replicate_extract(base, big_lines)
        results["runs"].append(bench_extract(big, big.name, pandas_lines, args.big_repeat))
        save()
    if not args.no_spark:
        results["spark_sample"] = bench_spark_sample()
        save()
    for r in results["runs"]:
        print(f"   {r['label']}: ours {r['ours']['lines_per_s']:,} lines/s (peak {r['ours']['peak_rss_mb']:.0f} MiB), "
              f"hand SQL {r['hand_sql']['lines_per_s']:,} lines/s, pandas {r['pandas']['lines_per_s']:,} lines/s; "
              f"ratios {r['ratios']}; targets {r['targets']}")
    if "spark_sample" in results:
        print(f"   Spark local[2] on the sample: {results['spark_sample']['total_seconds']} s")
    print(f"   results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
