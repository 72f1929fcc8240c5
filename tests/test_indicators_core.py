"""A tiny hand-built matched world with answers worked out by hand (see test_indicators_core.py)."""

from __future__ import annotations

import pandas as pd

from indicators.outcomes import spend_categories
from pipeline.config import StudyConfig

NAT = pd.NaT
D = pd.Timestamp


def persons() -> pd.DataFrame:
    rows = [
        # person, treated, inclusion, exit, death, death_source
        ("T1", 1, D("2022-01-01"), NAT, NAT, None),
        ("T2", 1, D("2022-01-01"), NAT, D("2022-07-15"), "IR_BEN_R"),
        ("T3", 1, D("2022-01-01"), NAT, D("2023-03-31"), "IR_BEN_R"),
        ("C1a", 0, NAT, NAT, NAT, None),
        ("C1b", 0, NAT, NAT, NAT, None),
        ("C2", 0, NAT, NAT, D("2022-09-30"), "PMSI"),
        ("C3", 0, NAT, NAT, NAT, None),
    ]
    df = pd.DataFrame(rows, columns=["person_id", "treated", "inclusion_date", "exit_date", "death_date",
                                     "death_source"])
    df["death_flag_error"] = 0
    return df


def _months(start: str, end: str) -> list[pd.Timestamp]:
    return list(pd.date_range(start, end, freq="MS"))


def panel(config: StudyConfig) -> pd.DataFrame:
    recs: list[dict] = []

    def add(pid: str, months: list[pd.Timestamp], **amounts: float) -> None:
        for m in months:
            recs.append({"person_id": pid, "month": m, **amounts})

    everyone = ["T1", "T2", "T3", "C1a", "C1b", "C2", "C3"]
    for pid in everyone:  # the pre-index year: 80 € of nursing acts a month for everyone
        add(pid, _months("2021-01-01", "2021-12-01"), spend_nursing_acts=80.0, nursing_acts=2.0)
    add("T1", _months("2022-01-01", "2023-12-01"), spend_experiment=100.0, experiment_hours=2.0)
    add("T2", _months("2022-01-01", "2022-06-01"), spend_experiment=100.0, experiment_hours=2.0)
    add("T2", [D("2022-07-01")], spend_experiment=100.0, experiment_hours=2.0, spend_hospital=3000.0)
    add("T3", _months("2022-01-01", "2023-03-01"), spend_experiment=100.0, experiment_hours=2.0)
    add("C1a", _months("2022-01-01", "2023-12-01"), spend_nursing_acts=150.0, nursing_acts=5.0)
    add("C1b", _months("2022-01-01", "2023-12-01"), spend_nursing_acts=250.0, nursing_acts=8.0)
    add("C2", _months("2022-01-01", "2022-08-01"), spend_nursing_acts=150.0, nursing_acts=5.0)
    add("C2", [D("2022-09-01")], spend_nursing_acts=150.0, nursing_acts=5.0, spend_hospital=5000.0)
    add("C3", _months("2022-01-01", "2023-12-01"), spend_nursing_acts=200.0, nursing_acts=6.0)
    df = pd.DataFrame(recs)
    for c in spend_categories(config):
        col = f"spend_{c}"
        df[col] = df[col].fillna(0.0) if col in df else 0.0
    for col in ["hosp_stays", "hosp_days", "seances", "nursing_acts", "experiment_hours"]:
        df[col] = df[col].fillna(0.0) if col in df else 0.0
    return df


def eol_daily(config: StudyConfig) -> pd.DataFrame:
    """The decedents' DCIR spending per care day (clean/eol_daily): each panel month's DCIR amounts
    dated the 15th, over the cleaning's eol_daily_days days before death."""
    p = panel(config)
    dcir = [f"spend_{c}" for c in config.cleaning.category_names]
    death = persons().set_index("person_id")["death_date"]
    p = p[p["person_id"].isin(death.dropna().index)].copy()
    p["care_date"] = p["month"] + pd.Timedelta(days=14)
    d = death.reindex(p["person_id"]).to_numpy()
    first = d - pd.Timedelta(days=config.cleaning.eol_daily_days - 1).to_timedelta64()
    p = p[(p["care_date"].to_numpy() >= first) & (p["care_date"].to_numpy() <= d)]
    return p[["person_id", "care_date", *dcir, "nursing_acts", "experiment_hours"]].reset_index(drop=True)


