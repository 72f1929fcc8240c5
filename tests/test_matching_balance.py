"""Balance statistics against an independent by-hand computation; summary, love plot, profiles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from matching import Matcher
from matching.balance import kish_ess
from matching.profiles import unmatched_indicator, unmatched_profiles
from pipeline.stats import wilson_interval


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(11)
    n = 600
    df = pd.DataFrame({
        "unit_id": [f"u{i}" for i in range(n)],
        "treated": (rng.random(n) < 0.3).astype(int),
        "g": rng.choice(["p", "q", "r"], n, p=[0.5, 0.3, 0.2]),
        "age": rng.normal(75, 8, n).round(),
    })
    df["x"] = rng.gamma(2, 1, n) + 0.8 * df.treated
    m = Matcher(exact=["g"], on="x", ratio=2, replace=True, caliper=0.5).fit(df)
    return df, m


def ecdf_by_hand(xt, wt, xc, wc):
    values = np.unique(np.r_[xt, xc])
    d = [abs(wt[xt <= v].sum() / wt.sum() - wc[xc <= v].sum() / wc.sum()) for v in values]
    return np.mean(d), np.max(d)


@pytest.mark.parametrize("stage", ["before", "after"])
@pytest.mark.parametrize("cov", ["x", "age", "g=q"])
def test_balance_against_independent_computation(fitted, stage, cov):
    df, m = fitted
    bal = m.balance(["x", "age", "g"])
    row = bal[(bal.covariate == cov) & (bal.stage == stage)].iloc[0]

    def values(frame):
        return (frame["g"] == "q").astype(float).to_numpy() if cov == "g=q" else frame[cov].to_numpy(float)

    t_all = values(df[df.treated == 1])
    sd_t = np.std(t_all, ddof=1)
    if stage == "before":
        xt, xc = t_all, values(df[df.treated == 0])
        wt, wc = np.ones(len(xt)), np.ones(len(xc))
    else:
        # a control reused by several sets has one row per set in matched_: one unit, summed weight
        units = m.matched_.groupby("unit_id", sort=False).agg(
            treated=("treated", "first"), x=("x", "first"), age=("age", "first"), g=("g", "first"),
            weight=("weight", "sum"))
        mt, mc = units[units.treated == 1], units[units.treated == 0]
        xt, xc = values(mt), values(mc)
        wt, wc = mt.weight.to_numpy(), mc.weight.to_numpy()
    mean_t, mean_c = np.average(xt, weights=wt), np.average(xc, weights=wc)
    var_t, var_c = np.cov(xt, aweights=wt), np.cov(xc, aweights=wc)
    assert row.smd == pytest.approx((mean_t - mean_c) / sd_t, rel=1e-9)
    assert row.smd_denominator == "treated_sd_before"
    assert row.variance_ratio == pytest.approx(var_t / var_c, rel=1e-9)
    em, ex = ecdf_by_hand(xt, wt, xc, wc)
    assert row.ecdf_mean == pytest.approx(em, rel=1e-9, abs=1e-12)
    assert row.ecdf_max == pytest.approx(ex, rel=1e-9, abs=1e-12)
    assert row.ess_control == pytest.approx(wc.sum() ** 2 / (wc ** 2).sum())
    assert row.flag_smd == (abs(row.smd) > 0.1)
    if cov == "x":
        assert row.flag_vr == (not 0.5 <= row.variance_ratio <= 2)
    else:
        assert row.type == "binary" or cov == "age"


def test_matching_improves_balance_on_the_distance_variable(fitted):
    _, m = fitted
    bal = m.balance(["x"])
    before = bal[bal.stage == "before"].smd.abs().iloc[0]
    after = bal[bal.stage == "after"].smd.abs().iloc[0]
    assert before > 0.3 and after < before / 3


def test_pooled_denominator_when_treated_sd_is_zero():
    df = pd.DataFrame({"unit_id": range(6), "treated": [1, 1, 0, 0, 0, 0], "k": [1.0, 1, 0, 1, 0, 1],
                       "x": [0.0, 0, 0, 0, 0, 0]})
    m = Matcher(on="x", caliper=None).fit(df)
    row = m.balance(["k"]).query("stage == 'before'").iloc[0]
    assert row.smd_denominator == "pooled_sd_before"
    assert row.smd == pytest.approx(0.5 / np.sqrt((0 + np.var([0, 1, 0, 1], ddof=1)) / 2))


def test_summary(fitted):
    _, m = fitted
    s = m.summary(["x", "age", "g"])
    frame = s.summary_frame()
    assert frame.set_index("sample").loc["treated", "after"] == m.n_treated_matched_
    text = s.render()
    assert "treated" in text and "max |SMD|" in text and "denominator" in text
    w = m.matched_.query("treated == 0").groupby("unit_id").weight.sum()  # one weight per unit
    assert frame.set_index("sample").loc["controls (effective, Kish)", "after"] == round(kish_ess(w), 1)


def test_wilson_matches_statsmodels():
    for k, n in [(0, 10), (3, 10), (30, 100), (99, 100), (250, 800)]:
        lo, hi = wilson_interval(k, n, 0.95)
        ref = proportion_confint(k, n, alpha=0.05, method="wilson")
        assert (lo, hi) == pytest.approx(ref, abs=1e-12)


def test_profiles_and_indicator_suppress_small_counts():
    rng = np.random.default_rng(2)
    n = 400
    treated = pd.DataFrame({"age": rng.normal(80, 5, n), "CPX_A": 0, "CPX_B": 0})
    treated.loc[:149, "CPX_A"] = 1
    treated.loc[:4, "CPX_B"] = 1  # 5 patients: below the threshold
    treated["complex"] = (treated.CPX_A | treated.CPX_B).astype(int)
    unmatched = np.zeros(n, bool)
    unmatched[:45] = True  # 45 of the 150 complex patients
    unmatched[300:306] = True  # 6 of the 250 others: below the threshold
    prof = unmatched_profiles(treated, unmatched, ["CPX_A", "CPX_B"], ["age"], min_cell_count=10).set_index("profile")
    assert prof.loc["complex", "n_unmatched"] == 45
    assert prof.loc["complex", "share_unmatched"] == pytest.approx(0.3)
    assert prof.loc["overall", "share_unmatched"] == pytest.approx(51 / 400)  # from true counts
    assert pd.isna(prof.loc["non_complex", "n_unmatched"]) and pd.isna(prof.loc["non_complex", "share_unmatched"])
    assert prof.loc["non_complex", "suppressed"]
    assert pd.isna(prof.loc["CPX_B", "n_treated"]) and prof.loc["CPX_B", "suppressed"]
    assert not prof.loc["complex", "suppressed"]
    rec = unmatched_indicator(treated, unmatched, ["CPX_A", "CPX_B"], 10, published=0.3, method="test")
    assert rec.value == pytest.approx(0.3) and rec.n == 150 and rec.published == 0.3
    assert (rec.ci_low, rec.ci_high) == pytest.approx(proportion_confint(45, 150, method="wilson"))
    assert rec.arm_values["non_complex"] is None
    assert rec.id and rec.label_fr and rec.label_en and rec.unit and rec.population and rec.definition
    assert rec.method.startswith("test")


def test_after_only_equals_after_rows_of_the_full_table(fitted):
    _, m = fitted
    full = m.balance(["x", "age", "g"])
    after = m.balance(["x", "age", "g"], stages=("after",))
    pd.testing.assert_frame_equal(after.reset_index(drop=True),
                                  full[full.stage == "after"].reset_index(drop=True))


def test_after_only_pooled_fallback_reads_the_pool():
    df = pd.DataFrame({"unit_id": range(6), "treated": [1, 1, 0, 0, 0, 0], "k": [1.0, 1, 0, 1, 0, 1],
                       "x": [0.0, 0, 0, 0, 0, 0]})
    m = Matcher(on="x", caliper=None).fit(df)
    full = m.balance(["k"]).query("stage == 'after'").reset_index(drop=True)
    after = m.balance(["k"], stages=("after",))
    assert after.sd_denominator.iloc[0] == pytest.approx(full.sd_denominator.iloc[0])
