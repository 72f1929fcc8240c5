"""Headline effects of one matched sample, for `equilibres sweep` (one call per matching specification).

Uses the same code as the full run (:func:`indicators.analysis.analyse`): the cleaned claims are loaded
once per build directory and unit outcomes are cached by unit, so each specification only computes
units it has not seen. The bootstrap uses ``indicators.sweep_replicates`` (default 199) replicates —
enough to compare specifications, fewer than the report's ``bootstrap_replicates``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from indicators.analysis import analyse, difference, ratio, relative_difference
from indicators.inputs import load_claims, prepare_matched
from indicators.outcomes import ClaimsData
from indicators.spending import avoided_per_py, avoided_share
from pipeline.config import StudyConfig

HEADLINE_IDS = ("eol_hosp_rate", "eol_spending_difference", "avoided_spending_share",
                "avoided_spending_per_patient_year")


def headline_statistics():  # noqa: ANN201 - id → statistic over per-arm totals
    hosp_t, hosp_c = ratio("t", "eol_any_stay", "died"), ratio("c", "eol_any_stay", "died")
    return {
        "eol_hosp_rate": relative_difference(hosp_t, hosp_c),
        "eol_spending_difference": difference(ratio("t", "eol_s_perimeter", "died"),
                                              ratio("c", "eol_s_perimeter", "died")),
        "avoided_spending_share": avoided_share,
        "avoided_spending_per_patient_year": avoided_per_py,
    }


def headline_effects(matched: pd.DataFrame, build: Path, config: StudyConfig,
                     claims: ClaimsData | None = None) -> list[dict]:
    """Records ``{id, value, ci_low, ci_high, n}`` of the headline effects for ``matched``."""
    claims = claims if claims is not None else load_claims(Path(build), config)
    m = prepare_matched(matched)
    an = analyse(m, claims, config, replicates=config.indicators.sweep_replicates)
    n_dec = an.n_decedents("t")
    out = []
    for id_, stat in headline_statistics().items():
        e = an.est(stat)
        n = n_dec if id_.startswith("eol") else an.n_treated
        out.append({"id": id_, "value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": n,
                    "replicates": an.boot.n_replicates})
    return out
