"""The bootstrap of matched sets (persons resampled: sets sharing a control move together): algebra against a slow loop, reuse clusters, coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_indicators_core import matched, panel, persons, stays

from indicators.analysis import analyse
from indicators.bootstrap import cluster_bootstrap, matched_sets, per_set_totals, resample_counts
from indicators.outcomes import ClaimsData
from pipeline.config import load_config


@pytest.fixture(scope="module")
def config():
    return load_config().with_overrides({"indicators": {"bootstrap_replicates": 120, "seed": 7}})


@pytest.fixture(scope="module")
def an(config):
    return analyse(matched(), ClaimsData.from_frames(persons(), panel(config), stays(), config), config)


def _slow_avoided(mem: pd.DataFrame, out: pd.DataFrame, sets: np.ndarray) -> float:
    """Rebuild the resampled dataset unit by unit (a drawn set's members, repeated as often as it is
    drawn) and compute avoided spending per patient-year from scratch."""
    t_spend = t_py = c_spend = c_py = 0.0
    for s in sets:
        for _, row in mem[mem["set_idx"] == s].iterrows():
            o = out.loc[row["unit_id"]]
            if row["treated"] == 1:
                t_spend += o["s_perimeter"]
                t_py += o["pyears"]
            else:
                c_spend += row["w"] * o["s_perimeter"]
                c_py += row["w"] * o["pyears"]
    if t_py == 0 or c_py == 0:
        return float("nan")
    return c_spend / c_py - t_spend / t_py


def test_vectorised_bootstrap_equals_slow_loop(an, config):
    B, n_sets = an.boot.n_replicates, an.n_sets
    rng = np.random.default_rng(config.indicators.seed)
    draws = rng.integers(0, n_sets, size=(B, n_sets))  # the same draws the vectorised code makes
    fast = an.boot.replicate_values(lambda T: T["c.s_perimeter"] / T["c.pyears"] - T["t.s_perimeter"] / T["t.pyears"])
    slow = np.array([_slow_avoided(an.membership, an.outcomes, draws[b]) for b in range(B)])
    np.testing.assert_allclose(fast, slow, rtol=1e-10, equal_nan=True)
    # and the draws are genuinely different replicates, not one repeated
    assert np.nanstd(fast) > 0


def test_counts_rows_are_resamples():
    rng = np.random.default_rng(1)
    chunks = list(resample_counts(5, 23, rng))
    counts = np.vstack(chunks)
    assert counts.shape == (23, 5)
    assert (counts.sum(axis=1) == 5).all()


def test_bootstrap_is_seedable():
    per_set = np.random.default_rng(0).gamma(2.0, size=(40, 4))
    names = ["t.y", "t.n", "c.y", "c.n"]
    a = cluster_bootstrap(per_set, names, 199, seed=5, ci_level=0.95)
    b = cluster_bootstrap(per_set, names, 199, seed=5, ci_level=0.95)
    c = cluster_bootstrap(per_set, names, 199, seed=6, ci_level=0.95)
    np.testing.assert_array_equal(a.draws, b.draws)
    assert not np.array_equal(a.draws, c.draws)
    np.testing.assert_allclose(a.point, per_set.sum(axis=0))


def test_reused_control_links_its_sets_into_one_cluster():
    # control person K serves sets 1 and 2 (1:1 with replacement): one row per set, weight 1 in each
    m = pd.DataFrame({
        "unit_id": ["A@d", "K@d", "B@e", "K@e", "C@f", "L@f"],
        "person_id": ["A", "K", "B", "K", "C", "L"],
        "treated": [1, 0, 1, 0, 1, 0], "weight": [1, 1.0, 1, 1.0, 1, 1.0], "subclass": [1, 1, 2, 2, 3, 3]})
    mem = matched_sets(m)
    assert mem.groupby("person_id")["w"].sum().to_dict() == {"A": 1, "B": 1, "C": 1, "K": 2.0, "L": 1.0}
    assert mem["set_idx"].nunique() == 3
    # sets 1 and 2 share K: one resampling cluster; set 3 is its own
    clusters = mem.groupby("set_idx")["cluster_idx"].first().to_dict()
    assert clusters[0] == clusters[1] != clusters[2]
    assert mem["cluster_idx"].nunique() == 2
    # per-cluster totals: cluster of sets 1+2 holds both treated and K twice
    out = pd.DataFrame({"y": [1.0, 10.0, 2.0, 10.0, 3.0, 20.0]}, index=m["unit_id"])
    out = out[~out.index.duplicated()]
    mat, _ = per_set_totals(mem, out, ["y"])
    np.testing.assert_allclose(mat, [[3.0, 20.0], [3.0, 20.0]])


def test_without_reuse_every_set_is_its_own_cluster():
    m = matched()
    mem = matched_sets(m)
    assert (mem.groupby("set_idx")["cluster_idx"].nunique() == 1).all()
    assert mem["cluster_idx"].nunique() == mem["set_idx"].nunique() == 3


def _reuse_sample(rng: np.random.Generator, n_treated: int, pool: int, tau: float) -> pd.DataFrame:
    """Treated patients matched 1:1 *with replacement* to a small control pool of their stratum (so
    controls are reused), outcomes = stratum mean + person noise (+ tau for treated)."""
    strata = 30
    s_t = rng.integers(0, strata, n_treated)
    s_c = rng.integers(0, strata, pool)
    mu = rng.normal(1000.0, 300.0, strata)
    y_c = mu[s_c] + rng.gamma(2.0, 400.0, pool)
    rows = []
    for i in range(n_treated):
        cands = np.flatnonzero(s_c == s_t[i])
        if cands.size == 0:
            continue
        j = int(rng.choice(cands))
        y_t = mu[s_t[i]] + rng.gamma(2.0, 400.0) + tau
        rows.append((f"T{i}", f"T{i}", 1, 1.0, i, y_t))
        rows.append((f"C{j}@{i}", f"C{j}", 0, 1.0, i, y_c[j]))
    return pd.DataFrame(rows, columns=["unit_id", "person_id", "treated", "weight", "subclass", "y"])


def _coverage(sims: int, by_person: bool, seed: int) -> float:
    rng = np.random.default_rng(seed)
    tau, covered = -200.0, 0
    for _ in range(sims):
        m = _reuse_sample(rng, n_treated=200, pool=80, tau=tau)
        mem = matched_sets(m)
        if not by_person:  # the naive design: every set independent, reused controls counted per set
            mem["cluster_idx"] = mem["set_idx"]
        out = m.drop_duplicates("unit_id").set_index("unit_id").assign(n=1.0)
        per, names = per_set_totals(mem, out, ["y", "n"])
        bt = cluster_bootstrap(per, names, 299, int(rng.integers(1 << 31)), 0.95)
        e = bt.estimate(lambda T: T["t.y"] / T["t.n"] - T["c.y"] / T["c.n"])
        covered += e.ci_low <= tau <= e.ci_high
    return covered / sims


@pytest.mark.slow
def test_coverage_with_reused_controls_needs_person_clusters():
    """Matching with replacement from a small pool (each control reused ~2.5 times): resampling sets as
    if independent gives too-narrow intervals; resampling persons (clusters of sets sharing a control)
    restores nominal coverage."""
    naive = _coverage(200, by_person=False, seed=11)
    person = _coverage(200, by_person=True, seed=11)
    print(f"coverage naive {naive:.3f}, by person {person:.3f}")
    assert naive < 0.89, naive
    assert 0.90 <= person <= 0.99, person


def test_per_set_totals_weights_controls():
    mem = pd.DataFrame({"set_idx": [0, 0, 0, 1, 1], "unit_id": list("abcde"), "treated": [1, 0, 0, 1, 0],
                        "w": [1, 0.5, 0.5, 1, 1]})
    out = pd.DataFrame({"y": [10.0, 2.0, 4.0, 7.0, 1.0]}, index=list("abcde"))
    mat, names = per_set_totals(mem, out, ["y"])
    assert names == ["t.y", "c.y"]
    np.testing.assert_allclose(mat, [[10.0, 3.0], [7.0, 1.0]])


def test_percentile_ci_coverage_simulation():
    """300 simulated matched samples (1:2 matching, shared set effects, skewed outcomes) with a known
    mean difference; the 95 % cluster-bootstrap CI must cover it in 90–99 % of them."""
    rng = np.random.default_rng(20240101)
    n_sets, true_diff, B, sims = 150, -300.0, 499, 300
    covered = 0
    for _ in range(sims):
        set_effect = rng.gamma(2.0, 500.0, size=n_sets)              # shared within a matched set
        yt = set_effect + rng.gamma(2.0, 600.0, size=n_sets) + true_diff
        yc = set_effect[:, None] + rng.gamma(2.0, 600.0, size=(n_sets, 2))
        # per-set totals: treated sum and count, controls weighted 1/2 each
        per_set = np.column_stack([yt, np.ones(n_sets), 0.5 * yc.sum(axis=1), np.ones(n_sets)])
        bt = cluster_bootstrap(per_set, ["t.y", "t.n", "c.y", "c.n"], B, int(rng.integers(1 << 31)), 0.95)
        e = bt.estimate(lambda T: T["t.y"] / T["t.n"] - T["c.y"] / T["c.n"])
        covered += e.ci_low <= true_diff <= e.ci_high
    coverage = covered / sims
    print(f'coverage {coverage:.3f}')
    assert 0.90 <= coverage <= 0.99, coverage
