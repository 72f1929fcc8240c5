"""Risk-set matching: person capacity across periods, time zero, optimal's lexicographic objective, the
one-row-per-(unit, matched set) layout of ``matched_`` — against brute-force references and as properties."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matching import Matcher
from matching.balance import kish_ess

QUARTERS = ["2021Q1", "2021Q2", "2021Q3"]
STARTS = pd.to_datetime(["2021-01-01", "2021-04-01", "2021-07-01"])
ALIVE = pd.Timestamp("2023-12-31")
RISK_SET = dict(person="person_id", period="index_quarter", time_zero="index_date", at_risk_until="at_risk_until")


def risk_set_table(seed: int, n_t: int, n_persons: int, n_periods: int, n_strata: int = 2,
                   death_share: float = 0.4) -> pd.DataFrame:
    """Treated rows at inclusion; each control person has one candidate row per quarter it is alive at
    the quarter start (some quarters skipped), index_date = quarter start, at_risk_until = death or study
    end — the layout of the cohort table (docs/CONTRACTS.md §2)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_t):
        q = int(rng.integers(n_periods))
        day = STARTS[q] + pd.Timedelta(days=int(rng.integers(0, 90)))
        rows.append({"unit_id": f"t{i}", "person_id": f"T{i}", "treated": 1, "index_quarter": QUARTERS[q],
                     "index_date": day, "at_risk_until": day, "s": int(rng.integers(n_strata)),
                     "x": float(rng.normal())})
    for p in range(n_persons):
        dies = rng.random() < death_share
        death = STARTS[0] + pd.Timedelta(days=int(rng.integers(0, 90 * n_periods))) if dies else ALIVE
        for q in range(n_periods):
            if STARTS[q] > death or rng.random() < 0.25:
                continue
            rows.append({"unit_id": f"p{p}@{q}", "person_id": f"p{p}", "treated": 0,
                         "index_quarter": QUARTERS[q], "index_date": STARTS[q], "at_risk_until": death,
                         "s": int(rng.integers(n_strata)), "x": float(rng.normal())})
    frame = pd.DataFrame(rows, columns=["unit_id", "person_id", "treated", "index_quarter", "index_date",
                                        "at_risk_until", "s", "x"])
    frame = frame.astype({"treated": int, "index_date": "datetime64[ns]", "at_risk_until": "datetime64[ns]",
                          "s": int, "x": float})
    return frame.sample(frac=1, random_state=seed).reset_index(drop=True)


def valid_edges(t: pd.DataFrame, c: pd.DataFrame, width: float | None):
    for tr in t.itertuples():
        for cr in c.itertuples():
            d = abs(tr.x - cr.x)
            if tr.s == cr.s and (width is None or d <= width) and cr.at_risk_until >= tr.index_date:
                yield tr, cr, d


def naive_risk_set_greedy(df: pd.DataFrame, width: float | None, ratio: int, capacity: int) -> set[tuple[str, str]]:
    """Sequential greedy, closest pair first, written from the definition: quarter by quarter, all
    admissible edges sorted by distance, a person skipped once it served ``capacity`` sets."""
    uses: Counter = Counter()
    got: dict[str, list[str]] = {}
    for q in sorted(df.index_quarter.unique()):
        t = df[(df.treated == 1) & (df.index_quarter == q)]
        c = df[(df.treated == 0) & (df.index_quarter == q)]
        for rnd in range(ratio):
            edges = sorted((d, tr.Index, cr.Index, tr.unit_id, cr.unit_id, cr.person_id)
                           for tr, cr, d in valid_edges(t, c, width)
                           if len(got.get(tr.unit_id, [])) == rnd and cr.unit_id not in got.get(tr.unit_id, []))
            done = set()
            for *_, ti, ci, pi in edges:
                if ti in done or (capacity and uses[pi] >= capacity):
                    continue
                got.setdefault(ti, []).append(ci)
                uses[pi] += 1
                done.add(ti)
    return {(ti, ci) for ti, cs in got.items() for ci in cs}


