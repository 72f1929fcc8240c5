"""Compare indicator records with the planted truth of a synthetic extract (truth.json).

One definition of "which truth goes with which headline", shared by the end-to-end tests and the
coverage benchmark (benchmarks/bench_coverage.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pipeline.results import IndicatorRecord

Truth = Mapping[str, float]

# headline id → its planted value, read from truth.json "indicators"
HEADLINE_TRUTH: dict[str, Callable[[Truth], float]] = {
    "unmatched_share_complex": lambda t: t["unmatched_share_complex"],
    "eol_hosp_rate": lambda t: t["eol_hosp_rate"],
    "eol_spending_treated": lambda t: t["eol_spending_treated"],
    "eol_spending_control": lambda t: t["eol_spending_control"],
    "eol_spending_difference": lambda t: t["eol_spending_treated"] - t["eol_spending_control"],
    "avoided_spending_share": lambda t: t["avoided_spending_share"],
    "avoided_spending_per_patient_year": lambda t: t["avoided_spending_per_patient_year"],
}
# End-of-life contrasts condition on death: under a programme that changes mortality they are measured,
# not asserted (docs/target_trial.md).
EOL_IDS = frozenset({"eol_hosp_rate", "eol_spending_treated", "eol_spending_control", "eol_spending_difference"})


def compare(records: Mapping[str, IndicatorRecord], truth: Truth) -> dict[str, dict]:
    """For each headline: truth, estimate, CI and whether the CI contains the truth."""
    out = {}
    for id_, of in HEADLINE_TRUTH.items():
        r = records.get(id_)
        t = of(truth)
        if r is None or r.ci_low is None or t is None:
            out[id_] = {"truth": t, "value": None if r is None else r.value, "covered": None}
            continue
        out[id_] = {"truth": t, "value": r.value, "ci_low": r.ci_low, "ci_high": r.ci_high,
                    "covered": bool(r.ci_low <= t <= r.ci_high)}
    return out
