"""Hand-written sensitivity statistics against published or independent references: E-values
(VanderWeele & Ding 2017), Rosenbaum bounds (Rosenbaum 2002, lead example; exact enumeration),
the minimum detectable effect (statsmodels' power solver)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from indicators.sensitivity.evalues import evalue_ci, evalue_of_difference, evalue_rr
from indicators.sensitivity.power import (
    detectable_multiplier,
    minimum_detectable_effect,
    minimum_detectable_rate_ratio,
)
from indicators.sensitivity.rosenbaum import (
    GAMMA_MAX,
    mcnemar_bound,
    mcnemar_upper_p,
    signed_rank_bound,
    signed_rank_upper_p,
)

# Morton et al. (1982) lead in children's blood, 33 matched pairs: Rosenbaum, Observational Studies
# (2002), ch. 4, and the example of rbounds::psens.
LEAD_EXPOSED = np.array([38, 23, 41, 18, 37, 36, 23, 62, 31, 34, 24, 14, 21, 17, 16, 20, 15, 10, 45, 39, 22, 35,
                         49, 48, 44, 35, 43, 39, 34, 13, 73, 25, 27])
LEAD_CONTROL = np.array([16, 18, 18, 24, 19, 11, 10, 15, 16, 18, 18, 13, 19, 10, 16, 16, 24, 13, 9, 14, 21, 19,
                         7, 18, 19, 12, 11, 22, 25, 16, 13, 11, 13])


# -- E-values ---------------------------------------------------------------------------------------
def test_evalue_textbook_example():
    """VanderWeele & Ding (2017), Ann Intern Med: RR 3.9 (CI 1.8–8.7) → E-value 7.26, CI limit 3.0."""
    assert evalue_rr(3.9) == pytest.approx(7.26, abs=0.005)
    assert evalue_ci(3.9, 1.8, 8.7) == pytest.approx(3.0, abs=0.005)
    assert evalue_rr(1.8) == pytest.approx(3.0, abs=0.005)


def test_evalue_protective_ratio_uses_reciprocal_and_null_interval_gives_one():
    assert evalue_rr(1 / 3.9) == pytest.approx(evalue_rr(3.9))
    assert evalue_ci(0.5, 0.3, 0.8) == pytest.approx(evalue_rr(1 / 0.8))
    assert evalue_ci(0.8, 0.6, 1.1) == 1.0
    assert evalue_rr(1.0) == 1.0
    assert evalue_rr(None) is None and evalue_rr(0.0) is None


def test_evalue_of_difference_goes_through_the_smd():
    """A difference of d outcome SDs is RR ≈ exp(0.91 d) (VanderWeele & Ding 2017, eAppendix)."""
    ev = evalue_of_difference("x", -500.0, -900.0, -100.0, outcome_sd=1000.0)
    rr = math.exp(-0.91 * 0.5)
    assert ev.rr == pytest.approx(rr)
    assert ev.evalue == pytest.approx(evalue_rr(rr))
    assert ev.evalue_ci == pytest.approx(evalue_rr(math.exp(-0.91 * 0.1)))


# -- Rosenbaum bounds -------------------------------------------------------------------------------
def test_signed_rank_bounds_on_the_lead_example():
    """Upper bounds of the one-sided p-value for Γ = 1 … 6 on the lead pairs (normal approximation with
    mid-ranks, as rbounds::psens computes them for Rosenbaum's ch. 4 example): the result is
    significant at 0.05 up to Γ = 4 and not at Γ = 5."""
    d = LEAD_EXPOSED - LEAD_CONTROL
    expected = {2: 0.0018, 3: 0.0131, 4: 0.0367, 5: 0.0694, 6: 0.1073}
    assert signed_rank_upper_p(d, 1.0) < 1e-4
    for gamma, p in expected.items():
        assert signed_rank_upper_p(d, gamma) == pytest.approx(p, abs=6e-5), gamma
    bound = signed_rank_bound("lead", d, 0.05, "treated_higher")
    assert 4.0 < bound.gamma < 5.0
    assert signed_rank_upper_p(d, bound.gamma) == pytest.approx(0.05, abs=1e-6)


def _exact_upper_p(d: np.ndarray, gamma: float) -> float:
    """Exact upper bound (no ties): each pair is positive with probability Γ/(1+Γ) independently
    (Rosenbaum 2002, §4.3.2), so T = Σ rank_i × Bernoulli_i; its distribution by convolution over the
    integer ranks 1 … n (Pagano & Tritchler's polynomial-time method, as DOS2::senWilcoxExact)."""
    ranks = stats.rankdata(np.abs(d)).astype(int)
    t_obs = int(ranks[d > 0].sum())
    p_plus = gamma / (1 + gamma)
    dist = np.zeros(int(ranks.sum()) + 1)
    dist[0] = 1.0
    for r in ranks:
        shifted = np.zeros_like(dist)
        shifted[r:] = dist[:-r]
        dist = (1 - p_plus) * dist + p_plus * shifted
    return float(dist[t_obs:].sum())


def test_exact_reference_is_exact_on_a_tiny_sample():
    """The convolution reference against full enumeration of the 2^5 sign patterns."""
    d = np.array([0.3, -1.1, 2.0, 0.7, 1.6])
    ranks = stats.rankdata(np.abs(d))
    t_obs, p = ranks[d > 0].sum(), 2 / 3
    brute = sum(p ** sum(s) * (1 - p) ** (5 - sum(s)) for s in itertools.product((0, 1), repeat=5)
                if (ranks * np.array(s)).sum() >= t_obs)
    assert _exact_upper_p(d, 2.0) == pytest.approx(brute)


def test_signed_rank_bound_close_to_exact_distribution():
    """The large-sample bound (the one Rosenbaum and rbounds use) against the exact distribution on
    60 untied pairs: p-values within 0.01, and the sensitivity Γ at 0.05 within 5 %."""
    from scipy import optimize

    rng = np.random.default_rng(3)
    d = rng.normal(0.8, 1.0, 60)
    for gamma in (1.0, 2.0, 3.0, 4.0):
        assert signed_rank_upper_p(d, gamma) == pytest.approx(_exact_upper_p(d, gamma), abs=0.01), gamma
    exact_gamma = optimize.brentq(lambda g: _exact_upper_p(d, g) - 0.05, 1.0, 10.0)
    assert signed_rank_bound("x", d, 0.05, "treated_higher").gamma == pytest.approx(exact_gamma, rel=0.05)


def test_mcnemar_bound_is_binomial_tail_and_gamma_solves_alpha():
    # 30 discordant pairs, 24 of them with the event in the control only (treated lower).
    treated = np.array([0] * 24 + [1] * 6 + [1] * 10 + [0] * 20)
    control = np.array([1] * 24 + [0] * 6 + [1] * 10 + [0] * 20)
    b = mcnemar_bound("x", treated, control, 0.05, "treated_lower")
    assert b.n_discordant == 30
    assert b.p_value == pytest.approx(stats.binom.sf(23, 30, 0.5))
    assert mcnemar_upper_p(24, 30, b.gamma) == pytest.approx(0.05, abs=1e-6)
    assert mcnemar_upper_p(24, 30, b.gamma * 1.05) > 0.05


def test_not_significant_result_has_no_gamma_and_huge_effect_is_capped():
    assert signed_rank_bound("x", np.array([1.0, -1.2, 0.5, -0.4]), 0.05, "treated_higher").gamma is None
    big = signed_rank_bound("x", np.arange(1, 2001, dtype=float), 0.05, "treated_higher")
    assert big.gamma == GAMMA_MAX


# -- minimum detectable effects ---------------------------------------------------------------------
def test_mde_matches_statsmodels_power_solver():
    """Two arms of n with SD σ: SE = σ √(2/n); statsmodels solves the same normal-theory power for the
    standardised effect (its second tail adds < 1e-6 here)."""
    from statsmodels.stats.power import NormalIndPower

    n, sigma = 400, 3.0
    se = sigma * math.sqrt(2 / n)
    es = NormalIndPower().solve_power(effect_size=None, nobs1=n, alpha=0.05, power=0.8, ratio=1.0)
    assert minimum_detectable_effect(se, 0.05, 0.8) == pytest.approx(es * sigma, rel=1e-4)
    assert detectable_multiplier(0.05, 0.8) == pytest.approx(2.8016, abs=1e-4)


def test_mdrr_is_the_exponential_of_the_log_scale_mde():
    assert minimum_detectable_rate_ratio(0.1, 0.05, 0.8) == pytest.approx(math.exp(2.8016 * 0.1), rel=1e-4)
    assert minimum_detectable_rate_ratio(0.0, 0.05, 0.8) == 1.0
