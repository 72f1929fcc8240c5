"""The one writer of step outputs (pipeline/writer.py): declared paths, schema on write, all or nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import load_config
from pipeline.io import PipelineError
from pipeline.paths import BuildPaths
from pipeline.results import IndicatorRecord, read_records
from pipeline.tables import PAIRS
from pipeline.writer import StepWriter, step_dirs


def _record(value: float = 0.5) -> IndicatorRecord:
    return IndicatorRecord(id="x", label_fr="x", label_en="x", unit="share", value=value, ci_low=None,
                           ci_high=None, n=20, method="m", population="p", definition="d")


def test_outputs_go_where_they_are_declared(tmp_path: Path):
    paths = BuildPaths(tmp_path)
    pairs = pd.DataFrame({"treated_id": ["a"], "control_id": ["b"], "subclass": [1], "distance": [0.1]})
    with StepWriter(paths, "match") as out:
        out.table("pairs", pairs, schema=PAIRS)
        out.table("balance", pd.DataFrame({"covariate": ["age"], "smd": [0.01]}))
        out.records("indicator_unmatched", [_record()])
        out.params(load_config(), ["matching"], seconds=1.5)
    assert out.written["pairs"] == paths.output("pairs")
    pd.testing.assert_frame_equal(pd.read_parquet(paths.output("pairs")), pairs)
    assert paths.output("balance").read_text() == "covariate,smd\nage,0.01\n"
    assert read_records(paths.output("indicator_unmatched")) == [_record()]
    params = json.loads(paths.params("match").read_text())
    assert set(params) == {"matching", "seconds", "provenance"} and params["seconds"] == 1.5
    # The provenance holds the hash of every output now in place (params.json itself excluded).
    assert set(params["provenance"]["outputs"]) == {"pairs", "balance", "indicator_unmatched"}


def test_an_output_of_another_step_is_refused(tmp_path: Path):
    with StepWriter(BuildPaths(tmp_path), "match") as out, pytest.raises(ValueError, match="step 'indicators'"):
        out.table("eol", pd.DataFrame())


def test_a_table_breaking_its_schema_is_not_written(tmp_path: Path):
    paths = BuildPaths(tmp_path)
    with pytest.raises(PipelineError, match="matched pairs"), StepWriter(paths, "match") as out:
        out.table("pairs", pd.DataFrame({"treated_id": ["a"], "subclass": [1]}), schema=PAIRS)
    assert not paths.output("pairs").exists()


def test_a_failing_step_leaves_every_previous_output(tmp_path: Path):
    paths = BuildPaths(tmp_path)
    with StepWriter(paths, "match") as out:
        out.records("indicator_unmatched", [_record(0.5)])
    before = paths.output("indicator_unmatched").read_text()
    with pytest.raises(RuntimeError), StepWriter(paths, "match") as out:
        out.records("indicator_unmatched", [_record(0.9)])
        out.table("balance", pd.DataFrame({"smd": [1.0]}))
        raise RuntimeError("simulated failure")
    assert paths.output("indicator_unmatched").read_text() == before
    assert not paths.output("balance").exists()


def test_the_cleaning_writes_clean_and_audit():
    paths = BuildPaths(Path("b"))
    assert step_dirs(paths, "clean") == [Path("b/clean"), Path("b/audit")]
    assert step_dirs(paths, "sweep") == [Path("b/sweep")]
