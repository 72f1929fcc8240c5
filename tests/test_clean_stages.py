"""PMSI, deaths, ALD, panel and cohort rules on small hand-built tables with known answers (DuckDB)."""

from __future__ import annotations

import pandas as pd
import pytest
from clean_helpers import NIR, D, kept_summary, key_map, prs_row, run, table

from pipeline.config import load_config
from pipeline.stages import ald, cohort, dcir, deaths, outputs, pmsi


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def by_rule(rows):
    return {r.rule: r for r in rows}


# -- PMSI ----------------------------------------------------------------------------------------

B_SCHEMA = {"ETA_NUM": "string", "RSA_NUM": "int64", "SEJ_NBJ": "int32", "ENT_MOD": "string", "SOR_MOD": "string",
            "GRG_GHM": "string", "SOR_ANN": "string", "SOR_MOI": "string"}
C_SCHEMA = {"ETA_NUM": "string", "RSA_NUM": "int64", "NIR_ANO_17": "string", "EXE_SOI_DTD": "date",
            "EXE_SOI_DTF": "date", **{c: "string" for c in pmsi.RETURN_CODES}}
V_SCHEMA = {"ETA_NUM": "string", "RSA_NUM": "int64", "MNT_TOT_AM": "float64", "VALO": "int32"}


ENTRY, EXIT, BIRTH = D(2021, 3, 1), D(2021, 3, 5), D(1940, 3, 15)


def _stay(rsa, eta="750712184", ghm="05M09T", nir=NIR["A"], entry=ENTRY, exit_=EXIT, sor="8",
          ret="0", cost=1000.0, valo=1):
    b = {"ETA_NUM": eta, "RSA_NUM": rsa, "SEJ_NBJ": (exit_ - entry).days, "ENT_MOD": "8", "SOR_MOD": sor,
         "GRG_GHM": ghm, "SOR_ANN": str(exit_.year), "SOR_MOI": f"{exit_.month:02d}"}
    c = {"ETA_NUM": eta, "RSA_NUM": rsa, "NIR_ANO_17": nir, "EXE_SOI_DTD": entry, "EXE_SOI_DTF": exit_,
         **{r: "0" for r in pmsi.RETURN_CODES}}
    c["SEJ_RET"] = ret
    v = {"ETA_NUM": eta, "RSA_NUM": rsa, "MNT_TOT_AM": cost, "VALO": valo}
    return b, c, v


def _pmsi(stays, cfg):
    bs, cs, vs = zip(*stays, strict=True)
    b = pmsi.union_years([(21, table(list(bs), B_SCHEMA))], pmsi.MCO_B_TYPES, "B")
    c = pmsi.union_years([(21, table(list(cs), C_SCHEMA))], pmsi.MCO_C_TYPES, "C")
    v = pmsi.union_years([(21, table([x for x in vs if x is not None], V_SCHEMA))], pmsi.MCO_VALO_TYPES, "V")
    nir_map = table([{"BEN_NIR_PSA": NIR["A"], "person_id": "P1"}], {"BEN_NIR_PSA": "string", "person_id": "string"})
    s = pmsi.mco_stays(b, c, v, nir_map, cfg)
    return run(s), by_rule(pmsi.audit_pmsi(s, cfg.cleaning)), run(pmsi.stays_valid(s))


