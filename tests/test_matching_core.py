"""Matcher algorithms against brute-force references, invariants as property tests, parameters."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from matching import Matcher


def random_table(seed: int, n_t: int, n_c: int, n_strata: int, ties: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_t + n_c
    x = rng.integers(0, 12, n).astype(float) if ties else rng.normal(0, 1, n)
    return pd.DataFrame({
        "unit_id": [f"u{i}" for i in range(n)],
        "treated": np.r_[np.ones(n_t, int), np.zeros(n_c, int)][rng.permutation(n)],
        "s1": rng.integers(0, n_strata, n),
        "s2": rng.choice(["a", "b"], n),
        "x": x,
    })


# ------------------------------------------------------------------ brute-force references
def naive_greedy(df: pd.DataFrame, width: float | None, ratio: int = 1, capacity: int = 1,
                 order: str = "closest") -> set[tuple[str, str]]:
    """O(n·m) greedy matching: all admissible edges sorted by distance (closest) or a per-treated scan."""
    t = df[df.treated == 1]
    c = df[df.treated == 0]
    uses: dict[str, int] = {}
    got: dict[str, list[str]] = {i: [] for i in t.unit_id}

    def admissible(tr, cr):
        d = abs(tr.x - cr.x)
        same = tr.s1 == cr.s1 and tr.s2 == cr.s2
        return same and (width is None or d <= width) and cr.unit_id not in got[tr.unit_id], d

    for rnd in range(ratio):
        if order == "closest":
            edges = []
            for tr in t.itertuples():
                if len(got[tr.unit_id]) != rnd:
                    continue
                for cr in c.itertuples():
                    ok, d = admissible(tr, cr)
                    if ok:  # ties: earlier treated row first, then earlier control row
                        edges.append((d, tr.Index, cr.Index, tr.unit_id, cr.unit_id))
            done = set()
            for *_, ti, ci in sorted(edges):
                if ti in done or (capacity and uses.get(ci, 0) >= capacity):
                    continue
                got[ti].append(ci)
                uses[ci] = uses.get(ci, 0) + 1
                done.add(ti)
        else:
            served = t
            if order in ("largest", "smallest"):  # by value, ties in data order
                served = t.sort_values("x", ascending=order == "smallest", kind="stable")
            for tr in served.itertuples():
                if len(got[tr.unit_id]) != rnd:
                    continue
                best = None
                for cr in c.itertuples():
                    ok, d = admissible(tr, cr)
                    if ok and not (capacity and uses.get(cr.unit_id, 0) >= capacity) and (best is None or d < best[0]):
                        best = (d, cr.unit_id)
                if best:
                    got[tr.unit_id].append(best[1])
                    uses[best[1]] = uses.get(best[1], 0) + 1
    return {(ti, ci) for ti, cs in got.items() for ci in cs}


def brute_optimal(df: pd.DataFrame, width: float | None, ratio: int) -> tuple[int, int, float]:
    """Best (treated matched, number of pairs, total distance) — most treated, then most pairs, then least
    distance — over every assignment of disjoint control sets."""
    t = df[df.treated == 1].reset_index(drop=True)
    c = df[df.treated == 0].reset_index(drop=True)
    options = []
    for tr in t.itertuples():
        ok = [j for j, cr in enumerate(c.itertuples()) if tr.s1 == cr.s1 and tr.s2 == cr.s2
              and (width is None or abs(tr.x - cr.x) <= width)]
        subsets = [s for k in range(ratio + 1) for s in itertools.combinations(ok, k)]
        options.append([(s, sum(abs(tr.x - c.x[j]) for j in s)) for s in subsets])
    best = (0, 0, 0.0)
    for combo in itertools.product(*options):
        used = [j for s, _ in combo for j in s]
        if len(used) != len(set(used)):
            continue
        cand = (sum(1 for s, _ in combo if s), len(used), sum(d for _, d in combo))
        if (cand[0], cand[1], -cand[2]) > (best[0], best[1], -best[2]):
            best = cand
    return best


def pair_set(m: Matcher) -> set[tuple[str, str]]:
    return set(zip(m.pairs_.treated_id, m.pairs_.control_id, strict=True))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_t=st.integers(1, 12), n_c=st.integers(0, 30), n_strata=st.integers(1, 3),
       caliper=st.sampled_from([None, 0.1, 0.5, 2.0]), ratio=st.integers(1, 3),
       order=st.sampled_from(["closest", "data", "largest", "smallest"]))
def test_greedy_equals_brute_force(seed, n_t, n_c, n_strata, caliper, ratio, order):
    df = random_table(seed, n_t, n_c, n_strata)
    m = Matcher(exact=["s1", "s2"], on="x", caliper=caliper, caliper_scale="absolute", ratio=ratio,
                order=order).fit(df)
    assert pair_set(m) == naive_greedy(df, caliper, ratio, order=order)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), ratio=st.integers(1, 2), caliper=st.sampled_from([None, 0.3]))
def test_greedy_with_tied_treated_equals_brute_force(seed, ratio, caliper):
    """Many treated units share a value (grouped in the heap); ties between them go to the earlier row."""
    df = random_table(seed, 15, 25, 1)
    t = df.treated == 1
    df.loc[t, "x"] = np.random.default_rng(seed).choice([-0.5, 0.0, 0.5], t.sum())
    m = Matcher(exact=["s1", "s2"], on="x", caliper=caliper, caliper_scale="absolute", ratio=ratio).fit(df)
    assert pair_set(m) == naive_greedy(df, caliper, ratio)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cap=st.integers(1, 3), ratio=st.integers(1, 2))
def test_greedy_with_capped_reuse_equals_brute_force(seed, cap, ratio):
    df = random_table(seed, 10, 8, 2)
    m = Matcher(exact=["s1", "s2"], on="x", caliper=1.0, caliper_scale="absolute", ratio=ratio, replace=True,
                max_reuse=cap).fit(df)
    assert pair_set(m) == naive_greedy(df, 1.0, ratio, capacity=cap)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n_t=st.integers(1, 4), n_c=st.integers(0, 6),
       caliper=st.sampled_from([None, 0.3, 1.0]), ratio=st.integers(1, 2))
def test_optimal_equals_brute_force_minimum(seed, n_t, n_c, caliper, ratio):
    df = random_table(seed, n_t, n_c, 1)
    m = Matcher(method="optimal", exact=["s2"], on="x", caliper=caliper, caliper_scale="absolute",
                ratio=ratio).fit(df)
    df = df.assign(s1=0)
    n_treated, n_pairs, total = brute_optimal(df, caliper, ratio)
    assert m.n_treated_matched_ == n_treated
    assert len(m.pairs_) == n_pairs
    assert m.pairs_.distance.sum() == pytest.approx(total, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), ratio=st.integers(1, 3), caliper=st.sampled_from([0.05, 0.2, 1.0]))
def test_optimal_never_worse_than_greedy(seed, ratio, caliper):
    df = random_table(seed, 30, 60, 3)
    kw = dict(exact=["s1", "s2"], on="x", caliper=caliper, ratio=ratio)
    greedy = Matcher(**kw).fit(df)
    opt = Matcher(method="optimal", **kw).fit(df)
    # optimal maximises the treated matched, then the pairs, then minimises the total distance
    assert opt.n_treated_matched_ >= greedy.n_treated_matched_
    if opt.n_treated_matched_ == greedy.n_treated_matched_:
        assert len(opt.pairs_) >= len(greedy.pairs_)
        if len(opt.pairs_) == len(greedy.pairs_):
            assert opt.pairs_.distance.sum() <= greedy.pairs_.distance.sum() + 1e-9


# ------------------------------------------------------------------ invariants
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_t=st.integers(0, 25), n_c=st.integers(0, 60), n_strata=st.integers(1, 4),
       method=st.sampled_from(["nearest", "optimal", "propensity", "cem"]),
       caliper=st.sampled_from([None, 0.05, 0.3, 1.5]),
       scale=st.sampled_from(["sd", "sd_all", "absolute", "relative"]),
       ratio=st.integers(1, 3), replace=st.booleans(), max_reuse=st.integers(0, 3),
       order=st.sampled_from(["closest", "data", "random", "largest", "smallest"]), ties=st.booleans(),
       discard=st.sampled_from(["none", "none", "both", "treated", "control"]))
def test_invariants(seed, n_t, n_c, n_strata, method, caliper, scale, ratio, replace, max_reuse, order, ties,
                    discard):
    df = random_table(seed, n_t, n_c, n_strata, ties=ties)
    df["x"] = df["x"].abs()  # relative calipers are defined for magnitudes
    max_reuse = max_reuse if replace else 0
    if method == "optimal" and ratio > 1 and max_reuse:
        max_reuse = 0  # not supported (see test_optimal_capped_reuse_with_ratio_is_refused)
    m = Matcher(method=method, exact=["s1", "s2"], on="x", caliper=caliper, caliper_scale=scale, ratio=ratio,
                replace=replace, max_reuse=max_reuse, order=order, seed=seed, discard=discard)
    if method == "propensity" and (n_t == 0 or (df.treated == 0).sum() == 0):
        with pytest.raises(ValueError, match="treated and control rows"):
            m.fit(df)
        return
    m.fit(df)
    p = m.pairs_
    by_id = df.set_index("unit_id")
    t_rows, c_rows = by_id.loc[p.treated_id], by_id.loc[p.control_id]
    assert (t_rows.treated.to_numpy() == 1).all() and (c_rows.treated.to_numpy() == 0).all()
    # exact strata are never crossed
    assert (t_rows.s1.to_numpy() == c_rows.s1.to_numpy()).all()
    assert (t_rows.s2.to_numpy() == c_rows.s2.to_numpy()).all()
    if method != "propensity":
        np.testing.assert_allclose(p.distance, np.abs(t_rows.x.to_numpy() - c_rows.x.to_numpy()), atol=1e-12)
    # the caliper is never exceeded
    if method != "cem" and caliper is not None:
        if scale == "relative":
            if method == "propensity":
                ref = m.ps_model_.decision_function(m.ps_design_.transform(t_rows)) if len(p) else np.zeros(0)
            else:
                ref = t_rows.x.to_numpy()
            assert (p.distance.to_numpy() <= caliper * np.abs(ref) * (1 + 1e-9) + 1e-12).all()
        else:
            assert (p.distance <= m.caliper_width_ * (1 + 1e-9) + 1e-12).all()
    if method == "cem":
        return
    per_treated = p.treated_id.value_counts()
    assert (per_treated <= ratio).all()
    uses = p.control_id.value_counts()
    if not replace:
        assert (uses == 1).all()
    elif max_reuse:
        assert (uses <= max_reuse).all()
    assert not p.duplicated(["treated_id", "control_id"]).any()
    # every treated unit is either matched or unmatched, never both
    matched_t = set(m.matched_.loc[m.matched_.treated == 1, "unit_id"])
    unmatched_t = set(m.unmatched_.unit_id)
    assert matched_t.isdisjoint(unmatched_t)
    assert matched_t | unmatched_t == set(df.loc[df.treated == 1, "unit_id"])
    # ATT weights: each matched set's controls weigh 1 in total
    w = m.matched_.loc[m.matched_.treated == 0, "weight"].sum()
    assert w == pytest.approx(m.n_treated_matched_)
    # common support: nothing off it is matched, and discarded treated units say why
    dist = pd.Series(m.distance_, index=df.unit_id)
    t_val, c_val = dist[df.treated.to_numpy() == 1].dropna(), dist[df.treated.to_numpy() == 0].dropna()
    if discard != "none" and len(t_val) and len(c_val):
        if discard in ("control", "both"):
            assert dist[p.control_id].between(t_val.min(), t_val.max()).all()
        if discard in ("treated", "both"):
            assert dist[p.treated_id].between(c_val.min(), c_val.max()).all()
            off = t_val[(t_val < c_val.min()) | (t_val > c_val.max())].index
            reasons = m.unmatched_.set_index("unit_id").unmatched_reason
            assert (reasons.loc[off] == "off_support").all()
    else:
        assert m.n_discarded_treated_ == m.n_discarded_controls_ == 0


def test_unmatched_reasons():
    df = pd.DataFrame({
        "unit_id": ["t1", "t2", "t3", "t4", "c1", "c2"],
        "treated": [1, 1, 1, 1, 0, 0],
        "g": ["a", "a", "b", "c", "a", "b"],
        "x": [1.0, 1.05, 5.0, 1.0, 1.0, 9.0],
    })
    df.loc[3, "x"] = np.nan
    m = Matcher(exact=["g"], on="x", caliper=0.5, caliper_scale="absolute").fit(df)
    reasons = dict(zip(m.unmatched_.unit_id, m.unmatched_.unmatched_reason, strict=True))
    assert reasons == {"t2": "controls_taken", "t3": "no_control_within_caliper", "t4": "missing_value"}
    assert m.pairs_.to_dict("records") == [{"treated_id": "t1", "control_id": "c1", "subclass": 1, "distance": 0.0}]
    df.loc[3, ["x", "g"]] = [1.0, "z"]
    m.fit(df)
    assert dict(zip(m.unmatched_.unit_id, m.unmatched_.unmatched_reason, strict=True))["t4"] == "no_control_in_stratum"


def test_weights_and_subclasses_with_reuse():
    df = pd.DataFrame({
        "unit_id": ["t1", "t2", "c1", "c2", "c3"],
        "treated": [1, 1, 0, 0, 0],
        "x": [0.0, 10.0, 0.1, 0.2, 9.0],
    })
    m = Matcher(on="x", caliper=None, ratio=2, replace=True).fit(df)
    # t1 takes c1, c2; t2 takes c3 then c2 (nearer than c1)
    assert pair_set(m) == {("t1", "c1"), ("t1", "c2"), ("t2", "c3"), ("t2", "c2")}
    # one row per (unit, matched set): c2 serves both sets, once in each, with that set's share
    rows = sorted(zip(m.matched_.unit_id, m.matched_.subclass, m.matched_.weight, strict=True))
    assert rows == [("c1", 1, 0.5), ("c2", 1, 0.5), ("c2", 2, 0.5), ("c3", 2, 0.5), ("t1", 1, 1.0), ("t2", 2, 1.0)]
    assert m.matched_.groupby("unit_id").weight.sum().to_dict() == {"t1": 1.0, "t2": 1.0, "c1": 0.5, "c2": 1.0,
                                                                   "c3": 0.5}
    assert m.n_controls_matched_ == 3 and m.n_control_persons_ == 3
    assert m.reuse_.as_dict() == {"persons_once": 2, "persons_reused": 1, "max_uses": 2, "share_rows_reused": 0.5}


def test_sd_caliper_uses_pooled_sd_and_log1p():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"unit_id": range(300), "treated": np.r_[np.ones(100, int), np.zeros(200, int)],
                       "cost": rng.gamma(2, 300, 300)})
    m = Matcher(on="cost", transform="log1p", caliper=0.2).fit(df)
    lx = np.log1p(df.cost.to_numpy())
    pooled = np.sqrt((lx[:100].var(ddof=1) + lx[100:].var(ddof=1)) / 2)
    assert m.caliper_width_ == pytest.approx(0.2 * pooled)
    t = df.set_index("unit_id").loc[m.pairs_.treated_id, "cost"].to_numpy()
    c = df.set_index("unit_id").loc[m.pairs_.control_id, "cost"].to_numpy()
    np.testing.assert_allclose(m.pairs_.distance, np.abs(np.log1p(t) - np.log1p(c)))


def test_relative_caliper_on_raw_values():
    df = pd.DataFrame({"unit_id": ["t1", "t2", "c1", "c2"], "treated": [1, 1, 0, 0],
                       "cost": [100.0, 1000.0, 109.0, 1150.0]})
    m = Matcher(on="cost", transform="log1p", caliper=0.1, caliper_scale="relative").fit(df)
    assert pair_set(m) == {("t1", "c1")}  # 1150 is 15 % above 1000


# ------------------------------------------------------------------ parameters, sklearn API
@pytest.mark.parametrize("params, message", [
    ({"caliper": -0.2}, "The 'caliper' parameter of Matcher must be a float > 0 or None. Got -0.2 instead."),
    ({"ratio": 0}, "The 'ratio' parameter of Matcher must be an int >= 1. Got 0 instead."),
    ({"method": "knn"}, "The 'method' parameter of Matcher must be a str among ['nearest', 'optimal', 'propensity', 'cem']. Got 'knn' instead."),
    ({"transform": "log"}, "The 'transform' parameter of Matcher must be a str among ['none', 'log1p']. Got 'log' instead."),
    ({"order": "first"}, "The 'order' parameter of Matcher must be a str among ['closest', 'data', 'random', 'largest', 'smallest']. Got 'first' instead."),
    ({"max_reuse": 2}, "The 'max_reuse' parameter of Matcher must be 0 when replace=False"),
    ({"exact": "s1"}, "The 'exact' parameter of Matcher must be a list of column names or None. Got 's1' instead."),
    ({"caliper_scale": "pct"}, "The 'caliper_scale' parameter of Matcher must be a str among"),
])
def test_parameter_validation_messages(params, message):
    df = random_table(0, 5, 10, 2)
    with pytest.raises(ValueError) as err:
        Matcher(on="x", **params).fit(df)
    assert str(err.value).startswith(message)


def test_optimal_capped_reuse_with_ratio_is_refused():
    df = random_table(0, 5, 10, 2)
    with pytest.raises(ValueError, match="The 'max_reuse' parameter of Matcher must be 0 with method='optimal' and ratio > 1"):
        Matcher(method="optimal", on="x", ratio=2, replace=True, max_reuse=2).fit(df)
    Matcher(method="optimal", on="x", caliper=None, ratio=1, replace=True, max_reuse=2).fit(df)


def test_data_validation_messages():
    df = random_table(0, 5, 10, 2)
    with pytest.raises(ValueError, match=r"column\(s\) \['nope'\] not found"):
        Matcher(on="x", exact=["nope"]).fit(df)
    with pytest.raises(ValueError, match="must be unique; 1 duplicated"):
        Matcher(on="x").fit(pd.concat([df, df.iloc[:1]]))
    with pytest.raises(ValueError, match="must hold 0/1; 1 of"):
        Matcher(on="x").fit(df.assign(treated=df.treated.where(df.index != 0, 2)))
    with pytest.raises(ValueError, match="needs non-negative values of 'x'"):
        Matcher(on="x", transform="log1p").fit(df.assign(x=-1.0))


def test_init_only_stores_and_sklearn_api():
    m = Matcher(caliper=-5, ratio="x")  # no validation before fit
    assert m.get_params()["caliper"] == -5
    m = Matcher(on="x", exact=["s1"], ratio=2, caliper=0.3)
    c = clone(m)
    assert c.get_params() == m.get_params() and c is not m
    df = random_table(1, 20, 60, 2)
    m.set_params(ratio=1).fit(df)
    assert m.pairs_.treated_id.value_counts().max() == 1
    assert m.fit(df) is m


@pytest.mark.parametrize("method", ["nearest", "optimal", "propensity", "cem"])
def test_deterministic_for_a_seed(method):
    df = random_table(5, 40, 120, 3, ties=True)
    kw = dict(method=method, exact=["s1"], on="x", caliper=0.5, ratio=2, order="random")
    a = Matcher(seed=7, **kw).fit(df).pairs_
    b = Matcher(seed=7, **kw).fit(df).pairs_
    pd.testing.assert_frame_equal(a, b)


def test_random_order_depends_on_seed():
    df = random_table(5, 60, 80, 1, ties=True)
    runs = {tuple(map(tuple, Matcher(on="x", caliper=0.01, caliper_scale="absolute", order="random",
                                     seed=s).fit(df).pairs_[["treated_id", "control_id"]].to_numpy()))
            for s in range(5)}
    assert len(runs) > 1


def test_propensity_default_caliper_and_strata():
    rng = np.random.default_rng(0)
    n = 2000
    df = pd.DataFrame({"unit_id": range(n), "g": rng.integers(0, 4, n), "age": rng.normal(70, 10, n),
                       "cost": rng.gamma(2, 300, n)})
    logit = -2 + 0.05 * (df.age - 70) + 0.001 * df.cost
    df["treated"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    m = Matcher(method="propensity", exact=["g"], on="cost", ps_covariates=["age", "cost", "g"]).fit(df)
    ps = m.ps_model_.decision_function(m.ps_design_.transform(df))
    pooled = np.sqrt((ps[df.treated == 1].var(ddof=1) + ps[df.treated == 0].var(ddof=1)) / 2)
    assert m.caliper_width_ == pytest.approx(0.2 * pooled)
    by = df.set_index("unit_id")
    assert (by.loc[m.pairs_.treated_id, "g"].to_numpy() == by.loc[m.pairs_.control_id, "g"].to_numpy()).all()
    assert m.n_treated_matched_ > 0.5 * m.n_treated_


def test_cem_weights():
    df = pd.DataFrame({
        "unit_id": list("abcdefg"), "treated": [1, 1, 0, 0, 0, 1, 0], "g": [0, 0, 0, 0, 0, 1, 2],
        "x": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    })
    m = Matcher(method="cem", exact=["g"], on="x", cem_bins=3).fit(df)
    # one matched cell with 2 treated, 3 controls; weights (m_T^s/m_C^s)·(m_C/m_T) = (2/3)·(3/2) = 1
    assert set(m.unmatched_.unit_id) == {"f"}
    assert m.matched_.set_index("unit_id").weight.to_dict() == pytest.approx(
        {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1})
    assert len(m.pairs_) == 6


def test_matcher_from_config_wires_risk_sets():
    from matching.study import matcher_from_config, reuse_sizes
    from pipeline.config import load_config

    p = matcher_from_config(load_config()).get_params()
    assert (p["person"], p["period"], p["time_zero"], p["at_risk_until"]) == (
        "person_id", "index_quarter", "index_date", "at_risk_until")
    cfg = load_config().with_overrides({"matching": {"time_zero": "candidate_index", "period": ""}})
    p = matcher_from_config(cfg).get_params()
    assert (p["person"], p["period"], p["time_zero"], p["at_risk_until"]) == ("person_id", None, None, None)
    # reuse statistics for params.json: counts of persons below the small-cell threshold are masked
    df = pd.DataFrame({"unit_id": ["t1", "t2", "c1", "c2", "c3"], "treated": [1, 1, 0, 0, 0],
                       "x": [0.0, 10.0, 0.1, 0.2, 9.0]})
    m = Matcher(on="x", caliper=None, ratio=2, replace=True).fit(df)
    assert reuse_sizes(m, 1) == {"control_persons_matched": 3, "control_persons_used_once": 2,
                                 "control_persons_reused": 1, "control_max_uses": 2,
                                 "control_rows_share_from_reused": 0.5}
    assert reuse_sizes(m, 10) == {"control_persons_matched": None, "control_persons_used_once": None,
                                  "control_persons_reused": None, "control_max_uses": 2,
                                  "control_rows_share_from_reused": None}


def test_comparable_controls_in_any_period():
    """``n_comparable_any_period`` counts candidate controls with the unmatched patient's profile and a
    distance within its caliper in ANY period: a patient whose comparable candidates are in other periods
    only has a counterpart (unmatched at its time zero, but not "without comparable control"); a patient
    whose value no control of its profile approaches has none. The indicator counts only the latter."""
    from matching.profiles import unmatched_indicator

    df = pd.DataFrame({
        "unit_id": ["t1", "t2", "t3", "c1", "c2", "c3", "c4"],
        "treated": [1, 1, 1, 0, 0, 0, 0],
        "q": ["q1", "q1", "q1", "q2", "q2", "q1", "q1"],
        "g": ["a", "a", "b", "a", "a", "a", "b"],
        "x": [1.0, 5.0, 2.0, 1.2, 9.0, 3.0, 2.1],
    })
    m = Matcher(exact=["g"], period="q", on="x", caliper=0.5, caliper_scale="absolute").fit(df)
    assert pair_set(m) == {("t3", "c4")}
    u = m.unmatched_.set_index("unit_id")
    assert u.unmatched_reason.to_dict() == {"t1": "no_control_within_caliper", "t2": "no_control_within_caliper"}
    # t1: c1 (other period, 0.2 away); t2: c2 is 4 away, c3 2 away -> nothing comparable; group b is not a
    assert u.n_comparable_any_period.to_dict() == {"t1": 1, "t2": 0}
    assert m.profile_columns == ["g"]

    treated = pd.DataFrame({"complex": [1, 1, 1]})
    unmatched = np.array([True, True, False])
    rec = unmatched_indicator(treated, unmatched, ["complex"], 0, None, "test",
                              no_comparable=np.array([False, True, False]))
    assert rec.value == pytest.approx(1 / 3)
    assert rec.arm_values["complex_unmatched_any_reason"] == pytest.approx(2 / 3)
    # without the mask every unmatched patient counts (the matcher's plain unmatched share)
    assert unmatched_indicator(treated, unmatched, ["complex"], 0, None, "test").value == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_comparable_counts_equal_a_brute_force_count(seed):
    from matching.support import comparable_counts

    rng = np.random.default_rng(seed)
    n = 400
    codes = rng.integers(-1, 6, n)
    value = np.round(rng.normal(5, 2, n), 1)  # ties, and bounds that fall on values
    value[rng.random(n) < 0.05] = np.nan
    control = rng.random(n) < 0.8
    rows = np.flatnonzero(~control)
    w = rng.choice([0.0, 0.3, 1.0, np.inf], len(rows))
    low, high = value[rows] - w, value[rows] + w
    got = comparable_counts(codes, value, control, rows, low, high)
    want = [0 if codes[r] < 0 or np.isnan(lo) else int(np.sum(control & (codes == codes[r]) & (value >= lo)
                                                              & (value <= hi)))
            for r, lo, hi in zip(rows, low, high, strict=True)]
    assert got.tolist() == want
