"""The Spark part of the cleaning benchmark (`python -m benchmarks.bench_clean --spark-only`): the
whole clean on Spark local[2] against DuckDB on the same extract, every output and the audit trail
compared. Each run is a fresh process (benchmarks.bench_clean.in_subprocess)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from benchmarks import bench_clean


def bench_spark(data: Path, label: str) -> dict[str, Any]:
    """The whole clean on DuckDB, then on Spark local[2], then DuckDB again, on the same extract: times
    (session start-up included), the ratio, and every output and the audit trail compared."""
    import statistics

    import pandas as pd
    import pyarrow.parquet as pq

    from benchmarks.clean_reference import OUTPUT_KEYS, compare_tables

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    lines = pq.ParquetFile(data / "ER_PRS_F.parquet").metadata.num_rows
    builds = {e: bench_clean.WORK / f"build_{e}_{label}" for e in ("duckdb", "spark")}
    runs: dict[str, list[dict[str, Any]]] = {"duckdb": [], "spark": []}
    loads: list[dict[str, Any]] = []
    for engine in ("duckdb", "spark", "duckdb"):  # DuckDB around Spark: a drift shows in its two times
        print(f"   [{label}] {lines:,} ER_PRS_F lines: whole clean on {engine}", flush=True)
        shutil.rmtree(builds[engine], ignore_errors=True)
        before = bench_clean._loadavg()
        runs[engine].append(bench_clean.in_subprocess("run_ours", data=str(data), build=str(builds[engine]), engine=engine))
        loads.append({"engine": engine, "seconds": runs[engine][-1]["total_seconds"], "load_before": before,
                      "load_after": bench_clean._loadavg()})
    duck, spark = runs["duckdb"][-1], runs["spark"][-1]
    diffs = {name: compare_tables(Path(spark["outputs"][name]), Path(duck["outputs"][name]), keys)
             for name, keys in OUTPUT_KEYS.items()}
    a = pd.read_csv(builds["duckdb"] / "audit" / "attrition.csv")
    b = pd.read_csv(builds["spark"] / "audit" / "attrition.csv")
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9)
        audit_diff = ""
    except AssertionError as err:
        audit_diff = " ".join(str(err).splitlines()[:6])
    duck_s = statistics.median(r["total_seconds"] for r in runs["duckdb"])
    out = {
        "label": label, "er_prs_f_lines": lines, "master": "local[2]",
        "duckdb_seconds_all": [r["total_seconds"] for r in runs["duckdb"]], "duckdb_seconds": round(duck_s, 3),
        "spark_seconds": spark["total_seconds"],
        "spark_vs_duckdb_time_ratio": round(spark["total_seconds"] / duck_s, 2),
        "duckdb_stages": duck["stages"], "spark_stages": spark["stages"],
        "peak_rss_mb": {"duckdb": duck["peak_rss_mb"], "spark_driver_python_and_jvm": spark["peak_rss_mb"]},
        "kept_euros": {"duckdb": duck["kept_euros"], "spark": spark["kept_euros"]},
        "outputs_equal": not any(diffs.values()) and not audit_diff,
        "differences": {**{k: v for k, v in diffs.items() if v}, **({"audit": audit_diff} if audit_diff else {})},
        "compared": [*diffs, "audit/attrition.csv"],
        "runs": loads,
        "note": "whole clean from a fresh build on each engine (input checks, every stage, audit, manifest; "
                "Spark session start-up included), DuckDB timed before and after Spark (median of the two); "
                "outputs compared sorted on their keys, floats within 1e-6 + 1e-9 relative",
    }
    for b_ in builds.values():
        shutil.rmtree(b_, ignore_errors=True)
    return out