def test_pmsi_rules(cfg):
    stays = [
        _stay(1),                                           # kept
        _stay(2, ret="1", cost=10.0),                       # bad return code
        _stay(3, nir="x" * 17, cost=20.0),                  # x-filled NIR
        _stay(4, ghm="90Z00Z", cost=30.0),                  # GHM 90
        _stay(5, eta="750100075", cost=40.0),               # geographical FINESS of AP-HP
        _stay(6, exit_=D(2024, 1, 2), cost=50.0),           # after claims_end
        _stay(7, nir=NIR["Z"], cost=60.0),                  # not in IR_BEN_R
        _stay(8, ghm="28Z04Z", entry=D(2021, 4, 1), exit_=D(2021, 4, 1), cost=300.0),  # séance, kept
        _stay(9, valo=0, cost=999.0),                       # not valued: cost 0
    ]
    b9, c9, _ = stays[-1]
    stays[-1] = (b9, c9, None)  # no VALO row at all for stay 9
    all_, audit, valid = _pmsi(stays, cfg)
    for rule, euros in [("bad_return_codes", 10), ("nir_x_filled", 20), ("ghm_90_error", 30),
                        ("duplicate_geographic_finess", 40), ("stay_window", 50), ("stay_link_to_beneficiary", 60)]:
        assert audit[rule].rows_dropped == 1 and audit[rule].euros_dropped == euros, rule
    assert sorted(valid.RSA_NUM) == [1, 8, 9]
    v = valid.set_index("RSA_NUM")
    assert v.loc[8, "is_seance"] == 1 and v.loc[1, "is_seance"] == 0
    assert v.loc[9, "cost"] == 0.0 and v.loc[1, "cost"] == 1000.0
    assert audit["seance"].rows_flagged == 1 and audit["stay_not_valued"].rows_flagged == 1
    assert audit["bad_return_codes"].rows_in == 9


def test_pmsi_year_from_file_name():
    from pathlib import Path

    assert pmsi.pmsi_year_of(Path("T_MCO19VALO.parquet")) == 19
    assert pmsi.pmsi_year_of(Path("T_MCO23B.3f2a.parquet")) == 23


# -- deaths --------------------------------------------------------------------------------------

P_SCHEMA = {"person_id": "string", "birth_floor": "date", "ben_death_date": "date"}


def test_deaths_sources_and_flags():
    persons = table([
        {"person_id": "ir", "birth_floor": D(1940, 1, 1), "ben_death_date": D(2021, 5, 1)},
        {"person_id": "pmsi", "birth_floor": D(1940, 1, 1), "ben_death_date": None},
        {"person_id": "both", "birth_floor": D(1940, 1, 1), "ben_death_date": D(2021, 5, 1)},
        {"person_id": "before_birth", "birth_floor": D(1950, 6, 1), "ben_death_date": D(1930, 6, 15)},
        {"person_id": "claims_after", "birth_floor": D(1950, 6, 1), "ben_death_date": D(2020, 1, 1)},
        {"person_id": "tolerated", "birth_floor": D(1950, 6, 1), "ben_death_date": D(2020, 1, 1)},
        {"person_id": "alive", "birth_floor": D(1950, 6, 1), "ben_death_date": None},
    ], P_SCHEMA)
    pm = table([{"person_id": "pmsi", "pmsi_death_date": D(2022, 2, 2)},
                {"person_id": "both", "pmsi_death_date": D(2021, 4, 30)}],
               {"person_id": "string", "pmsi_death_date": "date"})
    act = table([{"person_id": "claims_after", "last_claim_date": D(2020, 3, 1), "last_stay": None},
                 {"person_id": "tolerated", "last_claim_date": D(2020, 1, 2), "last_stay": None},
                 {"person_id": "ir", "last_claim_date": D(2021, 4, 1), "last_stay": D(2021, 4, 20)}],
                {"person_id": "string", "last_claim_date": "date", "last_stay": "date"})
    d = deaths.deaths(persons, pm, act, tolerance_days=1)
    out = run(d).set_index("person_id")
    assert out.loc["ir", "death_source"] == "IR_BEN_R" and out.loc["ir", "death_date"] == pd.Timestamp("2021-05-01")
    assert out.loc["pmsi", "death_source"] == "PMSI" and out.loc["pmsi", "death_date"] == pd.Timestamp("2022-02-02")
    assert out.loc["both", "death_source"] == "IR_BEN_R"  # IR_BEN_R first when it has a plausible date
    assert pd.isna(out.loc["before_birth", "death_date"]) and out.loc["before_birth", "death_flag_error"] == 1
    assert out.loc["claims_after", "death_flag_error"] == 1 and out.loc["claims_after", "death_before_last_claim"] == 1
    assert out.loc["tolerated", "death_flag_error"] == 0  # claim 1 day after death: within tolerance
    assert pd.isna(out.loc["alive", "death_date"]) and out.loc["alive", "death_flag_error"] == 0
    audit = by_rule(deaths.audit_deaths(d))
    assert audit["death_before_birth"].rows_flagged == 1
    assert audit["death_before_last_claim"].rows_flagged == 1
    assert audit["death_from_pmsi"].rows_flagged == 1


