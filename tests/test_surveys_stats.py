"""Known-answer tests of the survey statistics against statsmodels / scipy / hand computation.

Reference values come from independent implementations (statsmodels.stats.proportion.proportion_confint,
statsmodels DescrStatsW, scipy.stats.wilcoxon) called on the same data, or from counts done by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint
from statsmodels.stats.weightstats import DescrStatsW

from surveys.response_rates import RR1_FORMULA, response_rate
from surveys.scores import paired_change, score_summary
from surveys.stats import (
    frequency_table,
    kish_effective_n,
    likert_summary,
    proportion,
    proportion_interval,
    weighted_proportion,
)

CASES = [(0, 10), (1, 10), (5, 10), (10, 10), (54, 65), (22, 25), (63, 65), (84, 90), (3, 22), (1, 1)]


@pytest.mark.parametrize("k,n", CASES)
@pytest.mark.parametrize("alpha", [0.05, 0.10])
def test_wilson_matches_statsmodels(k: int, n: int, alpha: float):
    low, high = proportion_interval(k, n, "wilson", alpha)
    ref = proportion_confint(k, n, alpha=alpha, method="wilson")
    assert low == pytest.approx(ref[0], abs=1e-12)
    assert high == pytest.approx(ref[1], abs=1e-12)


@pytest.mark.parametrize("k,n", CASES)
def test_clopper_pearson_matches_statsmodels_beta(k: int, n: int):
    low, high = proportion_interval(k, n, "clopper-pearson", 0.05)
    ref = proportion_confint(k, n, alpha=0.05, method="beta")
    assert low == pytest.approx(ref[0], abs=1e-10)
    assert high == pytest.approx(ref[1], abs=1e-10)


def test_proportion_display_english_and_french():
    r = proportion(54, 65)
    lo, hi = proportion_confint(54, 65, method="wilson")
    assert r.estimate == pytest.approx(54 / 65)
    expected_en = f"54/65 ({100 * 54 / 65:.1f} %) [95 % CI {100 * lo:.1f}–{100 * hi:.1f} %]"
    assert r.format("en") == expected_en
    assert r.format("fr") == expected_en.replace(".", ",").replace("95 % CI", "IC 95 %")
    assert r.method == "wilson" and r.alpha == pytest.approx(0.05) and r.n == 65
    assert r.summary_frame().loc[0, "k"] == 54


def test_small_n_warning_threshold_is_strict():
    assert proportion(5, 29, small_n_threshold=30).small_n_warning
    assert not proportion(5, 30, small_n_threshold=30).small_n_warning
    assert "small sample" in proportion(5, 22).render("en")
    assert "petit effectif" in proportion(5, 22).render("fr")
    assert "⚠" not in proportion(50, 90).render("en")


def test_bad_method_and_counts_are_rejected():
    with pytest.raises(ValueError, match="'method' parameter"):
        proportion_interval(1, 10, "wald")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        proportion(11, 10)


def test_weighted_proportion_uses_kish_effective_n():
    y = np.array([1, 1, 0, 1, 0, 0, 1, 1], dtype=bool)
    w = np.array([2.0, 1.0, 1.0, 3.0, 0.5, 1.0, 1.0, 2.5])
    r = weighted_proportion(y, w)
    p = (w * y).sum() / w.sum()
    n_eff = w.sum() ** 2 / (w**2).sum()
    assert r.estimate == pytest.approx(p)
    assert r.n_eff == pytest.approx(n_eff) == pytest.approx(kish_effective_n(w))
    ref = proportion_confint(p * n_eff, n_eff, method="wilson")
    assert (r.ci_low, r.ci_high) == pytest.approx(ref, abs=1e-12)
    assert r.k == 5 and r.n == 8 and r.weighted
    assert "weighted" in r.format("en") and "pondéré" in r.format("fr")


def test_equal_weights_give_the_unweighted_result():
    y = np.array([1] * 7 + [0] * 3, dtype=bool)
    r = weighted_proportion(y, np.full(10, 4.2))
    u = proportion(7, 10)
    assert r.n_eff == pytest.approx(10)
    assert (r.estimate, r.ci_low, r.ci_high) == pytest.approx((u.estimate, u.ci_low, u.ci_high))


def test_likert_frequency_median_and_favourable_share_by_hand():
    answers = np.array([1, 2, 2, 3, 3, 3, 4, 4, 4, 4, np.nan, np.nan])
    r = likert_summary(answers, [1, 2, 3, 4], favourable=(3, 4), labels_en=("SD", "D", "A", "SA"))
    assert r.counts == (1, 2, 3, 4)
    assert r.n == 10 and r.n_missing == 2
    assert r.shares == pytest.approx((0.1, 0.2, 0.3, 0.4))
    # lower median: cumulative shares 0.1, 0.3, 0.6 -> level 3 (same as numpy's inverted-CDF median)
    assert r.median == 3 == int(np.quantile(answers[~np.isnan(answers)], 0.5, method="inverted_cdf"))
    top = r.favourable
    assert (top.k, top.n) == (7, 10)
    assert (top.ci_low, top.ci_high) == pytest.approx(proportion_confint(7, 10, method="wilson"), abs=1e-12)
    frame = r.summary_frame()
    assert frame["count"].tolist() == [1, 2, 3, 4]
    assert frame["cumulative_share"].tolist() == pytest.approx([0.1, 0.3, 0.6, 1.0])
    assert frame["is_median"].tolist() == [False, False, True, False]


def test_likert_median_when_exactly_half_is_below():
    # cumulative share reaches exactly 0.5 at level 2: the lower median is 2
    r = likert_summary([1, 2, 3, 4], [1, 2, 3, 4], favourable=(3, 4))
    assert r.median == 2


def test_frequency_table_rejects_unknown_codes():
    with pytest.raises(ValueError, match="not among the codes"):
        frequency_table([1, 2, 7], [1, 2])


def test_score_mean_t_interval_matches_statsmodels():
    x = np.array([10, 9, 9, 10, 8, 10, 7, 10, 9, 10, np.nan])
    r = score_summary(x)
    clean = x[~np.isnan(x)]
    d = DescrStatsW(clean)
    assert r.mean == pytest.approx(clean.mean())
    assert (r.ci_low, r.ci_high) == pytest.approx(d.tconfint_mean(alpha=0.05), abs=1e-12)
    assert r.median == pytest.approx(np.median(clean))
    assert r.sd == pytest.approx(clean.std(ddof=1))
    assert (r.n, r.n_missing) == (10, 1)
    assert r.small_n_warning
    assert r.format("fr").startswith(f"{clean.mean():.1f}".replace(".", ",") + "/10 [IC 95 %")


def _reference_wilcoxon(d: np.ndarray):
    return sps.wilcoxon(d, zero_method="pratt")


@pytest.mark.parametrize("seed,n", [(1, 40), (2, 12), (3, 83)])
def test_paired_change_matches_scipy_wilcoxon_pratt(seed: int, n: int):
    rng = np.random.default_rng(seed)
    before = rng.integers(2, 9, n).astype(float)
    after = np.clip(before + rng.integers(-1, 4, n), 0, 10)
    before[0] = np.nan  # an incomplete pair is left out
    r = paired_change(before, after)
    keep = ~np.isnan(before)
    d = after[keep] - before[keep]
    assert (d == 0).any(), "the fixture must contain zero differences to exercise Pratt's method"
    ref = _reference_wilcoxon(d)
    assert r.wilcoxon_statistic == pytest.approx(float(ref.statistic))
    assert r.p_value == pytest.approx(float(ref.pvalue), rel=1e-9)
    assert r.n_pairs == n - 1 and r.n_incomplete == 1
    assert r.n_unchanged == int((d == 0).sum())
    assert r.n_increased + r.n_decreased + r.n_unchanged == r.n_pairs
    assert r.mean_change == pytest.approx(d.mean())
    assert r.median_change == pytest.approx(np.median(d))
    assert (r.change_ci_low, r.change_ci_high) == pytest.approx(DescrStatsW(d).tconfint_mean(), abs=1e-12)
    assert r.before.mean == pytest.approx(before[keep].mean())
    assert r.after.mean == pytest.approx(after[keep].mean())
    assert r.zero_method == "pratt"


def test_paired_change_without_ties_uses_the_exact_distribution():
    before = np.array([1.0, 2, 3, 4, 5, 6, 7])
    after = before + np.array([0.5, -1.5, 2.5, 3.5, 4.5, 5.5, 6.5])
    r = paired_change(before, after)
    ref = sps.wilcoxon(after - before, zero_method="pratt", method="exact")
    assert r.test_method == "exact null distribution"
    assert r.p_value == pytest.approx(float(ref.pvalue))
    assert r.wilcoxon_statistic == pytest.approx(float(ref.statistic))


def test_paired_change_all_unchanged_is_not_a_crash():
    r = paired_change([5, 6, 7], [5, 6, 7])
    assert r.n_unchanged == 3 and r.mean_change == 0
    assert math.isnan(r.p_value)
    assert "not computed" in r.test_method


def test_response_rate_rr1_with_invited_only():
    r = response_rate(90, invited=170)
    assert r.rr1 == pytest.approx(90 / 170)
    assert r.formula == RR1_FORMULA and "RR1" in r.render("en")
    assert r.unknown == 80  # invited without a known disposition
    assert "90/170" in r.format("en")


def test_response_rate_with_dispositions_and_partials():
    r = response_rate(40, 5, invited=100, refusals=20, non_contacts=30, other=5)
    assert r.rr1 == pytest.approx(40 / 100)
    assert r.rr2 == pytest.approx(45 / 100)
    assert r.unknown is None  # every invited case has a disposition: nothing added to UH/UO
    r2 = response_rate(40, 5, refusals=20, non_contacts=30)
    assert r2.rr1 == pytest.approx(40 / 95)
    with pytest.raises(ValueError, match="exceed the invited population"):
        response_rate(90, invited=80)


def test_response_rate_without_invited_is_not_computed():
    r = response_rate(22)
    assert r.rr1 is None
    assert "not computable" in r.render("en")
