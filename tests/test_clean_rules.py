"""Each cleaning rule on a small hand-built table with a known answer (DuckDB backend)."""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest
from clean_helpers import BEN_SCHEMA, NIR, PRS_SCHEMA, D, ben_row, key_map, prs_row, run, table

from pipeline.config import load_config
from pipeline.stages import all_rules, dcir, ingest
from pipeline.stages.rules import AuditRow


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def by_rule(rows: list[AuditRow]) -> dict[str, AuditRow]:
    return {r.rule: r for r in rows}


# -- rules are named and cited -------------------------------------------------------------------


def test_every_rule_has_description_and_source():
    rules = all_rules()
    assert len(rules) >= 25
    for (stage, name), r in rules.items():
        assert r.description and r.source.startswith(("https://", "docs/")), (stage, name, r.source)
        assert "documentation-snds" in r.source or "SCALPEL" in r.source, (name, r.source)


# -- ingest --------------------------------------------------------------------------------------


def test_departements_normalised():
    t = table([ben_row(NIR["A"], dpt=d) for d in ["201", "202", "020", "209", "75", "2A", "059", "971"]], BEN_SCHEMA)
    out = run(ingest.beneficiaries_normalised(t))
    assert out["dpt"].tolist() == ["02A", "02B", None, None, "075", "02A", "059", "971"]


def test_sentinels_sex_and_birth():
    rows = [
        ben_row(NIR["A"], sex=1, year="1940", month="03", death=D(1600, 1, 1)),
        ben_row(NIR["B"], sex=9, year="1600", month="01", death=D(2022, 5, 3)),
        ben_row(NIR["C"], sex=0, year="1950", month="00", death=None),
    ]
    out = run(ingest.beneficiaries_normalised(table(rows, BEN_SCHEMA))).set_index("BEN_NIR_PSA")
    a, b, c = out.loc[NIR["A"]], out.loc[NIR["B"]], out.loc[NIR["C"]]
    assert pd.isna(a.ben_death_date) and b.ben_death_date == pd.Timestamp("2022-05-03")
    assert a.BEN_SEX_COD == 1 and pd.isna(b.BEN_SEX_COD) and pd.isna(c.BEN_SEX_COD)
    assert a.birth_date == pd.Timestamp("1940-03-15")  # 15th of the birth month
    assert pd.isna(b.birth_date)  # 1600 = unknown
    assert c.birth_date == pd.Timestamp("1950-07-01") and c.birth_floor == pd.Timestamp("1950-01-01")


def test_persons_unified_by_ben_idt_ano():
    rows = [
        ben_row(NIR["A"], idt="P1", sex=1, death=D(1600, 1, 1)),
        ben_row(NIR["B"], idt="P1", sex=9, death=D(2022, 5, 3)),
        ben_row(NIR["C"], idt=None),
        ben_row(NIR["C"], idt=None, rng=2, year="1960"),
        ben_row(NIR["D"], idt="  "),
    ]
    t = table(rows, BEN_SCHEMA)
    norm = ingest.beneficiaries_normalised(t)
    persons = run(ingest.persons_unified(norm)).set_index("person_id")
    # without BEN_IDT_ANO, twins (same BEN_NIR_PSA, other rank) stay two persons
    assert sorted(persons.index) == sorted(["P1", NIR["C"], NIR["C"] + ":2", NIR["D"]])
    assert persons.loc["P1", "n_nir"] == 2 and persons.loc["P1", "BEN_SEX_COD"] == 1
    assert persons.loc["P1", "ben_death_date"] == pd.Timestamp("2022-05-03")
    kmap = run(ingest.person_key_map(norm))
    assert len(kmap) == 5 and kmap.loc[kmap.BEN_NIR_PSA == NIR["B"], "person_id"].item() == "P1"
    audit = by_rule(ingest.audit_ingest(t))
    assert (audit["unify_persons"].rows_in, audit["unify_persons"].rows_out) == (5, 4)
    assert audit["unify_persons"].rows_flagged == 1  # one person with two BEN_NIR_PSA
    assert audit["death_date_sentinel"].rows_flagged == 4
    assert audit["sex_unknown"].rows_flagged == 1


# -- DCIR ----------------------------------------------------------------------------------------


def _dcir(rows, cfg, kmap=None):
    prs = table(rows, PRS_SCHEMA)
    kmap = kmap if kmap is not None else key_map([(NIR[k], 1, f"P{k}") for k in "ABC"])
    summary = dcir.dcir_stage(prs, kmap, cfg)
    return run(summary), by_rule(dcir.audit_dcir(summary, cfg.cleaning))


