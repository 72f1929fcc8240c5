"""Negative controls and empirical calibration (issue 14, parts 1 and 2).

Known answers for the calibration math (closed form when every standard error is equal, a brute-force
grid of the likelihood written out by hand otherwise), then the planted truth end to end: on generated
no-effect extracts with the SHIPPED configuration, the systematic-error interval contains 0 without
confounding and excludes it at ``--confounding 1``; the headline results do not depend on the planted
negative controls.
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
    assert set(nc) <= set(config.cleaning.category_names)


def test_a_negative_control_inside_the_perimeter_is_rejected(tmp_path):
    cfg = tmp_path / "study.toml"
    cfg.write_text('[indicators]\nperimeter = ["gp", "dental_care"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="perimeter"):
        load_config(cfg)
    cfg.write_text('[sensitivity]\nnegative_controls = ["dental_care", "dentistry", "spectacles"]\n',
                   encoding="utf-8")
    with pytest.raises(ConfigError, match="dentistry"):
        load_config(cfg)


# -- planted truth, end to end -----------------------------------------------------------------------

generator = pytest.importorskip("data_samples.generator")
runner = pytest.importorskip("pipeline.runner")
mstudy = pytest.importorskip("matching.study")

SCALE = 0.03
TRUTH_DIR = Path(generator.__file__).parent
# (seed, confounding) on the no-effect truth, SHIPPED configuration; a 95 % interval misses its truth
# about one time in twenty by design, the seed is fixed.
CASES = {"no_confounding": (12, 0.0), "confounding_1": (12, 1.0)}


def _nc_analysis(root: Path, seed: int, confounding: float):
    from indicators.analysis import analyse
    from indicators.inputs import load_claims, load_matched
    from indicators.sensitivity.negative_controls import negative_control_analysis
    from pipeline.paths import BuildPaths

    config = load_config()
    data, build = root / "extract", root / "build"
    generator.generate_extract(data, scale=SCALE, seed=seed, truth_path=TRUTH_DIR / "truth_null.toml",
                               fmt="parquet", confounding=confounding, config=config)
    paths = BuildPaths(build, data)
    runner.run(paths, config)
    mstudy.run(paths, config)
    an = analyse(load_matched(build), load_claims(build, config), config)
    return negative_control_analysis(an, config), data


@pytest.fixture(scope="module", params=list(CASES))
def nc_case(request, tmp_path_factory):
    seed, c = CASES[request.param]
    res, data = _nc_analysis(tmp_path_factory.mktemp(request.param), seed, c)
    return request.param, c, res, data


@pytest.mark.slow
def test_systematic_error_interval_finds_the_planted_confounding(nc_case):
    name, c, res, data = nc_case
    import json

    truth = json.loads((data / "truth.json").read_text())["negative_controls"]
    assert set(truth) == set(res.controls["outcome"]) and all(v["true_log_ratio"] == 0 for v in truth.values())
    assert res.n == 5, res.controls
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