# -- ALD -----------------------------------------------------------------------------------------

IMB_SCHEMA = {"BEN_NIR_PSA": "string", "BEN_RNG_GEM": "int32", "IMB_ALD_NUM": "int32", "IMB_ALD_DTD": "date",
              "IMB_ALD_DTF": "date", "IMB_ETM_NAT": "int32", "MED_MTF_COD": "string"}


def _imb(nir, num, start, end):
    return {"BEN_NIR_PSA": nir, "BEN_RNG_GEM": 1, "IMB_ALD_NUM": num, "IMB_ALD_DTD": start, "IMB_ALD_DTF": end,
            "IMB_ETM_NAT": 41, "MED_MTF_COD": "E11"}


def test_ald_active_at_and_groups(cfg):
    rows = [
        _imb(NIR["A"], 8, D(2015, 1, 1), D(1600, 1, 1)),     # diabetes, open-ended
        _imb(NIR["B"], 15, D(2010, 1, 1), D(2099, 12, 31)),  # lifetime
        _imb(NIR["B"], 30, D(2019, 1, 1), D(2020, 12, 31)),  # cancer until end 2020
        _imb(NIR["C"], 5, D(2010, 1, 1), D(2015, 1, 1)),     # expired
        _imb(NIR["D"], 5, D(2016, 1, 1), D(2021, 1, 1)),     # renewal chain, overlapping
        _imb(NIR["D"], 5, D(2020, 11, 1), D(2025, 11, 1)),
        _imb(NIR["Z"], 5, D(2016, 1, 1), D(2021, 1, 1)),     # unlinked
    ]
    kmap = table([{"BEN_NIR_PSA": NIR[k], "BEN_RNG_GEM": 1, "person_id": k} for k in "ABCD"],
                 {"BEN_NIR_PSA": "string", "BEN_RNG_GEM": "int32", "person_id": "string"})
    linked = ald.ald_linked(table(rows, IMB_SCHEMA), kmap)
    periods = ald.ald_periods(linked)
    audit = by_rule(ald.audit_ald(linked))
    assert audit["ald_link_to_beneficiary"].rows_dropped == 1
    assert audit["ald_open_ended"].rows_flagged == 1 and audit["ald_lifetime_2099"].rows_flagged == 1
    assert audit["ald_overlapping_renewal"].rows_flagged == 1
    index = table([{"person_id": p, "index_date": d} for p in "ABCDE" for d in (D(2020, 6, 1), D(2022, 6, 1))],
                  {"person_id": "string", "index_date": "date"})
    out = run(ald.ald_active_at(periods, index, cfg.cleaning.ald_groups))
    got = {(r.person_id, r.index_date.year): (r.ald, r.ald_group) for r in out.itertuples()}
    assert got[("A", 2020)] == (1, "diabetes") and got[("A", 2022)] == (1, "diabetes")
    assert got[("B", 2020)] == (1, "multiple") and got[("B", 2022)] == (1, "neuro_degenerative")
    assert got[("C", 2020)] == (0, "none")
    assert got[("D", 2020)] == (1, "cardiovascular") and got[("D", 2022)] == (1, "cardiovascular")
    assert got[("E", 2020)] == (0, "none")
    assert len(out) == 10  # one row per (person, date), overlapping renewals do not duplicate


# -- panel ---------------------------------------------------------------------------------------


