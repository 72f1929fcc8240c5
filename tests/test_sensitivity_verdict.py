"""The verdict of a headline: pass only when all five checks pass; one failure fails it; a check that
cannot be judged never lets it pass."""

from __future__ import annotations

import pytest

from indicators.sensitivity.verdict import CHECKS, at_least, at_most, headline_verdict

THRESHOLDS = {"max_abs_smd": 0.1, "min_matched_share": 0.7, "pretrend_alpha": 0.05,
              "max_systematic_error": 0.1, "min_effect": 500.0}
GOOD = {"max_abs_smd": 0.05, "matched_share": 0.9, "pretrend_p": 0.4, "systematic_error": -0.02, "mde": 300.0}


def test_all_checks_pass():
    v = headline_verdict("h", **GOOD, thresholds=THRESHOLDS)
    assert v.verdict == "pass"
    assert [c.name for c in v.checks] == list(CHECKS)
    assert all(c.passed for c in v.checks)


@pytest.mark.parametrize("key, bad, check", [
    ("max_abs_smd", 0.15, "balance"), ("matched_share", 0.5, "overlap"), ("pretrend_p", 0.01, "pretrends"),
    ("systematic_error", -0.3, "negative_controls"), ("mde", 900.0, "power"),
])
def test_one_failed_check_fails_and_comes_first_in_the_reasons(key, bad, check):
    v = headline_verdict("h", **{**GOOD, key: bad}, thresholds=THRESHOLDS)
    assert v.verdict == "fail"
    assert v.reasons[0].startswith(f"{check}:")
    assert [c.name for c in v.checks if c.passed is False] == [check]


def test_missing_input_or_threshold_is_incomplete_never_pass():
    v = headline_verdict("h", **{**GOOD, "systematic_error": None}, thresholds=THRESHOLDS)
    assert v.verdict == "incomplete"
    assert "not judged" in v.reasons[0]
    v = headline_verdict("h", **GOOD, thresholds={**THRESHOLDS, "min_effect": None})
    assert v.verdict == "incomplete"
    v = headline_verdict("h", **{**GOOD, "systematic_error": None, "pretrend_p": 0.001}, thresholds=THRESHOLDS)
    assert v.verdict == "fail"


def test_thresholds_are_inclusive():
    assert at_most("balance", 0.1, 0.1, "x").passed is True
    assert at_least("overlap", 0.7, 0.7, "x").passed is True
    assert at_least("pretrends", 0.0499, 0.05, "x").passed is False


def test_generalisability_groups_and_standardised_differences():
    import numpy as np
    import pandas as pd

    from indicators.sensitivity.generalisability import generalisability, standardised_difference

    cohort = pd.DataFrame({
        "unit_id": [f"u{i}" for i in range(8)], "treated": [1, 1, 1, 1, 1, 1, 0, 1],
        "eligible": [1, 1, 1, 1, 1, 1, 1, 0], "complex": [0, 0, 1, 1, 1, 0, 0, 1],
        "age": [70.0, 72.0, 74.0, 80.0, 90.0, 60.0, 50.0, 99.0]})
    res = generalisability(cohort, pd.Series(["u0", "u1", "u2"]), ["age", "not_a_column"]).table
    row = res.iloc[0]
    assert list(res["covariate"]) == ["age"]
    assert (row["n_matched_treated"], row["n_all_treated"], row["n_unmatched_complex"]) == (3, 6, 2)
    assert row["mean_unmatched_complex"] == 85.0
    a, b = pd.Series([70.0, 72.0, 74.0]), pd.Series([80.0, 90.0])
    expected = (a.mean() - b.mean()) / np.sqrt((a.var() + b.var()) / 2)
    assert row["smd_matched_vs_unmatched_complex"] == pytest.approx(expected)
    assert standardised_difference(pd.Series([1.0, 1.0]), pd.Series([1.0, 1.0])) == 0.0


@pytest.mark.parametrize("ci, verdict", [((0.05, 0.40), "fail"), ((-0.10, 0.51), "pass"), (None, "fail")])
def test_a_large_systematic_error_fails_only_when_its_interval_excludes_zero(ci, verdict):
    """A mean of 0.18 on sparse negative controls whose interval contains 0 is noise, not bias."""
    v = headline_verdict("h", **{**GOOD, "systematic_error": 0.18}, thresholds=THRESHOLDS, systematic_error_ci=ci)
    assert v.verdict == verdict
    nc = next(c for c in v.checks if c.name == "negative_controls")
    assert nc.passed is (verdict == "pass")
