"""A small, fake but realistic build directory for the report tests (test fixture only).

The files follow docs/CONTRACTS.md and the formats the cleaning, matching, indicators, surveys and
sweep steps write. Numbers are invented; a few counts are deliberately below the small-cell
threshold so the report's suppression is exercised.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pipeline.facts import (
    BalanceOverlap,
    BootstrapFacts,
    CheckFacts,
    CleanFacts,
    CleanOutput,
    CodebookFile,
    CodeVersion,
    EventStudyTest,
    HeadlineDiagnostics,
    IndicatorsFacts,
    IndicatorsSizes,
    InputChecks,
    InputFileCheck,
    InputFileHash,
    MatchingFacts,
    MatchingSizes,
    NegativeControlFacts,
    SensitivitySummary,
    StageFacts,
    SurveyInput,
    SurveysFacts,
    SweepFacts,
    VerdictThresholds,
)

# Strings that look like identifiers: they must never reach the report (the fixture puts them in
# columns that the report must drop).
FAKE_IDENTIFIERS = ("PSAFAKE0000000001", "IDTANOFAKE000042", "EQPFAKE17")


METHODS_FR = {"matched-set bootstrap": "bootstrap par ensembles appariés", "Wilson interval": "intervalle de Wilson",
              "input": "donnée d'entrée", "descriptive": "descriptif", "Wilson": "intervalle de Wilson",
              "t interval": "intervalle de Student"}


def _rec(id_, fr, en, unit, value, lo, hi, n, published=None, arms=None, method="matched-set bootstrap"):
    rec = {"id": id_, "label_fr": fr, "label_en": en, "unit": unit, "value": value, "ci_low": lo,
           "ci_high": hi, "n": n, "method": method, "published": published,
           "population": "Matched ÉQUILIBRES patients", "definition": f"Definition of {en.lower()}.",
           "method_fr": METHODS_FR[method], "population_fr": "Patients ÉQUILIBRES appariés",
           "definition_fr": f"Définition de l'indicateur « {fr.lower()} ».",
           "ci_level": 0.95 if lo is not None else None}
    if arms:
        rec["arm_values"] = arms
    return rec


def make_fixture_build(root: Path, *, with_surveys: bool = True, with_sweep: bool = True,
                       with_sensitivity: bool = False) -> Path:
    root = Path(root)
    for d in ("audit", "clean", "matching", "indicators", "surveys", "sweep"):
        (root / d).mkdir(parents=True, exist_ok=True)

    attrition = pd.DataFrame([
        ["ingest", "death_date_sentinel", 5200, 5200, 0, 0.0, 4800, "BEN_DCD_DTE = 1600-01-01 means alive", "https://documentation-snds.health-data-hub.fr/snds/fiches/fiche_beneficiaire.html", "BEN_DCD_DTE = 1600-01-01 signifie vivant"],
        ["ingest", "sex_unknown", 5200, 5200, 0, 0.0, 7, "Unknown sex set to null", "https://documentation-snds.health-data-hub.fr/snds/fiches/variables_sociodemo.html", "Sexe inconnu mis à vide"],
        ["dcir", "dpn_qlf_71", 412000, 409500, 2500, 81234.5, 0, "Drop DPN_QLF = 71 lines", "https://documentation-snds.health-data-hub.fr/snds/fiches/sas_prestation_dcir.html", "Lignes DPN_QLF = 71 retirées"],
        ["dcir", "bse_prs_nat_0", 409500, 409496, 4, 12.3, 0, "Drop BSE_PRS_NAT = 0 lines", "https://documentation-snds.health-data-hub.fr/snds/fiches/montant_soins_de_ville.html", "Lignes BSE_PRS_NAT = 0 retirées"],
        ["persons", "death_before_birth", 5200, 5193, 7, 0.0, 0, "Persons whose death precedes birth", "fiches/fiche_beneficiaire", "Personnes dont le décès précède la naissance"],
        ["cohort", "extract", 5200, 5200, 0, 0.0, 0, "Persons in the extract", "", "Personnes de l'extraction"],
        ["cohort", "cleaned", 5200, 5193, 7, 0.0, 0, "Persons after cleaning", "", "Personnes après nettoyage"],
        ["cohort", "eligible", 5193, 4100, 1093, 0.0, 0, "Eligible cohort rows", "", "Lignes de cohorte éligibles"],
    ], columns=["stage", "rule", "rows_in", "rows_out", "rows_dropped", "euros_dropped", "rows_flagged",
                "description", "source", "description_fr"])
    units = {"ingest": "persons", "dcir": "claim_lines", "persons": "persons", "cohort": "persons"}
    attrition.insert(2, "unit", [units[st] for st in attrition["stage"]])
    attrition.loc[attrition["rule"] == "eligible", "unit"] = "cohort_rows"
    attrition.to_csv(root / "audit/attrition.csv", index=False)
    pd.DataFrame([
        {"stage": "cohort", "rule": "matched", "rows_in": 4100, "rows_out": 2300, "rows_dropped": 1800,
         "euros_dropped": 0.0, "description": "Rows kept by matching", "source": "docs/matching.md",
         "description_fr": "Lignes gardées par l'appariement"},
        {"stage": "cohort", "rule": "unmatched", "rows_in": 1290, "rows_out": 1150, "rows_dropped": 140,
         "euros_dropped": 0.0, "description": "Treated without control", "source": "docs/matching.md",
         "description_fr": "Traités sans témoin"},
    ]).to_csv(root / "matching/attrition_matching.csv", index=False)

    # Saved facts are written through their declared classes (pipeline/facts.py), as the steps do.
    manifest = CleanFacts(
        created_at="2024-01-01T00:00:00+00:00", engine="duckdb",
        inputs={"IR_BEN_R": (InputFileHash("IR_BEN_R.parquet", "ab" * 32, 81_000, "sha256", "IR_BEN_R"),),
                "ER_PRS_F": (InputFileHash("ER_PRS_F.parquet", "cd" * 32, 9_400_000, "sha256", "ER_PRS_F"),)},
        input_hash_method="sha256 of the whole file",
        parameters={"cleaning": {"drop_dpn_qlf_71": True}, "cohort": {"history_months": 12}},
        code=CodeVersion(package_version="0.1.0", stages_sha256="ef" * 32),
        stages={"ingest": StageFacts("ran", "f" * 20, 0.3, 490.0, "duckdb", "2024-01-01T00:00:00+00:00")},
        outputs={"persons": CleanOutput("clean/persons.parquet", "01" * 32, 55_046, 5193)},
        input_checks=InputChecks(seconds=0.3, checks=("table has rows",), files=(
            InputFileCheck("IR_BEN_R.parquet", "IR_BEN_R", 5200, 0, False),
            InputFileCheck("ER_PRS_F.parquet", "ER_PRS_F", 412000, 0, False))),
    )
    (root / "clean/manifest.json").write_text(json.dumps(manifest.to_dict()), encoding="utf-8")

    (root / "matching/params.json").write_text(json.dumps({
        "matching": {"method": "nearest", "exact": ["BEN_SEX_COD", "age_band", "ald", "dpt", "index_quarter"],
                     "on": "prior_nursing_cost", "transform": "log1p", "caliper": 0.1, "caliper_scale": "sd",
                     "ratio": 1, "replace": False, "max_reuse": 0, "order": "closest", "seed": 20240101,
                     "balance_covariates": ["age", "prior_nursing_cost"]},
        "cohort": {"age_band_width": 5},
        **MatchingFacts(
            method_description="1:1 nearest neighbour within exact strata", caliper_width=0.1234567891,
            pooled_sd=0.62, min_cell_count=10, cohort_file="/tmp/somewhere/clean/cohort.parquet",
            cohort_fingerprint="0123456789abcdef", config_fingerprint="fedcba9876543210", seconds=1.2,
            peak_rss_mb=None,
            sizes=MatchingSizes(eligible_rows=4100, treated=1290, controls=2810, treated_matched=1150,
                                controls_matched=1150, unmatched_treated=140, partial_sets=0, pairs=1150,
                                strata_with_treated=412, strata_matched=380, ess_controls=1150.0,
                                control_persons_matched=1150, control_persons_used_once=1150,
                                control_persons_reused=None, control_max_uses=1,
                                control_rows_share_from_reused=None)).to_dict(),
    }), encoding="utf-8")

    bal = []
    for cov, vals in {"age": (81.2, 78.4, 81.2, 81.0), "BEN_SEX_COD": (1.62, 1.55, 1.62, 1.62),
                      "ald": (0.71, 0.64, 0.71, 0.71), "prior_nursing_cost": (4200.5, 2900.1, 4100.2, 4050.9),
                      "prior_hosp_stays": (0.41, 0.52, 0.41, 0.43)}.items():
        for stage, (mt, mc) in (("before", vals[:2]), ("after", vals[2:])):
            smd = (mt - mc) / (abs(mt) * 0.5 + 1)
            bal.append({"covariate": cov, "variable": cov, "type": "numeric", "stage": stage,
                        "mean_treated": mt, "mean_control": mc, "smd": smd,
                        "smd_denominator": "treated_sd_before", "variance_ratio": 1.1 if stage == "after" else 1.6,
                        "ecdf_mean": 0.02, "ecdf_max": 0.05, "flag_smd": abs(smd) > 0.1, "flag_vr": False,
                        "n_treated": 1290 if stage == "before" else 1150, "n_control": 2810 if stage == "before" else 1150})
    pd.DataFrame(bal).to_csv(root / "matching/balance.csv", index=False)

    prof = pd.DataFrame([
        {"profile": "overall", "n_treated": 1290, "n_unmatched": 140, "share_unmatched": 140 / 1290,
         "ci_low": 0.09, "ci_high": 0.127, "mean_matched_age": 80.9, "mean_unmatched_age": 84.0, "suppressed": False, "suppression_note": None},
        {"profile": "complex", "n_treated": 320, "n_unmatched": 96, "share_unmatched": 0.30,
         "ci_low": 0.25, "ci_high": 0.35, "mean_matched_age": 79.0, "mean_unmatched_age": 85.2, "suppressed": False, "suppression_note": None},
        {"profile": "CPX_PEDIATRIE", "n_treated": 25, "n_unmatched": None, "share_unmatched": None,
         "ci_low": None, "ci_high": None, "mean_matched_age": 9.1, "mean_unmatched_age": None,
         "suppressed": True, "suppression_note": "few_unmatched_or_matched"},
    ])
    prof.to_csv(root / "matching/unmatched_profiles.csv", index=False)
    unmatched = _rec("unmatched_share_complex", "Patients complexes sans témoin", "Complex patients without a control",
                     "share", 0.30, 0.25, 0.35, 320, 0.30, method="Wilson interval")
    (root / "matching/indicator_unmatched.json").write_text(json.dumps([unmatched]), encoding="utf-8")

    records = [
        unmatched,
        _rec("eol_hosp_rate", "Hospitalisation en fin de vie (écart relatif)", "End-of-life hospitalisation (relative difference)",
             "relative_difference", -0.19, -0.30, -0.07, 150, -0.21, arms={"treated": 0.52, "control": 0.64}),
        _rec("eol_spending_treated", "Dépense en fin de vie, ÉQUILIBRES", "End-of-life spending, ÉQUILIBRES",
             "eur_per_patient", 11020.4, 10010.0, 12100.0, 150, 11400.0),
        _rec("eol_spending_control", "Dépense en fin de vie, témoins", "End-of-life spending, controls",
             "eur_per_patient", 12900.0, 12000.0, 13800.0, 150, 11400.0),
        _rec("eol_nursing_presence", "Présence infirmière en fin de vie", "Nursing presence at end of life",
             "ratio", 1.8, 1.5, 2.1, 150, None, arms={"treated": 31.0, "control": 17.2}),
        _rec("hosp_rate_small", "Indicateur sur petit effectif", "Indicator on a small group", "share",
             0.5, 0.2, 0.8, 6),
        _rec("avoided_spending_share", "Part de dépenses évitées", "Share of spending avoided", "share",
             0.22, 0.15, 0.29, 1150, 0.25),
        _rec("avoided_spending_per_patient_year", "Dépenses évitées par patient-année", "Avoided spending per patient-year",
             "eur_per_patient_year", 1580.2, 1200.0, 1900.0, 1150, 1625.0),
        _rec("programme_investment", "Investissement du programme", "Programme investment", "eur_per_year",
             374000.0, None, None, None, 374000.0, method="input"),
        _rec("net_savings_year", "Économies nettes par an", "Net savings per year", "eur_per_year",
             7.2e6, 5.1e6, 9.4e6, 1150, 9e6),
        _rec("caseload_patient_years", "File active (patients-années)", "Caseload (patient-years)", "patient_years",
             4800.0, None, None, 5100, None, method="descriptive"),
    ]
    (root / "indicators/indicators.json").write_text(json.dumps(records), encoding="utf-8")
    (root / "indicators/params.json").write_text(json.dumps({"indicators": {"eol_window_days": 90}, **IndicatorsFacts(
        perimeter=("nursing_acts", "gp", "hospital"), inputs={"persons.parquet": "0123456789abcdef"}, data_dir=None,
        extract_scale=1.0, seconds=2.0, peak_rss_mb=500.0,
        sizes=IndicatorsSizes(treated=1150, controls=1150, matched_sets=1150, control_persons=1150,
                              resampling_clusters=1150, replicates=199),
        bootstrap=BootstrapFacts(kind="bootstrap of matched sets", seed=1)).to_dict()}), encoding="utf-8")
    pd.DataFrame([
        {"category": c, "unit": "eur_per_patient_year", "treated": t, "treated_ci_low": t * 0.9, "treated_ci_high": t * 1.1,
         "control": k, "control_ci_low": k * 0.9, "control_ci_high": k * 1.1, "n_treated": 1150, "n_control": 1150,
         "suppressed": ""}
        for c, t, k in [("nursing_acts", 2100.0, 4300.0), ("experiment", 2500.0, 0.0), ("gp", 300.0, 320.0),
                        ("pharmacy", 1900.0, 2000.0), ("hospital", 3100.0, 4700.0)]
    ]).to_csv(root / "indicators/spending_by_category.csv", index=False)
    pd.DataFrame([
        {"measure": "share_any_stay", "unit": "share", "treated": 0.52, "treated_ci_low": 0.45, "treated_ci_high": 0.6,
         "control": 0.64, "control_ci_low": 0.57, "control_ci_high": 0.71, "difference": -0.12,
         "difference_ci_low": -0.2, "difference_ci_high": -0.04, "ratio": 0.81, "ratio_ci_low": 0.7,
         "ratio_ci_high": 0.93, "n_treated": 150, "n_control": 160, "suppressed": ""},
        {"measure": "death_in_hospital", "unit": "share", "treated": 0.2, "treated_ci_low": 0.1, "treated_ci_high": 0.3,
         "control": 0.3, "control_ci_low": 0.2, "control_ci_high": 0.4, "difference": -0.1,
         "difference_ci_low": -0.2, "difference_ci_high": 0.0, "ratio": 0.66, "ratio_ci_low": 0.4,
         "ratio_ci_high": 1.0, "n_treated": None, "n_control": 160, "suppressed": "n_treated"},
    ]).to_csv(root / "indicators/eol.csv", index=False)
    pd.DataFrame([{"measure": "hosp_stays_per_100py", "unit": "per_100_patient_years", "treated": 61.0,
                   "control": 79.0, "difference": -18.0, "n_treated": 1150, "n_control": 1150}]).to_csv(root / "indicators/hospitalisation.csv", index=False)
    pd.DataFrame([{"arm": "treated", "n_units": 1150, "patient_years": 2010.5, "deaths": 150, "end_exit": 8},
                  {"arm": "control", "n_units": 1150, "patient_years": 1990.1, "deaths": 171, "end_exit": 0}]
                 ).to_csv(root / "indicators/followup.csv", index=False)
    sc = []
    for rate in (48.0, 54.0, 60.0):
        for inv in (374000.0, 750000.0):
            a = 1580.0 - (rate - 54) * 20
            sc.append({"hourly_rate_eur": rate, "investment_eur": inv, "caseload_factor": 1.0,
                       "caseload_patient_years": 4800.0, "avoided_eur_per_patient_year": a,
                       "avoided_eur_per_patient_year_ci_low": a - 300, "avoided_eur_per_patient_year_ci_high": a + 300,
                       "net_savings_year": a * 4800 - inv, "net_savings_year_ci_low": (a - 300) * 4800 - inv,
                       "net_savings_year_ci_high": (a + 300) * 4800 - inv, "experiment_repriced": True})
    pd.DataFrame(sc).to_csv(root / "indicators/economics_scenarios.csv", index=False)
    pd.DataFrame([{"row": "did", "pre_eur_per_patient_year": None, "post_eur_per_patient_year": None,
                   "estimate": -812.3, "se": 205.1, "ci_low": -1200.0, "ci_high": -400.2}]).to_csv(root / "indicators/did.csv", index=False)
    pd.DataFrame([{"outcome": "spending_per_patient_year (treated − control)",
                   "estimator": "WLS, cluster-robust SE by matched set", "estimate": -790.0, "se": 186.0,
                   "ci_low": -1150.0, "ci_high": -420.0, "n_rows": 2300, "n_clusters": 1150}]).to_csv(root / "indicators/regression_crosscheck.csv", index=False)

    if with_surveys:
        survey_recs = [
            _rec("patients_qol_improved", "Qualité de vie améliorée", "Quality of life improved", "share",
                 0.81, 0.72, 0.88, 90, 0.83, method="Wilson"),
            _rec("nurses_qvt_before", "QVT avant", "Quality of working life before", "score_0_10",
                 5.9, 5.5, 6.3, 90, 5.8, method="t interval"),
            _rec("nurses_qvt_after", "QVT après", "Quality of working life after", "score_0_10",
                 8.7, 8.4, 9.0, 90, 9.1, method="t interval"),
        ]
        (root / "surveys/indicators.json").write_text(json.dumps(survey_recs), encoding="utf-8")
        pd.DataFrame([
            {"survey_id": "patients_caregivers", "group": "all", "invited": 120, "complete_I": 90, "partial_P": 0,
             "rr1": 0.75, "rr2": 0.75, "formula": "I/(I+P+R+NC+O+U)", "note": "", "small_n_warning": False},
            {"survey_id": "nurses_online", "group": "all", "invited": 170, "complete_I": 90, "partial_P": 4,
             "rr1": 0.529, "rr2": 0.553, "formula": "I/(I+P+R+NC+O+U)", "note": "", "small_n_warning": False},
        ]).to_csv(root / "surveys/response_rates.csv", index=False)
        lk = []
        for q in ("q1", "q2"):
            for code, (lfr, len_), share in zip(range(1, 5), [("Pas du tout", "Not at all"), ("Plutôt non", "Rather not"),
                                                             ("Plutôt oui", "Rather yes"), ("Tout à fait", "Completely")],
                                                (0.05, 0.12, 0.43, 0.40), strict=True):
                lk.append({"survey_id": "patients_caregivers", "question_id": q, "code": code, "label_fr": lfr, "label_en": len_, "count": round(share * 90),
                           "n": 90, "share": share, "ci_low": share - 0.05, "ci_high": share + 0.05})
        pd.DataFrame(lk).to_csv(root / "surveys/likert.csv", index=False)
        pd.DataFrame([
            {"survey_id": "nurses_online", "question_id": "qvt", "n_pairs": 90,
             "mean_before": 5.9, "before_ci_low": 5.5, "before_ci_high": 6.3, "mean_after": 8.7,
             "after_ci_low": 8.4, "after_ci_high": 9.0, "mean_change": 2.8, "p_value": 1e-9, "n_unchanged": 3},
            {"survey_id": "nurses_online", "question_id": "conditions", "n_pairs": 90,
             "mean_before": 5.6, "before_ci_low": 5.2, "before_ci_high": 6.0, "mean_after": 7.7,
             "after_ci_low": 7.4, "after_ci_high": 8.0, "mean_change": 2.1, "p_value": 1e-7, "n_unchanged": 5},
        ]).to_csv(root / "surveys/before_after.csv", index=False)
        # items.csv holds the question texts of every survey (likert.csv and before_after.csv do not).
        items = [{"survey_id": "patients_caregivers", "question_id": "q1", "statistic": "favourable",
                  "text_fr": "Qualité de vie améliorée", "text_en": "Quality of life improved",
                  "n": 90, "k": 73, "value": 0.81, "ci_low": 0.72, "ci_high": 0.88,
                  "display_en": "81% (73/90)", "display_fr": "81 % (73/90)"},
                 {"survey_id": "patients_caregivers", "question_id": "q2", "statistic": "favourable",
                  "text_fr": "Maintien à domicile favorisé", "text_en": "Staying at home favoured", "n": 90},
                 {"survey_id": "nurses_online", "question_id": "qvt", "statistic": "mean",
                  "text_fr": "Qualité de vie au travail", "text_en": "Quality of working life", "n": 90},
                 {"survey_id": "nurses_online", "question_id": "conditions", "statistic": "mean",
                  "text_fr": "Conditions de travail", "text_en": "Working conditions", "n": 90}]
        pd.DataFrame(items).to_csv(root / "surveys/items.csv", index=False)
        (root / "surveys/params.json").write_text(json.dumps({"surveys": {"proportion_ci": "wilson"}, **SurveysFacts(
            codebooks=(CodebookFile("patients_caregivers", "codebooks/patients_caregivers.yaml", "12" * 32),),
            inputs=(SurveyInput("patients_caregivers", "patients_caregivers.csv", "34" * 32, 90),)).to_dict()}),
            encoding="utf-8")

    if with_sweep:
        rows = []
        i = 0
        for method in ("nearest", "optimal"):
            for caliper in (0.05, 0.1, 0.2):
                i += 1
                est = 1500 + i * 25.0
                rows.append({"spec": i, "method": method, "caliper": caliper, "ratio": 1, "age_band_width": 5,
                             "transform": "log1p", "replace": False, "n_treated": 1290,
                             "n_treated_matched": 1100 + i * 10, "max_abs_smd_after": 0.02 * i,
                             "unmatched_share_complex": 0.3 - 0.01 * i,
                             "unmatched_share_complex_ci_low": 0.25 - 0.01 * i,
                             "unmatched_share_complex_ci_high": 0.35 - 0.01 * i,
                             "avoided_spending_per_patient_year": est,
                             "avoided_spending_per_patient_year_ci_low": est - 300,
                             "avoided_spending_per_patient_year_ci_high": est + 300, "seconds": 0.5})
        pd.DataFrame(rows).to_csv(root / "sweep/sweep.csv", index=False)
        (root / "sweep/params.json").write_text(json.dumps(SweepFacts(
            matching_base={"method": "nearest"}, n_grid_distinct=6, n_run=6, truncated=False, effects_available=True,
            curve_estimate="avoided_spending_per_patient_year", cohort_fingerprint="0123456789abcdef",
            seconds=3.0).to_dict()), encoding="utf-8")
    # An identifier column written by mistake: the report must drop it.
    pd.DataFrame({"person_id": list(FAKE_IDENTIFIERS), "n": [11, 12, 13]}).to_csv(
        root / "indicators/hospitalisation_debug.csv", index=False)
    hosp = pd.read_csv(root / "indicators/hospitalisation.csv")
    hosp["team_id"] = FAKE_IDENTIFIERS[2]
    hosp.to_csv(root / "indicators/hospitalisation.csv", index=False)
    if with_sensitivity:
        write_sensitivity(root)
    return root


def _diagnostics(id_: str, value: float, evalue: float, evalue_ci: float, gamma: float, mdrr: float,
                 pretrend_p: float, power_passed: bool) -> HeadlineDiagnostics:
    checks = {"balance": CheckFacts(0.04, 0.1, True), "overlap": CheckFacts(0.89, 0.7, True),
              "pretrends": CheckFacts(pretrend_p, 0.05, pretrend_p >= 0.05),
              "negative_controls": CheckFacts(0.03, 0.1, True),
              "power": CheckFacts(0.08 if power_passed else 0.12, 0.1, power_passed)}
    ops = {"balance": "≤", "overlap": "≥", "negative_controls": "≤"}
    reasons = tuple(f"{name}: value = {c.value:.3g} {ops.get(name, '≥' if c.passed else '<')} {c.threshold:.3g}"
                    for name, c in sorted(checks.items(), key=lambda kv: kv[1].passed))
    passed = all(c.passed for c in checks.values())
    return HeadlineDiagnostics(
        id=id_, value=value, ci_low=value - 0.1, ci_high=value + 0.1, evalue=evalue, evalue_ci=evalue_ci,
        evalue_scale="ratio", rosenbaum_gamma=gamma, rosenbaum_test="signed_rank", rosenbaum_p=0.001,
        rosenbaum_pairs=1150, mdrr=mdrr, mde=0.08, pretrend_outcome="spending", pretrend_p=pretrend_p,
        verdict="pass" if passed else "fail", reasons=reasons, checks=checks)


# sensitivity/summary.json as `equilibres sensitivity` writes it (through its declaration): the first
# headline passes every check, the second fails its pre-trend test.
SENSITIVITY_SUMMARY = SensitivitySummary(
    headlines=(_diagnostics("eol_hosp_rate", -0.19, 1.9, 1.2, 1.3, 1.4, 0.44, True),
               _diagnostics("avoided_spending_share", 0.22, 1.4, 1.0, 1.1, 1.2, 0.03, True)),
    negative_controls=NegativeControlFacts(
        n=12, systematic_error_mean=0.03, systematic_error_sd=0.05, systematic_error_ci_low=-0.02,
        systematic_error_ci_high=0.08, expected_absolute_systematic_error=0.04, ci_level=0.95, replicates=199,
        method="negative-control outcomes estimated with the headline design", assumption="no effect expected"),
    event_study={"spending": EventStudyTest("eur_per_patient_month", 5.7, 11, 0.89, -143.7, -167.0, -123.3),
                 "hospital_stays": EventStudyTest("stays_per_100_patient_months", 6.0, 11, 0.88, -0.65, -0.8, -0.5)},
    balance=BalanceOverlap(max_abs_smd_after=0.04, matched_share=0.89),
    thresholds=VerdictThresholds(max_abs_smd=0.1, min_matched_share=0.7, pretrend_alpha=0.05, max_systematic_error=0.1,
                                 alpha=0.05, power=0.8, min_effect_of_interest={"eol_hosp_rate": 0.1}),
    ci_level=0.95, replicates=199, event_replicates=199, curve_replicates=199, notes=())


def write_sensitivity(root: Path) -> None:
    """The outputs of `equilibres sensitivity` (issue 14): summary.json and its tables."""
    d = root / "sensitivity"
    d.mkdir(parents=True, exist_ok=True)
    (d / "summary.json").write_text(json.dumps(SENSITIVITY_SUMMARY.to_dict()), encoding="utf-8")
    rows = []
    for outcome in ("spending_total", "hosp_stays"):
        for m in range(-6, 7):
            est = 0.0 if m < 0 else -30.0 * m
            rows.append({"outcome": outcome, "relative_month": m, "unit": "eur_per_patient", "estimate": est,
                         "ci_low": est - 80, "ci_high": est + 80, "n_treated": 1200, "n_control": 2300})
    pd.DataFrame(rows).to_csv(d / "event_study.csv", index=False)
    rows = [{"curve": "death", "arm": arm, "month": m, "estimate": min(1.0, m * rate), "n_at_risk": 1000 - 20 * m}
            for arm, rate in (("treated", 0.01), ("control", 0.014)) for m in range(0, 25, 3)]
    pd.DataFrame(rows).to_csv(d / "cumulative_incidence.csv", index=False)
    pd.DataFrame([
        {"covariate": "age", "mean_matched_treated": 81.0, "mean_all_treated": 80.2, "mean_unmatched_complex": 77.5,
         "smd_matched_vs_all": 0.06, "smd_matched_vs_unmatched_complex": 0.3, "n_matched_treated": 1150,
         "n_all_treated": 1290, "n_unmatched_complex": 7},
    ]).to_csv(d / "generalisability.csv", index=False)


def make_sample_build(root: Path) -> Path:
    """A real build of the committed sample (every step but the sweep and the report; 199 bootstrap
    replicates to stay fast), for the tests that check the report on real results."""
    from data_samples import SAMPLE_DIR
    from pipeline.config import load_config
    from pipeline.paths import BuildPaths
    from study.chain import run_chain

    cfg = load_config().with_overrides({"indicators": {"bootstrap_replicates": 199}})
    run_chain(BuildPaths(root, SAMPLE_DIR), cfg, sweep=False, report_too=False)
    return root
