"""The cleaning benchmark's references hold: the hand-written SQL of the whole clean
(benchmarks/clean_reference.sql) gives the pipeline's tables on the committed sample, so it cannot
drift from the rules silently; the quick benchmark still runs and its comparisons hold together
(the hand-written statement and the runner's DCIR stage keep the same euros, the replicated extract
is exactly the base extract k times over)."""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from benchmarks import bench_clean
from benchmarks.clean_reference import OUTPUT_KEYS, compare_tables, run_reference
from data_samples import SAMPLE_DIR
from pipeline import runner
from pipeline.config import load_config
from pipeline.paths import BuildPaths

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample_and_reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean_reference")
    cfg = load_config()
    runner.run(BuildPaths(root / "build", SAMPLE_DIR), cfg)
    ref = run_reference(SAMPLE_DIR, root / "reference", cfg)
    return BuildPaths(root / "build"), ref


@pytest.mark.parametrize("name", list(OUTPUT_KEYS))
def test_reference_sql_gives_the_pipeline_tables(sample_and_reference, name):
    build, ref = sample_and_reference
    assert pq.ParquetFile(getattr(build, name)).metadata.num_rows > 0
    assert compare_tables(getattr(build, name), ref["outputs"][name], OUTPUT_KEYS[name]) == []


def test_reference_sql_keeps_the_pipeline_euros(sample_and_reference):
    build, ref = sample_and_reference
    summary = build.clean / "_stages" / "dcir" / "claims_summary.parquet"
    kept = duckdb.connect().execute(f"SELECT sum(euros) FROM read_parquet('{summary}') WHERE fate = 0").fetchone()[0]
    assert ref["kept_euros"] > 0
    assert ref["kept_euros"] == pytest.approx(kept, abs=0.01)


def test_comparison_sees_one_changed_cent(sample_and_reference, tmp_path):
    build, ref = sample_and_reference
    panel = pq.read_table(ref["outputs"]["panel"])
    col = panel.column_names.index("spend_nursing_acts")
    bumped = pc.add(panel.column(col), pa.array([0.01] + [0.0] * (panel.num_rows - 1)))
    pq.write_table(panel.set_column(col, "spend_nursing_acts", bumped), tmp_path / "panel.parquet")
    problems = compare_tables(build.panel, tmp_path / "panel.parquet", OUTPUT_KEYS["panel"])
    assert problems and "spend_nursing_acts" in problems[0]


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_clean")
    out = root / "clean_quick.json"
    assert bench_clean.main(["--quick", "--no-spark", "--work", str(root / "work"), "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_quick_benchmark_measures_both_extracts(quick_results):
    runs = quick_results["runs"]
    assert [r["label"] for r in runs][0] == "sample" and len(runs) == 2
    for r in runs:
        assert r["ours"]["dcir_seconds"] > 0 and r["hand_sql"]["seconds"] > 0 and r["pandas"]["seconds"] > 0
        assert r["whole_clean"]["seconds"] > 0 and r["whole_clean"]["reference_seconds"] > 0
        assert r["ours"]["audit_rows"] > 20
        assert set(r["targets"]) == {"whole_clean_vs_reference>=0.8", "dcir_vs_hand_sql>=0.9",
                                     "ours_vs_pandas>=3.0", "peak<=8.0GiB"}


def test_whole_clean_equals_reference_on_both_extracts(quick_results):
    for r in quick_results["runs"]:
        check = r["whole_clean"]["cross_check"]
        assert check["tables_equal"], check
        assert check["kept_euros_ours"] == pytest.approx(check["kept_euros_reference"], abs=0.01)


def test_hand_sql_and_stage_keep_the_same_euros(quick_results):
    for r in quick_results["runs"]:
        assert r["cross_check"]["agree"], r["cross_check"]
        assert r["cross_check"]["kept_table_differences"] == []  # the same kept table, row by row
        assert r["ours"]["kept_euros"] == pytest.approx(r["hand_sql"]["kept_euros"], abs=0.01)


def test_replica_is_the_base_extract_k_times(quick_results):
    base, big = quick_results["runs"]
    k, rest = divmod(big["er_prs_f_lines"], base["er_prs_f_lines"])
    assert k >= 2 and rest == 0
    # Every replica links to its own persons, so exactly k times the kept euros.
    assert big["ours"]["kept_euros"] == pytest.approx(k * base["ours"]["kept_euros"], abs=0.05)