def test_dcir_line_rules_and_euros(cfg):
    rows = [
        prs_row(euros=10.0),                                   # kept
        prs_row(euros=20.0, dpn=71),                           # dpn_qlf_71
        prs_row(euros=30.0, bse_nat=0),                        # bse_prs_nat_0
        prs_row(euros=40.0, care=D(2018, 12, 31)),             # care_window (before claims_start)
        prs_row(euros=50.0, care=D(2023, 12, 1), flux=D(2024, 7, 1)),   # flux_window (after 2024-06-30)
        prs_row(euros=60.0, care=D(2023, 12, 2), flux=D(2024, 6, 1)),   # kept: last accepted flux month
        prs_row(nir=NIR["Z"], euros=70.0),                     # unlinked
    ]
    summary, audit = _dcir(rows, cfg)
    assert audit["dpn_qlf_71"].rows_dropped == 1 and audit["dpn_qlf_71"].euros_dropped == 20.0
    assert audit["bse_prs_nat_0"].rows_dropped == 1 and audit["bse_prs_nat_0"].euros_dropped == 30.0
    assert audit["care_window"].rows_dropped == 1 and audit["care_window"].euros_dropped == 40.0
    assert audit["flux_window"].rows_dropped == 1 and audit["flux_window"].euros_dropped == 50.0
    assert audit["link_to_beneficiary"].rows_dropped == 1 and audit["link_to_beneficiary"].euros_dropped == 70.0
    assert audit["dpn_qlf_71"].rows_in == 7
    kept = summary[summary.fate == 0]
    assert kept.euros.sum() == 70.0 and kept.n_lines.sum() == 2
    # euros are conserved: kept + dropped = input
    dropped = sum(r.euros_dropped for r in audit.values())
    assert math.isclose(kept.euros.sum() + dropped, sum(r["BSE_REM_MNT"] for r in rows))


def test_dcir_rules_can_be_disabled(cfg):
    c = cfg.with_overrides({"cleaning": {"drop_dpn_qlf_71": False, "apply_flux_window": False}})
    rows = [prs_row(dpn=71), prs_row(care=D(2023, 12, 1), flux=D(2024, 9, 1))]
    summary, audit = _dcir(rows, c)
    assert audit["dpn_qlf_71"].rows_dropped == 0 and "disabled" in audit["dpn_qlf_71"].description
    assert summary[summary.fate == 0].n_lines.sum() == 2


def test_regularisation_netting(cfg):
    rows = [
        # a cancelled pair: original + full correction in a later flux -> dropped
        prs_row(care=D(2021, 3, 10), flux=D(2021, 3, 1), qty=1, euros=10.0),
        prs_row(care=D(2021, 3, 10), flux=D(2021, 5, 1), qty=-1, euros=-10.0),
        # a partial correction: 3 acts, 1 cancelled -> one line of 2 acts, 20 euros
        prs_row(care=D(2021, 4, 10), qty=3, euros=30.0),
        prs_row(care=D(2021, 4, 10), flux=D(2021, 6, 1), qty=-1, euros=-10.0),
        # a different code on the same day is not netted with the others
        prs_row(care=D(2021, 4, 10), code=3112, qty=1, euros=5.0),
    ]
    summary, audit = _dcir(rows, cfg)
    net = audit["regularisation_netting"]
    assert (net.rows_in, net.rows_out, net.rows_dropped) == (5, 2, 3)
    assert net.rows_flagged == 2  # two netted lines contained a regularisation
    assert net.euros_dropped == 0.0  # the cancelled pair sums to 0 euros
    kept = summary[summary.fate == 0]
    assert kept.euros.sum() == 25.0 and kept.spend_nursing_acts.sum() == 25.0
    assert kept.nursing_acts.sum() == 3.0


