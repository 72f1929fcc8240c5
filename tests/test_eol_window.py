"""End of life in days: the ``indicators.eol_window_days`` days before death (death day included), from
care dates (clean/eol_daily) and stays prorated by day; follow-up hospital spending from the stays.

Known answers on hand-made frames, then the committed sample: eol_daily conserves the panel's euros
month by month, and the unit outcomes equal a pandas recomputation from eol_daily and the stays.
"""

from __future__ import annotations

import pandas as pd
import pytest

from data_samples import SAMPLE_DIR
from indicators.outcomes import ClaimsData, compute_unit_outcomes
from pipeline.config import StudyConfig, load_config
from pipeline.paths import BuildPaths

D = pd.Timestamp
DEATH = D("2022-06-30")
INDEX = D("2022-01-15")


@pytest.fixture(scope="module")
def config() -> StudyConfig:
    return load_config()  # eol_window_days = 90


def _frames(config: StudyConfig) -> dict[str, pd.DataFrame]:
    dcir = [f"spend_{c}" for c in config.cleaning.category_names]
    persons = pd.DataFrame({
        "person_id": ["DEC", "ALIVE"], "treated": [1, 1], "inclusion_date": [INDEX, INDEX],
        "exit_date": [pd.NaT, pd.NaT], "death_date": [DEATH, pd.NaT], "death_source": ["IR_BEN_R", None],
        "death_flag_error": [0, 0],
    })
    # The panel as cleaning writes it: DCIR care month, stays' cost in their entry month.
    months = pd.date_range("2021-01-01", "2023-12-01", freq="MS")
    panel = pd.DataFrame([{"person_id": p, "month": m} for p in ("DEC", "ALIVE") for m in months])
    for c in [*dcir, "spend_hospital", "hosp_stays", "hosp_days", "seances", "nursing_acts", "experiment_hours"]:
        panel[c] = 0.0
    at = panel.set_index(["person_id", "month"])
    at.loc[("DEC", D("2022-04-01")), "spend_nursing_acts"] = 1000.0 + 10.0
    at.loc[("DEC", D("2022-06-01")), "spend_nursing_acts"] = 5.0
    at.loc[("DEC", D("2022-03-01")), "spend_hospital"] = 1000.0
    at.loc[("DEC", D("2022-06-01")), "spend_hospital"] = 300.0
    at.loc[("ALIVE", D("2022-01-01")), "spend_hospital"] = 2000.0
    at.loc[("ALIVE", D("2022-03-01")), "spend_hospital"] = 700.0
    panel = at.reset_index()
    eol_daily = pd.DataFrame({
        "person_id": "DEC",
        "care_date": [DEATH - pd.Timedelta(days=90), DEATH - pd.Timedelta(days=89), DEATH],
        "spend_nursing_acts": [1000.0, 10.0, 5.0],
    })
    for c in [*dcir, "nursing_acts", "experiment_hours"]:
        if c not in eol_daily:
            eol_daily[c] = 0.0
    stays = pd.DataFrame([
        # straddles the window start (death − 89 = 2 April): 28 Mar – 6 Apr = 10 days, 5 of them inside
        ("DEC", D("2022-03-28"), D("2022-04-06"), 9, "8", "05M091", 0, 1000.0),
        # a séance 10 days before death: one day, wholly inside
        ("DEC", DEATH - pd.Timedelta(days=10), DEATH - pd.Timedelta(days=10), 0, "8", "28Z07Z", 1, 300.0),
        # ends the day before the index date, in the index month: not follow-up spending
        ("ALIVE", D("2022-01-02"), D("2022-01-14"), 12, "8", "05M091", 0, 2000.0),
        ("ALIVE", D("2022-03-10"), D("2022-03-12"), 2, "8", "05M091", 0, 700.0),
    ], columns=["person_id", "entry_date", "exit_date", "SEJ_NBJ", "SOR_MOD", "GRG_GHM", "is_seance", "cost"])
    return {"persons": persons, "panel": panel, "stays": stays, "eol_daily": eol_daily}