def brute_risk_set_optimal(df: pd.DataFrame, width: float | None, ratio: int) -> dict[str, tuple[int, int, float]]:
    """Per quarter, in order, the best (treated matched, pairs, total distance) — most treated, then most
    pairs, then least distance — over every assignment of disjoint control persons still unused."""
    used: set[str] = set()
    out = {}
    for q in sorted(df.index_quarter.unique()):
        t = df[(df.treated == 1) & (df.index_quarter == q)]
        c = df[(df.treated == 0) & (df.index_quarter == q) & ~df.person_id.isin(used)]
        cand: dict[str, list[tuple[str, float]]] = {tr: [] for tr in t.unit_id}
        for tr, cr, d in valid_edges(t, c, width):
            cand[tr.unit_id].append((cr.person_id, d))
        options = [[s for k in range(ratio + 1) for s in itertools.combinations(cs, k)] for cs in cand.values()]
        best, best_key, best_sets = (0, 0, 0.0), (0, 0, 0.0), ()
        for combo in itertools.product(*options):
            persons = [p for s in combo for p, _ in s]
            if len(persons) != len(set(persons)):
                continue
            value = (sum(1 for s in combo if s), len(persons), sum(d for s in combo for _, d in s))
            key = (value[0], value[1], -value[2])
            if key > best_key:
                best, best_key, best_sets = value, key, combo
        used |= {p for s in best_sets for p, _ in s}
        out[q] = best
    return out


def per_quarter(m: Matcher, df: pd.DataFrame) -> dict[str, tuple[int, int, float]]:
    q = df.set_index("unit_id").index_quarter
    p = m.pairs_.assign(q=q.loc[m.pairs_.treated_id].to_numpy())
    out = {}
    for quarter in sorted(df.index_quarter.unique()):
        part = p[p.q == quarter]
        out[quarter] = (part.treated_id.nunique(), len(part), float(part.distance.sum()))
    return out


def check_risk_set_invariants(m: Matcher, df: pd.DataFrame, capacity: int, width: float | None) -> None:
    by_id = df.set_index("unit_id")
    p = m.pairs_
    t, c = by_id.loc[p.treated_id], by_id.loc[p.control_id]
    assert (t.treated.to_numpy() == 1).all() and (c.treated.to_numpy() == 0).all()
    # the period is exact; the control is at risk on the treated unit's time zero
    assert (t.index_quarter.to_numpy() == c.index_quarter.to_numpy()).all()
    assert (c.at_risk_until.to_numpy() >= t.index_date.to_numpy()).all()
    assert (t.s.to_numpy() == c.s.to_numpy()).all()
    if width is not None and m.method != "cem":
        assert (p.distance <= width + 1e-12).all()
    # capacity per person, across periods; never the same person twice in one set
    sets = p.assign(person=c.person_id.to_numpy())
    if m.method == "cem":
        sets = sets.drop_duplicates(["subclass", "person"])
    uses = sets.groupby("person").subclass.nunique()
    if capacity:
        assert (uses <= capacity).all(), uses[uses > capacity]
    assert not sets.duplicated(["treated_id", "person"]).any()
    # matched_: one row per (unit, set); controls carry their set's time zero, their own kept aside
    mm = m.matched_
    ctrl = mm[mm.treated == 0]
    assert len(ctrl) == (len(p) if m.method != "cem" else p.control_id.nunique())
    assert (ctrl.candidate_index_date.to_numpy() == by_id.loc[ctrl.unit_id, "index_date"].to_numpy()).all()
    assert (ctrl.index_date.to_numpy() <= ctrl.at_risk_until.to_numpy()).all()
    if m.method != "cem":
        tz = mm[mm.treated == 1].set_index("subclass").index_date
        assert (ctrl.index_date.to_numpy() == tz.loc[ctrl.subclass].to_numpy()).all()
        assert ctrl.groupby("subclass").weight.sum().to_numpy() == pytest.approx(1.0)
    treated_rows = mm[mm.treated == 1]
    assert (treated_rows.index_date == treated_rows.candidate_index_date).all()
    # ATT weights: each set's controls weigh 1; CEM weights add up to the number of matched controls
    assert ctrl.weight.sum() == pytest.approx(m.n_treated_matched_ if m.method != "cem" else len(ctrl))
    assert m.n_control_persons_ == c.person_id.nunique()
    r = m.reuse_
    assert r.persons_once + r.persons_reused == m.n_control_persons_
    assert r.max_uses == (int(uses.max()) if len(uses) else 0)
    # every treated unit is matched or unmatched, never both
    assert set(treated_rows.unit_id).isdisjoint(m.unmatched_.unit_id)
    assert set(treated_rows.unit_id) | set(m.unmatched_.unit_id) == set(df.loc[df.treated == 1, "unit_id"])


