"""E-values (VanderWeele & Ding, Ann Intern Med 2017): how strong an unmeasured confounder would have to be.

The E-value of a risk ratio is the minimum strength of association, on the risk-ratio scale, that an
unmeasured confounder would need with both the treatment and the outcome, beyond the measured
covariates, to move the estimate to the null: ``RR + sqrt(RR × (RR − 1))`` for RR ≥ 1 (the
reciprocal first for RR < 1). The E-value of the confidence limit nearest to 1 says how strong it
would need to be to make the interval include 1 (1 when it already does). A difference of means is
first put on the risk-ratio scale through its standardised difference d: RR ≈ exp(0.91 d)
(VanderWeele & Ding 2017, eAppendix; VanderWeele 2017 for ratios of means and rates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

# exp(0.91 d): the approximation of a risk ratio from a standardised mean difference d.
SMD_TO_LOG_RR = 0.91


def evalue_rr(rr: float | None) -> float | None:
    """E-value of a risk ratio (rate ratio, ratio of means): RR + sqrt(RR (RR − 1)), RR ≥ 1 after
    taking the reciprocal of a protective ratio. None when RR is missing or not positive."""
    if rr is None or not math.isfinite(rr) or rr <= 0:
        return None
    r = rr if rr >= 1 else 1.0 / rr
    return r + math.sqrt(r * (r - 1.0))


def evalue_ci(rr: float | None, ci_low: float | None, ci_high: float | None) -> float | None:
    """E-value of the confidence limit nearest to the null: 1 when the interval includes 1."""
    if rr is None or ci_low is None or ci_high is None or not math.isfinite(rr):
        return None
    if ci_low <= 1.0 <= ci_high:
        return 1.0
    return evalue_rr(ci_low if rr > 1 else ci_high)


def rr_from_smd(d: float) -> float:
    """Approximate risk ratio of a standardised mean difference: exp(0.91 d)."""
    return math.exp(SMD_TO_LOG_RR * d)


@dataclass(frozen=True)
class EValue:
    """The E-value of one headline: the ratio it was computed from, and how (``scale``)."""

    id: str
    scale: str            # "ratio" (a risk, rate or mean ratio) or "smd" (a difference / outcome SD)
    rr: float | None
    rr_ci_low: float | None
    rr_ci_high: float | None
    evalue: float | None
    evalue_ci: float | None
    outcome_sd: float | None = None   # for scale "smd": the SD the difference was divided by

    def summary_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"id": self.id, "scale": self.scale, "rr": self.rr, "rr_ci_low": self.rr_ci_low,
                              "rr_ci_high": self.rr_ci_high, "evalue": self.evalue, "evalue_ci": self.evalue_ci,
                              "outcome_sd": self.outcome_sd}])


def evalue_of_ratio(id: str, rr: float, ci_low: float | None, ci_high: float | None) -> EValue:
    """E-value of a headline read as a ratio (risk, rate or mean ratio) with its interval."""
    return EValue(id, "ratio", rr, ci_low, ci_high, evalue_rr(rr), evalue_ci(rr, ci_low, ci_high))


def evalue_of_difference(id: str, diff: float, ci_low: float | None, ci_high: float | None,
                         outcome_sd: float) -> EValue:
    """E-value of a difference of means: divided by the outcome SD, then RR ≈ exp(0.91 d)."""
    if not (outcome_sd and math.isfinite(outcome_sd) and outcome_sd > 0) or not math.isfinite(diff):
        return EValue(id, "smd", None, None, None, None, None, outcome_sd)
    rr = rr_from_smd(diff / outcome_sd)
    lo = None if ci_low is None else rr_from_smd(ci_low / outcome_sd)
    hi = None if ci_high is None else rr_from_smd(ci_high / outcome_sd)
    return EValue(id, "smd", rr, lo, hi, evalue_rr(rr), evalue_ci(rr, lo, hi), outcome_sd)