def _outcomes(config: StudyConfig, **change: pd.DataFrame) -> pd.DataFrame:
    f = {**_frames(config), **change}
    claims = ClaimsData.from_frames(f["persons"], f["panel"], f["stays"], config, eol_daily=f["eol_daily"])
    units = pd.DataFrame({"unit_id": ["DEC@", "ALIVE@"], "person_id": ["DEC", "ALIVE"], "treated": [1, 1],
                          "index_date": [INDEX, INDEX]})
    return compute_unit_outcomes(units, claims, config).set_index("person_id")


def test_dcir_care_days_in_and_out_of_the_window(config):
    o = _outcomes(config)
    # death − 89 is the window's first day (in), death − 90 is not; the death day is in
    assert o.loc["DEC", "eol_s_nursing_acts"] == pytest.approx(10.0 + 5.0)
    assert o.loc["ALIVE", "eol_s_nursing_acts"] == 0.0
    # a 91-day window takes death − 90 too
    cfg = config.with_overrides({"indicators": {"eol_window_days": 91}})
    assert _outcomes(cfg).loc["DEC", "eol_s_nursing_acts"] == pytest.approx(1015.0)


def test_stay_straddling_the_window_start_is_prorated_by_day(config):
    o = _outcomes(config).loc["DEC"]
    # 1000 € × 5 of its 10 days + the séance's 300 € (1 day of 1)
    assert o["eol_s_hospital"] == pytest.approx(500.0 + 300.0)
    assert o["eol_any_stay"] == 1.0  # the full stay overlaps the window; the séance alone would not
    assert o["eol_hosp_days"] == 4.0  # nights 2→3, 3→4, 4→5, 5→6 April
    assert o["eol_s_perimeter"] == pytest.approx(15.0 + 800.0)
    # a window starting after the stay's exit (7 days: from 24 June) keeps only the séance
    cfg = config.with_overrides({"indicators": {"eol_window_days": 7}})
    short = _outcomes(cfg).loc["DEC"]
    assert short["eol_s_hospital"] == 0.0 and short["eol_any_stay"] == 0.0
    cfg = config.with_overrides({"indicators": {"eol_window_days": 11}})
    assert _outcomes(cfg).loc["DEC", "eol_s_hospital"] == pytest.approx(300.0)


def test_eol_without_any_care_day_is_zero_not_missing(config):
    f = _frames(config)
    o = _outcomes(config, eol_daily=f["eol_daily"].iloc[:0])
    assert o.loc["DEC", "eol_s_nursing_acts"] == 0.0 and o.loc["DEC", "eol_s_hospital"] == pytest.approx(800.0)


def test_followup_hospital_spending_from_stays_entering_in_followup(config):
    o = _outcomes(config)
    # the panel holds 2000 € in January 2022 (the entry month); prorating that month by days would
    # charge 17/31 of a stay that ended the day before the index date to follow-up
    assert o.loc["ALIVE", "s_hospital"] == pytest.approx(700.0)
    assert o.loc["ALIVE", "stays"] == 1
    assert o.loc["DEC", "s_hospital"] == pytest.approx(1300.0)  # the stay and the séance entered in follow-up
    assert o.loc["ALIVE", "s_perimeter"] == pytest.approx(700.0)


# -- the committed sample ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_build(tmp_path_factory, config):
    from pipeline import runner

    build = tmp_path_factory.mktemp("eol_sample")
    runner.run(BuildPaths(build, SAMPLE_DIR), config)
    return BuildPaths(build)