# ------------------------------------------------------------------ brute-force references
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 100_000), n_t=st.integers(1, 10), n_persons=st.integers(0, 12),
       n_periods=st.integers(1, 3), caliper=st.sampled_from([None, 0.3, 1.0]), ratio=st.integers(1, 3),
       replace=st.booleans(), max_reuse=st.integers(0, 2))
def test_risk_set_greedy_equals_sequential_brute_force(seed, n_t, n_persons, n_periods, caliper, ratio, replace,
                                                       max_reuse):
    df = risk_set_table(seed, n_t, n_persons, n_periods)
    max_reuse = max_reuse if replace else 0
    m = Matcher(exact=["s"], on="x", caliper=caliper, caliper_scale="absolute", ratio=ratio, replace=replace,
                max_reuse=max_reuse, **RISK_SET).fit(df)
    capacity = max_reuse if replace else 1
    assert set(zip(m.pairs_.treated_id, m.pairs_.control_id, strict=True)) == \
        naive_risk_set_greedy(df, caliper, ratio, capacity)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 100_000), n_t=st.integers(1, 6), n_persons=st.integers(0, 6),
       n_periods=st.integers(1, 2), caliper=st.sampled_from([None, 0.4, 1.0]), ratio=st.integers(1, 2))
def test_risk_set_optimal_equals_sequential_brute_force(seed, n_t, n_persons, n_periods, caliper, ratio):
    df = risk_set_table(seed, n_t, n_persons, n_periods, n_strata=1)
    if (df.treated == 1).groupby(df.index_quarter).sum().max() > 3:
        df = df[(df.treated == 0) | df.unit_id.isin(df[df.treated == 1].groupby("index_quarter").head(3).unit_id)]
    m = Matcher(method="optimal", exact=["s"], on="x", caliper=caliper, caliper_scale="absolute", ratio=ratio,
                **RISK_SET).fit(df)
    expected = brute_risk_set_optimal(df, caliper, ratio)
    got = per_quarter(m, df)
    for q, (n_t_q, n_pairs, total) in expected.items():
        assert got[q][:2] == (n_t_q, n_pairs), q
        assert got[q][2] == pytest.approx(total, abs=1e-9)


# ------------------------------------------------------------------ invariants
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 100_000), n_t=st.integers(0, 20), n_persons=st.integers(0, 25),
       n_periods=st.integers(1, 3), method=st.sampled_from(["nearest", "optimal", "propensity", "cem"]),
       caliper=st.sampled_from([None, 0.2, 1.0]), ratio=st.integers(1, 3), replace=st.booleans(),
       max_reuse=st.integers(0, 3), order=st.sampled_from(["closest", "data", "random", "largest", "smallest"]))
