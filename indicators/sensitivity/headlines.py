"""The unmeasured-confounding and power reading of each headline effect, on the headline's own matched
analysis (:class:`indicators.analysis.MatchedAnalysis`: same matched sets, time zero, windows and
bootstrap replicates as ``indicators/indicators.json``).

Each headline of :data:`indicators.headline.HEADLINE_IDS` is read on a ratio scale (for its E-value
and MDRR) and, when it is a difference, on its own scale too:

=================================== ============================== ========================= =================
headline                            ratio (treated / control)      E-value from              Rosenbaum test
=================================== ============================== ========================= =================
eol_hosp_rate (r − 1)               share hospitalised, decedents  the ratio                 McNemar, decedent pairs
eol_spending_difference (t − c)     end-of-life spending           difference / outcome SD   signed rank, decedent pairs
avoided_spending_share (1 − r)      spending per patient-year      the ratio                 signed rank, all sets
avoided_spending_per_patient_year   spending per patient-year      difference / outcome SD   signed rank, all sets
=================================== ============================== ========================= =================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from indicators.analysis import MatchedAnalysis, quotient, ratio
from indicators.headline import HEADLINE_IDS, headline_statistics
from indicators.sensitivity.evalues import EValue, evalue_of_difference, evalue_of_ratio
from indicators.sensitivity.power import (
    DetectableEffect,
    bootstrap_se,
    minimum_detectable_effect,
    minimum_detectable_rate_ratio,
)
from indicators.sensitivity.rosenbaum import RosenbaumBound, mcnemar_bound, signed_rank_bound

# id → (numerator, denominator of each arm's value; headline is a "difference" or a "ratio";
#       population of the pair test: "decedents" or "all"; event-study outcome of its pre-trend test)
HEADLINE_DESIGN = {
    "eol_hosp_rate": ("eol_any_stay", "died", "ratio", "decedents", "hospital_stays"),
    "eol_spending_difference": ("eol_s_perimeter", "died", "difference", "decedents", "spending"),
    "avoided_spending_share": ("s_perimeter", "pyears", "ratio", "all", "spending"),
    "avoided_spending_per_patient_year": ("s_perimeter", "pyears", "difference", "all", "spending"),
}


@dataclass(frozen=True)
class HeadlineSensitivity:
    """One headline: its estimate, E-value, Rosenbaum bound and detectable effect."""

    id: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    evalue: EValue
    rosenbaum: RosenbaumBound
    detectable: DetectableEffect
    pretrend_outcome: str

    def summary_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{
            "id": self.id, "value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high,
            "evalue_scale": self.evalue.scale, "rr": self.evalue.rr, "rr_ci_low": self.evalue.rr_ci_low,
            "rr_ci_high": self.evalue.rr_ci_high, "evalue": self.evalue.evalue, "evalue_ci": self.evalue.evalue_ci,
            "outcome_sd": self.evalue.outcome_sd, "rosenbaum_test": self.rosenbaum.test,
            "rosenbaum_direction": self.rosenbaum.direction, "rosenbaum_pairs": self.rosenbaum.n_pairs,
            "rosenbaum_p": self.rosenbaum.p_value, "rosenbaum_gamma": self.rosenbaum.gamma,
            "se": self.detectable.se, "se_log_ratio": self.detectable.se_log_ratio, "mdrr": self.detectable.mdrr,
            "mde": self.detectable.mde, "alpha": self.detectable.alpha, "power": self.detectable.power}])


def unit_frame(an: MatchedAnalysis) -> pd.DataFrame:
    """Membership rows with the unit outcomes the headlines use."""
    cols = ["died", "eol_any_stay", "eol_s_perimeter", "s_perimeter", "pyears"]
    o = an.outcomes.loc[an.membership["unit_id"], cols].reset_index(drop=True)
    return pd.concat([an.membership.reset_index(drop=True), o], axis=1)


def set_differences(rows: pd.DataFrame, value: str, decedents: bool) -> pd.DataFrame:
    """Per matched set: the treated value and the weighted mean of its controls' (``treated``,
    ``control``, ``difference``); with ``decedents`` only decedents count and sets need one per arm."""
    r = rows[rows["died"] == 1] if decedents else rows
    r = r.assign(wv=r["w"] * r[value])
    g = r.groupby(["set_idx", "treated"]).agg(wv=("wv", "sum"), w=("w", "sum"))
    mean = (g["wv"] / g["w"]).unstack("treated")
    mean = mean.dropna().rename(columns={1: "treated", 0: "control"})
    if mean.empty:
        return pd.DataFrame(columns=["treated", "control", "difference"])
    return mean.assign(difference=mean["treated"] - mean["control"])


def first_control_pairs(rows: pd.DataFrame, value: str) -> pd.DataFrame:
    """Binary pairs for McNemar among decedents: per set, the treated decedent and its first decedent
    control (lowest unit id), so each pair has two binary outcomes."""
    r = rows[rows["died"] == 1].sort_values(["set_idx", "unit_id"])
    t = r[r["treated"] == 1].groupby("set_idx")[value].first()
    c = r[r["treated"] == 0].groupby("set_idx")[value].first()
    pairs = pd.concat([t.rename("treated"), c.rename("control")], axis=1).dropna()
    return pairs.astype(int)


def weighted_sd(x: np.ndarray, w: np.ndarray) -> float:
    ok = np.isfinite(x) & (w > 0)
    x, w = x[ok], w[ok]
    if w.sum() <= 0 or x.size < 2:
        return float("nan")
    m = np.average(x, weights=w)
    return float(math.sqrt(np.average((x - m) ** 2, weights=w)))


def headline_sensitivity(an: MatchedAnalysis, alpha: float, power: float) -> list[HeadlineSensitivity]:
    """E-value, Rosenbaum bound and detectable effect of every headline."""
    rows = unit_frame(an)
    stats_ = headline_statistics()
    out = []
    for id_ in HEADLINE_IDS:
        num, den, kind, pop, pre = HEADLINE_DESIGN[id_]
        head = an.est(stats_[id_])
        rr_stat = quotient(ratio("t", num, den), ratio("c", num, den))
        rr = an.est(rr_stat)
        with np.errstate(divide="ignore", invalid="ignore"):  # a replicate without events has no log ratio
            log_reps = np.log(an.boot.replicate_values(rr_stat))
        se_log = bootstrap_se(log_reps)
        se = bootstrap_se(an.boot.replicate_values(stats_[id_]))
        mdrr = minimum_detectable_rate_ratio(se_log, alpha, power) if math.isfinite(se_log) else float("nan")
        decedents = pop == "decedents"
        if kind == "ratio":
            ev = evalue_of_ratio(id_, rr.value, rr.ci_low, rr.ci_high)
            mde = 1.0 - 1.0 / mdrr if math.isfinite(mdrr) else float("nan")  # detectable relative reduction
        else:
            sub = rows[rows["died"] == 1] if decedents else rows
            if decedents:
                sd = weighted_sd(sub[num].to_numpy(float), sub["w"].to_numpy(float))
            else:  # spending rates weighted by follow-up, as the ratio estimator weighs them
                sd = weighted_sd((sub[num] / sub[den]).to_numpy(float), (sub["w"] * sub[den]).to_numpy(float))
            diff = head.value if id_.startswith("eol") else -head.value  # on the treated − control scale
            lo, hi = (head.ci_low, head.ci_high) if id_.startswith("eol") else (
                None if head.ci_high is None else -head.ci_high, None if head.ci_low is None else -head.ci_low)
            ev = evalue_of_difference(id_, diff, lo, hi, sd)
            mde = minimum_detectable_effect(se, alpha, power) if math.isfinite(se) else float("nan")
        direction = "treated_lower" if (rr.value is not None and rr.value < 1) else "treated_higher"
        if id_ == "eol_hosp_rate":
            pairs = first_control_pairs(rows, num)
            bound = mcnemar_bound(id_, pairs["treated"].to_numpy(), pairs["control"].to_numpy(), alpha, direction)
        else:
            value = num
            if not decedents:
                rows = rows.assign(rate=rows[num] / rows[den])
                value = "rate"
            diffs = set_differences(rows, value, decedents)["difference"].to_numpy(float)
            bound = signed_rank_bound(id_, diffs, alpha, direction)
        det = DetectableEffect(id_, se, se_log, mdrr, mde, alpha, power)
        out.append(HeadlineSensitivity(id_, head.value, head.ci_low, head.ci_high, ev, bound, det, pre))
    return out
