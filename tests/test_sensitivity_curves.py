"""Survival and competing-risk curves against lifelines; the event study, its pre-trend test and the
two-part cost model on small constructed samples with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from indicators.sensitivity.competing_risks import aalen_johansen, kaplan_meier, numbers_at_risk
from indicators.sensitivity.curves import arm_curves
from indicators.sensitivity.event_study import event_study_estimates, pretrend_wald
from indicators.sensitivity.two_part import two_part_model

lifelines = pytest.importorskip("lifelines")


def _step_values(index: np.ndarray, values: np.ndarray, days: np.ndarray) -> np.ndarray:
    return values[np.searchsorted(index, days, side="right") - 1]


def _sample(seed: int, n: int = 400):
    rng = np.random.default_rng(seed)
    time = rng.permutation(np.arange(1, n + 1))  # distinct times: lifelines' AJ jitters ties
    event = rng.choice([0, 1, 2], size=n, p=[0.3, 0.4, 0.3])
    return time, event


@pytest.mark.parametrize("seed", [1, 2])
def test_aalen_johansen_matches_lifelines(seed):
    time, event = _sample(seed)
    days = np.arange(time.max() + 1)
    for cause in (1, 2):
        aj = lifelines.AalenJohansenFitter(calculate_variance=False).fit(time, event, event_of_interest=cause)
        ref = _step_values(aj.cumulative_density_.index.to_numpy(), aj.cumulative_density_.iloc[:, 0].to_numpy(), days)
        _, cif1, cif2 = aalen_johansen(time, event, np.ones(time.size), days.size)
        assert np.abs((cif1 if cause == 1 else cif2) - ref).max() < 1e-10


def test_weighted_kaplan_meier_matches_lifelines_and_arrays_of_weights_are_rows():
    time, event = _sample(3)
    died = (event > 0).astype(int)
    w = np.random.default_rng(4).uniform(0.2, 2.0, time.size)
    days = np.arange(time.max() + 1)
    with pytest.warns(Warning):  # lifelines warns that non-integer weights bias its variance
        km = lifelines.KaplanMeierFitter().fit(time, died, weights=w)
    ref = _step_values(km.survival_function_.index.to_numpy(), km.survival_function_.iloc[:, 0].to_numpy(), days)
    assert np.abs(kaplan_meier(time, died, w, days.size) - ref).max() < 1e-10
    both = kaplan_meier(time, died, np.vstack([w, np.ones_like(w)]), days.size)
    assert np.allclose(both[0], ref) and np.allclose(both[1], kaplan_meier(time, died, np.ones_like(w), days.size))


def test_without_competing_events_cif_is_one_minus_km_and_risk_sets_count():
    time, event = _sample(5)
    event = np.where(event == 2, 1, event)
    surv, cif1, cif2 = aalen_johansen(time, event, np.ones(time.size), time.max() + 1)
    assert np.allclose(cif1, 1 - surv) and np.all(cif2 == 0)
    assert list(numbers_at_risk(np.array([0, 3, 3, 7]), np.array([0, 3, 4, 8]))) == [4, 3, 1, 0]


def _membership(n_sets: int) -> pd.DataFrame:
    rows = [{"set_idx": s, "cluster_idx": s, "unit_id": f"{a}{s}", "person_id": f"{a}{s}",
             "treated": int(a == "t"), "w": 1.0} for s in range(n_sets) for a in ("t", "c")]
    return pd.DataFrame(rows)


def test_arm_curves_give_bands_around_the_point_and_a_difference():
    n = 150
    mem = _membership(n)
    rng = np.random.default_rng(6)
    times = pd.DataFrame({"t_hosp": rng.integers(0, 400, 2 * n), "event_hosp": rng.choice([0, 1, 2], 2 * n),
                          "t_death": rng.integers(0, 400, 2 * n), "died": rng.choice([0, 1], 2 * n)},
                         index=mem["unit_id"])
    cs = arm_curves(mem, times, months=12, replicates=99, seed=1, ci_level=0.95)
    tab = cs.table
    assert set(tab["curve"]) == {"survival", "cif_hospitalisation", "cif_death_without_hospitalisation"}
    assert set(tab["arm"]) == {"treated", "control", "difference"}
    arms = tab[tab["arm"] != "difference"]
    assert ((arms["ci_low"] <= arms["estimate"] + 1e-12) & (arms["estimate"] <= arms["ci_high"] + 1e-12)).all()
    first = tab[(tab["month"] == 0) & (tab["arm"] == "treated") & (tab["curve"] == "survival")]
    assert int(first["n_at_risk"].iloc[0]) == n


def _monthly(mem: pd.DataFrame, before: int, after: int, effect: float, pre_trend: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    months = np.arange(-before, after + 1)
    out = {}
    treated = mem["treated"].to_numpy() == 1
    for r in months:
        base = rng.gamma(2.0, 100.0, len(mem))
        shift = np.where(treated, (effect if r >= 0 else pre_trend * (r + before)), 0.0)
        out[f"spending_{r}"] = base + shift
        out[f"hospital_stays_{r}"] = rng.binomial(1, 0.05, len(mem)).astype(float)
        out[f"followed_{r}"] = np.ones(len(mem))
    return pd.DataFrame(out, index=mem["unit_id"].to_numpy())


def test_event_study_finds_a_planted_step_and_no_pretrend():
    mem = _membership(400)
    frame = _monthly(mem, 6, 6, effect=-60.0, pre_trend=0.0, seed=7)
    es = event_study_estimates(mem, frame, 6, 6, replicates=199, seed=1, ci_level=0.95)
    spend = es.tests.set_index("outcome").loc["spending"]
    assert spend["did_ci_low"] < -60.0 < spend["did_ci_high"]
    assert spend["pretrend_p"] > 0.01
    rows = es.table[es.table["outcome"] == "spending"]
    assert len(rows) == 13 and set(rows["relative_month"]) == set(range(-6, 7))


def test_pretrend_test_rejects_a_planted_pre_period_divergence():
    mem = _membership(400)
    frame = _monthly(mem, 6, 6, effect=0.0, pre_trend=25.0, seed=8)
    es = event_study_estimates(mem, frame, 6, 6, replicates=199, seed=1, ci_level=0.95)
    assert es.pretrend_p("spending") < 0.001


def test_pretrend_wald_on_known_covariance():
    rng = np.random.default_rng(9)
    draws = rng.normal(0, 1, (20000, 2))
    chi2, df, p = pretrend_wald(np.array([1.0, 1.0]), draws)
    assert df == 2 and chi2 == pytest.approx(2.0, rel=0.05) and p == pytest.approx(np.exp(-1.0), rel=0.05)


def test_two_part_model_recovers_planted_rates():
    """Gamma spending with mean 1000 €/patient-year × pyears in controls and 0.8 × in treated, 20 % with
    no spending in both arms: rates = 0.8 × 1000 and 0.8 × 800."""
    rng = np.random.default_rng(10)
    n = 4000
    treated = np.tile([1.0, 0.0], n // 2)
    clusters = np.repeat(np.arange(n // 2), 2)
    pyears = rng.uniform(0.5, 3.0, n)
    mean = np.where(treated == 1, 800.0, 1000.0) * pyears
    spend = rng.gamma(4.0, mean / 4.0) * (rng.uniform(size=n) > 0.2)
    res = two_part_model(spend, pyears, treated, np.ones(n), clusters, 0.95)
    t = res.table.set_index("quantity")
    assert t.loc["control", "ci_low"] < 800.0 < t.loc["control", "ci_high"]
    assert t.loc["treated", "ci_low"] < 640.0 < t.loc["treated", "ci_high"]
    assert t.loc["avoided", "ci_low"] < 160.0 < t.loc["avoided", "ci_high"]
    assert res.n_clusters == n // 2