def test_risk_set_invariants(seed, n_t, n_persons, n_periods, method, caliper, ratio, replace, max_reuse, order):
    """Several rows per person: a person serves at most one set without replacement (at most max_reuse
    with), a control is always at risk on its treated unit's time zero, the caliper is never exceeded."""
    df = risk_set_table(seed, n_t, n_persons, n_periods)
    max_reuse = max_reuse if replace else 0
    if method == "optimal" and ratio > 1 and max_reuse:
        max_reuse = 0  # refused (see test_matching_core)
    m = Matcher(method=method, exact=["s"], on="x", caliper=caliper, caliper_scale="absolute", ratio=ratio,
                replace=replace, max_reuse=max_reuse, order=order, seed=seed, cem_bins=2, **RISK_SET)
    if method == "propensity" and (n_t == 0 or (df.treated == 0).sum() == 0):
        with pytest.raises(ValueError, match="treated and control rows"):
            m.fit(df)
        return
    m.fit(df)
    capacity = max_reuse if replace else 1
    width = None if method == "propensity" else caliper
    check_risk_set_invariants(m, df, capacity, width)
    if method == "propensity" and caliper is not None:
        assert (m.pairs_.distance <= m.caliper_width_ + 1e-12).all()
    counts = m.period_counts_.set_index("index_quarter")
    assert counts.treated.sum() == n_t and counts.treated_matched.sum() == m.n_treated_matched_
    assert (counts.control_rows_available <= counts.control_rows).all()
    assert (counts.controls_matched <= counts.control_rows_available).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 100_000), n_t=st.integers(1, 14), n_persons=st.integers(0, 30),
       n_strata=st.integers(1, 3), caliper=st.sampled_from([0.1, 0.3, 0.65, 2.0]), ratio=st.integers(1, 4))
def test_optimal_never_matches_fewer_treated_than_greedy(seed, n_t, n_persons, n_strata, caliper, ratio):
    """One risk set (one period): optimal maximises the treated matched first, so it never matches fewer
    than greedy nearest; neither exceeds the caliper nor uses a person twice."""
    df = risk_set_table(seed, n_t, n_persons, 1, n_strata=n_strata)
    kw = dict(exact=["s"], on="x", caliper=caliper, caliper_scale="absolute", ratio=ratio, **RISK_SET)
    greedy = Matcher(**kw).fit(df)
    opt = Matcher(method="optimal", **kw).fit(df)
    assert opt.n_treated_matched_ >= greedy.n_treated_matched_
    if opt.n_treated_matched_ == greedy.n_treated_matched_:
        assert opt.n_pairs_ >= greedy.n_pairs_
        if opt.n_pairs_ == greedy.n_pairs_:
            assert opt.pairs_.distance.sum() <= greedy.pairs_.distance.sum() + 1e-9
    for m in (greedy, opt):
        check_risk_set_invariants(m, df, 1, caliper)


# ------------------------------------------------------------------ known answers
def test_optimal_matches_patients_first():
    """Ratio 2: optimal used to give both controls to A (fewer distance, same number of pairs) and leave
    B unmatched; the most treated matched comes first now."""
    df = pd.DataFrame({"unit_id": ["A", "B", "c1", "c2"], "treated": [1, 1, 0, 0], "x": [0.0, 0.9, 0.05, 0.3]})
    kw = dict(on="x", ratio=2, caliper=0.65, caliper_scale="absolute")
    expected = {("A", "c1"), ("B", "c2")}
    for method in ("nearest", "optimal"):
        m = Matcher(method=method, **kw).fit(df)
        assert set(zip(m.pairs_.treated_id, m.pairs_.control_id, strict=True)) == expected, method
        assert m.n_unmatched_ == 0 and m.n_partial_ == 2


def test_optimal_prefers_more_controls_at_equal_treated():
    # A can take c1 and c2; B only c2. Both matched either way: A–c1, B–c2 (2 pairs) beats nothing
    # better; adding c3 (only A) gives A two controls without unmatching B: 3 pairs > 2
    df = pd.DataFrame({"unit_id": ["A", "B", "c1", "c2", "c3"], "treated": [1, 1, 0, 0, 0],
                       "x": [0.0, 0.9, 0.05, 0.3, -0.6]})
    m = Matcher(method="optimal", on="x", ratio=2, caliper=0.65, caliper_scale="absolute").fit(df)
    assert set(zip(m.pairs_.treated_id, m.pairs_.control_id, strict=True)) == {("A", "c1"), ("A", "c3"), ("B", "c2")}