def claims_of(config: StudyConfig, p: pd.DataFrame | None = None) -> ClaimsData:
    from indicators.outcomes import ClaimsData

    return ClaimsData.from_frames(persons() if p is None else p, panel(config), stays(), config,
                                  eol_daily=eol_daily(config))


def stays() -> pd.DataFrame:
    rows = [
        ("T2", D("2022-07-01"), D("2022-07-10"), 9, "8", "05M091", 0, 3000.0),
        ("C2", D("2022-03-01"), D("2022-03-05"), 4, "8", "05M091", 0, 0.0),
        ("C2", D("2022-09-20"), D("2022-09-30"), 10, "9", "04M051", 0, 5000.0),
        ("C3", D("2021-06-01"), D("2021-06-01"), 0, "8", "28Z07Z", 1, 300.0),  # séance before index
        ("C3", D("2022-06-01"), D("2022-06-01"), 0, "8", "28Z07Z", 1, 0.0),    # séance in follow-up
    ]
    df = pd.DataFrame(rows, columns=["person_id", "entry_date", "exit_date", "SEJ_NBJ", "SOR_MOD", "GRG_GHM",
                                     "is_seance", "cost"])
    df["ETA_NUM"] = "750000001"
    df["RSA_NUM"] = range(len(df))
    return df


def matched() -> pd.DataFrame:
    rows = [
        ("T1", 1, 1.0, "A"), ("C1a", 0, 0.5, "A"), ("C1b", 0, 0.5, "A"),
        ("T2", 1, 1.0, "B"), ("C2", 0, 1.0, "B"),
        ("T3", 1, 1.0, "C"), ("C3", 0, 1.0, "C"),
    ]
    df = pd.DataFrame(rows, columns=["person_id", "treated", "weight", "subclass"])
    df["index_date"] = D("2022-01-01")
    df["unit_id"] = df["person_id"] + "@2022-01-01"
    return df


# ---------------------------------------------------------------------------------------------
# Known-answer tests. Every expected number below is worked out by hand from the tables above.
# ---------------------------------------------------------------------------------------------
import math  # noqa: E402

import pytest  # noqa: E402

from indicators.analysis import analyse  # noqa: E402
from indicators.outcomes import ClaimsData  # noqa: E402
from pipeline.config import load_config  # noqa: E402

Y = 365.25


@pytest.fixture(scope="module")
def config() -> StudyConfig:
    return load_config().with_overrides({"indicators": {"bootstrap_replicates": 199}})


@pytest.fixture(scope="module")
def claims(config: StudyConfig) -> ClaimsData:
    return claims_of(config)


@pytest.fixture(scope="module")
def an(claims: ClaimsData, config: StudyConfig):
    return analyse(matched(), claims, config)


def by_id(inds, id_):
    return next(i for i in inds if i.id == id_)


def test_followup_days_and_end_reasons(an):
    o = an.outcomes.set_index("person_id")
    # T1, C*: 2022-01-01..2023-12-31 = 730 days; T2 dies 2022-07-15 = 196 days;
    # T3 dies 2023-03-31 = 455 days; C2 dies 2022-09-30 = 273 days.
    expected = {"T1": 730, "T2": 196, "T3": 455, "C1a": 730, "C1b": 730, "C2": 273, "C3": 730}
    for pid, days in expected.items():
        assert o.loc[pid, "pyears"] == pytest.approx(days / Y), pid
    assert o.loc["T2", "end_reason"] == "death" and o.loc["T1", "end_reason"] == "study_end"
    assert o["died"].to_dict() == {"T1": 0, "C1a": 0, "C1b": 0, "T2": 1, "C2": 1, "T3": 1, "C3": 0}


def test_followup_patient_years_by_arm(an):
    from indicators.followup import followup

    res = followup(an)
    t = res.table.set_index("arm")
    assert t.loc["treated", "patient_years"] == pytest.approx((730 + 196 + 455) / Y)
    # controls weighted: 0.5·730 + 0.5·730 + 273 + 730
    assert t.loc["control", "patient_years"] == pytest.approx((730 + 273 + 730) / Y)
    assert t.loc["treated", "deaths"] == 2 and t.loc["control", "deaths"] == 1


