"""Time zero: would the tests notice if follow-up no longer started on the inclusion date?

With constant planted hazards, where follow-up starts barely matters: a rate per patient-year is the
same over any stretch of time. `data_samples/truth_early.toml` makes the programme's effect on stays
vary with time since inclusion (stays x 20 in the first 14 days: planned admissions after the
initial assessment, then the default x 0.55), so the stays of the first weeks count only if follow-up starts on
the inclusion date. This file checks

* the generator: the early window is off by default, and its truth (truth.json["early_window"]) agrees
  with repeated draws of the generator's own stays (an independent, simulated reference);
* the shipped design on an extract with that truth: every headline interval, and the hospitalisation
  intervals the early window moves, contain their planted truth;
* the same matched sets with time zero moved to the first day of the month after inclusion (both arms;
  a test-only rewrite of `matching/matched.parquet`, no shipped option): the stays of the first weeks are
  lost and the truth of `hosp_stays_per_100py` falls outside its interval, several standard errors away.

What this cannot show (measured, docs/indicators.md "How we know the index dates are aligned"): the old
design's misalignment, controls indexed at the first day of the inclusion quarter while the treated
start at inclusion (`matching.time_zero = "candidate_index"`), moves no rate per patient-year, because a
control's untreated outcomes do not depend on its treated patient's inclusion date; it only lengthens
the controls' follow-up (`hosp_share_any_stay`), by less than the interval's width at this scale.
"""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_samples.truth import DEFAULT_TRUTH, EARLY_TRUTH, load_truth
from pipeline.config import load_config
from pipeline.paths import BuildPaths

generator = pytest.importorskip("data_samples.generator")
runner = pytest.importorskip("pipeline.runner")
mstudy = pytest.importorskip("matching.study")
truth_check = pytest.importorskip("data_samples.truth_check")

SCALE, SEED = 0.05, 1
# The hospitalisation indicators the early window moves, with their truth in truth.json["early_window"].
HOSP_IDS = ("hosp_stays_per_100py", "hosp_share_any_stay")


@pytest.fixture(scope="module")
def config():
    return load_config()  # the shipped configuration


# -- the generator option --------------------------------------------------------------------------
def test_early_window_is_off_by_default_and_left_out_of_the_recorded_params():
    default = load_truth()
    assert default.effects.early_days == 0 and not default.effects.has_early_window
    # absent from truth.json["params"], so the shipped truth files keep byte-identical extracts
    assert "early_days" not in default.to_dict()["effects"]
    planted = tomllib.loads(EARLY_TRUTH.read_text(encoding="utf-8"))["effects"]
    early = load_truth(EARLY_TRUTH)
    assert early.effects.early_days == planted["early_days"] > 0
    assert early.effects.early_hosp_rate == planted["early_hosp_rate"] != 1.0
    assert early.to_dict()["effects"]["early_days"] == planted["early_days"]
    # everything else is the default truth (the file is merged over it)
    changed = {k for k in type(default.effects).model_fields
               if getattr(early.effects, k) != getattr(default.effects, k)}
    assert changed == {"early_days", "early_hosp_rate"}
    assert DEFAULT_TRUTH.exists()


def test_early_window_truth_matches_the_generators_draws(config):
    """Expected stays (truth) against the mean of 300 draws of the generator's stays, same patients."""
    from data_samples.claims import draw_stays
    from data_samples.outcomes import MonthGrid, StayWindowModel, TruthAccumulator, chunk_means
    from data_samples.population import DAY, TREATED, build_population

    tp = load_truth(EARLY_TRUTH)
    pop = build_population(np.random.default_rng(5), 0.02, tp, config)
    grid = MonthGrid.of(config)
    w = config.indicators.eol_window_days
    acc = TruthAccumulator(perimeter=list(config.indicators.perimeter), eol_window_days=w,
                           claims_start=np.datetime64(config.study.claims_start, "D"))
    t = np.flatnonzero((pop.group == TREATED) & ~pop.off_support)
    cm = chunk_means(pop, t, grid, tp, config)
    acc.add_expected(cm, pop, grid, StayWindowModel.of(w, tp), config)
    inc = pop.inclusion[t]
    end = np.where(np.isnat(pop.death[t]), np.datetime64(config.study.claims_end, "D"), pop.death[t])
    early_end = inc + tp.effects.early_days * DAY
    expected_early = float((cm.hosp_rate1_early * cm.early_share).sum())
    dec = acc.decedents(pop.death[t], inc)
    first = np.where(dec, pop.death[t], inc) - (w - 1) * DAY
    assert dec.sum() > 50 and expected_early > 20

    rng = np.random.default_rng(8)
    stays, any_stay, early, eol_hosp = [], [], [], []
    for _ in range(300):
        st = draw_stays(rng, cm, grid, pop, tp, config)
        full = st.kind != 2
        in_fu = full & (st.entry >= inc[st.row]) & (st.entry <= end[st.row])
        stays.append(int(in_fu.sum()))
        any_stay.append(np.unique(st.row[in_fu]).size)
        ordinary = st.kind == 0
        early.append(int((ordinary & (st.entry >= inc[st.row]) & (st.entry < early_end[st.row])).sum()))
        reach = full & dec[st.row] & (st.exit >= first[st.row]) & (st.entry <= pop.death[t][st.row])
        eol_hosp.append(np.unique(st.row[reach]).size)
    for name, draws, truth in (("stays in follow-up", stays, acc.hosp_stays1),
                               ("patients with a stay", any_stay, acc.hosp_any1),
                               ("ordinary stays in the early window", early, expected_early),
                               ("decedents with a stay in the window", eol_hosp, acc.eol_hosp1)):
        x = np.asarray(draws, dtype=float)
        assert abs(x.mean() - truth) < 4 * x.std(ddof=1) / np.sqrt(x.size), (name, x.mean(), truth)
    # the early window is where the stays are: its rate per day is 20 / 0.55 times the later one
    assert expected_early > 0.2 * acc.hosp_stays1