def quarter_frame(rows: list[tuple]) -> pd.DataFrame:
    cols = ["unit_id", "person_id", "treated", "index_quarter", "index_date", "at_risk_until", "x"]
    df = pd.DataFrame(rows, columns=cols)
    df["index_date"] = pd.to_datetime(df.index_date)
    df["at_risk_until"] = pd.to_datetime(df.at_risk_until)
    return df


@pytest.mark.parametrize("method", ["nearest", "optimal", "propensity"])
def test_control_dead_before_index_is_never_matched_to_it(method):
    """p1 dies on 1 March: it cannot serve t_late (15 March) although it is the closest, but it serves
    t_early (1 February) of the same quarter."""
    df = quarter_frame([
        ("t_late", "T1", 1, "2021Q1", "2021-03-15", "2021-03-15", 0.0),
        ("t_early", "T2", 1, "2021Q1", "2021-02-01", "2021-02-01", 1.0),
        ("p1@Q1", "p1", 0, "2021Q1", "2021-01-01", "2021-03-01", 0.01),
        ("p2@Q1", "p2", 0, "2021Q1", "2021-01-01", "2023-12-31", 0.5),
    ])
    m = Matcher(method=method, on="x", caliper=None, **RISK_SET).fit(df)
    pairs = set(zip(m.pairs_.treated_id, m.pairs_.control_id, strict=True))
    assert ("t_late", "p1@Q1") not in pairs
    assert pairs == {("t_late", "p2@Q1"), ("t_early", "p1@Q1")}
    # without the time-zero constraint the dead control would have been taken by t_late
    free = Matcher(method="nearest", on="x", caliper=None, person="person_id", period="index_quarter").fit(df)
    assert ("t_late", "p1@Q1") in set(zip(free.pairs_.treated_id, free.pairs_.control_id, strict=True))


def test_no_control_at_risk_reason():
    df = quarter_frame([
        ("t1", "T1", 1, "2021Q1", "2021-03-15", "2021-03-15", 0.0),
        ("p1@Q1", "p1", 0, "2021Q1", "2021-01-01", "2021-02-01", 0.01),
    ])
    m = Matcher(on="x", caliper=None, **RISK_SET).fit(df)
    row = m.unmatched_.iloc[0]
    assert (row.unmatched_reason, row.n_controls_within_caliper, row.n_controls_at_risk) == ("no_control_at_risk", 1, 0)


def test_matched_controls_carry_the_treated_index_date():
    df = quarter_frame([
        ("t1", "T1", 1, "2021Q1", "2021-02-10", "2021-02-10", 0.0),
        ("t2", "T2", 1, "2021Q1", "2021-03-20", "2021-03-20", 1.0),
        ("p1@Q1", "p1", 0, "2021Q1", "2021-01-01", "2023-12-31", 0.1),
        ("p2@Q1", "p2", 0, "2021Q1", "2021-01-01", "2023-12-31", 1.1),
    ])
    m = Matcher(on="x", caliper=None, **RISK_SET).fit(df)
    mm = m.matched_.set_index("unit_id")
    assert list(m.matched_.columns[:6]) == ["unit_id", "person_id", "treated", "index_quarter", "index_date",
                                            "candidate_index_date"]
    assert mm.loc["p1@Q1", "index_date"] == pd.Timestamp("2021-02-10")
    assert mm.loc["p2@Q1", "index_date"] == pd.Timestamp("2021-03-20")
    assert (mm.loc[["p1@Q1", "p2@Q1"], "candidate_index_date"] == pd.Timestamp("2021-01-01")).all()
    assert mm.loc["t1", "candidate_index_date"] == pd.Timestamp("2021-02-10")
    assert m.matched_.index_date.dtype == df.index_date.dtype
    # the input frame is left untouched
    assert (df.loc[df.treated == 0, "index_date"] == pd.Timestamp("2021-01-01")).all()


