"""Negative controls and empirical calibration (issue 14, parts 1 and 2).

Known answers for the calibration math (closed form when every standard error is equal, a brute-force
grid of the likelihood written out by hand otherwise), then the planted truth end to end: on generated
no-effect extracts with the SHIPPED configuration, the systematic-error interval contains 0 without
confounding and excludes it at ``--confounding 1``; the headline results do not depend on the planted
negative controls.

The PMSI negative control (elective cataract surgery, GHM root 02C05): cleaning puts those stays in
their own ``stay_category``, outside every headline hospital figure; the generator plants them on a
stream of their own without changing any other row; on a no-effect extract their estimate contains 0
and the headline indicators are byte-identical with or without them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from indicators.sensitivity.calibration import SystematicError, fit_systematic_error
from pipeline.config import ConfigError, load_config

# -- calibration math --------------------------------------------------------------------------------


def _loglik(mu: np.ndarray, sigma: np.ndarray, theta: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """The likelihood of Schuemie 2014 written out, independently of the module (no scipy), on a grid:
    ``mu`` (m, 1, 1), ``sigma`` (1, s, 1) give an (m, s) array."""
    v = sigma**2 + tau**2
    return np.sum(-0.5 * np.log(2 * np.pi * v) - (theta - mu) ** 2 / (2 * v), axis=-1)


def test_equal_standard_errors_have_a_closed_form():
    # theta_i ~ N(mu, sigma^2 + tau^2) with one tau: the MLE is the mean and the population variance
    # minus tau^2 (floored at 0).
    theta = np.array([0.10, 0.25, -0.05, 0.40, 0.15, 0.30])
    tau = np.full(theta.size, 0.05)
    fit = fit_systematic_error(theta, tau)
    assert fit.mean == pytest.approx(theta.mean(), abs=1e-6)
    assert fit.sd == pytest.approx(math.sqrt(theta.var() - 0.05**2), abs=1e-5)
    # with more sampling noise than spread, sigma is exactly 0 and the fit is the precision-weighted mean
    small = fit_systematic_error(np.array([0.01, -0.02, 0.015, 0.0]), np.full(4, 0.1))
    assert small.sd == 0.0
    assert small.mean == pytest.approx(0.00125, abs=1e-6)
    # and the CI of the mean is then the fixed-effect interval mean ± 1.96 * tau / sqrt(n)
    assert small.mean_ci_low == pytest.approx(0.00125 - 1.959964 * 0.1 / 2, abs=2e-3)


def test_fit_matches_a_brute_force_grid():
    theta = np.array([0.31, 0.12, 0.45, 0.22, 0.05, 0.28, 0.19])
    tau = np.array([0.05, 0.12, 0.20, 0.08, 0.15, 0.06, 0.10])
    fit = fit_systematic_error(theta, tau)
    mus, sigmas = np.linspace(0.0, 0.5, 501), np.linspace(0.0, 0.4, 401)
    ll = _loglik(mus[:, None, None], sigmas[None, :, None], theta, tau)
    i, j = np.unravel_index(np.argmax(ll), ll.shape)
    assert fit.mean == pytest.approx(mus[i], abs=1.5e-3)
    assert fit.sd == pytest.approx(sigmas[j], abs=1.5e-3)
    assert fit.log_likelihood == pytest.approx(ll.max(), abs=1e-4)
    # profile-likelihood 95 % CI of the mean: the mus whose profile is within chi2_1(0.95)/2 of the max
    inside = mus[ll.max(axis=1) >= ll.max() - 3.841459 / 2]
    assert fit.mean_ci_low == pytest.approx(inside.min(), abs=2e-3)
    assert fit.mean_ci_high == pytest.approx(inside.max(), abs=2e-3)


def test_calibrated_interval_removes_the_mean_and_adds_the_variance():
    err = SystematicError(mean=0.2, sd=0.1, mean_ci_low=0.1, mean_ci_high=0.3, n=5, ci_level=0.95,
                          log_likelihood=0.0)
    lo, hi = err.calibrate(math.log(0.8), 0.05)
    half = 1.959964 * math.sqrt(0.05**2 + 0.1**2)
    assert (lo, hi) == pytest.approx((math.log(0.8) - 0.2 - half, math.log(0.8) - 0.2 + half), abs=1e-6)
    none = SystematicError(0.0, 0.0, 0.0, 0.0, 5, 0.95, 0.0)
    assert none.calibrate(0.3, 0.1) == pytest.approx((0.3 - 1.959964 * 0.1, 0.3 + 1.959964 * 0.1), abs=1e-6)
    # E|b| for b ~ N(0, s^2) is s * sqrt(2 / pi)
    assert SystematicError(0.0, 0.2, 0, 0, 5, 0.95, 0).expected_absolute_error == pytest.approx(0.2 * math.sqrt(2 / math.pi))
    with pytest.raises(ValueError, match="standard error"):
        err.calibrate(0.1, -1.0)


def test_fit_refuses_too_few_estimates():
    with pytest.raises(ValueError, match="at least 2"):
        fit_systematic_error(np.array([0.1, np.nan]), np.array([0.1, 0.1]))


# -- configuration -----------------------------------------------------------------------------------


def test_shipped_negative_controls_are_outside_the_headline_perimeter():
    config = load_config()
    nc = config.sensitivity.negative_controls
    assert len(nc) >= 5
    assert not set(nc) & set(config.indicators.perimeter)
    assert set(nc) <= set(config.cleaning.category_names) | set(config.cleaning.stay_category_names)
    assert "cataract" in nc and config.cleaning.stay_categories["cataract"].grg_ghm_prefixes == ["02C05"]


def test_a_negative_control_inside_the_perimeter_is_rejected(tmp_path):
    cfg = tmp_path / "study.toml"
    cfg.write_text('[indicators]\nperimeter = ["gp", "dental_care"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="perimeter"):
        load_config(cfg)
    cfg.write_text('[sensitivity]\nnegative_controls = ["dental_care", "dentistry", "spectacles"]\n',
                   encoding="utf-8")
    with pytest.raises(ConfigError, match="dentistry"):
        load_config(cfg)
    # a stay category is never in the spending perimeter, and its name may not shadow a spending category
    cfg.write_text('[indicators]\nperimeter = ["gp", "cataract"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="stay categories"):
        load_config(cfg)
    cfg.write_text('[cleaning.stay_categories.gp]\nlabel_fr = "x"\nlabel_en = "x"\ngrg_ghm_prefixes = ["02C05"]\n',
                   encoding="utf-8")
    with pytest.raises(ConfigError, match="stay_categories"):
        load_config(cfg)


# -- cataract stays: cleaning and outcomes -----------------------------------------------------------


def _mco(rows: list[tuple[int, str, object, object, int, float]], config):
    """(RSA_NUM, GRG_GHM, entry, exit, SEJ_NBJ, cost) rows of one person through the PMSI stage."""
    from clean_helpers import NIR, run, table

    from pipeline.stages import pmsi

    b = [{"ETA_NUM": "750712184", "RSA_NUM": r, "SEJ_NBJ": nbj, "ENT_MOD": "8", "SOR_MOD": "8", "GRG_GHM": g,
          "SOR_ANN": str(x.year), "SOR_MOI": f"{x.month:02d}"} for r, g, e, x, nbj, _ in rows]
    c = [{"ETA_NUM": "750712184", "RSA_NUM": r, "NIR_ANO_17": NIR["A"], "EXE_SOI_DTD": e, "EXE_SOI_DTF": x,
          **{k: "0" for k in pmsi.RETURN_CODES}} for r, _, e, x, _, _ in rows]
    v = [{"ETA_NUM": "750712184", "RSA_NUM": r, "MNT_TOT_AM": cost, "VALO": 1} for r, *_, cost in rows]
    b_t = pmsi.union_years([(21, table(b, {**{k: "string" for k in pmsi.MCO_B_TYPES}, "RSA_NUM": "int64",
                                            "SEJ_NBJ": "int32"}))], pmsi.MCO_B_TYPES, "B")
    c_t = pmsi.union_years([(21, table(c, pmsi.MCO_C_TYPES))], pmsi.MCO_C_TYPES, "C")
    v_t = pmsi.union_years([(21, table(v, pmsi.MCO_VALO_TYPES))], pmsi.MCO_VALO_TYPES, "V")
    nir_map = table([{"BEN_NIR_PSA": NIR["A"], "person_id": "P1"}], {"BEN_NIR_PSA": "string", "person_id": "string"})
    s = pmsi.mco_stays(b_t, c_t, v_t, nir_map, config)
    audit = {r.rule: r for r in pmsi.audit_pmsi(s, config.cleaning)}
    return pmsi.stays_valid(s), run(pmsi.stays_valid(s)), audit


def test_cleaning_puts_cataract_stays_outside_the_hospital_perimeter():
    import datetime as dt

    from clean_helpers import kept_summary, run

    from pipeline.stages import outputs

    config = load_config()
    d = dt.date
    stays_t, stays, audit = _mco([
        (1, "05M09T", d(2021, 3, 1), d(2021, 3, 5), 4, 3000.0),   # ordinary stay: hospital
        (2, "02C05J", d(2021, 3, 10), d(2021, 3, 10), 0, 1400.0),  # ambulatory cataract surgery
        (3, "02c051", d(2021, 3, 12), d(2021, 3, 13), 1, 2100.0),  # severity 1, lower-case GHM
        (4, "02C12J", d(2021, 3, 20), d(2021, 3, 20), 0, 900.0),   # other eye surgery (not the lens): hospital
        (5, "28Z04Z", d(2021, 3, 25), d(2021, 3, 25), 0, 300.0),   # séance: hospital
    ], config)
    cat = stays.set_index("RSA_NUM")["stay_category"].to_dict()
    assert cat == {1: "hospital", 2: "cataract", 3: "cataract", 4: "hospital", 5: "hospital"}
    assert audit["stay_outside_hospital_perimeter"].rows_flagged == 2
    assert audit["stay_outside_hospital_perimeter"].rows_dropped == 0  # kept, never dropped
    # the panel's hospital columns (headline stays, days, séances, spending) count hospital stays only
    claims = kept_summary([{"person_id": "P1", "month": d(2021, 3, 1), "spend_gp": 25.0}], config.cleaning)
    panel = run(outputs.panel_table(claims, stays_t, config)).iloc[0]
    assert (panel["hosp_stays"], panel["hosp_days"], panel["seances"]) == (2, 4, 1)
    assert panel["spend_hospital"] == pytest.approx(3000.0 + 900.0 + 300.0)


def test_unit_outcomes_count_cataract_stays_apart():
    import duckdb
    import pandas as pd

    from indicators.outcomes import _stay_outcomes

    fu = pd.DataFrame({"person_id": ["P1"], "index_date": pd.to_datetime(["2021-01-01"]),
                       "fu_end": pd.to_datetime(["2021-06-30"]), "death_date": pd.to_datetime(["2021-06-30"]),
                       "died": [1]})
    stays = pd.DataFrame({
        "person_id": ["P1"] * 4,
        "entry_date": pd.to_datetime(["2021-02-01", "2021-05-10", "2021-06-01", "2020-06-01"]).date,
        "exit_date": pd.to_datetime(["2021-02-04", "2021-05-10", "2021-06-02", "2020-06-01"]).date,
        "SEJ_NBJ": [3, 0, 1, 0], "SOR_MOD": ["8"] * 4, "is_seance": [0, 0, 0, 0],
        "cost": [3000.0, 1400.0, 2100.0, 1400.0],
        "stay_category": ["hospital", "cataract", "cataract", "cataract"],  # the last one before index
    })
    con = duckdb.connect()
    try:
        con.register("stays_df", stays)
        con.execute("CREATE VIEW stays AS SELECT * FROM stays_df")
        out = _stay_outcomes(con, fu, 90, ["cataract"]).iloc[0]
        # the headline outcomes see the hospital stay only (none in the end-of-life window)
        assert (out["stays"], out["hosp_days"], out["fu_hosp_spend"]) == (1, 3, 3000.0)
        assert (out["eol_any_stay"], out["eol_hosp_spend"], out["eol_hosp_days"]) == (0, 0.0, 0)
        assert out["stays_cataract"] == 2  # entering in follow-up
        # a stays table without categories (built by hand) is all hospital
        con.execute("CREATE OR REPLACE VIEW stays AS SELECT * EXCLUDE (stay_category) FROM stays_df")
        allh = _stay_outcomes(con, fu, 90, ["cataract"]).iloc[0]
        assert (allh["stays"], allh["eol_any_stay"], allh["stays_cataract"]) == (3, 1, 0)
    finally:
        con.close()


# -- planted truth, end to end -----------------------------------------------------------------------

generator = pytest.importorskip("data_samples.generator")
runner = pytest.importorskip("pipeline.runner")
mstudy = pytest.importorskip("matching.study")

SCALE = 0.03
TRUTH_DIR = Path(generator.__file__).parent
# (seed, confounding, scale) on the no-effect truth, SHIPPED configuration; a 95 % interval misses its
# truth about one time in twenty by design, the seed is fixed. The confounded case runs at scale 0.1:
# the bias frailty plants in the headline perimeter is ≈ 0.083 on the log ratio (nursing, 40 % of the
# spending, does not depend on frailty), and at scale 0.03 its standard error (≈ 0.047) left the
# "visibly biased" check below with ≈ 45 % power (it failed on seed 13 before the turnover model, and
# on seeds 12–15 after it, whose draws differ); at 0.1 the standard error is ≈ 0.025.
CASES = {"no_confounding": (12, 0.0, SCALE), "confounding_1": (12, 1.0, 0.1)}


def _nc_analysis(root: Path, seed: int, confounding: float, scale: float = SCALE):
    from indicators.analysis import analyse
    from indicators.inputs import load_claims, load_matched
    from indicators.sensitivity.negative_controls import negative_control_analysis
    from pipeline.paths import BuildPaths

    config = load_config()
    data, build = root / "extract", root / "build"
    generator.generate_extract(data, scale=scale, seed=seed, truth_path=TRUTH_DIR / "truth_null.toml",
                               fmt="parquet", confounding=confounding, config=config)
    paths = BuildPaths(build, data)
    runner.run(paths, config)
    mstudy.run(paths, config)
    an = analyse(load_matched(build), load_claims(build, config), config)
    return negative_control_analysis(an, config), data


@pytest.fixture(scope="module", params=list(CASES))
def nc_case(request, tmp_path_factory):
    seed, c, scale = CASES[request.param]
    res, data = _nc_analysis(tmp_path_factory.mktemp(request.param), seed, c, scale)
    return request.param, c, res, data


@pytest.mark.slow
def test_systematic_error_interval_finds_the_planted_confounding(nc_case):
    name, c, res, data = nc_case
    import json

    truth = json.loads((data / "truth.json").read_text())["negative_controls"]
    assert set(truth) == set(res.controls["outcome"]) and all(v["true_log_ratio"] == 0 for v in truth.values())
    assert res.n == 6, res.controls  # 5 DCIR spending categories and the cataract stays
    lo, hi = res.systematic_error_ci_low, res.systematic_error_ci_high
    if c == 0:
        assert lo <= 0 <= hi, res.summary()
    else:
        assert lo > 0, res.summary()  # treated frailer: more spending on every negative control
        planted = np.mean([v["planted_confounding_bias_log_ratio"] for v in truth.values()])
        assert lo <= planted <= hi, (planted, res.summary())
    # calibrated headline intervals are wider than the uncalibrated ones and shifted by the mean error
    h = res.headlines.set_index("outcome").loc["avoided_spending_share"]
    assert h["calibrated_log_ci_high"] - h["calibrated_log_ci_low"] >= 2 * 1.959 * h["se_log_ratio"]
    assert h["calibrated_log_ratio"] == pytest.approx(h["log_ratio"] - res.systematic_error_mean)
    # no effect planted: the calibrated avoided share contains 0; at C = 1 the uncalibrated one is
    # visibly biased (treated frailer, so they seem to spend more) and calibration removes the bias,
    # because the planted negative-control bias is close to the headline's (truth_default.toml)
    assert h["calibrated_ci_low"] <= 0 <= h["calibrated_ci_high"], res.headlines
    if c > 0:
        assert h["ci_high"] < 0, res.headlines
    frame = res.summary_frame()
    assert list(frame["kind"].unique()) == ["negative_control", "headline"]


# -- cataract stays planted by the generator ---------------------------------------------------------

SMALL = 0.01


def _tables(folder: Path) -> dict:
    """Every parquet table of an extract, by file name, as a data frame."""
    import pyarrow.parquet as pq

    return {f.name: pq.read_table(f).to_pandas() for f in sorted(folder.glob("*.parquet"))}


@pytest.fixture(scope="module")
def cataract_builds(tmp_path_factory):
    """The same no-effect extract (seed 12, scale 0.01) generated with and without the planted cataract
    stays, each cleaned, matched and its indicators computed with the shipped configuration."""
    from indicators import study as istudy
    from pipeline.paths import BuildPaths

    config = load_config()
    out = {}
    for name in ("with", "without"):
        root = tmp_path_factory.mktemp(f"cataract_{name}")
        with pytest.MonkeyPatch.context() as mp:
            if name == "without":
                mp.setattr(generator, "cataract_stay_rows", lambda ctx, rng: None)
            generator.generate_extract(root / "extract", scale=SMALL, seed=12,
                                       truth_path=TRUTH_DIR / "truth_null.toml", fmt="parquet", confounding=None,
                                       config=config, workers=1)
        paths = BuildPaths(root / "build", root / "extract")
        runner.run(paths, config)
        mstudy.run(paths, config)
        istudy.run(paths, config)
        out[name] = root
    return out


@pytest.mark.slow
def test_generator_plants_cataract_stays_without_changing_any_other_row(cataract_builds):
    import pandas as pd

    on, off = _tables(cataract_builds["with"] / "extract"), _tables(cataract_builds["without"] / "extract")
    assert on.keys() == off.keys()
    planted = 0
    for name, table in on.items():
        if not name.startswith("T_MCO"):  # ER_PRS_F, IR_BEN_R, IR_IMB_R, roster: identical
            pd.testing.assert_frame_equal(table, off[name], check_exact=True, obj=name)
            continue
        # every other MCO row keeps its content, order and RSA_NUM; the planted stays come after them
        n = len(off[name])
        pd.testing.assert_frame_equal(table.iloc[:n].reset_index(drop=True), off[name], check_exact=True, obj=name)
        extra = table.iloc[n:]
        if name.endswith("B.parquet"):
            assert extra["GRG_GHM"].str.startswith("02C05").all() and not off[name]["GRG_GHM"].str.startswith("02C05").any()
            assert extra["SOR_MOD"].eq("8").all() and extra["SEJ_NBJ"].between(0, 2).all()
            assert extra["RSA_NUM"].min() > off[name]["RSA_NUM"].max() if n else True
            planted += len(extra)
        if name.endswith("VALO.parquet"):
            # valued at about the GHS tariffs of the mix (catalog.CATARACT_COST_EUR: mean ≈ 1 560 €)
            assert (extra["MNT_TOT_AM"] > 0).all() and 1300 < extra["MNT_TOT_AM"].mean() < 1850
    assert planted > 100, planted
    import json

    truth = json.loads((cataract_builds["with"] / "extract" / "truth.json").read_text())
    assert truth["negative_controls"]["cataract"]["true_log_ratio"] == 0
    assert truth["counts"]["negative_control_stays"] == planted


@pytest.mark.slow
def test_headline_indicators_do_not_see_the_cataract_stays(cataract_builds):
    on, off = (cataract_builds[k] / "build" for k in ("with", "without"))
    # the cleaned stays differ by the cataract stays only; everything the headlines read is identical
    import pandas as pd

    s_on, s_off = pd.read_parquet(on / "clean" / "stays.parquet"), pd.read_parquet(off / "clean" / "stays.parquet")
    assert (s_on["stay_category"] == "cataract").sum() > 100 and (s_off["stay_category"] == "hospital").all()
    assert len(s_on) - len(s_off) == (s_on["stay_category"] == "cataract").sum()
    for rel in ("clean/panel.parquet", "clean/cohort.parquet", "matching/matched.parquet",
                "indicators/indicators.csv", "indicators/hospitalisation.csv", "indicators/eol.csv",
                "indicators/spending_by_category.csv"):
        assert (on / rel).read_bytes() == (off / rel).read_bytes(), rel


@pytest.mark.slow
def test_cataract_estimate_contains_zero_without_effect(cataract_builds):
    from indicators.analysis import analyse
    from indicators.inputs import load_claims, load_matched
    from indicators.sensitivity.negative_controls import negative_control_analysis

    config = load_config()
    build = cataract_builds["with"] / "build"
    an = analyse(load_matched(build), load_claims(build, config), config)
    res = negative_control_analysis(an, config)
    row = res.controls.set_index("outcome").loc["cataract"]
    assert row["estimable"] and row["unit"] == "per_100_patient_years"
    # the estimate uses the headline follow-up: stays entering in follow-up per 100 patient-years
    t = an.outcomes.loc[an.outcomes["treated"] == 1]
    assert t["stays_cataract"].sum() > 0
    assert row["ratio_ci_low"] <= 1 <= row["ratio_ci_high"], res.controls
    assert res.n == 6 and "cataract" in set(res.summary_frame()["outcome"])