def test_netting_across_fates_unlinked_lines_and_null_quantities(cfg):
    """Lines sharing a netting key across fates, unlinked lines, a null quantity, lines alone: the
    groups, the netted euros and the audit of each rule."""
    rows = [
        prs_row(care=D(2021, 3, 10), qty=2, euros=20.0),                              # kept, key 1
        prs_row(care=D(2021, 3, 10), flux=D(2021, 5, 1), qty=-1, euros=-10.0),        # its correction
        prs_row(care=D(2023, 12, 1), euros=7.0),                                      # kept, key 2
        prs_row(care=D(2023, 12, 1), flux=D(2024, 7, 1), euros=8.0),                  # key 2, flux_window
        prs_row(nir=NIR["Z"], care=D(2021, 2, 1), qty=1, euros=3.0),                  # unlinked pair that
        prs_row(nir=NIR["Z"], care=D(2021, 2, 1), flux=D(2021, 4, 1), qty=-1, euros=-3.0),  # cancels out
        prs_row(nir=NIR["Z"], care=D(2021, 2, 2), euros=4.0),                         # unlinked, alone
        dict(prs_row(care=D(2021, 6, 1), euros=5.0), PRS_ACT_QTE=None),               # null quantity, alone
        prs_row(care=D(2021, 6, 2), euros=6.0),                                       # kept, alone
        prs_row(care=D(2021, 7, 1), qty=-1, euros=-9.0),                              # orphan correction
    ]
    summary, audit = _dcir(rows, cfg)
    assert audit["flux_window"].rows_dropped == 1 and audit["flux_window"].euros_dropped == 8.0
    net = audit["regularisation_netting"]
    # 9 lines enter netting: the kept pair -> 1 group; the unlinked pair, the null quantity and the orphan
    # correction are netted away (0 + 5 - 9 euros); 4 groups go on (the kept pair, key 2's kept line, the
    # unlinked line alone, the kept line alone)
    assert (net.rows_in, net.rows_out, net.euros_dropped) == (9, 4, -4.0)
    assert net.rows_flagged == 3  # the kept pair, the unlinked pair and the orphan contain a negative line
    link = audit["link_to_beneficiary"]
    assert (link.rows_in, link.rows_out, link.euros_dropped) == (4, 3, 4.0)
    kept = summary[summary.fate == 0]
    assert kept.euros.sum() == 23.0 and kept.n_lines.sum() == 4 and kept.n_groups.sum() == 3


def test_netting_disabled_keeps_every_line(cfg):
    c = cfg.with_overrides({"cleaning": {"net_regularisations": False}})
    rows = [prs_row(qty=1, euros=10.0), prs_row(flux=D(2021, 5, 1), qty=-1, euros=-10.0)]
    summary, audit = _dcir(rows, c)
    assert audit["regularisation_netting"].rows_dropped == 0
    assert summary[summary.fate == 0].n_lines.sum() == 2


def test_cpl_maj_top_counts_euros_not_acts(cfg):
    rows = [prs_row(qty=2, euros=20.0), prs_row(qty=1, euros=5.0, cpl=2)]
    summary, audit = _dcir(rows, cfg)
    kept = summary[summary.fate == 0]
    assert kept.euros.sum() == 25.0 and kept.spend_nursing_acts.sum() == 25.0
    assert kept.nursing_acts.sum() == 2.0 and kept.lines_not_an_act.sum() == 1
    assert audit["cpl_maj_top_not_an_act"].rows_flagged == 1
    assert audit["cpl_maj_top_not_an_act"].rows_dropped == 0


def test_categories_first_match_and_all_criteria(cfg):
    rows = [
        prs_row(code=9951, qty=4, euros=216.0, act_nat=24),          # experiment, 4 hours
        prs_row(code=3111, act_nat=24),                              # nursing_acts
        prs_row(code=3107, act_nat=24),                              # nurse_assessment
        prs_row(code=1848, act_nat=24),                              # nurse_travel (code AND nurse)
        prs_row(code=1848, act_nat=26),                              # IFI code, not a nurse -> other
        prs_row(code=1111, act_nat=0, spe=1),                        # gp (code AND GP specialty)
        prs_row(code=1111, act_nat=0, spe=7),                        # same code, specialist
        prs_row(code=3311, act_nat=50),                              # pharmacy
        prs_row(code=1234, act_nat=0),                               # other
    ]
    # one amount per line (powers of two), so each category's spending names the lines it holds
    rows = [dict(r, EXE_SOI_DTD=D(2021, 1, 1 + i), EXE_SOI_DTF=D(2021, 1, 1 + i), BSE_REM_MNT=float(2 ** i))
            for i, r in enumerate(rows)]
    summary, _ = _dcir(rows, cfg)
    kept = summary[summary.fate == 0]
    spend = {c: kept[dcir.spend_column(c)].sum() for c in cfg.cleaning.category_names}
    assert {c: v for c, v in spend.items() if v} == {
        "experiment": 1.0, "nursing_acts": 2.0, "nurse_assessment": 4.0, "nurse_travel": 8.0, "gp": 32.0,
        "specialist": 64.0, "pharmacy": 128.0, "other": 16.0 + 256.0,
    }
    assert kept.n_lines.sum() == 9 and kept.nursing_acts.sum() == 1.0
    assert kept.experiment_hours.sum() == 4.0


