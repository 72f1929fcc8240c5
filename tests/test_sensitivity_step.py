"""`equilibres sensitivity` end to end on the committed sample: every file of build/sensitivity/ is
written, its tables match their declarations, and summary.json carries the fields the report reads."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.config import load_config
from pipeline.paths import BuildPaths, step_outputs
from pipeline.result_tables import validate_result

SAMPLE = Path(__file__).resolve().parents[1] / "data_samples" / "sample"
HEADLINE_FIELDS = {"id", "evalue", "evalue_ci", "rosenbaum_gamma", "mdrr", "pretrend_p", "verdict", "reasons"}
NC_FIELDS = {"n", "systematic_error_mean", "systematic_error_ci_low", "systematic_error_ci_high"}


@pytest.fixture(scope="module")
def sensitivity_run(tmp_path_factory):
    """Clean, match and compute the indicators of the sample (the `equilibres run --no-report` steps),
    then run the sensitivity step."""
    import matching.study
    import pipeline.runner
    from indicators import study as indicators_study
    from indicators.sensitivity import run

    config = load_config()
    paths = BuildPaths(tmp_path_factory.mktemp("sens") / "build", SAMPLE)
    for step in (pipeline.runner, matching.study, indicators_study):
        step.run(paths, config)
    return paths, run(paths, config)


def test_every_declared_output_is_written(sensitivity_run):
    paths, res = sensitivity_run
    for key in step_outputs("sensitivity"):
        assert paths.output(key).exists(), key
    for key in step_outputs("sensitivity", "csv"):
        frame = pd.read_csv(paths.output(key))
        assert len(frame) > 0, key
        validate_result(key, frame)


def test_summary_fields(sensitivity_run):
    paths, res = sensitivity_run
    from indicators.headline import HEADLINE_IDS

    summary = json.loads(paths.output("sensitivity_summary").read_text(encoding="utf-8"))
    assert [h["id"] for h in summary["headlines"]] == list(HEADLINE_IDS)
    for h in summary["headlines"]:
        assert HEADLINE_FIELDS <= set(h), h["id"]
        assert h["verdict"] in {"pass", "fail", "incomplete"}
        assert h["reasons"] and all(isinstance(r, str) for r in h["reasons"])
        assert h["evalue"] is None or h["evalue"] >= 1.0
        assert h["evalue_ci"] is None or 1.0 <= h["evalue_ci"] <= h["evalue"]
        assert h["mdrr"] > 1.0
        assert h["rosenbaum_gamma"] is None or h["rosenbaum_gamma"] >= 1.0
        assert 0.0 <= h["pretrend_p"] <= 1.0
    nc = summary["negative_controls"]
    assert nc is not None and NC_FIELDS <= set(nc)
    assert set(summary["event_study"]) == {"spending", "hospital_stays"}
    assert res.verdicts[0].verdict == summary["headlines"][0]["verdict"]


def test_event_study_and_curves_cover_the_configured_windows(sensitivity_run):
    paths, _ = sensitivity_run
    sc = load_config().sensitivity
    es = pd.read_csv(paths.output("event_study"))
    for outcome, rows in es.groupby("outcome"):
        assert rows["relative_month"].min() == -sc.event_months_before, outcome
        assert rows["relative_month"].max() == sc.event_months_after, outcome
    ci = pd.read_csv(paths.output("cumulative_incidence"))
    assert ci["month"].max() == sc.curve_months
    surv = ci[(ci["curve"] == "survival") & (ci["arm"] != "difference")]
    assert surv["estimate"].between(0, 1).all()
    assert (surv.sort_values("month").groupby("arm")["estimate"].diff().dropna() <= 1e-12).all()


def test_headline_estimates_equal_the_indicators(sensitivity_run):
    """Same matched sets, windows and bootstrap as `equilibres indicators`: same values and CIs."""
    paths, _ = sensitivity_run
    ind = pd.read_csv(paths.output("indicators_csv")).set_index("id")
    heads = pd.read_csv(paths.output("sensitivity_headlines")).set_index("id")
    for id_, row in heads.iterrows():
        assert row["value"] == pytest.approx(ind.loc[id_, "value"], rel=1e-9)
        assert row["ci_low"] == pytest.approx(ind.loc[id_, "ci_low"], rel=1e-9)


def test_params_record_the_thresholds(sensitivity_run):
    paths, _ = sensitivity_run
    params = json.loads(paths.params("sensitivity").read_text(encoding="utf-8"))
    assert params["sensitivity"]["max_abs_smd"] == load_config().sensitivity.max_abs_smd
    assert "treated" in params["sizes"]