def test_dates_as_python_date_objects():
    df = quarter_frame([
        ("t1", "T1", 1, "2021Q1", "2021-02-10", "2021-02-10", 0.0),
        ("p1@Q1", "p1", 0, "2021Q1", "2021-01-01", "2021-02-01", 0.1),
        ("p2@Q1", "p2", 0, "2021Q1", "2021-01-01", "2023-12-31", 0.9),
    ])
    df["index_date"] = df.index_date.dt.date
    df["at_risk_until"] = df.at_risk_until.dt.date
    m = Matcher(on="x", caliper=None, **RISK_SET).fit(df)
    assert m.pairs_.control_id.tolist() == ["p2@Q1"]
    assert m.matched_.set_index("unit_id").loc["p2@Q1", "index_date"] == pd.Timestamp("2021-02-10").date()


@pytest.mark.parametrize("method", ["nearest", "optimal", "cem"])
def test_person_used_in_one_period_is_unavailable_later(method):
    """Sequential risk sets: p1 serves t1 in Q1, so t2 (Q2) gets p2 although p1's Q2 row is closer."""
    df = quarter_frame([
        ("t1", "T1", 1, "2021Q1", "2021-02-01", "2021-02-01", 0.0),
        ("t2", "T2", 1, "2021Q2", "2021-05-01", "2021-05-01", 0.0),
        ("p1@Q1", "p1", 0, "2021Q1", "2021-01-01", "2023-12-31", 0.0),
        ("p1@Q2", "p1", 0, "2021Q2", "2021-04-01", "2023-12-31", 0.0),
        ("p2@Q2", "p2", 0, "2021Q2", "2021-04-01", "2023-12-31", 0.05),
    ])
    m = Matcher(method=method, on="x", caliper=None, cem_bins=1, **RISK_SET).fit(df)
    assert set(zip(m.pairs_.treated_id, m.pairs_.control_id, strict=True)) == {("t1", "p1@Q1"), ("t2", "p2@Q2")}
    counts = m.period_counts_.set_index("index_quarter")
    assert counts.control_rows.tolist() == [1, 2] and counts.control_rows_available.tolist() == [1, 1]
    # without the person column the two rows of p1 are independent units and p1 serves both quarters
    free = Matcher(method=method, on="x", caliper=None, cem_bins=1, period="index_quarter").fit(df)
    assert ("t2", "p1@Q2") in set(zip(free.pairs_.treated_id, free.pairs_.control_id, strict=True))
    # with replacement capped at 2 uses, p1 serves both
    if method != "cem":
        reuse = Matcher(method=method, on="x", caliper=None, replace=True, max_reuse=2, **RISK_SET).fit(df)
        assert set(reuse.pairs_.control_id) == {"p1@Q1", "p1@Q2"}
        assert reuse.reuse_.as_dict() == {"persons_once": 0, "persons_reused": 1, "max_uses": 2,
                                          "share_rows_reused": 1.0}


def test_max_reuse_is_per_person_across_periods():
    rows = []
    for q, start in enumerate(["2021-01-01", "2021-04-01", "2021-07-01"]):
        day = (pd.Timestamp(start) + pd.Timedelta(days=10)).strftime("%Y-%m-%d")
        rows.append((f"t{q}", f"T{q}", 1, QUARTERS[q], day, day, 0.0))
        rows.append((f"p1@{q}", "p1", 0, QUARTERS[q], start, "2023-12-31", 0.0))
        rows.append((f"p2@{q}", "p2", 0, QUARTERS[q], start, "2023-12-31", 0.5))
    df = quarter_frame(rows)
    m = Matcher(on="x", caliper=None, replace=True, max_reuse=2, **RISK_SET).fit(df)
    assert m.pairs_.control_id.tolist() == ["p1@0", "p1@1", "p2@2"]
    assert m.reuse_.max_uses == 2 and m.n_control_persons_ == 2
    unlimited = Matcher(on="x", caliper=None, replace=True, **RISK_SET).fit(df)
    assert unlimited.pairs_.control_id.tolist() == ["p1@0", "p1@1", "p1@2"]


