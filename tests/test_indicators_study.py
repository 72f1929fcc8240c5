"""The `equilibres indicators` runner on a hand-built build directory (no cleaning/matching needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_indicators_core import eol_daily, matched, panel, persons, stays

from indicators.headline import HEADLINE_IDS, headline_effects
from indicators.study import run
from pipeline.config import StudyConfig, load_config
from pipeline.io import PipelineError
from pipeline.paths import BuildPaths
from pipeline.privacy import suppress_small_counts
from pipeline.results import IndicatorRecord, write_records

EXPECTED_IDS = {
    "unmatched_share_complex", "followup_patient_years", "hosp_share_any_stay", "hosp_stays_per_100py",
    "hosp_days_per_100py", "seances_per_100py", "eol_decedents", "eol_hosp_rate", "eol_hosp_days",
    "eol_death_in_hospital", "eol_spending_treated", "eol_spending_control", "eol_spending_difference",
    "eol_nursing_presence", "avoided_spending_per_patient_year", "avoided_spending_share",
    "programme_investment", "caseload_patient_years", "gross_savings_year", "net_savings_year",
    "return_per_euro_invested", "did_spending_per_patient_year",
}


def run_indicators(root: Path, config: StudyConfig):
    return run(BuildPaths(root), config)


@pytest.fixture(scope="module")
def config():
    return load_config().with_overrides({"indicators": {"bootstrap_replicates": 99, "sweep_replicates": 99}})


def write_build(root: Path, config) -> Path:
    paths = BuildPaths(root)
    paths.clean.mkdir(parents=True)
    paths.matching.mkdir(parents=True)
    persons().to_parquet(paths.persons)
    panel(config).to_parquet(paths.panel)
    stays().to_parquet(paths.stays)
    eol_daily(config).to_parquet(paths.eol_daily)
    m = matched()
    m.to_parquet(paths.matching / "matched.parquet")
    pd.DataFrame({"treated_id": ["T1@2022-01-01"] * 2 + ["T2@2022-01-01", "T3@2022-01-01"],
                  "control_id": ["C1a@2022-01-01", "C1b@2022-01-01", "C2@2022-01-01", "C3@2022-01-01"],
                  "subclass": ["A", "A", "B", "C"], "distance": 0.0}).to_parquet(paths.matching / "pairs.parquet")
    write_records(paths.output("indicator_unmatched"), [IndicatorRecord(
        id="unmatched_share_complex", label_fr="x", label_en="x", value=0.3, ci_low=0.2, ci_high=0.4, n=100,
        unit="share", method="wilson", population="complex-care treated", definition="unmatched / all",
        published=0.30)])
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory, config):
    root = write_build(tmp_path_factory.mktemp("ind") / "build", config)
    return root, run_indicators(root, config)


def test_outputs_and_records(built, config):
    root, res = built
    out = BuildPaths(root).indicators
    for name in ["indicators.json", "indicators.csv", "spending_by_category.csv", "eol.csv",
                 "hospitalisation.csv", "followup.csv", "economics_scenarios.csv", "did.csv",
                 "regression_crosscheck.csv", "params.json", "caseload.csv"]:
        assert (out / name).exists(), name
    records = json.loads((out / "indicators.json").read_text())
    assert {r["id"] for r in records} == EXPECTED_IDS
    for r in records:
        for key in ("id", "label_fr", "label_en", "value", "ci_low", "ci_high", "n", "unit", "method", "published"):
            assert key in r, (r["id"], key)
        assert r["published"] == config.published.get(r["id"])
    rate = next(r for r in records if r["id"] == "eol_hosp_rate")
    assert rate["value"] == pytest.approx(-0.5)
    assert "bootstrap of matched sets" in rate["method"]
    params = json.loads((out / "params.json").read_text())
    assert params["indicators"]["bootstrap_replicates"] == 99
    assert params["sizes"]["matched_sets"] is None  # 3 sets < min_cell_count: masked
    assert "Indicators:" in res.render() and "eol_hosp_rate" in res.render()


def test_no_identifiers_and_small_counts_suppressed(built):
    root, _ = built
    out = BuildPaths(root).indicators
    for f in out.iterdir():
        text = f.read_text()
        for ident in ("T1", "C1a", "C2@", "@2022-01-01"):
            assert ident not in text, (f.name, ident)
    fu = pd.read_csv(out / "followup.csv")
    # 3 treated and 4 controls < min_cell_count (10): masked and flagged
    assert fu["n_units"].isna().all() and fu["suppressed"].str.contains("n_units").all()
    records = json.loads((out / "indicators.json").read_text())
    dec = next(r for r in records if r["id"] == "eol_decedents")
    assert dec["value"] is None and dec["suppressed"] is True and dec["n"] is None


def test_suppression_keeps_large_and_zero_counts():
    f = suppress_small_counts(pd.DataFrame({"n_treated": [0, 5, 10, 200], "x": [1, 2, 3, 4]}), 10)
    assert f["n_treated"].tolist() == [0, None, 10, 200]
    assert f["suppressed"].tolist() == ["", "n_treated", "", ""]


def test_headline_reuses_the_main_computation(built, config):
    root, _ = built
    recs = {r["id"]: r for r in headline_effects(matched(), root, config)}
    assert set(recs) == set(HEADLINE_IDS)
    main = {r["id"]: r for r in json.loads((BuildPaths(root).indicators / "indicators.json").read_text())}
    for id_ in HEADLINE_IDS:  # same seed and replicates → identical estimates and intervals
        assert recs[id_]["value"] == pytest.approx(main[id_]["value"])
        assert recs[id_]["ci_low"] == pytest.approx(main[id_]["ci_low"])
        assert recs[id_]["ci_high"] == pytest.approx(main[id_]["ci_high"])


def test_missing_inputs_say_what_to_run(tmp_path, config):
    with pytest.raises(PipelineError, match="equilibres clean"):
        run_indicators(tmp_path / "empty", config)
    root = write_build(tmp_path / "b", config)
    (BuildPaths(root).matching / "matched.parquet").unlink()
    with pytest.raises(PipelineError, match="equilibres match"):
        run_indicators(root, config)
    # cleaning outputs from before eol_daily existed: say to re-run the cleaning
    root = write_build(tmp_path / "c", config)
    BuildPaths(root).eol_daily.unlink()
    with pytest.raises(PipelineError, match=r"eol_daily\.parquet.*missing.*equilibres clean"):
        run_indicators(root, config)
    root = write_build(tmp_path / "d", config)
    eol_daily(config).drop(columns=["spend_nursing_acts"]).to_parquet(BuildPaths(root).eol_daily)
    with pytest.raises(PipelineError, match=r"eol_daily\.parquet.*spend_nursing_acts.*equilibres clean"):
        run_indicators(root, config)
    # cleaned with fewer days before death than the end-of-life window
    root = write_build(tmp_path / "e", config)
    BuildPaths(root).clean_manifest.write_text(json.dumps({"parameters": {"cleaning": {"eol_daily_days": 60}}}))
    with pytest.raises(PipelineError, match=r"60 days.*eol_window_days = 90.*equilibres clean"):
        run_indicators(root, config)


def test_bad_perimeter_is_reported(tmp_path):
    cfg = load_config().with_overrides({"indicators": {"perimeter": ["nursing_acts", "dentist"]}})
    root = write_build(tmp_path / "b", load_config())
    with pytest.raises(PipelineError, match="dentist"):
        run_indicators(root, cfg)


def test_cli_indicators(tmp_path, config):
    from typer.testing import CliRunner

    from study.cli import app

    root = write_build(tmp_path / "b", config)
    r = CliRunner().invoke(app, ["indicators", "--out", str(root), "--replicates", "99",
                                 "--eol-window-days", "30"])
    assert r.exit_code == 0, r.output
    params = json.loads((BuildPaths(root).indicators / "params.json").read_text())
    assert params["indicators"]["eol_window_days"] == 30
