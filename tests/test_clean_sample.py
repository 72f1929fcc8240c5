"""Cleaning the committed sample: planted defects found, conservation, contract outputs, privacy."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from data_samples import SAMPLE_DIR
from pipeline import runner
from pipeline.config import load_config
from pipeline.paths import BuildPaths
from pipeline.stages import cohort as cohort_stage
from pipeline.stages import outputs as outputs_stage


@pytest.fixture(scope="module")
def cfg():
    return load_config()


@pytest.fixture(scope="module")
def built(tmp_path_factory, cfg):
    build = tmp_path_factory.mktemp("clean_sample")
    result = runner.run(BuildPaths(build, SAMPLE_DIR), cfg)
    return build, result


@pytest.fixture(scope="module")
def attrition(built):
    return pd.read_csv(BuildPaths(built[0]).attrition)


@pytest.fixture(scope="module")
def truth():
    return json.loads((SAMPLE_DIR / "truth.json").read_text())


def audit_value(att: pd.DataFrame, stage: str, rule: str, col: str) -> int:
    row = att[(att.stage == stage) & (att.rule == rule)]
    assert len(row) == 1, f"no audit row {stage}/{rule}"
    return int(row[col].item())


# Planted defect (truth.json "defects") -> the audit row and column that must report exactly its count.
DEFECT_RULES = {
    "dpn_qlf_71_lines": ("dcir", "dpn_qlf_71", "rows_dropped"),
    "bse_prs_nat_0_lines": ("dcir", "bse_prs_nat_0", "rows_dropped"),
    "care_before_window_lines": ("dcir", "care_window", "rows_dropped"),
    "regularisation_pairs": ("dcir", "regularisation_netting", "rows_flagged"),
    "ghm_90_stays": ("pmsi", "ghm_90_error", "rows_dropped"),
    "duplicate_finess_stays": ("pmsi", "duplicate_geographic_finess", "rows_dropped"),
    "bad_return_code_stays": ("pmsi", "bad_return_codes", "rows_dropped"),
    "x_nir_stays": ("pmsi", "nir_x_filled", "rows_dropped"),
    "sentinel_death_dates": ("ingest", "death_date_sentinel", "rows_flagged"),
    "multi_nir_persons": ("ingest", "unify_persons", "rows_flagged"),
    "ald_2099_rows": ("ald", "ald_lifetime_2099", "rows_flagged"),
    "ald_open_ended_rows": ("ald", "ald_open_ended", "rows_flagged"),
    "ald_overlapping_renewals": ("ald", "ald_overlapping_renewal", "rows_flagged"),
    "death_before_birth": ("deaths", "death_before_birth", "rows_flagged"),
    "death_before_claim": ("deaths", "death_before_last_claim", "rows_flagged"),
    "pmsi_only_deaths": ("deaths", "death_from_pmsi", "rows_flagged"),
}


@pytest.mark.parametrize("defect", sorted(DEFECT_RULES))
def test_planted_defect_caught_exactly(defect, attrition, truth):
    stage, rule, col = DEFECT_RULES[defect]
    assert defect in truth["defects"], f"the generator no longer reports {defect}"
    assert audit_value(attrition, stage, rule, col) == truth["defects"][defect]


def test_surcharge_lines_not_counted_as_acts(attrition, truth):
    # The generator counts surcharge lines before dropping those whose flux falls after the extract
    # horizon (not extracted), so the audit may see up to that many fewer.
    seen = audit_value(attrition, "dcir", "cpl_maj_top_not_an_act", "rows_flagged")
    planted = truth["defects"]["cpl_maj_top_2_lines"]
    assert 0 <= planted - seen <= truth["defects"]["beyond_flux_horizon_lines_not_extracted"]
    assert seen > 0.9 * planted


def test_corsica_and_unknown_values(attrition, truth, built):
    d = truth["defects"]
    # IR_BEN_R rows of the planted variant persons (a multi-NIR person has two rows).
    variants = (audit_value(attrition, "ingest", "corsica_departement_variant", "rows_flagged")
                + audit_value(attrition, "ingest", "departement_undetermined", "rows_flagged"))
    assert d["corsica_variant_persons"] <= variants <= d["corsica_variant_persons"] + d["multi_nir_persons"]
    persons = pd.read_parquet(BuildPaths(built[0]).persons)
    assert not persons.dpt.isin(["201", "202", "020", "209"]).any()
    assert persons.BEN_SEX_COD.isna().sum() == d["unknown_sex_persons"]
    assert persons.birth_date.isna().sum() == d["unknown_birth_persons"]


def test_counts_match_truth(built, truth):
    paths = BuildPaths(built[0])
    persons = pd.read_parquet(paths.persons)
    c = truth["counts"]
    assert len(persons) == c["persons"]
    assert int(persons.treated.sum()) == c["treated"]
    # planted deaths, plus the wrong IR_BEN_R dates of alive persons with later claims: kept, flagged
    d = truth["defects"]
    assert persons.death_date.notna().sum() == c["deaths"] + d["death_before_claim"]
    assert persons.death_flag_error.sum() == d["death_before_claim"] + d["death_before_birth"]


def test_conservation_every_rule(attrition):
    assert len(attrition) >= 35
    assert (attrition.rows_in == attrition.rows_out + attrition.rows_dropped).all()
    assert (attrition.rows_dropped >= 0).all() and (attrition.rows_flagged >= 0).all()
    # drop rules of a chain hand their rows on: rows_out of one = rows_in of the next
    for stage in ("dcir", "pmsi", "eligibility"):
        sub = attrition[(attrition.stage == stage) & (attrition.rows_dropped > 0) | (attrition.stage == stage)
                        & (attrition.rows_flagged == 0)]
        chain = sub[sub.rows_in != sub.rows_out]
        for a, b in zip(chain.itertuples(), chain.iloc[1:].itertuples(), strict=False):
            assert a.rows_out >= b.rows_in or a.stage != b.stage


def test_dcir_chain_and_euros(attrition, built):
    dcir = attrition[attrition.stage == "dcir"].set_index("rule")
    order = ["dpn_qlf_71", "bse_prs_nat_0", "care_window", "flux_window", "regularisation_netting",
             "link_to_beneficiary"]
    for a, b in zip(order, order[1:], strict=False):
        assert dcir.loc[a, "rows_out"] == dcir.loc[b, "rows_in"]
    raw = pq.read_table(SAMPLE_DIR / "ER_PRS_F.parquet", columns=["BSE_REM_MNT"]).to_pandas()
    assert dcir.loc["dpn_qlf_71", "rows_in"] == len(raw)
    # euros: kept spending + euros dropped by every rule = BSE_REM_MNT of the extract
    panel = pd.read_parquet(BuildPaths(built[0]).panel)
    dcir_cols = [c for c in panel.columns if c.startswith("spend_") and c != "spend_hospital"]
    kept = panel[dcir_cols].to_numpy().sum()
    assert kept + dcir.euros_dropped.sum() == pytest.approx(raw.BSE_REM_MNT.sum(), rel=1e-9)


def test_pmsi_euros(attrition, built):
    pmsi = attrition[attrition.stage == "pmsi"]
    stays = pd.read_parquet(BuildPaths(built[0]).stays)
    valo = pd.concat([pd.read_parquet(p) for p in sorted(SAMPLE_DIR.glob("T_MCO*VALO.parquet"))])
    valued = valo.loc[valo.VALO.fillna(0) != 0, "MNT_TOT_AM"].sum()
    assert stays.cost.sum() + pmsi.euros_dropped.sum() == pytest.approx(valued, rel=1e-9)


def test_outputs_follow_the_contract(built, cfg):
    paths = BuildPaths(built[0])
    persons = pd.read_parquet(paths.persons)
    assert list(persons.columns) == outputs_stage.PERSONS_COLUMNS
    assert persons.person_id.is_unique
    panel = pd.read_parquet(paths.panel)
    assert list(panel.columns) == outputs_stage.panel_columns(cfg)
    assert not panel.duplicated(["person_id", "month"]).any()
    months = pd.to_datetime(panel.month)
    assert (months.dt.day == 1).all()
    assert months.min() >= pd.Timestamp(cfg.study.claims_start) and months.max() <= pd.Timestamp(cfg.study.claims_end)
    assert set(panel.person_id) <= set(persons.person_id)
    stays = pd.read_parquet(paths.stays)
    assert list(stays.columns) == outputs_stage.STAYS_COLUMNS
    assert set(stays.is_seance) <= {0, 1} and stays.GRG_GHM.str[:2].eq("28").eq(stays.is_seance == 1).all()
    # panel hospital figures agree with the stays of the hospital perimeter (not the cataract stays)
    assert set(stays.stay_category) <= {"hospital", *cfg.cleaning.stay_category_names}
    hosp = stays[stays.stay_category == "hospital"]
    assert panel.spend_hospital.sum() == pytest.approx(hosp.cost.sum())
    assert panel.hosp_stays.sum() == (hosp.is_seance == 0).sum()
    assert panel.seances.sum() == hosp.is_seance.sum()
    cohort = pd.read_parquet(paths.cohort)
    assert list(cohort.columns) == cohort_stage.COHORT_COLUMNS
    assert cohort.unit_id.is_unique
    # eol_daily: usable decedents only, care days inside [death − (eol_daily_days − 1), death]
    eol = pd.read_parquet(paths.eol_daily)
    assert list(eol.columns) == outputs_stage.eol_daily_columns(cfg)
    assert len(eol) and not eol.duplicated(["person_id", "care_date"]).any()
    dec = persons[persons.death_date.notna() & (persons.death_flag_error == 0)].set_index("person_id")
    assert set(eol.person_id) <= set(dec.index)
    death = pd.to_datetime(dec.loc[eol.person_id, "death_date"]).to_numpy()
    care = pd.to_datetime(eol.care_date).to_numpy()
    assert (care <= death).all()
    assert (care >= death - pd.Timedelta(days=cfg.cleaning.eol_daily_days - 1).to_timedelta64()).all()
    assert "PMSI" in set(dec.loc[eol.person_id.unique(), "death_source"])  # PMSI-only deaths are covered


def test_cohort_rows(built, cfg):
    paths = BuildPaths(built[0])
    persons = pd.read_parquet(paths.persons).set_index("person_id")
    cohort = pd.read_parquet(paths.cohort)
    treated = cohort[cohort.treated == 1]
    controls = cohort[cohort.treated == 0]
    # one row per treated person, at inclusion
    assert treated.person_id.is_unique and len(treated) == int(persons.treated.sum())
    inc = persons.loc[treated.person_id, "inclusion_date"].to_numpy()
    assert (pd.to_datetime(treated.index_date).to_numpy() == pd.to_datetime(inc)).all()
    # controls: never in the roster, indexed on the first day of an inclusion quarter
    assert not persons.loc[controls.person_id.unique(), "treated"].any()
    idx = pd.to_datetime(controls.index_date)
    assert ((idx.dt.day == 1) & idx.dt.month.isin([1, 4, 7, 10])).all()
    assert idx.min() >= pd.Timestamp(cfg.study.inclusion_start) and idx.max() <= pd.Timestamp(cfg.study.inclusion_end)
    assert (controls.index_quarter == idx.dt.year.astype(str) + "Q" + idx.dt.quarter.astype(str)).all()
    # eligibility: a reason exactly when ineligible, reasons from the documented list
    assert ((cohort.eligible == 0) == cohort.ineligible_reason.notna()).all()
    assert set(cohort.ineligible_reason.dropna()) <= set(cohort_stage.INELIGIBLE_REASONS)
    el = cohort[cohort.eligible == 1]
    assert el.dpt.isin(cfg.study.departements).all() and el.BEN_SEX_COD.notna().all() and (el.age >= 0).all()
    assert (el[el.treated == 0].prior_nursing_cost >= cfg.cohort.min_prior_nursing_cost).all()
    assert set(cohort.ald_group) <= {*cfg.cleaning.ald_groups, "none", "multiple", "ungrouped"}
    assert ((cohort.ald == 0) == (cohort.ald_group == "none")).all()


def test_prior_cost_recomputed_from_panel(built, cfg):
    """prior_nursing_cost of a few rows, recomputed in pandas from the panel (independent of Ibis)."""
    paths = BuildPaths(built[0])
    panel = pd.read_parquet(paths.panel)
    panel["month"] = pd.to_datetime(panel.month)
    cohort = pd.read_parquet(paths.cohort)
    nursing = [f"spend_{c}" for c in cfg.cohort.nursing_categories]
    sample = pd.concat([cohort[cohort.treated == 1].head(10), cohort[cohort.treated == 0].sample(20, random_state=1)])
    for row in sample.itertuples():
        idx = pd.Timestamp(row.index_date)
        end = pd.Timestamp(idx.year, 3 * ((idx.month - 1) // 3) + 1, 1)  # quarterly design
        start = end - pd.DateOffset(months=12)
        p = panel[(panel.person_id == row.person_id) & (panel.month >= start) & (panel.month < end)]
        assert row.prior_nursing_cost == pytest.approx(p[nursing].to_numpy().sum(), abs=1e-6)
        assert row.prior_hosp_stays == p.hosp_stays.sum()


def test_cohort_flow_rows(attrition, built):
    flow = attrition[attrition.stage == "cohort"].set_index("rule")
    assert list(flow.index) == ["extract", "cleaned", "eligible"]
    cohort = pd.read_parquet(BuildPaths(built[0]).cohort)
    assert flow.loc["eligible", "rows_in"] == len(cohort)
    assert flow.loc["eligible", "treated_rows"] == int(((cohort.eligible == 1) & (cohort.treated == 1)).sum())
    assert flow.loc["eligible", "control_rows"] == int(((cohort.eligible == 1) & (cohort.treated == 0)).sum())
    reasons = attrition[attrition.stage == "eligibility"]
    assert reasons.rows_dropped.sum() == flow.loc["eligible", "rows_dropped"]


def test_manifest_and_log(built):
    paths = BuildPaths(built[0])
    manifest = json.loads(paths.clean_manifest.read_text())
    assert set(manifest["outputs"]) == {"persons", "panel", "stays", "eol_daily", "cohort", "attrition"}
    assert set(manifest["parameters"]) == {"study", "extract", "cleaning", "cohort", "engine"}
    assert manifest["code"]["stages_sha256"] and manifest["code"]["package_version"]
    assert set(manifest["stages"]) == {"ingest", "dcir", "pmsi", "outputs", "cohort"}
    assert all(s["seconds"] is not None and s["peak_rss_mb"] > 0 for s in manifest["stages"].values())
    assert {h["table"] for hs in manifest["inputs"].values() for h in hs} >= {"ER_PRS_F", "IR_BEN_R", "MCO_B"}
    from pipeline.io import file_hash

    for name, info in manifest["outputs"].items():
        assert file_hash(paths.root / info["path"])["sha256"] == info["sha256"], name
    # the log says what was done, without any identifier
    log = (paths.logs / "clean.log").read_text()
    assert "stage dcir: done" in log
    persons = pd.read_parquet(paths.persons)
    nirs = pq.read_table(SAMPLE_DIR / "IR_BEN_R.parquet", columns=["BEN_NIR_PSA"]).column(0).to_pylist()
    for ident in [*persons.person_id.head(50), *nirs[:50]]:
        assert ident not in log