def test_early_window_changes_the_stays_only_after_inclusion(config):
    """Same seed, default vs early truth: the untreated world, and every control, are unchanged."""
    from data_samples.outcomes import MonthGrid, chunk_means
    from data_samples.population import TREATED, build_population

    grid = MonthGrid.of(config)
    cms = {}
    for name, path in (("default", None), ("early", EARLY_TRUTH)):
        tp = load_truth(path)
        pop = build_population(np.random.default_rng(3), 0.01, tp, config)
        cms[name] = chunk_means(pop, np.arange(pop.n), grid, tp, config)
    d, e = cms["default"], cms["early"]
    assert d.early_share is None and e.early_share is not None
    assert np.array_equal(d.hosp_rate0, e.hosp_rate0) and np.array_equal(d.hosp_rate1, e.hosp_rate1)
    controls = pop.group != TREATED
    assert (e.early_share[controls] == 0).all()
    treated = np.flatnonzero(pop.group == TREATED)
    # each treated patient has its early_days in follow-up, fewer only if death or claims_end cuts them
    days = tp.effects.early_days
    days_in_window = (e.early_share * e.alive_days).sum(axis=1)[treated]
    last = pop.inclusion[treated] + np.timedelta64(days - 1, "D")
    died = ~np.isnat(pop.death[treated]) & (pop.death[treated] < last)
    cut = died | (last > np.datetime64(config.study.claims_end))
    assert np.allclose(days_in_window[~cut], days) and (days_in_window[cut] < days).all() and (~cut).sum() > 100
    assert (e.early_share <= e.fu + 1e-12).all()


# -- end to end: the shipped design finds the truth, a misaligned time zero does not ---------------
def _truth(data: Path) -> dict[str, float]:
    doc = json.loads((data / "truth.json").read_text())
    truth = {id_: of(doc["indicators"]) for id_, of in truth_check.HEADLINE_TRUTH.items()}
    truth.update({k: doc["early_window"]["indicators"][k] for k in HOSP_IDS})
    return truth


def _records(paths: BuildPaths, config) -> dict:
    from indicators import study as indicators_study

    return {r.id: r for r in indicators_study.run(paths, config, force=True).records}


def _first_day_of_next_month(matched: pd.DataFrame) -> pd.DataFrame:
    """Every matched set's index date moved to the first day of the month after its treated patient's
    inclusion, for both arms: time zero after the start of treatment (a 'first full month' follow-up)."""
    treated = matched[matched["treated"] == 1].set_index("subclass")["index_date"]
    moved = (treated.dt.to_period("M") + 1).dt.to_timestamp()
    out = matched.copy()
    out["index_date"] = out["subclass"].map(moved).astype(matched["index_date"].dtype)
    return out


def _drop_provenance(params: Path) -> None:
    """Mark a step's outputs as assembled by hand: the provenance checks then take them as they are
    (pipeline/provenance.py) instead of refusing a matched.parquet that `equilibres match` did not write."""
    doc = json.loads(params.read_text(encoding="utf-8"))
    doc.pop("provenance", None)
    params.write_text(json.dumps(doc), encoding="utf-8")


@pytest.fixture(scope="module")
def builds(tmp_path_factory, config):
    """One extract with the early truth; the shipped design, and the same matched sets misaligned."""
    root = tmp_path_factory.mktemp("early")
    data = root / "extract"
    generator.generate_extract(data, scale=SCALE, seed=SEED, truth_path=EARLY_TRUTH, fmt="parquet",
                               confounding=None, config=config)
    shipped = BuildPaths(root / "shipped", data)
    runner.run(shipped, config)
    mstudy.run(shipped, config)
    aligned = _records(shipped, config)

    late = BuildPaths(root / "next_month", data)
    for step in ("clean", "matching"):
        shutil.copytree(shipped.root / step, late.root / step)
        _drop_provenance(late.root / step / "params.json")
    matched_file = late.root / "matching" / "matched.parquet"
    pd.read_parquet(matched_file).pipe(_first_day_of_next_month).to_parquet(matched_file, index=False)
    return {"truth": _truth(data), "aligned": aligned, "next_month": _records(late, config)}


def _z(record, truth: float) -> float:
    """Distance from the truth in bootstrap standard errors (CI width / 3.92)."""
    return (record.value - truth) / ((record.ci_high - record.ci_low) / 3.92)


@pytest.mark.slow
def test_shipped_design_recovers_the_early_truth(builds):
    truth, records = builds["truth"], builds["aligned"]
    misses = [(id_, truth[id_], records[id_].value, records[id_].ci_low, records[id_].ci_high)
              for id_ in [*truth_check.HEADLINE_TRUTH, *HOSP_IDS]
              if not records[id_].ci_low <= truth[id_] <= records[id_].ci_high]
    assert not misses, misses


@pytest.mark.slow
def test_time_zero_after_inclusion_misses_the_early_truth(builds):
    """Mutation check: the same matched sets, follow-up from the first day of the next month."""
    truth, aligned, late = builds["truth"], builds["aligned"], builds["next_month"]
    r = late["hosp_stays_per_100py"]
    assert not r.ci_low <= truth["hosp_stays_per_100py"] <= r.ci_high, (r.value, r.ci_low, r.ci_high)
    assert _z(r, truth["hosp_stays_per_100py"]) < -3
    assert abs(_z(aligned["hosp_stays_per_100py"], truth["hosp_stays_per_100py"])) < 2
