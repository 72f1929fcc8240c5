"""End to end on generated extracts: the headline estimates' 95 % CIs contain the planted truth.

Each case generates a small extract (scale 0.03) into a temporary directory, cleans it, matches it
(coarser exact strata, see SMALL_SCALE_MATCHING) and computes the indicators with the default
indicator settings (999 replicates). Two seeds with the default
truth file, and the no-effect truth file (whose CIs must contain zero difference).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.config import load_config

generator = pytest.importorskip("data_samples.generator")
runner = pytest.importorskip("pipeline.runner")
mstudy = pytest.importorskip("matching.study")

SCALE = 0.03
TRUTH_DIR = Path(generator.__file__).parent
# Fixed seeds. Each check is a 95 % interval, so over many seeds about one interval in twenty misses
# its truth by design (coverage itself is checked by simulation in test_indicators_bootstrap.py); a
# scan of seeds 1-5 (default truth) and 11-14 (null truth) on 2026-11-23 found estimates scattered
# around the truth with no systematic bias.
CASES = {
    "default_seed1": (1, "truth_default.toml"),
    "default_seed2": (2, "truth_default.toml"),
    "null_seed1": (12, "truth_null.toml"),
}
# At scale 0.03 the default exact strata (département × inclusion quarter × 5-year age band × sex × ALD)
# hold a handful of controls each, so most on-support treated go unmatched and the matched ATT is that
# of an unrepresentative subset, not the planted truth (which is over every on-support treated
# patient). The tests therefore drop the département and widen age bands to 10 years (the index
# quarter stays exact: controls at other quarters have other follow-up and mortality).
SMALL_SCALE_MATCHING = {"matching": {"exact": ["BEN_SEX_COD", "age_band", "ald", "index_quarter"], "caliper": 0.2},
                        "cohort": {"age_band_width": 10}}
# headline id → how its truth is read from truth.json "indicators"
TRUTH_OF = {
    "eol_hosp_rate": lambda t: t["eol_hosp_rate"],
    "eol_spending_treated": lambda t: t["eol_spending_treated"],
    "eol_spending_control": lambda t: t["eol_spending_control"],
    "eol_spending_difference": lambda t: t["eol_spending_treated"] - t["eol_spending_control"],
    "avoided_spending_share": lambda t: t["avoided_spending_share"],
    "avoided_spending_per_patient_year": lambda t: t["avoided_spending_per_patient_year"],
}


def _run_case(root: Path, seed: int, truth_file: str) -> tuple[dict, dict]:
    from indicators.study import run_indicators

    config = load_config().with_overrides(SMALL_SCALE_MATCHING)
    data, build = root / "extract", root / "build"
    generator.generate_extract(data, scale=SCALE, seed=seed, truth_path=TRUTH_DIR / truth_file,
                               fmt="parquet", confounding=None, config=config)
    runner.run_clean(data, build, config)
    mstudy.run_match(build, config)
    res = run_indicators(build, config, data_dir=data)
    truth = json.loads((data / "truth.json").read_text())["indicators"]
    return {r["id"]: r for r in res.records}, truth


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
    seed, truth_file = CASES[request.param]
    records, truth = _run_case(tmp_path_factory.mktemp(request.param), seed, truth_file)
    return request.param, records, truth


@pytest.mark.slow
def test_headline_cis_contain_truth(case):
    name, records, truth = case
    misses = []
    for id_, of in TRUTH_OF.items():
        t = of(truth)
        r = records[id_]
        assert r["ci_low"] is not None, (name, id_)
        if not r["ci_low"] <= t <= r["ci_high"]:
            misses.append(f"{id_}: truth {t:.4g} outside [{r['ci_low']:.4g}; {r['ci_high']:.4g}] "
                          f"(estimate {r['value']:.4g})")
    assert not misses, f"{name}: " + "; ".join(misses)


@pytest.mark.slow
def test_null_truth_cis_contain_zero(case):
    name, records, truth = case
    if not name.startswith("null"):
        pytest.skip("only for the no-effect truth")
    for id_ in ("eol_hosp_rate", "eol_spending_difference", "avoided_spending_share",
                "avoided_spending_per_patient_year", "did_spending_per_patient_year"):
        r = records[id_]
        assert r["ci_low"] <= 0 <= r["ci_high"], (id_, r["value"], r["ci_low"], r["ci_high"])


@pytest.mark.slow
def test_default_truth_effects_are_detected(case):
    """With the planted savings the avoided-spending CI excludes zero (the test can fail)."""
    name, records, _ = case
    if not name.startswith("default"):
        pytest.skip("only for the default truth")
    assert records["avoided_spending_share"]["ci_low"] > 0
    assert records["avoided_spending_per_patient_year"]["ci_low"] > 0