def test_per_protocol_censors_at_exit(config):
    p = persons()
    p.loc[p["person_id"] == "T1", "exit_date"] = D("2022-12-31")
    pp = config.with_overrides({"indicators": {"followup": "per_protocol"}})
    for cfg, days in ((config, 730), (pp, 365)):
        a = analyse(matched(), claims_of(cfg, p), cfg)
        o = a.outcomes.set_index("person_id")
        assert o.loc["T1", "pyears"] == pytest.approx(days / Y)
        assert o.loc["C1a", "pyears"] == pytest.approx(730 / Y)  # controls are never censored at exit
    assert o.loc["T1", "end_reason"] == "exit"
    assert o.loc["T1", "s_experiment"] == pytest.approx(1200.0)


def test_spending_and_avoided(an):
    from indicators.spending import spending

    res = spending(an)
    t_rate = (2400 + 3700 + 1500) / ((730 + 196 + 455) / Y)
    c_rate = (0.5 * 3600 + 0.5 * 6000 + 6350 + 4800) / ((730 + 273 + 730) / Y)
    av = by_id(res.indicators, "avoided_spending_per_patient_year")
    assert av.arm_values["treated"] == pytest.approx(t_rate)
    assert av.arm_values["control"] == pytest.approx(c_rate)
    assert av.value == pytest.approx(c_rate - t_rate)
    assert by_id(res.indicators, "avoided_spending_share").value == pytest.approx(1 - t_rate / c_rate)
    cat = res.table.set_index("category")
    assert cat.loc["experiment", "treated"] == pytest.approx(4600 / ((730 + 196 + 455) / Y))
    assert cat.loc["experiment", "control"] == 0
    assert cat.loc["hospital", "treated"] == pytest.approx(3000 / ((730 + 196 + 455) / Y))
    assert cat.loc["hospital", "control"] == pytest.approx(5000 / ((730 + 273 + 730) / Y))
    assert "hospital" in av.definition and "experiment payments included" in av.definition


def test_hospitalisation(an):
    from indicators.hospitalisation import hospitalisation

    res = hospitalisation(an)
    tab = res.table.set_index("measure")
    # any stay: T2 among 3 treated; C2 (weight 1) among weighted 3 controls
    assert tab.loc["hosp_share_any_stay", "treated"] == pytest.approx(1 / 3)
    assert tab.loc["hosp_share_any_stay", "control"] == pytest.approx(1 / 3)
    assert tab.loc["hosp_stays_per_100py", "treated"] == pytest.approx(100 * 1 / (1381 / Y))
    assert tab.loc["hosp_stays_per_100py", "control"] == pytest.approx(100 * 2 / (1733 / Y))
    assert tab.loc["hosp_days_per_100py", "control"] == pytest.approx(100 * 14 / (1733 / Y))
    # the séance before index is not counted; the one in follow-up is counted apart
    assert tab.loc["seances_per_100py", "control"] == pytest.approx(100 * 1 / (1733 / Y))
    assert tab.loc["seances_per_100py", "treated"] == 0
    ratio = tab.loc["hosp_stays_per_100py", "ratio"]
    assert ratio == pytest.approx((1 / 1381) / (2 / 1733))


def test_end_of_life(an):
    from indicators.end_of_life import end_of_life

    res = end_of_life(an)
    assert by_id(res.indicators, "eol_decedents").arm_values == {"treated": 2.0, "control": 1.0,
                                                                  "control_weighted": 1.0}
    rate = by_id(res.indicators, "eol_hosp_rate")
    # T2's stay overlaps its window (2022-04-17..07-15), T3 has none; C2 has one → 0.5 / 1 − 1
    assert rate.arm_values["treated"] == pytest.approx(0.5)
    assert rate.arm_values["control"] == pytest.approx(1.0)
    assert rate.value == pytest.approx(-0.5)
    # window = the 90 days before death (death day included); DCIR care is dated the 15th.
    # T2 (†07-15, from 04-17): May, June, July 15th 100 each + the stay 07-01..07-10 wholly inside 3000
    # = 3300; T3 (†2023-03-31, from 01-01): Jan–Mar 15th = 300
    assert by_id(res.indicators, "eol_spending_treated").value == pytest.approx((3300 + 300) / 2)
    # C2 (†09-30, from 07-03): Jul–Sep 15th 150 each + the stay 09-20..09-30 5000
    assert by_id(res.indicators, "eol_spending_control").value == pytest.approx(5450)
    assert by_id(res.indicators, "eol_spending_difference").value == pytest.approx(1800 - 5450)
    days = by_id(res.indicators, "eol_hosp_days")
    assert days.arm_values["treated"] == pytest.approx(4.5) and days.arm_values["control"] == pytest.approx(10)
    dih = by_id(res.indicators, "eol_death_in_hospital")
    assert dih.arm_values["treated"] == 0 and dih.arm_values["control"] == 1
    nurse = by_id(res.indicators, "eol_nursing_presence")
    assert nurse.arm_values["nursing_spend_treated"] == pytest.approx(300)
    assert nurse.arm_values["nursing_spend_control"] == pytest.approx(450)
    assert nurse.value == pytest.approx(300 / 450)
    assert nurse.arm_values["experiment_hours_treated"] == pytest.approx(6)  # 3 months × 2 h
    assert nurse.arm_values["nursing_acts_control"] == pytest.approx(15)  # C2: 3 months × 5 acts