def test_eol_daily_conserves_the_panel_month_by_month(sample_build, config):
    """For each usable decedent, the eol_daily amounts of every calendar month lying wholly inside its
    [death − (eol_daily_days − 1), death] range equal the panel's amounts for that person-month."""
    cols = [f"spend_{c}" for c in config.cleaning.category_names] + ["nursing_acts", "experiment_hours"]
    persons = pd.read_parquet(sample_build.persons)
    dec = persons[persons.death_date.notna() & (persons.death_flag_error == 0)]
    death = pd.to_datetime(dec.set_index("person_id").death_date)
    first = death - pd.Timedelta(days=config.cleaning.eol_daily_days - 1)
    panel = pd.read_parquet(sample_build.panel)
    panel = panel[panel.person_id.isin(death.index)].copy()
    panel["month"] = pd.to_datetime(panel.month)
    whole = ((panel.month >= first.reindex(panel.person_id).to_numpy())
             & (panel.month + pd.offsets.MonthEnd(0) <= death.reindex(panel.person_id).to_numpy()))
    expected = panel.loc[whole].set_index(["person_id", "month"])[cols]
    expected = expected[expected.abs().sum(axis=1) > 0]
    daily = pd.read_parquet(sample_build.eol_daily)
    daily["month"] = pd.to_datetime(daily.care_date).dt.to_period("M").dt.to_timestamp()
    got = daily.groupby(["person_id", "month"])[cols].sum()
    got = got.reindex(expected.index)
    assert len(expected) > 100 and expected.index.get_level_values(0).nunique() > 50
    pd.testing.assert_frame_equal(got.fillna(0.0), expected, check_exact=False, atol=1e-6)
    # and eol_daily holds nothing the panel does not: its months sum to at most the panel's month
    per_month = daily.groupby(["person_id", "month"])[cols].sum()
    panel_month = panel.set_index(["person_id", "month"])[cols].reindex(per_month.index)
    assert panel_month.notna().all().all()
    assert ((per_month - panel_month) <= 1e-6).all().all()


def test_sample_outcomes_equal_a_pandas_recomputation(sample_build, config):
    """eol_s_* of the sample's treated decedents, recomputed in pandas from eol_daily and stays."""
    from indicators.inputs import load_claims

    claims = load_claims(sample_build.root, config)
    cohort = pd.read_parquet(sample_build.cohort)
    persons = claims.persons
    units = cohort[cohort.treated == 1].merge(persons[["death_date", "death_flag_error"]], left_on="person_id",
                                              right_index=True)
    units = units[units.death_date.notna() & (units.death_flag_error == 0)
                  & (pd.to_datetime(units.death_date) > pd.to_datetime(units.index_date))]
    assert len(units) >= 10
    out = compute_unit_outcomes(units[["unit_id", "person_id", "treated", "index_date"]], claims, config)
    days = config.indicators.eol_window_days
    daily = pd.read_parquet(sample_build.eol_daily)
    daily["care_date"] = pd.to_datetime(daily.care_date)
    stays = pd.read_parquet(sample_build.stays)
    # The headline hospital figures count stays of the hospital perimeter only (negative-control stay
    # categories such as cataract are outside it: pipeline/stages/pmsi.py).
    assert (stays.stay_category != "hospital").any()
    stays = stays[stays.stay_category == "hospital"]
    for c in ("entry_date", "exit_date"):
        stays[c] = pd.to_datetime(stays[c])
    for u in units.itertuples():
        d = pd.Timestamp(u.death_date)
        start = d - pd.Timedelta(days=days - 1)
        o = out.loc[u.unit_id]
        mine = daily[(daily.person_id == u.person_id) & daily.care_date.between(start, d)]
        assert o["eol_s_nursing_acts"] == pytest.approx(mine.spend_nursing_acts.sum(), abs=1e-6)
        assert o["eol_s_experiment"] == pytest.approx(mine.spend_experiment.sum(), abs=1e-6)
        hosp = 0.0
        for s in stays[stays.person_id == u.person_id].itertuples():
            inside = (min(s.exit_date, d) - max(s.entry_date, start)).days + 1
            if inside > 0:
                hosp += s.cost * inside / ((s.exit_date - s.entry_date).days + 1)
        assert o["eol_s_hospital"] == pytest.approx(hosp, abs=1e-6)
        fu_end = pd.Timestamp(o["fu_end"])
        entering = stays[(stays.person_id == u.person_id) & stays.entry_date.between(pd.Timestamp(u.index_date),
                                                                                      fu_end)]
        assert o["s_hospital"] == pytest.approx(entering.cost.sum(), abs=1e-6)