def test_panel_months_and_hospital_attribution(cfg):
    claims = kept_summary([
        {"person_id": "P1", "month": D(2021, 1, 1), "spend_nursing_acts": 100.0, "nursing_acts": 10.0},
        {"person_id": "P1", "month": D(2021, 1, 1), "spend_experiment": 54.0, "experiment_hours": 1.0},
        {"person_id": "P1", "month": D(2021, 2, 1), "spend_pharmacy": 30.0},
    ], cfg.cleaning)
    stays = table([
        # a full stay from 25 Jan to 3 Feb: counted (stays, days) and paid in January, its entry month
        {"person_id": "P1", "entry_date": D(2021, 1, 25), "exit_date": D(2021, 2, 3), "SEJ_NBJ": 9, "is_seance": 0,
         "cost": 5000.0},
        {"person_id": "P1", "entry_date": D(2021, 3, 2), "exit_date": D(2021, 3, 2), "SEJ_NBJ": 0, "is_seance": 1,
         "cost": 400.0},
        {"person_id": "P2", "entry_date": D(2018, 12, 20), "exit_date": D(2019, 1, 2), "SEJ_NBJ": 13, "is_seance": 0,
         "cost": 700.0},
    ], {"person_id": "string", "entry_date": "date", "exit_date": "date", "SEJ_NBJ": "int32", "is_seance": "int8",
        "cost": "float64"})
    panel = run(outputs.panel_table(claims, stays, cfg)).set_index(["person_id", "month"]).sort_index()
    jan, feb, mar = (("P1", pd.Timestamp(2021, m, 1)) for m in (1, 2, 3))
    assert panel.loc[jan, "spend_nursing_acts"] == 100.0 and panel.loc[jan, "nursing_acts"] == 10.0
    assert panel.loc[jan, "spend_experiment"] == 54.0 and panel.loc[jan, "experiment_hours"] == 1.0
    assert panel.loc[jan, "hosp_stays"] == 1 and panel.loc[jan, "hosp_days"] == 9 and panel.loc[jan, "spend_hospital"] == 5000.0
    assert panel.loc[feb, "spend_hospital"] == 0.0 and panel.loc[feb, "spend_pharmacy"] == 30.0
    assert panel.loc[mar, "seances"] == 1 and panel.loc[mar, "hosp_stays"] == 0 and panel.loc[mar, "spend_hospital"] == 400
    # P2's stay entered before claims_start: its month (count and cost) is outside the panel
    assert ("P2", pd.Timestamp(2018, 12, 1)) not in panel.index
    assert ("P2", pd.Timestamp(2019, 1, 1)) not in panel.index
    assert list(panel.reset_index().columns) == outputs.panel_columns(cfg)


# -- end-of-life care days (eol_daily) -----------------------------------------------------------


def test_possible_deaths_cover_ir_ben_r_and_every_pmsi_death_exit(cfg):
    base = table([
        {"person_id": "P1", "ben_death_date": D(2022, 6, 30)},
        {"person_id": "P2", "ben_death_date": None},
        {"person_id": "P3", "ben_death_date": None},
    ], {"person_id": "string", "ben_death_date": "date"})
    stays = [
        _stay(1, nir=NIR["B"], entry=D(2022, 3, 1), exit_=D(2022, 3, 9), sor="9"),
        # a SOR_MOD 9 stay a PMSI rule will drop (GHM 90) is still a possible death date
        _stay(2, nir=NIR["B"], entry=D(2022, 8, 1), exit_=D(2022, 8, 2), sor="9", ghm="90Z00Z"),
        _stay(3, nir=NIR["C"], entry=D(2022, 3, 1), exit_=D(2022, 3, 9), sor="8"),  # not a death
    ]
    bs, cs, _ = zip(*stays, strict=True)
    b = pmsi.union_years([(22, table(list(bs), B_SCHEMA))], pmsi.MCO_B_TYPES, "B")
    c = pmsi.union_years([(22, table(list(cs), C_SCHEMA))], pmsi.MCO_C_TYPES, "C")
    nir_map = table([{"BEN_NIR_PSA": NIR["B"], "person_id": "P2"}, {"BEN_NIR_PSA": NIR["C"], "person_id": "P3"}],
                    {"BEN_NIR_PSA": "string", "person_id": "string"})
    cand = run(dcir.possible_deaths(base, b, c, nir_map))
    assert sorted(zip(cand.person_id, pd.to_datetime(cand.death_date).dt.date, strict=True)) == [
        ("P1", D(2022, 6, 30)), ("P2", D(2022, 3, 9)), ("P2", D(2022, 8, 2))]
    ranges = run(dcir.eol_day_ranges(dcir.possible_deaths(base, b, c, nir_map), 10)).set_index("person_id")
    assert pd.Timestamp(ranges.loc["P2", "eol_from"]).date() == D(2022, 2, 28)  # 9 Mar − 9 days
    assert pd.Timestamp(ranges.loc["P2", "eol_to"]).date() == D(2022, 8, 2)
    assert pd.Timestamp(ranges.loc["P1", "eol_from"]).date() == D(2022, 6, 21)