def test_eol_window_is_a_parameter(claims, config):
    from indicators.end_of_life import end_of_life

    for days, t2 in ((30, 3100), (31, 3200)):
        cfg = config.with_overrides({"indicators": {"eol_window_days": days}})
        res = end_of_life(analyse(matched(), claims_of(cfg), cfg))
        # 30 days: T2 from 06-16 (July 15th 100 + stay 3000), T3 from 03-02 (March 15th 100);
        # 31 days: T2 from 06-15 also takes June 15th
        assert by_id(res.indicators, "eol_spending_treated").value == pytest.approx((t2 + 100) / 2), days
        assert f"the {days} days before death, death day included" in res.indicators[1].definition


def test_did(an):
    from indicators.inference import difference_in_differences

    res = difference_in_differences(an)
    t_post = (1200 + 3700 + 1200) / ((365 + 196 + 365) / Y)
    c_post = (0.5 * 1800 + 0.5 * 3000 + 6350 + 2400) / ((365 + 273 + 365) / Y)
    # pre rates are identical (80 €/month for everyone), so DiD = difference of post rates
    assert res.indicator.value == pytest.approx(t_post - c_post)
    assert res.table.set_index("row").loc["did_bootstrap", "estimate"] == pytest.approx(t_post - c_post)


def test_regression_point_estimates_equal_ratio_estimators(an):
    from indicators.inference import regression_crosscheck

    tab = regression_crosscheck(an).table
    assert tab["estimate"].to_numpy() == pytest.approx(tab["bootstrap_estimate"].to_numpy())
    assert (tab["se"] > 0).all()


def test_economics(an, config):
    from indicators.economics import economics

    res = economics(an)
    cl = res.caseload.set_index("year")
    # all treated: 2023 patient-years = T1 365 days + T3 90 days
    assert cl.loc[2023, "patient_years"] == pytest.approx((365 + 90) / Y)
    assert cl.loc[2022, "patient_years"] == pytest.approx((365 + 196 + 365) / Y)
    assert cl.loc[2023, "patients"] == 2
    av = analyse(matched(), an.claims, config).boot.estimate(
        lambda T: T["c.s_perimeter"] / T["c.pyears"] - T["t.s_perimeter"] / T["t.pyears"]).value
    inv = config.economics.programme_investment_eur
    gross = by_id(res.indicators, "gross_savings_year")
    assert gross.value == pytest.approx(av * 455 / Y)
    net = by_id(res.indicators, "net_savings_year")
    assert net.value == pytest.approx(av * 455 / Y - inv)
    assert net.ci_low == pytest.approx(gross.ci_low - inv) and net.ci_high == pytest.approx(gross.ci_high - inv)
    assert by_id(res.indicators, "return_per_euro_invested").value == pytest.approx(av * 455 / Y / inv)
    prog = by_id(res.indicators, "programme_investment")
    assert prog.value == inv and prog.method == "input" and prog.unit == "eur_per_year"
    sc = res.scenarios
    n = (len(config.economics.scenario_hourly_rates) * len(config.economics.scenario_investment)
         * len(config.economics.scenario_caseload_factor))
    assert len(sc) == n
    # re-pricing: treated hours 2/month over 24 + 7 + 15 months = 92 h; experiment payments = hours × rate.
    # At 60 €/h the treated spend is 7600 − 4600 + 92 h × 60.
    row = sc[(sc["hourly_rate_eur"] == 60.0) & (sc["caseload_factor"] == 1.0)].iloc[0]
    t_rate = (7600 - 4600 + 92 * 60) / (1381 / Y)
    c_rate = 15950 / (1733 / Y)
    assert row["avoided_eur_per_patient_year"] == pytest.approx(c_rate - t_rate)