def test_greedy_without_period_removes_every_row_of_a_used_person():
    # no period: p1's two rows sit in one stratum; once p1 served t1, its other row is gone too
    df = quarter_frame([
        ("t1", "T1", 1, "2021Q1", "2021-02-01", "2021-02-01", 0.0),
        ("t2", "T2", 1, "2021Q1", "2021-02-01", "2021-02-01", 0.1),
        ("p1@Q1", "p1", 0, "2021Q1", "2021-01-01", "2023-12-31", 0.0),
        ("p1@Q2", "p1", 0, "2021Q2", "2021-04-01", "2023-12-31", 0.1),
        ("p2@Q1", "p2", 0, "2021Q1", "2021-01-01", "2023-12-31", 0.3),
    ])
    m = Matcher(on="x", caliper=None, person="person_id").fit(df)
    assert set(zip(m.pairs_.treated_id, m.pairs_.control_id, strict=True)) == {("t1", "p1@Q1"), ("t2", "p2@Q1")}
    # with unlimited reuse a set still never holds one person twice
    m = Matcher(on="x", caliper=None, person="person_id", replace=True, ratio=2).fit(df)
    sets = m.pairs_.assign(person=m.pairs_.control_id.str.split("@").str[0])
    assert not sets.duplicated(["treated_id", "person"]).any()
    assert set(sets[sets.treated_id == "t1"].control_id) == {"p1@Q1", "p2@Q1"}


def test_cem_time_zero_is_the_lower_median_of_its_treated():
    df = quarter_frame([
        ("t1", "T1", 1, "2021Q1", "2021-01-20", "2021-01-20", 0.0),
        ("t2", "T2", 1, "2021Q1", "2021-02-20", "2021-02-20", 0.0),
        ("t3", "T3", 1, "2021Q1", "2021-03-20", "2021-03-20", 0.0),
        ("p1@Q1", "p1", 0, "2021Q1", "2021-01-01", "2023-12-31", 0.0),
        ("p2@Q1", "p2", 0, "2021Q1", "2021-01-01", "2021-03-01", 0.0),
    ])
    m = Matcher(method="cem", on="x", cem_bins=1, **RISK_SET).fit(df)
    assert len(m.pairs_) == 5  # p2 is dead on 20 March: no (t3, p2) pair
    mm = m.matched_.set_index("unit_id")
    assert mm.loc["p1@Q1", "index_date"] == pd.Timestamp("2021-02-20")  # median of 3 dates
    assert mm.loc["p2@Q1", "index_date"] == pd.Timestamp("2021-01-20")  # lower median of 2
    assert mm.loc[["p1@Q1", "p2@Q1"], "weight"].tolist() == pytest.approx([1.0, 1.0])


