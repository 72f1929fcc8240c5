"""`equilibres match` / `equilibres sweep` on a cohort table built in the test; planted selection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from matching import study
from matching.study import with_age_band
from matching.synthetic import synthetic_cohort
from pipeline.config import StudyConfig, load_config
from pipeline.io import PipelineError
from pipeline.paths import BuildPaths
from study import sweep as sweep_study
from study.cli import app


def run_match(build: Path, config: StudyConfig, data_dir: Path | None = None) -> study.MatchResult:
    return study.run(BuildPaths(build, data_dir), config)


def run_sweep(build: Path, config: StudyConfig) -> sweep_study.SweepResult:
    return sweep_study.run(BuildPaths(build), config)

MATCH_FILES = ["pairs.parquet", "matched.parquet", "balance.csv", "unmatched_profiles.csv", "params.json",
               "indicator_unmatched.json", "attrition_matching.csv"]


@pytest.fixture()
def build(tmp_path: Path) -> Path:
    cohort = synthetic_cohort(400, 12000, seed=3, n_quarters=4)
    cohort.loc[cohort.index[-50:], "eligible"] = 0  # ineligible candidate rows must be ignored
    cohort.loc[cohort.index[-50:], "ineligible_reason"] = "no_history"
    path = BuildPaths(tmp_path / "build").cohort
    path.parent.mkdir(parents=True)
    cohort.to_parquet(path)
    return tmp_path / "build"


def test_run_match_writes_every_output(build: Path):
    cfg = load_config().with_overrides(
        {"matching": {"exact": ["BEN_SEX_COD", "age_band", "ald", "index_quarter"], "caliper": 0.1}}
    )
    result = run_match(build, cfg)
    out = build / "matching"
    for name in MATCH_FILES:
        assert (out / name).exists(), name
    assert not list(out.glob("*.png"))  # the report draws the figures from the tables
    cohort = pd.read_parquet(BuildPaths(build).cohort)
    pairs = pd.read_parquet(out / "pairs.parquet")
    assert list(pairs.columns) == ["treated_id", "control_id", "subclass", "distance"]
    assert not pairs.control_id.duplicated().any()
    assert set(pairs.control_id) <= set(cohort.loc[cohort.eligible == 1, "unit_id"])
    matched = pd.read_parquet(out / "matched.parquet")
    assert {"weight", "subclass", "age_band"} <= set(matched.columns)
    assert matched.loc[matched.treated == 0, "weight"].sum() == pytest.approx((matched.treated == 1).sum())
    bal = pd.read_csv(out / "balance.csv")
    assert {"covariate", "stage", "smd", "variance_ratio", "ecdf_mean", "ecdf_max", "flag_smd", "flag_vr",
            "smd_denominator"} <= set(bal.columns)
    assert set(bal.stage) == {"before", "after"}
    # the indicator is the share of complex treated patients without a comparable control
    [rec] = json.loads((out / "indicator_unmatched.json").read_text())
    treated = cohort[(cohort.treated == 1) & (cohort.eligible == 1)]
    unmatched = set(pairs.treated_id) ^ set(treated.unit_id)
    cpx = treated[treated.complex == 1]
    assert rec["id"] == "unmatched_share_complex" and rec["unit"] == "share"
    # every unmatched complex patient (any reason); the value counts those with no comparable candidate in
    # any period, a subset of them
    assert rec["arm_values"]["complex_unmatched_any_reason"] == pytest.approx(cpx.unit_id.isin(unmatched).mean())
    assert 0 < rec["value"] <= rec["arm_values"]["complex_unmatched_any_reason"]
    assert rec["n"] == len(cpx) and rec["ci_low"] < rec["value"] < rec["ci_high"]
    assert rec["published"] == cfg.published["unmatched_share_complex"]
    # planted in the synthetic cohort: complex patients have much heavier nursing costs
    prof = pd.read_csv(out / "unmatched_profiles.csv").set_index("profile")
    assert prof.loc["complex", "share_unmatched"] > prof.loc["non_complex", "share_unmatched"]
    flow = pd.read_csv(out / "attrition_matching.csv")
    assert list(flow.rule) == ["matched", "unmatched"] and (flow.stage == "cohort").all()
    assert (flow.rows_in == flow.rows_out + flow.rows_dropped).all()
    assert flow.set_index("rule").loc["matched", "rows_in"] == (cohort.eligible == 1).sum()
    params = json.loads((out / "params.json").read_text())
    assert params["matching"]["exact"] == ["BEN_SEX_COD", "age_band", "ald", "index_quarter"]
    assert len(params["cohort_fingerprint"]) == 16
    assert "unmatched_share_complex" in result.render()
    # no person identifier in any aggregate output
    ids = set(cohort.unit_id) | set(cohort.person_id)
    for name in ["balance.csv", "unmatched_profiles.csv", "params.json", "indicator_unmatched.json",
                 "attrition_matching.csv"]:
        text = (out / name).read_text()
        assert not any(i in text for i in list(ids)[:2000]), name
    assert not any(i in result.render() for i in list(ids)[:2000])


def test_missing_cohort_says_run_clean(tmp_path: Path):
    with pytest.raises(PipelineError, match="run `equilibres clean --data data --out"):
        run_match(tmp_path / "empty", load_config(), data_dir=Path("data"))


def test_missing_cohort_column_is_reported(build: Path):
    path = BuildPaths(build).cohort
    pd.read_parquet(path).drop(columns=["dpt"]).to_parquet(path)
    with pytest.raises(PipelineError, match=r"lacks column\(s\) \['dpt'\]"):
        run_match(build, load_config())


def test_age_band_width_changes_strata_without_recleaning(build: Path):
    cfg = load_config()
    run_match(build, cfg)
    narrow = json.loads((build / "matching/params.json").read_text())["sizes"]["strata_with_treated"]
    run_match(build, cfg.with_overrides({"cohort": {"age_band_width": 20}}))
    wide = json.loads((build / "matching/params.json").read_text())["sizes"]["strata_with_treated"]
    assert wide < narrow


def _plain_cohort(path: Path) -> pd.DataFrame:
    """The eligible rows of a cohort table as plain pandas (text as Python strings, dates as datetime64)."""
    import pyarrow.parquet as pq

    frame = pq.read_table(path).to_pandas(date_as_object=False)
    return frame[frame["eligible"] == 1].reset_index(drop=True)


def test_the_loaded_cohort_matches_as_its_plain_text(build: Path):
    # load_cohort reads text columns as categoricals and the row ids as Arrow-backed text (the speed of
    # `equilibres match` at full scale); every result must be what the same rows as plain text give.
    paths, cfg = BuildPaths(build), load_config().with_overrides({"matching": {"caliper": 0.5}})
    coded = study.load_cohort(paths, cfg)
    plain = _plain_cohort(paths.cohort)
    assert isinstance(coded["dpt"].dtype, pd.CategoricalDtype) and len(coded) == len(plain) < 12_400
    for ratio in (1, 2):
        spec = cfg.with_overrides({"matching": {"ratio": ratio}})
        a, b = study.fit_specification(coded, spec), study.fit_specification(plain, spec)
        assert a.sizes == b.sizes and a.sizes["treated_matched"] > 0
        for name in ("matched", "balance", "profiles", "pairs"):
            pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True)
        assert a.matched["dpt"].dtype == object and a.pairs["control_id"].dtype == object


def test_a_repeated_unit_id_stops_matching(build: Path):
    path = BuildPaths(build).cohort
    cohort = pd.read_parquet(path)
    cohort.loc[7, "unit_id"] = cohort.loc[3, "unit_id"]
    cohort.to_parquet(path)
    with pytest.raises(PipelineError, match=r"'unit_id' must be unique.*1 value\(s\) repeat, e.g. \['P3@"):
        run_match(build, load_config())


def test_repeated_values_is_exact():
    import pyarrow as pa

    assert study.repeated_values(pa.chunked_array([["a", "b"], ["c", None]])) == []
    assert study.repeated_values(pa.chunked_array([["a", "b"], ["a", None, None, "b"]])) == ["a", "None", "b"]


def test_with_age_band_pools_old_ages():
    frame = pd.DataFrame({"age": [0, 4, 5, 67, 94, 95, 103, np.nan]})
    bands = with_age_band(frame, 5, 95)["age_band"]
    assert bands.tolist()[:7] == [0, 0, 5, 65, 90, 95, 95] and pd.isna(bands.iloc[7])


def test_cli_match_applies_options(build: Path):
    res = CliRunner().invoke(app, ["match", "--out", str(build), "--ratio", "2", "--method", "optimal",
                                   "--caliper", "0.3", "--age-band-width", "10", "--seed", "5"])
    assert res.exit_code == 0, res.output
    params = json.loads((build / "matching/params.json").read_text())
    assert params["matching"]["ratio"] == 2 and params["matching"]["method"] == "optimal"
    assert params["matching"]["caliper"] == 0.3 and params["cohort"]["age_band_width"] == 10
    pairs = pd.read_parquet(build / "matching/pairs.parquet")
    assert pairs.treated_id.value_counts().max() == 2


def test_cli_match_without_cohort_is_a_clean_error(tmp_path: Path):
    res = CliRunner().invoke(app, ["match", "--out", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "equilibres clean" in res.output


def _sweep_config():
    # One process: the tests below replace the headline effects with monkeypatch, which does not reach
    # worker processes (tests/test_sweep_cache.py compares the sweep in workers with this one).
    return load_config().with_overrides({"sweep": {
        "caliper": [0.1, 0.5], "ratio": [1, 2], "method": ["nearest", "cem"], "age_band_width": [5],
        "transform": ["log1p"], "replace": [False], "max_specs": 64, "workers": 1}})


def test_sweep_writes_a_row_per_spec_with_effects(build: Path, monkeypatch):
    calls = []

    def fake_headline(matched, build_dir, config):
        calls.append(len(matched))
        w = matched.loc[matched.treated == 0, "weight"].sum()
        return [{"id": "effect_a", "value": float(w), "ci_low": float(w) - 1, "ci_high": float(w) + 1}]

    monkeypatch.setattr(sweep_study, "headline_effects", fake_headline)
    res = run_sweep(build, _sweep_config())
    frame = pd.read_csv(build / "sweep/sweep.csv")
    # nearest: 2 calipers × 2 ratios; cem ignores caliper and ratio: 1; plus the main specification (the
    # matching of the build: nearest, caliper 0.2, ratio 1), which the grid lacks
    assert len(frame) == 6 == len(calls) and res.n_grid == 5 and res.main_added
    main = frame.iloc[-1]
    assert (main["method"], main["caliper"], main["ratio"]) == ("nearest", 0.2, 1)
    assert frame.duplicated(["method", "caliper", "ratio"]).sum() == 0
    for col in ["n_treated_matched", "max_abs_smd_after", "share_flagged_after", "unmatched_share_complex",
                "effect_a", "effect_a_ci_low", "effect_a_ci_high"]:
        assert col in frame.columns
    nearest = frame[frame.method == "nearest"].set_index(["caliper", "ratio"])
    assert nearest.loc[(0.5, 1), "n_treated_matched"] >= nearest.loc[(0.1, 1), "n_treated_matched"]
    assert not list((build / "sweep").glob("*.png"))  # the report draws the curve from sweep.csv
    params = json.loads((build / "sweep/params.json").read_text())
    assert params["effects_available"] and params["curve_estimate"] == "effect_a" and params["n_run"] == 6
    assert params["main_added"] and params["n_computed"] == 6 and params["n_cached"] == 0
    assert "6 specifications (of 5 distinct in the grid, then the main specification)" in res.render()


def test_sweep_records_a_failing_effect_and_goes_on(build: Path, monkeypatch):
    def failing_headline(matched, build_dir, config):
        raise ValueError("no decedent")

    monkeypatch.setattr(sweep_study, "headline_effects", failing_headline)
    cfg = _sweep_config().with_overrides({"sweep": {"max_specs": 2}})
    res = run_sweep(build, cfg)
    frame = pd.read_csv(build / "sweep/sweep.csv")
    # the first 2 of the 5 grid specifications, then the main one (always swept)
    assert len(frame) == 3 and res.n_grid == 5
    assert (frame["effects_error"] == "ValueError: no decedent").all()
    assert not [c for c in frame.columns if c.endswith("_ci_low") and not c.startswith("unmatched")]
    assert "3 failed" in res.render()


# ------------------------------------------------------------------ planted selection on the sample
def test_planted_selection_recovered(tmp_path: Path):
    samples = pytest.importorskip("data_samples")
    runner = pytest.importorskip("pipeline.runner")
    sample = Path(samples.SAMPLE_DIR)
    truth_path = sample / "truth.json"
    if not truth_path.exists():
        pytest.skip(f"no committed sample with truth.json at {sample}")
    truth = json.loads(truth_path.read_text())
    planted = truth["indicators"]["unmatched_share_complex"]
    # The committed sample is tiny (truth.json counts: ~130 treated, ~500 control persons). The study's
    # exact design (sex × 5-year age band × ALD × département × quarter ≈ 33 000 cells) leaves most of
    # its strata empty at that size, so the test matches on the coarse strata sex × ALD: the generator
    # plants selection through nursing intensity only ("off-support" complex patients lie beyond every
    # control), which only the caliper on prior nursing cost can reveal.
    # Support is the existence of a comparable control, not its availability: with one role per person
    # a tiny pool runs out of controls ("controls taken"), so this test of the caliper's view of support
    # lets controls be reused (the shipped design is checked on generated extracts in
    # test_indicators_e2e.py).
    cfg = load_config().with_overrides({"matching": {"exact": ["BEN_SEX_COD", "ald"], "replace": True}})
    build = tmp_path / "build"
    runner.run(BuildPaths(build, sample), cfg)
    run_match(build, cfg)
    [rec] = json.loads((build / "matching/indicator_unmatched.json").read_text())
    n = rec["n"]
    assert n == truth["counts"]["treated_complex"]
    # `planted` is the realised share (off-support complex / complex), so no sampling error remains
    # between it and a perfect matcher; allow 2 patients of the n complex ones either way (an
    # on-support patient whose within-caliper controls were all taken, or an off-support one whose
    # planted margin falls inside the caliper).
    tol = 2 / n
    assert abs(rec["value"] - planted) <= tol, (rec["value"], planted, n, tol)
    prof = pd.read_csv(build / "matching/unmatched_profiles.csv").set_index("profile")
    assert prof.loc["complex", "mean_unmatched_prior_nursing_cost"] > prof.loc["complex", "mean_matched_prior_nursing_cost"]


def test_rerun_reuses_the_before_balance(build: Path):
    cfg = load_config()
    run_match(build, cfg)
    first = pd.read_csv(build / "matching/balance.csv")
    cached = list((build / "matching/cache").glob("balance_before_*.parquet"))
    assert len(cached) == 1
    run_match(build, cfg.with_overrides({"matching": {"ratio": 2}}))
    second = pd.read_csv(build / "matching/balance.csv")
    assert list((build / "matching/cache").glob("balance_before_*.parquet")) == cached
    pd.testing.assert_frame_equal(first[first.stage == "before"].reset_index(drop=True),
                                  second[second.stage == "before"].reset_index(drop=True))
    assert not first[first.stage == "after"].smd.equals(second[second.stage == "after"].smd)
    # a different age band width is a different 'before' table
    run_match(build, cfg.with_overrides({"cohort": {"age_band_width": 10}}))
    assert len(list((build / "matching/cache").glob("balance_before_*.parquet"))) == 2
