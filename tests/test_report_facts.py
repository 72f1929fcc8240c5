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
    SensitivitySummary,
    SurveysFacts,
    SweepFacts,
    read_facts,
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
    assert "380" in matching  # sizes.strata_matched, among the main sizes
    detailed = text[text.find('id="detailed"'):text.find('id="methods"')]
    assert "412" in detailed  # sizes.strata_with_treated, in the full table of the annex
    repro = text[text.find('id="reproducibility"'):]
    assert "412,000" in repro  # rows of ER_PRS_F.parquet (input_checks)
    # A params.json that breaks its declaration stops the report with the file and the key.
    data = json.loads((copy / "sweep" / "params.json").read_text(encoding="utf-8"))
    del data["curve_estimate"]
    (copy / "sweep" / "params.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PipelineError, match=r"sweep/params.json.*curve_estimate"):
        run(BuildPaths(copy), load_config(), pdf=False)


# ------------------------------------------------------------------- sensitivity/summary.json (typed)
def test_the_sensitivity_summary_round_trips_through_its_declaration(tmp_path: Path):
    from tests.report_fixture import SENSITIVITY_SUMMARY, write_sensitivity

    write_sensitivity(tmp_path)
    path = tmp_path / "sensitivity" / "summary.json"
    read = read_facts(SensitivitySummary, path)
    assert read == SENSITIVITY_SUMMARY
    assert SensitivitySummary.from_dict(read.to_dict()) == read
    assert json.loads(path.read_text(encoding="utf-8")) == read.to_dict()
    # Attributes, not keys: what the report reads.
    assert read.headline("eol_hosp_rate").verdict == "pass"
    assert read.headline("avoided_spending_share").checks["pretrends"].passed is False
    assert read.headline("net_savings_year") is None
    assert read.negative_controls.n == 12 and read.event_study["spending"].pretrend_df == 11
    with pytest.raises(dataclasses.FrozenInstanceError):
        read.ci_level = 0.9  # type: ignore[misc]


def _malformed(tmp_path: Path, edit) -> Path:
    from tests.report_fixture import SENSITIVITY_SUMMARY

    data = SENSITIVITY_SUMMARY.to_dict()
    edit(data)
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["headlines"][1].pop("verdict"), r"missing key\(s\) headlines\[1\]\.verdict"),
    (lambda d: d["headlines"][0].update(verdict="robust"),
     r"key 'headlines\[0\]\.verdict' must be one of 'pass', 'fail', 'incomplete', found 'robust'"),
    (lambda d: d["headlines"][0]["checks"]["power"].update(passed="yes"),
     r"key 'headlines\[0\]\.checks\.power\.passed' must be true or false"),
    (lambda d: d["negative_controls"].update(n=None), r"key 'negative_controls\.n' must be an integer"),
    (lambda d: d.update(event_study=[1, 2]), r"key 'event_study' must be a JSON object"),
    (lambda d: d.update(verdicts={}), r"unknown key\(s\) verdicts"),
])
def test_a_malformed_sensitivity_summary_is_a_clear_error(tmp_path: Path, edit, message: str):
    path = _malformed(tmp_path, edit)
    with pytest.raises(PipelineError, match=rf"{re.escape(str(path))}.*{message}.*re-run `equilibres sensitivity`"):
        read_facts(SensitivitySummary, path)


def test_an_unreadable_sensitivity_summary_stops_the_report(build: Path, tmp_path: Path):
    from tests.report_fixture import write_sensitivity

    copy = tmp_path / "b"
    shutil.copytree(build, copy)
    write_sensitivity(copy)
    summary = copy / "sensitivity" / "summary.json"
    summary.write_text(summary.read_text(encoding="utf-8")[:200], encoding="utf-8")  # cut short
    with pytest.raises(PipelineError, match=r"summary.json: invalid JSON .*re-run `equilibres sensitivity`"):
        run(BuildPaths(copy), load_config(), pdf=False)
    summary.write_text(json.dumps({"headlines": []}), encoding="utf-8")
    with pytest.raises(PipelineError, match=r"summary.json does not match its declaration \(SensitivitySummary"
                                            r".*missing key\(s\) negative_controls"):
        run(BuildPaths(copy), load_config(), pdf=False)