def test_dcir_multi_nir_person_merged(cfg):
    kmap = key_map([(NIR["A"], 1, "P1"), (NIR["B"], 1, "P1")])
    rows = [prs_row(nir=NIR["A"], euros=10.0), prs_row(nir=NIR["B"], euros=5.0, care=D(2021, 3, 20))]
    summary, _ = _dcir(rows, cfg, kmap)
    kept = summary[summary.fate == 0]
    claims = kept[kept.person_id.notna()]  # the claim rows; the fate row carries the counters
    assert claims.person_id.unique().tolist() == ["P1"] and kept.euros.sum() == 15.0
    assert claims.last_care.max() == pd.Timestamp("2021-03-20")


def test_summary_claim_rows_and_fate_rows(cfg):
    """Claim rows (a person) carry the amounts and no counter; one fate row per fate (no person) carries
    the counters and no amount; the kept fate row's euros equal the claim rows' spending."""
    rows = [prs_row(euros=10.0), prs_row(code=9951, qty=2, euros=54.0, care=D(2021, 4, 2)),
            prs_row(care=D(2023, 12, 1), flux=D(2024, 7, 1), euros=8.0)]   # flux_window drops it
    summary, _ = _dcir(rows, cfg)
    amounts = dcir.summary_amount_columns(cfg.cleaning)
    counters = ["n_lines", "n_groups", "n_regularised", "lines_not_an_act", "euros", "abs_euros"]
    claims, fates = summary[summary.person_id.notna()], summary[summary.person_id.isna()]
    assert set(claims.fate) == {0} and len(claims) == 2
    assert claims[counters].isna().all().all() and fates[amounts].isna().all().all()
    assert fates.fate.is_unique and {0}.issubset(set(fates.fate)) and len(fates) == 2
    kept = fates[fates.fate == 0].iloc[0]
    assert (kept.n_lines, kept.n_groups) == (2, 2)
    spend = claims[[c for c in amounts if c.startswith("spend_")]].to_numpy().sum()
    assert math.isclose(kept.euros, spend) and math.isclose(kept.euros, 64.0)


def test_flux_cutoff_is_end_of_month():
    assert dcir.add_months(D(2023, 12, 31), 6) == D(2024, 6, 30)
    assert dcir.add_months(D(2023, 8, 31), 6) == D(2024, 2, 29)


# -- roster ----------------------------------------------------------------------------------------


def _roster_row(nir: str, inclusion: dt.date, team: str = "EQ01") -> dict:
    return {"BEN_NIR_PSA": nir, "EQL_INC_DTE": inclusion, "EQL_SOR_DTE": D(1600, 1, 1), "EQL_EQP_ID": team,
            "EQL_DPT": "54", **{c: 0 for c in ingest.ROSTER_CPX}}


def test_roster_row_dropped_by_an_earlier_rule_never_displaces_the_kept_row():
    """Person A is listed twice: once with an unknown inclusion (1600-01-01, which sorts first) and once
    with a valid one. The valid row is kept; person B, listed twice validly, keeps the earliest."""
    schema = {"BEN_NIR_PSA": "string", "EQL_INC_DTE": "date", "EQL_SOR_DTE": "date", "EQL_EQP_ID": "string",
              "EQL_DPT": "string", **{c: "int8" for c in ingest.ROSTER_CPX}}
    roster = table([_roster_row(NIR["A"], D(1600, 1, 1)), _roster_row(NIR["A"], D(2021, 5, 3)),
                    _roster_row(NIR["B"], D(2022, 2, 1)), _roster_row(NIR["B"], D(2021, 9, 1), team="EQ02")],
                   schema)
    nir_map = table([{"BEN_NIR_PSA": NIR["A"], "person_id": "pA"}, {"BEN_NIR_PSA": NIR["B"], "person_id": "pB"}],
                    {"BEN_NIR_PSA": "string", "person_id": "string"})
    linked = ingest.roster_linked(roster, nir_map, ingest.InclusionPeriod(D(2020, 1, 1), D(2023, 12, 31)))
    kept = run(ingest.roster_persons(linked)).sort_values("person_id")
    assert kept["person_id"].tolist() == ["pA", "pB"]
    assert kept["inclusion_date"].tolist() == [pd.Timestamp("2021-05-03"), pd.Timestamp("2021-09-01")]
    audit = by_rule(ingest.audit_roster(linked))
    assert audit["roster_inclusion_unknown"].rows_dropped == 1
    assert audit["roster_one_row_per_person"].rows_dropped == 1
