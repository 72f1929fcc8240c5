"""The coverage benchmark's summary (benchmarks/bench_coverage.py): bias, coverage and their Monte-Carlo
standard errors, computed by hand on small made-up sets of per-seed comparisons."""

from __future__ import annotations

import math

import pytest

from benchmarks.bench_coverage import flagged, headline_summary, summarise


def _run(value: float, truth: float, half_width: float) -> dict:
    lo, hi = value - half_width, value + half_width
    return {"truth": truth, "value": value, "ci_low": lo, "ci_high": hi, "covered": lo <= truth <= hi}


def test_bias_and_its_monte_carlo_se_by_hand():
    # errors −1, 0, +1, +4 against truths of 10: mean 1, SD √(14/3), MC SE = SD / 2
    runs = [_run(9, 10, 2), _run(10, 10, 2), _run(11, 10, 2), _run(14, 10, 2)]
    s = headline_summary(runs)
    assert s["runs"] == 4
    assert s["bias"] == pytest.approx(1.0)
    assert s["bias_mc_se"] == pytest.approx(math.sqrt(14 / 3) / 2)
    assert s["mean_estimate"] == pytest.approx(11.0) and s["mean_truth"] == pytest.approx(10.0)
    assert s["relative_bias"] == pytest.approx(0.1)
    assert s["coverage"] == pytest.approx(0.75)
    assert s["coverage_mc_se"] == pytest.approx(round(math.sqrt(0.75 * 0.25 / 4), 3))
    assert s["misses_above"] == 1 and s["misses_below"] == 0
    assert s["mean_ci_implied_se"] == pytest.approx(4 / (2 * 1.959964))
    assert s["biased"] is False  # 1 < 2 × 1.08


def test_a_consistent_shift_is_flagged_and_noise_is_not():
    shifted = [_run(10 + 0.5 + 0.1 * (k % 3 - 1), 10, 1) for k in range(12)]  # bias 0.5, SE ≈ 0.025
    noisy = [_run(10 + (k % 3 - 1), 10, 2) for k in range(12)]              # bias 0
    s_shift, s_noise = headline_summary(shifted), headline_summary(noisy)
    assert s_shift["biased"] is True and s_shift["bias_z"] > 2
    assert s_noise["biased"] is False and s_noise["bias"] == pytest.approx(0.0)
    summary = summarise({"truth_x.toml": {k: {"eol_hosp_rate": r} for k, r in enumerate(shifted)}})
    lines = flagged(summary)
    assert len(lines) == 1 and lines[0].startswith("truth_x.toml eol_hosp_rate: bias +0.5")


def test_undercoverage_is_flagged_against_the_nominal_rate():
    # 20 seeds, 15 covered: 0.75 < 0.95 − 2 × √(0.95 × 0.05 / 20) ≈ 0.853
    runs = [_run(10, 10, 1)] * 15 + [_run(12, 10, 1)] * 5
    s = headline_summary(runs)
    assert s["coverage"] == pytest.approx(0.75) and s["undercovers"] is True
    ok = headline_summary([_run(10, 10, 1)] * 19 + [_run(12, 10, 1)])
    assert ok["undercovers"] is False


def test_runs_without_an_interval_are_left_out():
    runs = [_run(9, 10, 2), {"truth": 10, "value": None, "covered": None}, _run(11, 10, 2)]
    s = headline_summary(runs)
    assert s["runs"] == 2 and s["bias"] == pytest.approx(0.0)
    assert headline_summary([{"truth": 1, "value": None, "covered": None}])["runs"] == 0


@pytest.mark.slow
def test_bias_decomposition_rebuilds_the_generators_truth(tmp_path):
    """The diagnostic rebuilds the extract's population from truth.json's seed: its truth over all
    on-support treated must equal truth.json (else it decomposes another population), here under the
    mortality truth (each arm in its own world)."""
    from benchmarks.bench_coverage import run_one
    from benchmarks.bias_decomposition import decompose, render
    from pipeline.config import load_config

    compared = run_one(tmp_path, 21, "truth_mortality.toml", 0.03)
    d = decompose(tmp_path / "extract", tmp_path / "build", load_config())
    for k, v in d["truth_json"].items():
        assert d["truth_all_on_support"][k] == pytest.approx(v, rel=1e-5, abs=1e-4), k
    for k, v in d["estimate"].items():
        assert v == pytest.approx(compared[k]["value"]), k
    assert d["extract"]["matched_treated"] == d["extract"]["matched_controls"] > 0
    assert "expected est." in render(d)