def test_savings_per_year_use_the_active_file(config):
    """T1 leaves the programme alive on 2023-06-30; T3 has an exit after her death (death first). The
    caseload of the savings is the time in the programme; the follow-up stays intention to treat."""
    from indicators.economics import economics

    p = persons()
    p.loc[p["person_id"] == "T1", "exit_date"] = D("2023-06-30")
    p.loc[p["person_id"] == "T3", "exit_date"] = D("2023-12-31")
    claims = claims_of(config, p)
    res = economics(analyse(matched(), claims, config))
    cl = res.caseload.set_index("year")
    assert cl.loc[2023, "patient_years"] == pytest.approx((365 + 90) / Y)     # ITT: unchanged
    assert cl.loc[2023, "active_patient_years"] == pytest.approx((181 + 90) / Y)  # T1 to 30 June, T3 to death
    assert cl.loc[2022, "active_patient_years"] == pytest.approx((365 + 196 + 365) / Y)
    assert (cl.loc[2023, "patients"], cl.loc[2023, "active_patients"]) == (2, 2)
    av = analyse(matched(), claims, config).boot.estimate(
        lambda T: T["c.s_perimeter"] / T["c.pyears"] - T["t.s_perimeter"] / T["t.pyears"]).value
    case = by_id(res.indicators, "caseload_patient_years")
    assert case.value == pytest.approx((181 + 90) / Y)
    assert case.arm_values["patient_years_followup"] == pytest.approx((365 + 90) / Y)
    inv = config.economics.programme_investment_eur
    assert by_id(res.indicators, "gross_savings_year").value == pytest.approx(av * 271 / Y)
    assert by_id(res.indicators, "net_savings_year").value == pytest.approx(av * 271 / Y - inv)
    row = res.scenarios[(res.scenarios["caseload_factor"] == 2.0)].iloc[0]
    assert row["caseload_patient_years"] == pytest.approx(2 * 271 / Y)


def test_records_follow_contract(an, config):
    from indicators.spending import spending

    ind = by_id(spending(an).indicators, "avoided_spending_share")
    rec = ind.to_record(config)
    assert (rec.id, rec.label_fr, rec.label_en, rec.unit) == (ind.id, ind.label_fr, ind.label_en, ind.unit)
    assert (rec.value, rec.ci_low, rec.ci_high) == (ind.value, ind.ci_low, ind.ci_high)
    assert (rec.method, rec.population, rec.definition) == (ind.method, ind.population, ind.definition)
    assert rec.published == config.published["avoided_spending_share"]
    # 3 treated people < min_cell_count → suppressed
    assert rec.n is None and rec.n_suppressed is True
    assert ind.ci_low <= ind.value <= ind.ci_high
    frame = ind.summary_frame()
    assert list(frame["quantity"]) == ["value", "treated", "control"]
    assert math.isclose(frame.loc[0, "estimate"], ind.value)


def test_eol_first_day_counts_the_death_day():
    from indicators.outcomes import eol_first_day

    death = pd.Series(pd.to_datetime(["2022-07-15", "2023-03-31", None]))
    assert eol_first_day(death, 90).dt.strftime("%Y-%m-%d").tolist()[:2] == ["2022-04-17", "2023-01-01"]
    assert eol_first_day(death, 1).dt.strftime("%Y-%m-%d").tolist()[:2] == ["2022-07-15", "2023-03-31"]
    assert pd.isna(eol_first_day(death, 90).iloc[2])


def test_flagged_death_is_ignored(config):
    p = persons()
    p.loc[p["person_id"] == "C2", "death_flag_error"] = 1
    a = analyse(matched(), claims_of(config, p), config)
    o = a.outcomes.set_index("person_id")
    assert o.loc["C2", "died"] == 0 and o.loc["C2", "pyears"] == pytest.approx(730 / Y)
