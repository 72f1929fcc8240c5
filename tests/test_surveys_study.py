"""`equilibres surveys`: outputs, indicator records, privacy, weighting, errors through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from data_samples.surveys import write_synthetic_surveys
from pipeline.config import StudyConfig, load_config
from pipeline.paths import BuildPaths
from study.cli import app
from surveys.study import SurveyRunResult, run


def run_surveys(data: Path, build: Path, config: StudyConfig) -> SurveyRunResult:
    return run(BuildPaths(build, data), config)


CONFIG = load_config()
runner = CliRunner()
EXPECTED_IDS = {
    "patients_qol_improved", "patients_home_support", "caregivers_supported", "patients_needs_met",
    "patients_mean_score", "nurses_qvt_before", "nurses_qvt_after", "nurses_conditions_before",
    "nurses_conditions_after", "nurses_caseload_same", "nurses_caseload_up", "nurses_caseload_down",
    "nurses_more_solicited", "nurses_accept_more", "nurses_coordination", "nurses_coordination_gp_aide",
}
RECORD_KEYS = {"id", "label_fr", "label_en", "value", "ci_low", "ci_high", "n", "unit", "method", "published",
               "population", "definition"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("survey_data")
    write_synthetic_surveys(root, 20240101, CONFIG)
    return root


@pytest.fixture(scope="module")
def built(data: Path, tmp_path_factory) -> Path:
    build = tmp_path_factory.mktemp("survey_build")
    result = runner.invoke(app, ["surveys", "--data", str(data), "--out", str(build)])
    assert result.exit_code == 0, result.output
    return build


def test_cli_writes_indicators_with_expected_ids(built: Path):
    records = json.loads((built / "surveys" / "indicators.json").read_text(encoding="utf-8"))
    assert {r["id"] for r in records} == EXPECTED_IDS
    for r in records:
        assert RECORD_KEYS <= set(r)
        assert r["published"] == CONFIG.published[r["id"]]
        assert r["ci_low"] <= r["value"] <= r["ci_high"]
        assert r["unit"] in {"share", "score_0_10"}
        assert r["n"] > 0


def test_indicator_values_are_computed_from_the_files(built: Path, data: Path):
    """The record equals a direct count on the raw file (the value is not the published figure)."""
    records = {r["id"]: r for r in json.loads((built / "surveys" / "indicators.json").read_text(encoding="utf-8"))}
    raw = pd.read_csv(data / "surveys" / "nurses_online.csv", dtype=str, keep_default_na=False)
    answers = raw["coordination"][~raw["coordination"].isin(["", "99"])]
    assert records["nurses_coordination"]["n"] == len(answers)
    assert records["nurses_coordination"]["value"] == pytest.approx((answers == "1").mean())
    patients = pd.read_csv(data / "surveys" / "patients_caregivers.csv", dtype=str, keep_default_na=False)
    scores = patients.loc[patients["respondent_type"] == "1", "service_rating"]
    scores = scores[~scores.isin(["", "99"])].astype(float)
    assert records["patients_mean_score"]["value"] == pytest.approx(scores.mean())
    caregivers = records["caregivers_supported"]
    assert caregivers["small_n_warning"] is True  # 25 caregivers < 30
    assert caregivers["display_fr"].startswith(f"{round(caregivers['value'] * caregivers['n'])}/{caregivers['n']} (")


def test_all_tidy_outputs_exist(built: Path):
    out = built / "surveys"
    for name in ("items.csv", "likert.csv", "before_after.csv", "response_rates.csv", "params.json"):
        assert (out / name).exists(), name
    assert not list(out.rglob("*.png"))  # the report draws the charts from likert.csv and before_after.csv
    items = pd.read_csv(out / "items.csv")
    assert {"survey_id", "question_id", "statistic", "k", "n", "value", "ci_low", "ci_high", "method",
            "small_n_warning", "display_en", "display_fr"} <= set(items.columns)
    # every nurse-phone item carries the small-n warning (22 respondents)
    assert items.loc[items["survey_id"] == "nurses_phone", "small_n_warning"].all()
    ba = pd.read_csv(out / "before_after.csv")
    assert set(ba["question_id"]) == {"qvt", "conditions"}
    assert (ba["zero_method"] == "pratt").all()
    rates = pd.read_csv(out / "response_rates.csv")
    online = rates.loc[rates["survey_id"] == "nurses_online"].iloc[0]
    assert online["invited"] == 170 and online["rr1"] == pytest.approx(online["complete_I"] / 170)
    assert "RR1" in online["formula"]
    params = json.loads((out / "params.json").read_text(encoding="utf-8"))
    assert params["surveys"]["proportion_ci"] == "wilson"
    assert len(params["codebooks"]) == 3


def test_no_respondent_id_in_any_output(built: Path, data: Path):
    ids = set()
    for f in (data / "surveys").glob("*.csv"):
        ids |= set(pd.read_csv(f, dtype=str)["respondent_id"])
    for f in (built / "surveys").rglob("*"):
        if f.suffix in {".csv", ".json"}:
            text = f.read_text(encoding="utf-8")
            assert "respondent_id" not in text, f
            leaked = [i for i in ids if i in text]
            assert not leaked, (f, leaked[:3])


def test_french_render_and_clopper_pearson_option(data: Path, tmp_path: Path):
    user = tmp_path / "study.toml"
    user.write_text('[surveys]\nproportion_ci = "clopper-pearson"\nsmall_n_threshold = 70\n'
                    '[report]\nlang = "fr"\n', encoding="utf-8")
    result = run_surveys(data, tmp_path / "b", load_config(user))
    rec = result.indicator("patients_qol_improved")
    assert "Clopper–Pearson" in rec.method
    assert rec.small_n_warning is True  # n ≈ 63 < 70
    text = result.render()
    assert "IC 95 %" in text and "publié" in text


def test_validation_error_through_the_cli(data: Path, tmp_path: Path):
    shutil.copytree(data / "surveys", tmp_path / "d" / "surveys")
    path = tmp_path / "d" / "surveys" / "nurses_online.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[:3, "qvt_after"] = "11"
    frame.to_csv(path, index=False)
    result = runner.invoke(app, ["surveys", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "b")])
    assert result.exit_code == 2
    assert "nurses_online.csv, column 'qvt_after': out-of-range score — 4 rows" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "b" / "surveys" / "indicators.json").exists()


def _weighted_config(tmp_path: Path, margins: dict[int, int]):
    """The study configuration with the online nurse codebook given post-stratification margins."""
    base = Path(CONFIG.base_dir) / "codebooks"
    names = []
    for p in CONFIG.codebook_paths():
        book = yaml.safe_load(p.read_text(encoding="utf-8"))
        if book["id"] == "nurses_online":
            book["population"]["weighting"] = {"question": "region", "margins": margins}
        (tmp_path / p.name).write_text(yaml.safe_dump(book, allow_unicode=True, sort_keys=False), encoding="utf-8")
        names.append(p.name)
    assert base.exists()
    user = tmp_path / "study.toml"
    user.write_text("[surveys]\ncodebooks = [" + ", ".join(f'"{n}"' for n in names) + "]\n", encoding="utf-8")
    return load_config(user)


def test_post_stratification_weights_by_hand(data: Path, tmp_path: Path):
    margins = {1: 100, 2: 30, 3: 40}
    cfg = _weighted_config(tmp_path, margins)
    result = run_surveys(data, tmp_path / "b", cfg)
    online = next(s for s in result.surveys if s.survey_id == "nurses_online")
    assert "post-stratified" in online.weighting_note
    raw = pd.read_csv(data / "surveys" / "nurses_online.csv", dtype=str, keep_default_na=False)
    region = raw["region"].astype(int)
    w = region.map({c: n / (region == c).sum() for c, n in margins.items()})
    ans = raw["more_solicited"]
    keep = ~ans.isin(["", "99"])
    y, ww = (ans[keep] == "1").to_numpy(), w[keep].to_numpy()
    expected = (ww * y).sum() / ww.sum()
    n_eff = ww.sum() ** 2 / (ww**2).sum()
    got = online.item("more_solicited").weighted_favourable
    assert got.estimate == pytest.approx(expected)
    assert got.n_eff == pytest.approx(n_eff)
    assert got.n_eff < got.n  # unequal weights lose effective sample size
    items = pd.read_csv(tmp_path / "b" / "surveys" / "items.csv")
    row = items[(items["question_id"] == "more_solicited") & (items["statistic"] == "favourable")].iloc[0]
    assert row["weighted_value"] == pytest.approx(expected)
    assert row["n_eff"] == pytest.approx(n_eff)
    # the weights sum to the invited population
    assert w.sum() == pytest.approx(sum(margins.values()))
    # the stratification variable itself is not weighted; unweighted shares are unchanged
    assert not online.item("region").weighted_levels
    assert np.isnan(items.loc[items["survey_id"] == "patients_caregivers", "weighted_value"]).all()


def test_weighting_margins_must_cover_every_stratum(tmp_path: Path):
    from pipeline.io import PipelineError

    with pytest.raises(PipelineError, match="margins must give a count for every code"):
        run_surveys(tmp_path, tmp_path / "b", _weighted_config(tmp_path, {1: 100, 2: 30}))
