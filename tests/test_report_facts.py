"""Issue 15: the facts each step saves (sizes, input hashes, timings...) cross into the report as
frozen, typed classes declared once (pipeline/facts.py), validated on write and on read."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.facts import (
    STEP_FACTS,
    CleanFacts,
    IndicatorsFacts,
    MatchingFacts,
    SurveysFacts,
    SweepFacts,
)
from pipeline.io import PipelineError
from pipeline.paths import BuildPaths
from pipeline.results import read_clean_manifest, read_params
from reports.build import run
from tests.report_fixture import make_fixture_build

STEP_DIR = {"match": "matching", "indicators": "indicators", "surveys": "surveys", "sweep": "sweep"}


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    return make_fixture_build(tmp_path_factory.mktemp("facts_build"))


def test_every_saved_fact_reads_back_typed_and_round_trips(build: Path):
    for step, folder in STEP_DIR.items():
        params = read_params(build / folder / "params.json", step)
        assert type(params.facts) is STEP_FACTS[step]
        facts = params.facts
        assert type(facts).from_dict(facts.to_dict()) == facts
        with pytest.raises(dataclasses.FrozenInstanceError):
            facts.seconds = 0.0 if hasattr(facts, "seconds") else None  # type: ignore[misc]
    clean = read_clean_manifest(build / "clean" / "manifest.json")
    assert isinstance(clean.facts, CleanFacts)
    assert CleanFacts.from_dict(clean.facts.to_dict()) == clean.facts
    assert clean.facts.rows_of("ER_PRS_F.parquet") == 412000
    assert clean.config.cohort.history_months == 12  # the saved settings, typed


def test_matching_facts_are_attributes(build: Path):
    facts = read_params(build / "matching" / "params.json", "match").facts
    assert isinstance(facts, MatchingFacts)
    assert facts.sizes.treated == 1290 and facts.sizes.control_persons_reused is None
    assert facts.min_cell_count == 10
    assert isinstance(read_params(build / "sweep" / "params.json", "sweep").facts, SweepFacts)
    assert isinstance(read_params(build / "indicators" / "params.json", "indicators").facts, IndicatorsFacts)
    assert isinstance(read_params(build / "surveys" / "params.json", "surveys").facts, SurveysFacts)


@pytest.mark.parametrize("step,key", [("match", "sizes"), ("indicators", "extract_scale"),
                                      ("sweep", "curve_estimate"), ("surveys", "inputs")])
def test_a_missing_key_is_an_error_naming_file_and_key(build: Path, tmp_path: Path, step: str, key: str):
    path = tmp_path / "params.json"
    data = json.loads((build / STEP_DIR[step] / "params.json").read_text(encoding="utf-8"))
    del data[key]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PipelineError, match=rf"{re.escape(str(path))}.*missing key\(s\) {key}.*equilibres {step}"):
        read_params(path, step)


def test_an_unknown_or_mistyped_key_is_an_error(build: Path, tmp_path: Path):
    data = json.loads((build / "matching" / "params.json").read_text(encoding="utf-8"))
    path = tmp_path / "params.json"
    path.write_text(json.dumps({**data, "n_pairs": 3}), encoding="utf-8")
    with pytest.raises(PipelineError, match=r"unknown key\(s\) n_pairs"):
        read_params(path, "match")
    data["sizes"]["treated"] = "1290"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PipelineError, match=r"key 'sizes.treated' must be .*integer.*found '1290'"):
        read_params(path, "match")
    del data["sizes"]["pairs"]
    data["sizes"]["treated"] = 1290
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PipelineError, match=r"missing key\(s\) sizes.pairs"):
        read_params(path, "match")


def test_the_manifest_is_checked_on_read(build: Path, tmp_path: Path):
    data = json.loads((build / "clean" / "manifest.json").read_text(encoding="utf-8"))
    del data["input_checks"]["files"][0]["rows"]
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PipelineError, match=r"manifest.json.*missing key\(s\) input_checks.files\[0\].rows"
                                            r".*equilibres clean"):
        read_clean_manifest(path)


def test_the_producer_cannot_write_a_value_of_the_wrong_type():
    facts = SweepFacts(matching_base={}, n_grid_distinct=4, n_run="4", truncated=False,  # type: ignore[arg-type]
                       effects_available=True, curve_estimate="x", cohort_fingerprint="f", seconds=1.0)
    with pytest.raises(PipelineError, match=r"SweepFacts \(before writing\).*'n_run' must be an integer"):
        facts.to_dict()


def test_the_report_renders_from_the_typed_facts(build: Path, tmp_path: Path):
    copy = tmp_path / "b"
    shutil.copytree(build, copy)
    html = run(BuildPaths(copy), load_config().with_overrides({"report": {"lang": "en"}}), pdf=False)
    text = html.html_path.read_text(encoding="utf-8")
    matching = text[text.find('id="matching"'):text.find('id="hospitalisation"')]
    assert "0.123" in matching  # caliper_width, from MatchingFacts
    assert "412" in matching  # sizes.strata_with_treated
    repro = text[text.find('id="reproducibility"'):]
    assert "412,000" in repro  # rows of ER_PRS_F.parquet (input_checks)
    # A params.json that breaks its declaration stops the report with the file and the key.
    data = json.loads((copy / "sweep" / "params.json").read_text(encoding="utf-8"))
    del data["curve_estimate"]
    (copy / "sweep" / "params.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PipelineError, match=r"sweep/params.json.*curve_estimate"):
        run(BuildPaths(copy), load_config(), pdf=False)