def test_eol_daily_from_the_dcir_summary(cfg):
    """Kept claims of a decedent are keyed by care day inside the possible-death range; eol_daily keeps
    the final death's eol_daily_days days (death day included), per category, and only usable deaths."""
    days = cfg.cleaning.eol_daily_days
    death = D(2022, 6, 30)
    first = death - pd.Timedelta(days=days - 1)
    rows = [
        prs_row(care=first, euros=10.0),                                   # first day of the window: in
        prs_row(care=first - pd.Timedelta(days=1), euros=1000.0),          # the day before: out
        prs_row(care=D(2022, 5, 2), euros=20.0, qty=2.0),                  # nursing acts, 2 acts
        prs_row(care=D(2022, 5, 2), code=3311, euros=7.0),                 # pharmacy, same day
        prs_row(care=D(2022, 5, 2), code=3311, euros=-7.0, qty=-1.0, flux=D(2022, 7, 1)),  # netted away
        prs_row(care=D(2022, 5, 3), code=9951, euros=54.0, qty=1.0),       # experiment hour
        prs_row(care=D(2022, 5, 4), euros=5.0, dpn=71),                    # dropped by a rule
        prs_row(care=death, euros=30.0),                                   # death day: in
        prs_row(care=D(2022, 7, 1), euros=40.0),                           # after death: out
        prs_row(nir=NIR["B"], care=D(2022, 5, 2), euros=99.0),             # P2: death flagged as an error
        prs_row(nir=NIR["C"], care=D(2022, 5, 2), euros=88.0),             # P3: alive
    ]
    from clean_helpers import PRS_SCHEMA

    prs = table(rows, PRS_SCHEMA)
    kmap = key_map([(NIR["A"], 1, "P1"), (NIR["B"], 1, "P2"), (NIR["C"], 1, "P3")])
    ranges = table([
        {"person_id": "P1", "eol_from": first, "eol_to": death},
        {"person_id": "P2", "eol_from": first, "eol_to": death},
    ], {"person_id": "string", "eol_from": "date", "eol_to": "date"})
    summary = dcir.dcir_stage(prs, kmap, cfg, ranges)
    kept = dcir.kept_claims(summary)
    s = run(kept)
    assert s.loc[s.person_id == "P3", "care_date"].isna().all()  # no possible death: months only
    assert pd.Timestamp(s.loc[s.spend_nursing_acts == 1000.0, "care_date"].iloc[0]) is pd.NaT  # outside the range
    # The day key only splits rows: the panel's sums are those of the claims without it.
    flat = run(dcir.kept_claims(dcir.dcir_stage(prs, kmap, cfg)))
    assert flat["care_date"].isna().all()
    stays = table([], {"person_id": "string", "entry_date": "date", "exit_date": "date", "SEJ_NBJ": "int32",
                       "is_seance": "int8", "cost": "float64"})
    p_split = run(outputs.panel_table(kept, stays, cfg)).sort_values(["person_id", "month"]).reset_index(drop=True)
    p_flat = run(outputs.panel_table(dcir.kept_claims(dcir.dcir_stage(prs, kmap, cfg)), stays, cfg)).sort_values(
        ["person_id", "month"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(p_split, p_flat)

    persons = table([
        {"person_id": "P1", "death_date": death, "death_flag_error": 0},
        {"person_id": "P2", "death_date": death, "death_flag_error": 1},
        {"person_id": "P3", "death_date": None, "death_flag_error": 0},
    ], {"person_id": "string", "death_date": "date", "death_flag_error": "int8"})
    e = run(outputs.eol_daily_table(kept, persons, cfg))
    assert list(e.columns) == outputs.eol_daily_columns(cfg)
    assert set(e.person_id) == {"P1"}
    e = e.assign(care_date=pd.to_datetime(e.care_date).dt.date).set_index("care_date")
    assert sorted(e.index) == [first, D(2022, 5, 2), D(2022, 5, 3), death]
    assert e.loc[first, "spend_nursing_acts"] == 10.0
    assert e.loc[D(2022, 5, 2), "spend_nursing_acts"] == 20.0 and e.loc[D(2022, 5, 2), "nursing_acts"] == 2.0
    assert e.loc[D(2022, 5, 2), "spend_pharmacy"] == 0.0  # the regularisation nets the pharmacy line away
    assert e.loc[D(2022, 5, 3), "spend_experiment"] == 54.0 and e.loc[D(2022, 5, 3), "experiment_hours"] == 1.0
    assert e.loc[death, "spend_nursing_acts"] == 30.0
    assert e[[c for c in e.columns if c.startswith("spend_")]].to_numpy().sum() == 10.0 + 20.0 + 54.0 + 30.0


# -- cohort --------------------------------------------------------------------------------------

PERSON_SCHEMA = {"person_id": "string", "BEN_SEX_COD": "int32", "birth_date": "date", "dpt": "string",
                 "region": "string", "death_date": "date", "death_flag_error": "int8", "treated": "int8",
                 "inclusion_date": "date",
                 **{c: "int8" for c in cohort.ROSTER_CPX}, "complex": "int8"}


def _person(pid, treated=0, inclusion=None, sex=2, birth=BIRTH, dpt="075", death=None, cpx=0):
    return {"person_id": pid, "BEN_SEX_COD": sex, "birth_date": birth, "dpt": dpt, "region": "Île-de-France",
            "death_date": death, "death_flag_error": 0, "treated": treated, "inclusion_date": inclusion,
            **{c: (cpx if c == "CPX_SOCIAL" else 0) for c in cohort.ROSTER_CPX}, "complex": cpx}


def _panel_rows(pid, months, nursing=100.0, other=10.0):
    return [{"person_id": pid, "month": m, "spend_nursing_acts": nursing, "spend_pharmacy": other, "hosp_stays": 0}
            for m in months]


def _panel(rows, cfg):
    cols = outputs.panel_columns(cfg)
    schema = {c: ("string" if c == "person_id" else "date" if c == "month" else
                  "int32" if c in ("hosp_stays", "hosp_days", "seances") else "float64") for c in cols}
    full = [{c: r.get(c, 0 if schema[c] not in ("string", "date") else None) for c in cols} for r in rows]
    return table(full, schema)


def test_cohort_quarterly_design(cfg):
    persons = table([
        _person("T1", treated=1, inclusion=D(2020, 2, 10), cpx=1),
        _person("C1"),
        _person("C2", death=D(2020, 2, 1)),
        _person("C3", dpt="013"),
        _person("C4", sex=None),
        _person("C5", birth=None),
        _person("C6"),
    ], PERSON_SCHEMA)
    months_2019 = [D(2019, m, 1) for m in range(1, 13)]
    rows = (_panel_rows("T1", months_2019) + _panel_rows("C1", months_2019 + [D(2020, 1, 1)])
            + _panel_rows("C2", months_2019) + _panel_rows("C3", months_2019) + _panel_rows("C4", months_2019)
            + _panel_rows("C5", months_2019) + _panel_rows("C6", [D(2019, 5, 1)], nursing=0.5)
            + [{"person_id": "T1", "month": D(2020, 1, 1), "spend_nursing_acts": 999.0, "hosp_stays": 1}])
    periods = table([], {"person_id": "string", "IMB_ALD_NUM": "int32", "ald_start": "date", "ald_end": "date"})
    c = cfg.with_overrides({"study": {"inclusion_end": D(2020, 6, 30), "claims_end": D(2020, 12, 31)}})
    out = run(cohort.cohort_table(persons, _panel(rows, c), periods, c)).set_index("unit_id")
    t1 = out.loc["T1@2020-02-10"]
    # treated: index at inclusion, prior window = 12 months before the first day of its quarter
    assert t1.treated == 1 and t1.index_quarter == "2020Q1" and t1.eligible == 1
    assert t1.prior_nursing_cost == 1200.0 and t1.prior_total_cost == 1320.0 and t1.prior_hosp_stays == 0
    assert t1.age == 79 and t1.complex == 1 and t1.CPX_SOCIAL == 1
    # controls: one row per inclusion quarter with nursing spending in the 12 months before it
    assert out.loc["C1@2020-01-01", "prior_nursing_cost"] == 1200.0
    assert out.loc["C1@2020-04-01", "prior_nursing_cost"] == 1000.0  # Apr 2019 .. Mar 2020 (Jan 2020 included)
    assert not out.index.str.endswith("@2020-07-01").any()  # inclusion ends in June: two quarters
    assert out.loc["C2@2020-04-01", "ineligible_reason"] == "died_before_index"
    assert out.loc["C2@2020-01-01", "eligible"] == 1  # alive on 1 Jan 2020
    assert out.loc["C3@2020-01-01", "ineligible_reason"] == "outside_study_area"
    assert out.loc["C4@2020-01-01", "ineligible_reason"] == "unknown_sex"
    assert out.loc["C5@2020-01-01", "ineligible_reason"] == "unknown_age"
    assert out.loc["C6@2020-01-01", "ineligible_reason"] == "low_prior_nursing_cost"
    assert "C6@2020-04-01" in out.index  # May 2019 is in the window of the second quarter
    assert not out[out.treated == 0].person_id.eq("T1").any()
    assert ((out.eligible == 1) == out.ineligible_reason.isna()).all()
    assert list(out.reset_index().columns) == cohort.COHORT_COLUMNS


def test_cohort_inclusion_date_design(cfg):
    c = cfg.with_overrides({"cohort": {"control_index": "inclusion_date"}})
    persons = table([_person("T1", treated=1, inclusion=D(2020, 2, 10)),
                     _person("T2", treated=1, inclusion=D(2020, 5, 20)), _person("C1")], PERSON_SCHEMA)
    months = [D(2019, m, 1) for m in range(1, 13)] + [D(2020, m, 1) for m in range(1, 6)]
    periods = table([], {"person_id": "string", "IMB_ALD_NUM": "int32", "ald_start": "date", "ald_end": "date"})
    panel = _panel(_panel_rows("T1", months) + _panel_rows("C1", months), c)
    out = run(cohort.cohort_table(persons, panel, periods, c)).set_index("unit_id")
    assert {"C1@2020-02-10", "C1@2020-05-20"} <= set(out.index)
    # window: the 12 calendar months before the index month
    assert out.loc["C1@2020-05-20", "prior_nursing_cost"] == 1200.0
    assert out.loc["T1@2020-02-10", "prior_nursing_cost"] == 1200.0


def test_quarter_and_age_helpers():
    assert cohort.quarter_starts(D(2020, 2, 1), D(2020, 12, 31)) == [D(2020, 1, 1), D(2020, 4, 1), D(2020, 7, 1),
                                                                     D(2020, 10, 1)]
    assert cohort.shift_months(D(2020, 1, 1), -12) == D(2019, 1, 1)
    t = table([{"b": D(1940, 3, 15), "i": D(2020, 3, 14)}, {"b": D(1940, 3, 15), "i": D(2020, 3, 15)}],
              {"b": "date", "i": "date"})
    assert run(t.select(a=cohort.age_at(t.b, t.i))).a.tolist() == [79, 80]


# -- line-key checks riding on the stages' queries (pipeline/input_checks.py) ----------------------


@pytest.mark.parametrize("exact", [False, True])
def test_repeated_line_keys_counts_the_extra_copies(exact):
    from pipeline.input_checks import repeated_line_keys

    schema = {"a": "int64", "b": "string", "d": "date"}
    rows = [{"a": 1, "b": "x", "d": D(2021, 1, 1)}, {"a": 1, "b": "y", "d": D(2021, 1, 1)},
            {"a": 2, "b": "x", "d": D(2021, 1, 1)}, {"a": 1, "b": "x", "d": D(2021, 1, 2)}]
    unique = table(rows, schema)
    assert run(repeated_line_keys(unique, ["a", "b", "d"], exact=exact)).repeated.item() == 0
    # one key three times and another twice: 2 + 1 lines repeat a key seen before
    dup = table(rows + [rows[0], rows[0], rows[2]], schema)
    assert run(repeated_line_keys(dup, ["a", "b", "d"], exact=exact)).repeated.item() == 3
    # on fewer columns, rows differing only by the others share a key
    assert run(repeated_line_keys(unique, ["a"], exact=exact)).repeated.item() == 2


def test_check_row_leaves_the_dcir_audit_and_claims_unchanged(cfg):
    from clean_helpers import PRS_SCHEMA

    from pipeline.input_checks import repeated_line_keys
    from pipeline.stages.rules import with_check_row

    rows = [prs_row(euros=10.0), prs_row(euros=20.0, dpn=71), prs_row(care=D(2021, 4, 2), euros=5.0),
            prs_row(care=D(2021, 4, 2), flux=D(2021, 6, 1), qty=-1.0, euros=-5.0), prs_row(nir=NIR["Z"])]
    prs = table(rows + [rows[0]], PRS_SCHEMA)  # the first line twice
    kmap = key_map([(NIR["A"], 1, "PA")])
    summary = dcir.dcir_stage(prs, kmap, cfg)
    checked = with_check_row(summary, repeated_line_keys(prs, list(PRS_SCHEMA), exact=True), dcir.FATE_KEY_CHECK,
                             "n_lines")
    by_fate = dcir.claims_by_fate(checked)
    assert dcir.repeated_lines(by_fate) == 1 and dcir.repeated_lines(dcir.claims_by_fate(summary)) == 0
    assert [r.as_record() for r in dcir.claims_audit_rows(by_fate, cfg.cleaning)] == \
        [r.as_record() for r in dcir.audit_dcir(summary, cfg.cleaning)]
    kept = run(dcir.kept_claims(checked))
    spend = [c for c in kept.columns if c.startswith("spend_")]
    assert len(kept) == len(run(dcir.kept_claims(summary))) and kept[spend].to_numpy().sum() == 20.0


def test_check_rows_leave_the_stays_and_their_audit_unchanged(cfg):
    from pipeline.input_checks import repeated_line_keys
    from pipeline.stages.rules import with_check_row

    stays = [_stay(1), _stay(2, ret="1"), _stay(3, ghm="90Z00Z")]
    bs, cs, vs = zip(*stays, strict=True)
    b = pmsi.union_years([(21, table([*bs, bs[0]], B_SCHEMA))], pmsi.MCO_B_TYPES, "B")  # stay 1 twice in B
    c = pmsi.union_years([(21, table(list(cs), C_SCHEMA))], pmsi.MCO_C_TYPES, "C")
    v = pmsi.union_years([(21, table(list(vs), V_SCHEMA))], pmsi.MCO_VALO_TYPES, "V")
    nir_map = table([{"BEN_NIR_PSA": NIR["A"], "person_id": "P1"}], {"BEN_NIR_PSA": "string", "person_id": "string"})
    s = pmsi.mco_stays(b, c, v, nir_map, cfg)
    checked = s
    for key, t in (("MCO_B", b), ("MCO_C", c), ("MCO_VALO", v)):
        checked = with_check_row(checked, repeated_line_keys(t, pmsi.STAY_KEY), pmsi.KEY_CHECK_FATES[key], "RSA_NUM")
    by_fate = pmsi.stays_by_fate(checked)
    assert pmsi.repeated_keys(by_fate) == {"MCO_B": 1, "MCO_C": 0, "MCO_VALO": 0}
    assert [r.as_record() for r in pmsi.stays_audit_rows(by_fate, cfg.cleaning)] == \
        [r.as_record() for r in pmsi.audit_pmsi(s, cfg.cleaning)]
    pd.testing.assert_frame_equal(run(pmsi.stays_valid(checked)).sort_values("RSA_NUM").reset_index(drop=True),
                                  run(pmsi.stays_valid(s)).sort_values("RSA_NUM").reset_index(drop=True))
