"""The synthetic extract: determinism, atomic writes, population, planted defects and truth."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import duckdb
import numpy as np
import pytest

import data_samples.chunks as chunks
import data_samples.generator as gen
from data_samples import SAMPLE_DIR
from data_samples.generator import GenerationError, generate_extract
from data_samples.outcomes import MonthGrid, StayWindowModel, TruthAccumulator, chunk_means, window_day_share
from data_samples.population import CONTROL, DAY, DAYS_PER_MONTH, TREATED, build_population, death_time_months
from data_samples.truth import MORTALITY_TRUTH, NULL_TRUTH, TruthParams, load_truth
from pipeline.config import load_config


@pytest.fixture(scope="module")
def config():
    return load_config()


@pytest.fixture(scope="module")
def truth() -> dict:
    return json.loads((SAMPLE_DIR / "truth.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def con():
    c = duckdb.connect()
    for name in ("IR_BEN_R", "IR_IMB_R", "ER_PRS_F", "EQUILIBRES_ROSTER"):
        c.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{SAMPLE_DIR / name}.parquet')")
    for part in ("B", "C", "VALO"):
        c.execute(f"CREATE VIEW MCO_{part} AS SELECT * FROM read_parquet('{SAMPLE_DIR}/T_MCO??{part}.parquet')")
    return c


def one(con, sql: str):
    return con.execute(sql).fetchall()[0][0]


def hashes(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


def _gen(out: Path, config, seed: int = 1, **kw):
    args = dict(scale=0.001, seed=seed, truth_path=None, fmt="parquet", confounding=None, config=config)
    args.update(kw)
    return generate_extract(out, **args)


# -- determinism and atomicity -----------------------------------------------------------------
def test_same_seed_gives_byte_identical_files(tmp_path, config):
    _gen(tmp_path / "a", config, seed=7)
    _gen(tmp_path / "b", config, seed=7)
    _gen(tmp_path / "c", config, seed=8)
    ha, hb, hc = hashes(tmp_path / "a"), hashes(tmp_path / "b"), hashes(tmp_path / "c")
    assert ha == hb
    assert ha["ER_PRS_F.parquet"] != hc["ER_PRS_F.parquet"]
    assert ha["IR_BEN_R.parquet"] != hc["IR_BEN_R.parquet"]


def test_worker_processes_do_not_change_the_files(tmp_path, config, monkeypatch):
    """Chunks drawn by forked workers and handed over through shared memory give the same bytes."""
    monkeypatch.setattr(chunks, "PERSONS_PER_CHUNK", 376)  # 5 chunks at scale 0.001 (1 878 persons: Lozère)
    monkeypatch.setattr(chunks, "HANDOVER_SLOT_BYTES", 21 * 2**20)  # some chunk tables are bigger: files
    ways = []
    take = chunks.Handover.take

    def spy(self, out):
        ways.append("file" if out.path is not None else "slot")
        return take(self, out)

    monkeypatch.setattr(chunks.Handover, "take", spy)
    _gen(tmp_path / "serial", config, seed=9, workers=1)
    _gen(tmp_path / "parallel", config, seed=9, workers=2)
    assert sorted(set(ways)) == ["file", "slot"] and len(ways) == 5
    assert hashes(tmp_path / "serial") == hashes(tmp_path / "parallel")
    assert not any(p.name.startswith(".") for p in (tmp_path / "parallel").iterdir())  # no hand-over left
    with pytest.raises(GenerationError, match="workers"):
        _gen(tmp_path / "x", config, workers=0)


def test_a_dying_worker_fails_the_run_cleanly(tmp_path, config, monkeypatch):
    """A worker killed mid-run (e.g. out of memory) raises instead of hanging; nothing is left behind."""
    import os
    from concurrent.futures.process import BrokenProcessPool

    monkeypatch.setattr(chunks, "PERSONS_PER_CHUNK", 120)
    chunk = chunks.chunk_output

    def dies_on_chunk_3(ctx, k):
        if k == 3:
            os._exit(9)  # only ever reached in a forked worker
        return chunk(ctx, k)

    monkeypatch.setattr(chunks, "chunk_output", dies_on_chunk_3)
    with pytest.raises(BrokenProcessPool):
        _gen(tmp_path / "x", config, workers=2)
    assert list(tmp_path.iterdir()) == []


def test_failed_run_leaves_previous_extract_untouched(tmp_path, config, monkeypatch):
    out = tmp_path / "extract"
    _gen(out, config, seed=1)
    before = hashes(out)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(gen, "write_roster", boom)
    with pytest.raises(RuntimeError):
        _gen(out, config, seed=2)
    assert hashes(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["extract"]  # no temporary directory left
    with pytest.raises(RuntimeError):
        _gen(tmp_path / "fresh", config, seed=2)
    assert not (tmp_path / "fresh").exists()


def test_refuses_to_replace_a_directory_that_is_not_an_extract(tmp_path, config):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(GenerationError, match="not a synthetic extract"):
        _gen(tmp_path, config)
    assert (tmp_path / "notes.txt").exists()
    with pytest.raises(GenerationError, match="--format"):
        _gen(tmp_path / "x", config, fmt="json")


# -- population ----------------------------------------------------------------------------------
def test_population_sizes_and_mix(con, truth, config):
    c = truth["counts"]
    p = TruthParams(**truth["params"]).population  # the parameters the sample was generated with
    assert c["treated"] == round(p.treated_full_scale * truth["scale"])
    assert c["control_pool"] == round(c["treated"] * p.control_ratio)
    assert one(con, "SELECT COUNT(*) FROM EQUILIBRES_ROSTER") == c["treated"]
    assert one(con, "SELECT COUNT(DISTINCT BEN_IDT_ANO) FROM IR_BEN_R") == c["persons"]
    persons = "SELECT * FROM IR_BEN_R WHERE BEN_RNG_GEM = 1 QUALIFY ROW_NUMBER() OVER (PARTITION BY BEN_IDT_ANO) = 1"
    n = c["persons"]
    female = one(con, f"SELECT AVG((BEN_SEX_COD = 2)::INT) FROM ({persons})")
    assert abs(female - p.female_share) < 4 * math.sqrt(0.24 / n)
    age = one(con, f"SELECT AVG(2021 - BEN_NAI_ANN::INT) FROM ({persons}) WHERE BEN_NAI_ANN <> '1600'")
    assert 72 <= age <= 78
    kids = one(con, f"SELECT AVG((2021 - BEN_NAI_ANN::INT < 18)::INT) FROM ({persons}) WHERE BEN_NAI_ANN <> '1600'")
    assert 0.005 < kids < 0.08
    # any ALD active on 2021-01-01 (SNDS rule: DTD <= d and (DTF >= d or DTF = 1600-01-01))
    ald = one(con, """SELECT COUNT(DISTINCT BEN_NIR_PSA) FROM IR_IMB_R WHERE IMB_ALD_DTD <= DATE '2021-01-01'
                      AND (IMB_ALD_DTF >= DATE '2021-01-01' OR IMB_ALD_DTF = DATE '1600-01-01')""") / n
    assert abs(ald - p.any_ald_share) < 0.08
    study = set(config.study.departements)
    roster_dpts = {r[0] for r in con.execute("SELECT DISTINCT EQL_DPT FROM EQUILIBRES_ROSTER").fetchall()}
    assert roster_dpts <= study
    outside = one(con, f"SELECT COUNT(DISTINCT BEN_IDT_ANO) FROM IR_BEN_R WHERE BEN_RES_DPT NOT IN {tuple(study)}")
    assert outside >= c["outside"]
    complex_share = one(con, """SELECT AVG((CPX_SOCIAL + CPX_AIDANT + CPX_PALLIATIF + CPX_PSY + CPX_HANDICAP
                                 + CPX_PEDIATRIE > 0)::INT) FROM EQUILIBRES_ROSTER""")
    assert abs(complex_share - load_truth().selection.complex_share) < 0.12


def test_control_pool_ratio_is_honoured_and_shares_the_treated_covariates(config):
    tp = load_truth()
    assert tp.population.control_ratio == 20.0  # order of magnitude of the regions' home-nursing patients
    pop = build_population(np.random.default_rng(3), 0.05, tp, config)
    t, c = pop.group == TREATED, pop.group == CONTROL
    assert c.sum() == round(t.sum() * tp.population.control_ratio)
    for values, tol in ((pop.age_ref, 1.5), (pop.sex == 2, 0.05), (pop.dpt == "059", 0.03)):
        assert abs(values[t].mean() - values[c].mean()) < tol
    # ALD: same draw, except that palliative / mental-health complex patients get ALD 30 / 23 on top
    # (adults: paediatric treated patients are complex by definition, and children have fewer ALDs)
    adult = pop.age_ref >= 18
    assert abs(pop.any_ald[t & ~pop.complex & adult].mean() - pop.any_ald[c & adult].mean()) < 0.05
    pop8 = build_population(np.random.default_rng(3), 0.05, load_truth().model_copy(
        update={"population": tp.population.model_copy(update={"control_ratio": 8.0})}), config)
    assert (pop8.group == CONTROL).sum() == round((pop8.group == TREATED).sum() * 8.0)


def test_inclusions_have_a_year_of_history_and_claims_never_follow_a_true_death(con, truth, config):
    first = one(con, "SELECT MIN(EQL_INC_DTE) FROM EQUILIBRES_ROSTER")
    assert str(first) >= str(config.study.inclusion_start)
    late = one(con, """SELECT COUNT(DISTINCT b.BEN_IDT_ANO) FROM ER_PRS_F f JOIN IR_BEN_R b USING (BEN_NIR_PSA, BEN_RNG_GEM)
                       WHERE b.BEN_DCD_DTE <> DATE '1600-01-01' AND f.EXE_SOI_DTD > b.BEN_DCD_DTE""")
    d = truth["defects"]
    assert late == d["death_before_birth"] + d["death_before_claim"]


def test_volumes_and_flux_lags(con, truth):
    clean = "FROM ER_PRS_F WHERE DPN_QLF <> 71 AND BSE_PRS_NAT <> 0 AND EXE_SOI_DTD >= DATE '2019-01-01'"
    within6 = one(con, f"""SELECT AVG((date_diff('month', date_trunc('month', EXE_SOI_DTD), FLX_DIS_DTD) <= 6)::INT)
                           {clean} AND PRS_ACT_QTE > 0""")
    assert 0.985 <= within6 < 1.0
    # lines per patient-year with claims: the generator aims at ~100 (30-45 M lines at scale 1)
    py = one(con, f"SELECT COUNT(*) / 12.0 FROM (SELECT DISTINCT BEN_NIR_PSA, date_trunc('month', EXE_SOI_DTD) {clean})")
    assert 60 <= truth["counts"]["er_prs_f_lines"] / py <= 150
    cats = {r[0] for r in con.execute("SELECT DISTINCT PRS_NAT_REF FROM ER_PRS_F").fetchall()}
    assert {3111, 3112, 3115, 1848, 1811, 3106, 3107, 3108, 1111, 1110, 1211, 1112, 3311, 3312, 3313, 3341, 9951} <= cats
    gp = one(con, "SELECT AVG((PSE_SPE_COD = 1)::INT) FROM ER_PRS_F WHERE PRS_NAT_REF IN (1110, 1211)")
    assert gp > 0.8
    assert one(con, "SELECT COUNT(*) FROM MCO_B WHERE GRG_GHM LIKE '28%'") > 0
    assert one(con, "SELECT COUNT(*) FROM MCO_B WHERE SOR_MOD = '9'") > 0


def test_experiment_payments_are_hours_times_rate_after_inclusion(con, config):
    rate = config.cleaning.experiment.hourly_rate_eur
    code = config.cleaning.experiment.prs_nat_ref[0]
    bad = one(con, f"""SELECT COUNT(*) FROM ER_PRS_F WHERE PRS_NAT_REF = {code} AND PRS_ACT_QTE > 0
                       AND abs(BSE_REM_MNT - PRS_ACT_QTE * {rate}) > 0.011""")
    assert bad == 0
    n, outside_roster, before = con.execute(f"""
        SELECT COUNT(*), SUM((r.BEN_NIR_PSA IS NULL AND b.BEN_IDT_ANO NOT IN
                              (SELECT b2.BEN_IDT_ANO FROM IR_BEN_R b2 JOIN EQUILIBRES_ROSTER r2 USING (BEN_NIR_PSA)))::INT),
               SUM((date_trunc('month', f.EXE_SOI_DTD) < date_trunc('month', r.EQL_INC_DTE))::INT)
        FROM ER_PRS_F f JOIN IR_BEN_R b USING (BEN_NIR_PSA, BEN_RNG_GEM)
        LEFT JOIN EQUILIBRES_ROSTER r ON r.BEN_NIR_PSA = f.BEN_NIR_PSA
        WHERE f.PRS_NAT_REF = {code}""").fetchall()[0]
    assert n > 0 and outside_roster == 0 and (before or 0) == 0
    assert one(con, f"SELECT MIN(PSE_ACT_NAT) FROM ER_PRS_F WHERE PRS_NAT_REF = {code}") == 24


# -- defects: counted in truth.json and in the expected proportion -------------------------------
def test_defect_counts_match_the_data(con, truth, config):
    d = truth["defects"]
    geo = tuple(config.cleaning.duplicate_geographic_finess)
    assert one(con, "SELECT COUNT(*) FROM ER_PRS_F WHERE DPN_QLF = 71") == d["dpn_qlf_71_lines"]
    assert one(con, "SELECT COUNT(*) FROM ER_PRS_F WHERE BSE_PRS_NAT = 0") == d["bse_prs_nat_0_lines"]
    assert one(con, "SELECT COUNT(*) FROM ER_PRS_F WHERE CPL_MAJ_TOP = 2") == d["cpl_maj_top_2_lines"]
    assert one(con, "SELECT COUNT(*) FROM ER_PRS_F WHERE PRS_ACT_QTE < 0") == d["regularisation_pairs"]
    assert one(con, "SELECT COUNT(*) FROM ER_PRS_F WHERE EXE_SOI_DTD < DATE '2019-01-01'") == d["care_before_window_lines"]
    assert one(con, "SELECT COUNT(*) FROM MCO_B WHERE GRG_GHM LIKE '90%'") == d["ghm_90_stays"]
    assert one(con, f"SELECT COUNT(*) FROM MCO_B WHERE ETA_NUM IN {geo}") == d["duplicate_finess_stays"]
    assert one(con, """SELECT COUNT(*) FROM MCO_C WHERE NIR_RET <> '0' OR NAI_RET <> '0' OR SEX_RET <> '0'
                       OR SEJ_RET <> '0' OR FHO_RET <> '0' OR PMS_RET <> '0' OR DAT_RET <> '0'""") == d["bad_return_code_stays"]
    assert one(con, "SELECT COUNT(*) FROM MCO_C WHERE NIR_ANO_17 = 'xxxxxxxxxxxxxxxxx'") == d["x_nir_stays"]
    assert one(con, "SELECT COUNT(*) FROM IR_IMB_R WHERE IMB_ALD_DTF = DATE '2099-12-31'") == d["ald_2099_rows"]
    assert one(con, "SELECT COUNT(*) FROM IR_IMB_R WHERE IMB_ALD_DTF = DATE '1600-01-01'") == d["ald_open_ended_rows"]
    assert one(con, "SELECT COUNT(*) FROM IR_BEN_R WHERE BEN_DCD_DTE = DATE '1600-01-01'") == d["sentinel_death_dates"]
    assert one(con, """SELECT COUNT(*) FROM (SELECT BEN_IDT_ANO FROM IR_BEN_R GROUP BY 1 HAVING COUNT(*) > 1)""") \
        == d["multi_nir_persons"]
    assert one(con, """SELECT COUNT(DISTINCT BEN_IDT_ANO) FROM IR_BEN_R
                       WHERE BEN_RES_DPT IN ('201', '202', '020', '209')""") == d["corsica_variant_persons"]
    assert d["corsica_variant_persons"] > 0
    # overlapping renewals: a row of the same ALD starting before the previous one ended
    overlaps = one(con, """SELECT COUNT(*) FROM (SELECT IMB_ALD_DTD, LAG(IMB_ALD_DTF) OVER (PARTITION BY BEN_NIR_PSA,
                           IMB_ALD_NUM ORDER BY IMB_ALD_DTD) prev FROM IR_IMB_R) WHERE IMB_ALD_DTD < prev
                           AND prev NOT IN (DATE '1600-01-01', DATE '2099-12-31')""")
    assert overlaps == d["ald_overlapping_renewals"] > 0
    # persons with several identities have claims under more than one of them
    spread = one(con, """SELECT COUNT(*) FROM (SELECT b.BEN_IDT_ANO FROM ER_PRS_F f JOIN IR_BEN_R b
                         USING (BEN_NIR_PSA, BEN_RNG_GEM) GROUP BY 1 HAVING COUNT(DISTINCT (f.BEN_NIR_PSA, f.BEN_RNG_GEM)) > 1)""")
    assert spread >= 1


def _binom_ok(k: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(k - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


def test_defect_proportions_follow_the_truth_parameters(con, truth, config):
    p = load_truth().defects
    d = truth["defects"]
    code = config.cleaning.experiment.prs_nat_ref[0]
    base = one(con, f"""SELECT COUNT(*) FROM ER_PRS_F WHERE DPN_QLF = 0 AND BSE_PRS_NAT <> 0 AND PRS_ACT_QTE > 0
                        AND CPL_MAJ_TOP = 0 AND PRS_NAT_REF <> {code} AND EXE_SOI_DTD >= DATE '2019-01-01'""")
    base -= d["regularisation_pairs"]  # the positive half of each pair is an added copy
    for key, share in (("dpn_qlf_71_lines", p.dpn_qlf_71_share), ("bse_prs_nat_0_lines", p.bse_prs_nat_0_share),
                       ("regularisation_pairs", p.regularisation_share),
                       ("care_before_window_lines", p.pre_window_lines_share)):
        assert _binom_ok(d[key], base, share), (key, d[key], base * share)
    nursing = one(con, "SELECT COUNT(*) FROM ER_PRS_F WHERE PRS_NAT_REF IN (3111, 3112, 3115) AND CPL_MAJ_TOP = 0 "
                       "AND DPN_QLF = 0 AND BSE_PRS_NAT <> 0 AND PRS_ACT_QTE > 0")
    assert 0.5 * p.cpl_maj_top_2_share_nursing < d["cpl_maj_top_2_lines"] / nursing < 1.3 * p.cpl_maj_top_2_share_nursing
    # defect copies are drawn from the ordinary full stays (not séances, nor the negative-control cataract stays)
    full = one(con, "SELECT COUNT(*) FROM MCO_B WHERE GRG_GHM NOT LIKE '28%' AND GRG_GHM NOT LIKE '90%' "
                    "AND GRG_GHM NOT LIKE '02C05%'")
    for key, share in (("ghm_90_stays", p.ghm_90_share), ("bad_return_code_stays", p.bad_return_code_share),
                       ("x_nir_stays", p.x_nir_share)):
        assert _binom_ok(d[key], full, share, sigmas=5), (key, d[key], full * share)
    persons = truth["counts"]["persons"]
    assert _binom_ok(d["multi_nir_persons"], persons, p.multi_nir_share, sigmas=5)


def test_annual_mortality_of_the_control_pool(con):
    deaths, py = con.execute("""
        SELECT SUM((BEN_DCD_DTE <> DATE '1600-01-01')::INT),
               SUM(date_diff('day', DATE '2019-01-01', CASE WHEN BEN_DCD_DTE BETWEEN DATE '2019-01-01'
                   AND DATE '2023-12-31' THEN BEN_DCD_DTE ELSE DATE '2023-12-31' END)) / 365.25
        FROM (SELECT * FROM IR_BEN_R WHERE BEN_RNG_GEM = 1
              AND BEN_NIR_PSA NOT IN (SELECT BEN_NIR_PSA FROM EQUILIBRES_ROSTER)
              QUALIFY ROW_NUMBER() OVER (PARTITION BY BEN_IDT_ANO) = 1)""").fetchall()[0]
    assert 0.10 <= deaths / py <= 0.18  # ≈ 12-15 % a year among home-nursing patients


# -- planted truth -------------------------------------------------------------------------------
def test_truth_json_has_contract_keys(truth):
    for k in ("unmatched_share_complex", "eol_hosp_rate", "eol_spending_treated", "eol_spending_control",
              "avoided_spending_share", "avoided_spending_per_patient_year"):
        assert truth["indicators"][k] is not None
    for k in ("dpn_qlf_71_lines", "regularisation_pairs", "bse_prs_nat_0_lines", "cpl_maj_top_2_lines",
              "sentinel_death_dates", "ald_2099_rows", "ald_overlapping_renewals", "corsica_variant_persons",
              "ghm_90_stays", "duplicate_finess_stays", "bad_return_code_stays", "multi_nir_persons",
              "death_before_birth"):
        assert k in truth["defects"]
    for k in ("treated", "control_pool", "persons", "er_prs_f_lines", "stays"):
        assert truth["counts"][k] > 0
    assert truth["params"]["name"] == "default"


def test_truth_json_records_the_window_in_days_and_the_mortality_block(tmp_path, config):
    _gen(tmp_path / "e", config, seed=2)
    t = json.loads((tmp_path / "e" / "truth.json").read_text())
    assert t["study"]["eol_window_days"] == config.indicators.eol_window_days
    assert "eol_window_months" not in t["study"]
    m = t["mortality"]
    assert m["hazard_ratio_while_included"] == 1.0
    assert m["deaths_treated"] == m["deaths_untreated_same_draws"]
    assert m["expected_deaths_treated"] == m["expected_deaths_untreated"]


def test_default_truth_is_calibrated_near_the_published_design(truth):
    """Computed by the generator on its own population (never copied): within sampling noise of
    the calibration targets documented in truth_default.toml."""
    ind = truth["indicators"]
    assert 0.2 <= ind["unmatched_share_complex"] <= 0.4
    assert -0.32 <= ind["eol_hosp_rate"] <= -0.12
    assert 8000 <= ind["eol_spending_control"] <= 15000
    assert abs(ind["eol_spending_treated"] / ind["eol_spending_control"] - 1) < 0.12
    assert 0.17 <= ind["avoided_spending_share"] <= 0.33
    assert 1000 <= ind["avoided_spending_per_patient_year"] <= 2300
    obs = truth["observed"]
    assert abs(obs["spend_treated_per_patient_year"] / obs["expected_spend_treated_per_patient_year"] - 1) < 0.15


# -- end of life in days: the truth is the model's expectation, checked against its own draws ------
def test_window_day_share_known_answer(config):
    grid = MonthGrid.of(config)
    death = np.array(["2022-03-15", "2022-03-01", "NaT"], dtype="datetime64[D]")
    share = window_day_share(death, 90, grid)  # window 2021-12-16 .. 2022-03-15
    at = {m: grid.index_of(np.datetime64(m, "D")) for m in ("2021-11-01", "2021-12-01", "2022-01-01",
                                                             "2022-02-01", "2022-03-01", "2022-04-01")}
    assert share[0, at["2021-11-01"]] == 0
    assert share[0, at["2021-12-01"]] == pytest.approx(16 / 31)
    assert share[0, at["2022-01-01"]] == share[0, at["2022-02-01"]] == 1
    assert share[0, at["2022-03-01"]] == 1  # the 15 alive days of March are all inside
    assert share[0, at["2022-04-01"]] == 0  # after death
    assert share[0].sum() == pytest.approx(3 + 16 / 31)
    one_day = window_day_share(death[1:2], 1, grid)[0]  # the death day only
    assert one_day[at["2022-03-01"]] == 1 and one_day.sum() == 1
    assert not window_day_share(death[2:], 90, grid).any()


def test_stay_window_model_known_answer():
    """One-night stays (LOS 1: exit = entry + 1, 2 days): a stay entering 90 days before death has one of
    its two days in a 90-day window; one entering 91 days before has none."""
    tp = load_truth().model_copy(update={"baseline": load_truth().baseline.model_copy(
        update={"hosp_los_mean": 1.0, "eol_hosp_los_factor": 1.0, "final_stay_los_mean": 1.0})})
    m = StayWindowModel.of(90, tp)
    at = {int(o): j for j, o in enumerate(m.offsets)}
    assert min(at) == -90  # a stay entering earlier cannot reach the window
    assert [m.share[0][at[o]] for o in (-90, -89, -2, -1)] == pytest.approx([0.5, 1, 1, 1])
    assert [m.overlap[0][at[o]] for o in (-90, -89, -1)] == [1, 1, 1]
    assert m.final_share == 1.0  # a one-night final stay lies inside the window
    assert StayWindowModel.of(7, load_truth()).final_share < 1  # ~10 nights cannot fit in 7 days


def test_end_of_life_truth_matches_the_generators_draws(config):
    """The expected amounts of truth.json against the mean of repeated draws of the generator's own
    stays and claim lines for the same decedents (an independent, simulated reference)."""
    from data_samples.catalog import DCIR_KINDS
    from data_samples.claims import draw_lines, draw_stays, experiment_kind

    tp = load_truth()
    pop = build_population(np.random.default_rng(5), 0.02, tp, config)
    grid = MonthGrid.of(config)
    w = config.indicators.eol_window_days
    acc = TruthAccumulator(perimeter=list(config.indicators.perimeter), eol_window_days=w,
                           claims_start=np.datetime64(config.study.claims_start, "D"))
    t = np.flatnonzero((pop.group == TREATED) & ~pop.off_support)
    dec = t[acc.decedents(pop.death[t], pop.inclusion[t])]
    cm = chunk_means(pop, dec, grid, tp, config)
    acc.add_expected(cm, pop, grid, StayWindowModel.of(w, tp), config)
    assert acc.n_decedents == dec.size > 50
    death = pop.death[dec]
    first = death - (w - 1) * DAY
    rng = np.random.default_rng(8)
    hosp, any_stay, pharmacy = [], [], []
    kinds = [k for k in [*DCIR_KINDS, experiment_kind(config)] if k.category == "pharmacy"]
    for _ in range(300):
        st = draw_stays(rng, cm, grid, pop, tp, config)
        lo, hi = np.maximum(st.entry, first[st.row]), np.minimum(st.exit, death[st.row])
        days_in = np.clip((hi - lo).astype(int) + 1, 0, None)
        hosp.append(float((st.cost * days_in / ((st.exit - st.entry).astype(int) + 1)).sum()))
        reach = (st.kind != 2) & (st.exit >= first[st.row])
        any_stay.append(np.unique(st.row[reach]).size)
        ln = draw_lines(rng, cm, grid, kinds)
        pharmacy.append(float(ln.amount[(ln.dtd >= first[ln.row]) & (ln.dtd <= death[ln.row])].sum()))
    for draws, expected in ((hosp, acc.eol_by_cat1["hospital"]), (any_stay, acc.eol_hosp1),
                            (pharmacy, acc.eol_by_cat1["pharmacy"])):
        x = np.asarray(draws, dtype=float)
        assert abs(x.mean() - expected) < 4 * x.std(ddof=1) / np.sqrt(x.size), (x.mean(), expected)


# -- mortality effect ------------------------------------------------------------------------------
def test_death_time_piecewise_known_answer():
    unit, haz, theta = np.array([0.2, 1.0, 1.0]), np.array([0.1, 0.1, 0.1]), np.array([0.5, 0.5, 1.0])
    included = np.array([10.0, 10.0, np.inf])
    # 0.2 / (0.1 x 0.5) = 4 months, while included; 1.0 exceeds the 0.5 accumulated by the exit at 10
    # months: 10 + (1 - 0.5) / 0.1 = 15; no effect and no exit: 1 / 0.1 = 10.
    assert death_time_months(unit, haz, theta, included) == pytest.approx([4.0, 15.0, 10.0])
    # an effect that persists after the exit (theta_after = theta): 10 + 0.5 / (0.1 x 0.5) = 20
    assert death_time_months(unit, haz, theta, included, theta) == pytest.approx([4.0, 20.0, 10.0])


# -- turnover: discharges alive, the active file, substitution vs health effects --------------------
def test_discharge_times_follow_the_configured_mean(config):
    """Times to a planned discharge are exponential of mean population.mean_months_to_discharge; those
    after claims_end are censored, so the mean is estimated as time at risk / discharges (the
    exponential's maximum-likelihood estimate), for the default and another mean."""
    for mean in (9.4, 4.0):
        tp = load_truth()
        tp = tp.model_copy(update={"population": tp.population.model_copy(update={"mean_months_to_discharge": mean})})
        pop = build_population(np.random.default_rng(8), 0.1, tp, config)
        t = pop.group == TREATED
        inc, plan = pop.inclusion[t], pop.exit_planned[t]
        end = np.datetime64(config.study.claims_end, "D")
        at_risk = (np.where(np.isnat(plan), end, plan) - inc).astype("timedelta64[D]").astype(float)
        events = int((~np.isnat(plan)).sum())
        estimate = at_risk.sum() / events / DAYS_PER_MONTH
        assert estimate == pytest.approx(mean, rel=4 / np.sqrt(events)), (mean, estimate, events)
        assert (plan[~np.isnat(plan)] > inc[~np.isnat(plan)]).all()
        # a death first cancels the discharge: an exit alive is always before the death, if any
        ex, death = pop.exit[t], pop.death[t]
        left = ~np.isnat(ex)
        assert (np.isnat(death[left]) | (death[left] > ex[left])).all()
        assert (ex[left] == plan[left]).all()
    off = load_truth()
    off = off.model_copy(update={"population": off.population.model_copy(update={"mean_months_to_discharge": 0.0})})
    assert np.isnat(build_population(np.random.default_rng(8), 0.01, off, config).exit).all()


def test_active_file_at_full_scale_is_calibrated_to_the_published_savings(config):
    """9 M€ / 1 625 €/patient-year ≈ 5 540 patient-years in the programme in 2023 at scale 1 (the
    population only); the intention-to-treat follow-up is about three times larger."""
    pop = build_population(np.random.default_rng(np.random.SeedSequence(20240101).spawn(6)[0]), 1.0,
                           load_truth(), config)
    cl = gen._caseload_summary(pop, config)
    assert cl["year"] == 2023
    assert cl["active_patient_years"] == pytest.approx(9e6 / 1625, rel=0.03), cl
    assert 2.5 < cl["itt_patient_years"] / cl["active_patient_years"] < 3.5, cl


def _one_discharged_patient(config, tp):
    """A treated patient discharged alive in mid-study who is alive at claims_end, and their means."""
    pop = build_population(np.random.default_rng(6), 0.01, tp, config)
    t = np.flatnonzero((pop.group == TREATED) & ~np.isnat(pop.exit) & np.isnat(pop.death)
                       & (pop.exit < np.datetime64("2022-06-01")) & (pop.inclusion < pop.exit - 62))
    grid = MonthGrid.of(config)
    return pop, grid, chunk_means(pop, t[:5], grid, tp, config)


def test_substitution_effects_stop_at_discharge_while_health_effects_persist(config):
    tp = load_truth()
    e = tp.effects
    pop, grid, cm = _one_discharged_patient(config, tp)
    assert cm.persons.size == 5
    for i, person in enumerate(cm.persons):
        m_inc, m_exit = grid.index_of(pop.inclusion[[person]])[0], grid.index_of(pop.exit[[person]])[0]
        inside, after = slice(m_inc + 1, m_exit), slice(m_exit + 1, grid.size)
        assert (cm.tf[i, inside] == 1).all() and (cm.tf[i, after] == 0).all() and (cm.fu[i, after] == 1).all()
        nursing0 = sum(cm.mu0[c][i] for c in ("nursing_acts", "nurse_travel", "nurse_assessment"))
        # while included: fee-for-service nursing replaced by flat-rate payments; health effects on
        assert cm.mu1["nursing_acts"][i, inside] == pytest.approx(e.nursing_acts * cm.mu0["nursing_acts"][i, inside])
        assert cm.mu1["experiment"][i, inside] == pytest.approx(e.experiment_share * nursing0[inside])
        assert cm.mu1["pharmacy"][i, inside] == pytest.approx(e.pharmacy * cm.mu0["pharmacy"][i, inside])
        assert cm.hosp_rate1[i, inside] == pytest.approx(e.hosp_rate * cm.hosp_rate0[i, inside])
        # after discharge: no experiment payment, nursing at the regained-autonomy level, health effects kept
        assert (cm.mu1["experiment"][i, after] == 0).all()
        assert cm.mu1["nursing_acts"][i, after] == pytest.approx(
            e.nursing_after_discharge * cm.mu0["nursing_acts"][i, after])
        for cat in ("gp", "specialist", "pharmacy", "other"):
            assert cm.mu1[cat][i, after] == pytest.approx(getattr(e, cat) * cm.mu0[cat][i, after]), cat
        assert cm.hosp_rate1[i, after] == pytest.approx(e.hosp_rate * cm.hosp_rate0[i, after])
    # health_effects_after_discharge = 0: every effect stops at discharge (the previous model)
    stop = tp.model_copy(update={"effects": e.model_copy(update={"health_effects_after_discharge": 0.0})})
    pop0, grid, cm0 = _one_discharged_patient(config, stop)
    assert np.array_equal(pop0.exit, pop.exit, equal_nan=True)
    for i, person in enumerate(cm0.persons):
        after = slice(grid.index_of(pop0.exit[[person]])[0] + 1, grid.size)
        for cat in ("nursing_acts", "gp", "pharmacy", "other"):
            assert cm0.mu1[cat][i, after] == pytest.approx(cm0.mu0[cat][i, after]), cat
        assert cm0.hosp_rate1[i, after] == pytest.approx(cm0.hosp_rate0[i, after])


def test_mortality_effect_persists_after_discharge_unless_configured_not_to(config):
    tp = load_truth(MORTALITY_TRUTH)
    stop = tp.model_copy(update={"effects": tp.effects.model_copy(update={"health_effects_after_discharge": 0.0})})
    pops = {k: build_population(np.random.default_rng(4), 0.05, v, config) for k, v in (("keep", tp), ("stop", stop))}
    t = pops["keep"].group == TREATED
    d_keep, d_stop = pops["keep"].death[t], pops["stop"].death[t]
    # same draws; with the effect kept after discharge nobody dies earlier, and fewer die
    assert (np.isnat(d_keep) | (d_keep >= np.where(np.isnat(d_stop), d_keep, d_stop))).all()
    assert (~np.isnat(d_keep)).sum() < (~np.isnat(d_stop)).sum()


def test_truth_mortality_loads_and_lowers_treated_mortality(tmp_path, config):
    tp = load_truth(MORTALITY_TRUTH)
    default = load_truth()
    assert tp.name == "mortality" and tp.effects.mortality == 0.80
    assert tp.model_copy(update={"name": default.name, "description": default.description,
                                 "effects": default.effects}) == default  # nothing else changes
    pop0 = build_population(np.random.default_rng(4), 0.05, default, config)
    pop1 = build_population(np.random.default_rng(4), 0.05, tp, config)
    t = pop1.group == TREATED
    assert np.array_equal(pop0.death[~t], pop1.death[~t], equal_nan=True)  # controls untouched
    assert np.array_equal(pop1.death_untreated, pop0.death, equal_nan=True)  # same draws without effect
    d0, d1 = pop0.death[t], pop1.death[t]
    assert (np.isnat(d1) | (d1 >= np.where(np.isnat(d0), d1, d0))).all()  # never earlier under the effect
    assert (~np.isnat(d1)).sum() < 0.93 * (~np.isnat(d0)).sum()
    _gen(tmp_path / "m", config, seed=3, scale=0.003, truth_path=MORTALITY_TRUTH)
    m = json.loads((tmp_path / "m" / "truth.json").read_text())
    assert m["params"]["effects"]["mortality"] == 0.80
    mort = m["mortality"]
    assert mort["hazard_ratio_while_included"] == 0.80
    assert mort["deaths_treated"] <= mort["deaths_untreated_same_draws"]
    assert 0.80 <= mort["expected_death_risk_ratio"] < 0.95
    assert m["counts"]["treated_deaths"] >= mort["deaths_treated"]


def test_null_truth_gives_no_effect(tmp_path, config):
    res = _gen(tmp_path / "null", config, seed=4, scale=0.003, truth_path=NULL_TRUTH)
    ind = json.loads((tmp_path / "null" / "truth.json").read_text())["indicators"]
    assert ind == res.indicators
    assert abs(ind["eol_hosp_rate"]) < 1e-9
    assert abs(ind["avoided_spending_share"]) < 1e-9
    assert abs(ind["avoided_spending_per_patient_year"]) < 1e-6
    assert ind["eol_spending_treated"] == pytest.approx(ind["eol_spending_control"], rel=1e-9)


def test_confounding_option_is_recorded_and_changes_outcomes(tmp_path, config):
    _gen(tmp_path / "c0", config, seed=5)
    _gen(tmp_path / "c1", config, seed=5, confounding=1.0)
    t1 = json.loads((tmp_path / "c1" / "truth.json").read_text())
    assert t1["params"]["selection"]["confounding"] == 1.0
    assert hashes(tmp_path / "c0")["ER_PRS_F.parquet"] != hashes(tmp_path / "c1")["ER_PRS_F.parquet"]


def test_render_and_cli(tmp_path):
    from typer.testing import CliRunner

    from study.cli import app

    r = CliRunner().invoke(app, ["generate", "--scale", "0.001", "--seed", "3", "--out", str(tmp_path / "e")])
    assert r.exit_code == 0, r.output
    assert "planted truth" in r.output and (tmp_path / "e" / "truth.json").exists()
    bad = CliRunner().invoke(app, ["generate", "--scale", "0", "--out", str(tmp_path / "z")])
    assert bad.exit_code != 0 and "--scale" in bad.output


def test_truth_class_defaults_mirror_the_default_file():
    import tomllib

    from data_samples.truth import DEFAULT_TRUTH, TruthParams

    data = tomllib.loads(DEFAULT_TRUTH.read_text(encoding="utf-8"))
    defaults = TruthParams().model_dump()
    for section, values in data.items():
        if isinstance(values, dict):
            for key, value in values.items():
                if not isinstance(value, dict):  # tables (weights) live in the file only
                    assert defaults[section][key] == value, (section, key)


def test_smaller_extracts_cover_fewer_departements_at_full_density(config):
    """Scale shrinks the territory, not the density: a matching stratum of a département holds as many
    controls at scale 0.1 as at full scale (so support can be recovered at any scale)."""
    from data_samples.population import extract_departements

    tp = load_truth()
    w = tp.population.dpt_weights
    all_dpts = config.study.departements
    assert extract_departements(all_dpts, w, 1.0) == (all_dpts, 1.0)
    for scale in (0.005, 0.03, 0.1, 0.5):
        dpts, share = extract_departements(all_dpts, w, scale)
        assert dpts and set(dpts) <= set(all_dpts)
        assert share <= scale * 1.02 or len(dpts) == 1
        assert share >= 0.8 * scale or len(dpts) == 1, (scale, share)
    pop = build_population(np.random.default_rng(5), 0.1, tp, config)
    t = pop.group == TREATED
    assert abs(t.sum() - round(tp.population.treated_full_scale * pop.scale_realised)) <= 1
    # persons per unit of département weight = full-scale density
    total_w = sum(w.get(d, 1.0) for d in all_dpts)
    per_weight = t.sum() / sum(w.get(d, 1.0) for d in pop.departements)
    assert abs(per_weight - tp.population.treated_full_scale / total_w) / per_weight < 0.01
    assert set(np.unique(pop.dpt[t])) <= set(pop.departements)