# ------------------------------------------------------------------ balance with rows repeated per set
def test_balance_counts_each_unit_once():
    """With reuse, matched_ repeats a control once per set; balance and ESS use its summed weight."""
    rng = np.random.default_rng(4)
    n = 300
    df = pd.DataFrame({"unit_id": [f"u{i}" for i in range(n)], "treated": (rng.random(n) < 0.4).astype(int),
                       "age": rng.normal(75, 8, n).round()})
    df["x"] = rng.gamma(2, 1, n) + 0.5 * df.treated
    m = Matcher(on="x", ratio=3, replace=True, caliper=0.5).fit(df)
    assert m.matched_.unit_id.duplicated().any()
    units = m.matched_.groupby("unit_id", sort=False).agg(treated=("treated", "first"), x=("x", "first"),
                                                         age=("age", "first"), weight=("weight", "sum"))
    c, t = units[units.treated == 0], units[units.treated == 1]
    bal = m.balance(["x", "age"]).query("stage == 'after'").set_index("covariate")
    for cov in ("x", "age"):
        var_t, var_c = np.cov(t[cov], aweights=t.weight), np.cov(c[cov], aweights=c.weight)
        assert bal.loc[cov, "variance_ratio"] == pytest.approx(var_t / var_c, rel=1e-9)
        assert bal.loc[cov, "mean_control"] == pytest.approx(np.average(c[cov], weights=c.weight), rel=1e-12)
        assert bal.loc[cov, "n_control"] == len(c)
    assert bal.loc["x", "ess_control"] == pytest.approx(kish_ess(c.weight.to_numpy()))
    sizes = m.summary(["x"]).summary_frame().set_index("sample")
    assert sizes.loc["controls (effective, Kish)", "after"] == round(kish_ess(c.weight.to_numpy()), 1)
    assert sizes.loc["control persons", "after"] == m.n_control_persons_ == len(c)


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("params, message", [
    ({"person": 3}, "The 'person' parameter of Matcher must be a column name (str) or None. Got 3 instead."),
    ({"period": ""}, "The 'period' parameter of Matcher must be a column name (str) or None. Got '' instead."),
    ({"time_zero": "index_date"}, "The 'at_risk_until' parameter of Matcher must be a column name when time_zero "
                                  "is set (both or neither). Got None instead."),
    ({"at_risk_until": "at_risk_until"}, "The 'time_zero' parameter of Matcher must be a column name when "
                                         "at_risk_until is set (both or neither). Got None instead."),
])
def test_parameter_messages(params, message):
    df = risk_set_table(0, 4, 6, 2)
    with pytest.raises(ValueError) as err:
        Matcher(on="x", **params).fit(df)
    assert str(err.value) == message


def test_data_messages():
    df = risk_set_table(1, 4, 6, 2)
    dup = pd.concat([df, df[df.treated == 0].head(1).assign(unit_id="dup")], ignore_index=True)
    with pytest.raises(ValueError, match=r"1 person\(s\) \('person_id'\) have several control rows in one period"):
        Matcher(on="x", **RISK_SET).fit(dup)
    with pytest.raises(ValueError, match=r"method='optimal'.*several control rows and period=None.*Set period="):
        Matcher(method="optimal", on="x", person="person_id").fit(df)
    with pytest.raises(ValueError, match=r"method='cem'.*Set period="):
        Matcher(method="cem", on="x", person="person_id").fit(df)
    Matcher(method="nearest", on="x", caliper=None, person="person_id").fit(df)  # greedy handles it
    Matcher(method="optimal", on="x", caliper=None, person="person_id", replace=True).fit(df)  # unlimited reuse: greedy
    with pytest.raises(ValueError, match="the time_zero column 'x' must hold dates"):
        Matcher(on="x", time_zero="x", at_risk_until="at_risk_until").fit(df)
    with pytest.raises(ValueError, match="person column 'person_id' is missing on 1 of"):
        Matcher(on="x", person="person_id").fit(df.assign(person_id=df.person_id.where(df.unit_id != "p0@0")))
    with pytest.raises(ValueError, match="already has a column 'candidate_index_date'"):
        Matcher(on="x", **RISK_SET).fit(df.assign(candidate_index_date=df.index_date))


def test_missing_time_zero_and_missing_at_risk_date():
    df = quarter_frame([
        ("t1", "T1", 1, "2021Q1", None, None, 0.0),
        ("t2", "T2", 1, "2021Q1", "2021-02-01", "2021-02-01", 0.0),
        ("p1@Q1", "p1", 0, "2021Q1", "2021-01-01", None, 0.0),
        ("p2@Q1", "p2", 0, "2021Q1", "2021-01-01", "2023-12-31", 0.2),
    ])
    m = Matcher(on="x", caliper=None, **RISK_SET).fit(df)
    assert m.pairs_.control_id.tolist() == ["p2@Q1"]  # a control without an at-risk date cannot match
    assert m.unmatched_.set_index("unit_id").unmatched_reason.to_dict() == {"t1": "missing_value"}
