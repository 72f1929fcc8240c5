"""Hostile inputs: each defect of the corpus (tests/bad_inputs.py) through the real CLI.

A defect either stops the command with a clear message (what, where, how many, what to do; non-zero
exit; no crash) or is handled, audited and counted (audit/attrition.csv, matching sizes). The corpus
and the handling of each case are described in docs/reliability.md.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import bad_inputs as bi
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

# Fragments the clean/run message must contain: the file or table (where), the defect and its count
# (what, how many) and the remedy (what to do). Whitespace is collapsed before matching.
CLEAN_MESSAGES = {
    "missing_table": ["IR_IMB_R", "1 table(s) missing", "add the file"],
    "empty_table": ["ER_PRS_F.parquet: 0 rows", "no rows", "Export the table again"],
    "truncated_parquet": ["ER_PRS_F.parquet", "truncated", "copy or export it again"],
    "corrupt_parquet": ["ER_PRS_F.parquet", "damaged", "copy or export it again"],
    "csv_header_unrecognised": ["IR_BEN_R.csv", "no column of IR_BEN_R found in the header line",
                                "reads as 1 column(s) named 'Libellé 1,", "the separator seems to be ','",
                                "[extract] csv_separator"],
    "csv_wrong_encoding": ["IR_IMB_R.csv", "UTF-16", "re-export it as UTF-8"],
    "missing_column": ["IR_BEN_R.parquet", "BEN_DCD_DTE", "missing", "Export them under their SNDS names"],
    "renamed_column": ["ER_PRS_F.parquet", "BSE_REM_MNT (found BSE_REM_MT: renamed?)", "Export them"],
    "text_in_amounts": ["ER_PRS_F.parquet", "column BSE_REM_MNT: 3 value(s) are not float", "'douze'",
                        "Fix the export"],
    "impossible_dates": ["IR_IMB_R.csv", "column IMB_ALD_DTD: 2 value(s) are not date", "31FEB2021",
                         "Fix the export"],
    "duplicated_line_keys": ["ER_PRS_F.parquet", "40 value(s) of the nine join keys", "80 rows",
                             "remove the duplicate rows"],
    # Inputs that cannot give a cohort stop at the first step that can see it (issue 17, part 4).
    "column_entirely_null": ["ER_PRS_F.parquet (ER_PRS_F), column BSE_REM_MNT", "100.0 % of values are missing",
                             "rule column_mostly_null", "max_null_share",
                             "export BSE_REM_MNT again"],
    "roster_unlinked": ["EQUILIBRES_ROSTER", "column BEN_NIR_PSA", "rule roster_link_to_beneficiary drops",
                        "none of its BEN_NIR_PSA is in IR_BEN_R", "export the roster with the pseudonymised"],
    "claims_unlinked": ["ER_PRS_F", "no claim line survives cleaning", "rule link_to_beneficiary drops the most",
                        "BEN_NIR_PSA/BEN_RNG_GEM is in IR_BEN_R", "from the same extract"],
    "no_eligible_control": ["Cleaning stage cohort: no eligible candidate control", "outside_study_area",
                            "IR_BEN_R column BEN_RES_DPT", "[study.regions]", "then run again"],
    "amounts_all_zero": ["ER_PRS_F", "column BSE_REM_MNT", "carry no amount", "kept_claims_have_amounts",
                         "Export BSE_REM_MNT"],
}

# What `equilibres validate` must report for the same cases (rule and count, with the file).
VALIDATE_MESSAGES = {
    "missing_table": ["[IR_IMB_R]: table present", "expected IR_IMB_R.parquet"],
    "empty_table": ["ER_PRS_F.parquet [ER_PRS_F]: table has rows", "export the table again"],
    "truncated_parquet": ["ER_PRS_F.parquet [ER_PRS_F]: readable", "truncated"],
    "corrupt_parquet": ["ER_PRS_F.parquet [ER_PRS_F]: readable", "damaged"],
    "csv_header_unrecognised": ["IR_BEN_R.csv [IR_BEN_R]: readable", "the separator seems to be ','"],
    "csv_wrong_encoding": ["IR_IMB_R.csv [IR_IMB_R]: readable", "UTF-16"],
    "missing_column": ["IR_BEN_R.parquet [IR_BEN_R] column BEN_DCD_DTE: column present"],
    "renamed_column": ["column BSE_REM_MNT: column present", "found BSE_REM_MT instead: renamed?"],
    "text_in_amounts": ["column BSE_REM_MNT: type float", "3 row(s)", "'douze'"],
    "impossible_dates": ["IR_IMB_R.csv [IR_IMB_R] column IMB_ALD_DTD: type date", "2 row(s)"],
    "duplicated_line_keys": ["unique line key — 80 row(s)", "copies=2"],
    "dates_outside_window": ["column EXE_SOI_DTD: value out of range", "10 row(s)", "2031-05-01"],
    # 1e15 € is beyond the contract's range (a violation); all three lines are also noted as
    # amount_above_maximum, the cleaning rule that drops them when `clean` runs without validation.
    "amount_corrupted": ["column BSE_REM_MNT: value out of range", "column BSE_REM_MNT: amount_above_maximum — 3 row(s)",
                         "1,000,000,001,000,000.00 €"],
    "column_entirely_null": ["ER_PRS_F.parquet [ER_PRS_F] column BSE_REM_MNT: column_mostly_null — 20,000 row(s)",
                             "100.0 % of values are missing (20,000 of 20,000 rows)",
                             "missing value (column not nullable) — 20,000 row(s)"],
    # Checks across tables (pipeline/table_links.py): cleaning would lose every treated patient or claim.
    "roster_unlinked": ["EQUILIBRES_ROSTER.parquet [EQUILIBRES_ROSTER] column BEN_NIR_PSA: roster_in_ir_ben_r — "
                        "86 row(s)", "86 of 86 roster rows (100.0 %",
                        "above [cleaning] max_unlinked_roster_share = 10%: refused",
                        "rule roster_link_to_beneficiary", "export the roster with the pseudonymised identifiers",
                        "e.g. BEN_NIR_PSA=ZZU…"],
    "claims_unlinked": ["ER_PRS_F.parquet [ER_PRS_F] column BEN_NIR_PSA+BEN_RNG_GEM: claims_in_ir_ben_r — 20,000 row(s)",
                        "20,000 of 20,000 lines (100.0 %", "above [cleaning] max_unlinked_share = 5%: refused",
                        "rule link_to_beneficiary", "export ER_PRS_F and IR_BEN_R from the same extraction",
                        "schemas/DCIR/ER_PRS_F.json"],
}

# Implausible values `validate` reports as notes (exit 0): cleaning drops or flags them with an audited rule.
VALIDATE_NOTES = {
    "amount_above_maximum": "ER_PRS_F.parquet [ER_PRS_F] column BSE_REM_MNT: amount_above_maximum — 3 row(s)",
    "care_after_flux": "ER_PRS_F.parquet [ER_PRS_F] column EXE_SOI_DTD: care_after_flux — 20 row(s)",
    "birth_year_in_future": "IR_BEN_R.parquet [IR_BEN_R] column BEN_NAI_ANN: birth_year_in_future — 4 row(s)",
    "inclusion_outside_study": ("EQUILIBRES_ROSTER.parquet [EQUILIBRES_ROSTER] column EQL_INC_DTE: "
                                "roster_inclusion_outside_study — 3 row(s)"),
    "negative_amounts": "ER_PRS_F.parquet [ER_PRS_F] column PRS_ACT_QTE: regularisation_netting — 25 row(s)",
    # Below their threshold, rows that do not link are notes (with what cleaning does with them).
    "roster_absent_from_ir_ben_r": ("EQUILIBRES_ROSTER.parquet [EQUILIBRES_ROSTER] column BEN_NIR_PSA: "
                                    "roster_in_ir_ben_r — 5 row(s)"),
    "claims_of_unknown_persons": ("ER_PRS_F.parquet [ER_PRS_F] column BEN_NIR_PSA+BEN_RNG_GEM: claims_in_ir_ben_r — "
                                  "40 row(s)"),
}

ERROR_CASES = [name for name, c in bi.CASES.items() if c.handling == "error"]


def _assert_no_crash(out: bi.CliOutcome) -> None:
    assert out.exception is None, f"crashed with {type(out.exception).__name__}: {out.exception}"
    assert "Traceback" not in out.text


def _attrition(build: Path) -> pd.DataFrame:
    return pd.read_csv(build / "audit" / "attrition.csv").set_index(["stage", "rule"])


@pytest.fixture(scope="module")
def small_sample(tmp_path_factory) -> Path:
    """The sample with ER_PRS_F cut to its first 20,000 lines and PMSI to one year: validation checks
    every value of every file, and the cases below do not need more to show their defect."""
    d = bi.sample_copy(tmp_path_factory.mktemp("small") / "extract")
    t = pq.read_table(d / "ER_PRS_F.parquet")
    pq.write_table(t.slice(0, 20_000), d / "ER_PRS_F.parquet")
    for f in d.glob("T_MCO2*.parquet"):
        f.unlink()
    return d


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """The committed sample cleaned once: the reference counts of the audit trail."""
    build = tmp_path_factory.mktemp("baseline") / "build"
    out = bi.cli("clean", "--data", bi.SAMPLE_DIR, "--out", build)
    assert out.exit_code == 0, out.text
    return build


def _damaged(tmp_path: Path, name: str) -> tuple[Path, dict]:
    d = bi.sample_copy(tmp_path / "extract")
    return d, bi.CASES[name].build(d)


def test_corpus_is_documented():
    doc = (Path(__file__).parents[1] / "docs" / "reliability.md").read_text(encoding="utf-8")
    for name in bi.CASES:
        assert f"`{name}`" in doc, f"{name} is not described in docs/reliability.md"


@pytest.mark.parametrize("name", ERROR_CASES)
def test_defect_stops_clean_with_a_clear_message(name: str, tmp_path: Path):
    data, _ = _damaged(tmp_path, name)
    build = tmp_path / "build"
    out = bi.cli("clean", "--data", data, "--out", build)
    _assert_no_crash(out)
    assert out.exit_code == 2, out.text
    assert out.text.startswith("Error:"), out.text
    for fragment in CLEAN_MESSAGES[name]:
        assert fragment in out.text, f"{fragment!r} missing from: {out.text}"
    # Nothing half-written: no output and no manifest claims anything.
    assert not (build / "clean" / "manifest.json").exists()
    assert not list(build.glob("clean/*.parquet"))


@pytest.mark.parametrize("name", [n for n, c in bi.CASES.items() if c.validate_flags])
def test_defect_is_reported_by_validate(name: str, small_sample: Path, tmp_path: Path):
    data = bi.sample_copy(tmp_path / "extract", source=small_sample)
    bi.CASES[name].build(data)
    out = bi.cli("validate", data)
    _assert_no_crash(out)
    assert out.exit_code == 1, out.text
    assert "FAILED:" in out.text and "fix the extract" in out.text
    for fragment in VALIDATE_MESSAGES[name]:
        assert fragment in out.text, f"{fragment!r} missing from: {out.text}"


def test_validate_passes_on_the_sample_and_on_audited_defects(small_sample: Path, tmp_path: Path):
    out = bi.cli("validate", small_sample)
    assert out.exit_code == 0 and "OK:" in out.text, out.text
    assert "note(s)" not in out.text, out.text
    # Defects between tables or against the study window are for cleaning to handle and count.
    for name in ("negative_amounts", "roster_absent_from_ir_ben_r", "csv_latin1"):
        data = bi.sample_copy(tmp_path / name, source=small_sample)
        bi.CASES[name].build(data)
        out = bi.cli("validate", data)
        assert out.exit_code == 0, (name, out.text)


def test_run_stops_before_cleaning_on_a_damaged_extract(tmp_path: Path):
    data, _ = _damaged(tmp_path, "corrupt_parquet")
    build = tmp_path / "build"
    out = bi.cli("run", "--data", data, "--out", build, "--no-sweep")
    _assert_no_crash(out)
    # `equilibres run` validates the extract first: a broken contract stops it with exit code 1.
    assert out.exit_code == 1 and "ER_PRS_F.parquet" in out.text and "damaged" in out.text, out.text
    assert "nothing was cleaned" in out.text
    assert not (build / "clean").exists() and not (build / "matching").exists()


# -- audited continuations -----------------------------------------------------------------------


def _delta(build: Path, baseline: Path, stage: str, rule: str, column: str) -> float:
    return float(_attrition(build).loc[(stage, rule), column] - _attrition(baseline).loc[(stage, rule), column])


def test_negative_lines_without_original_are_dropped_and_counted(baseline: Path, tmp_path: Path):
    data, info = _damaged(tmp_path, "negative_amounts")
    build = tmp_path / "build"
    out = bi.cli("clean", "--data", data, "--out", build)
    assert out.exit_code == 0, out.text
    # Each orphan negative line is a netting group of its own with a negative summed quantity.
    assert _delta(build, baseline, "dcir", "regularisation_netting", "rows_in") == info["lines"]
    assert _delta(build, baseline, "dcir", "regularisation_netting", "rows_dropped") == info["lines"]
    assert _delta(build, baseline, "dcir", "regularisation_netting", "rows_flagged") == info["lines"]
    assert _delta(build, baseline, "dcir", "regularisation_netting", "euros_dropped") == pytest.approx(info["euros"])
    # ... and none of their euros reach the panel.
    kept = pd.read_parquet(build / "clean" / "panel.parquet")
    ref = pd.read_parquet(baseline / "clean" / "panel.parquet")
    assert kept.filter(like="spend_").sum().sum() == pytest.approx(ref.filter(like="spend_").sum().sum())


def test_care_dates_outside_the_window_are_dropped_and_counted(baseline: Path, tmp_path: Path):
    data, info = _damaged(tmp_path, "dates_outside_window")
    build = tmp_path / "build"
    out = bi.cli("clean", "--data", data, "--out", build)
    assert out.exit_code == 0, out.text
    assert _delta(build, baseline, "dcir", "care_window", "rows_dropped") == info["before"] + info["future"]
    months = pd.read_parquet(build / "clean" / "panel.parquet")["month"]
    assert pd.Timestamp(months.min()) >= pd.Timestamp("2019-01-01")
    assert pd.Timestamp(months.max()) <= pd.Timestamp("2023-12-31")


def test_roster_patients_absent_from_ir_ben_r_are_dropped_and_counted(baseline: Path, tmp_path: Path):
    data, info = _damaged(tmp_path, "roster_absent_from_ir_ben_r")
    build = tmp_path / "build"
    out = bi.cli("clean", "--data", data, "--out", build)
    assert out.exit_code == 0, out.text
    assert _delta(build, baseline, "roster", "roster_link_to_beneficiary", "rows_dropped") == info["absent"]
    persons = pd.read_parquet(build / "clean" / "persons.parquet")
    ref = pd.read_parquet(baseline / "clean" / "persons.parquet")
    assert int(persons["treated"].sum()) == int(ref["treated"].sum())


def test_comma_separated_csv_is_detected_and_recorded(baseline: Path, tmp_path: Path):
    data, info = _damaged(tmp_path, "csv_comma_separated")
    out = bi.cli("validate", data)
    assert out.exit_code == 0, out.text
    assert f"checked {info['file']} ({info['rows']:,} rows; CSV, separator ',' (detected)" in out.text
    build = tmp_path / "build"
    out = bi.cli("clean", "--data", data, "--out", build)
    assert out.exit_code == 0, out.text
    manifest = json.loads((build / "clean" / "manifest.json").read_text(encoding="utf-8"))
    read_as = [e["read_as"] for e in manifest["inputs"]["IR_BEN_R"] if "read_as" in e]
    assert read_as and read_as[0]["separator"] == "," and "separator" in read_as[0]["detected"]
    # Same persons as the Parquet sample: nothing lost to the separator.
    assert pq.read_table(build / "clean" / "persons.parquet").num_rows == \
        pq.read_table(baseline / "clean" / "persons.parquet").num_rows


def test_latin1_csv_is_read_with_the_second_encoding(baseline: Path, tmp_path: Path):
    data, info = _damaged(tmp_path, "csv_latin1")
    build = tmp_path / "build"
    out = bi.cli("clean", "--data", data, "--out", build)
    assert out.exit_code == 0, out.text
    teams = pd.read_parquet(build / "clean" / "persons.parquet")["team_id"].dropna()
    assert len(teams) and teams.str.endswith("-ÉQ").all()
    assert _attrition(build).loc[("roster", "roster_link_to_beneficiary"), "rows_in"] == info["rows"]


def test_departement_without_candidate_controls_leaves_its_patients_unmatched(tmp_path: Path):
    data = bi.sample_copy(tmp_path / "extract")
    info = bi.departement_without_controls(data)
    build = tmp_path / "build"
    assert bi.cli("clean", "--data", data, "--out", build).exit_code == 0
    out = bi.cli("match", "--data", data, "--out", build)
    _assert_no_crash(out)
    assert out.exit_code == 0, out.text
    cohort = pd.read_parquet(build / "clean" / "cohort.parquet")
    elig = cohort[cohort.eligible == 1]
    target = elig[(elig.treated == 1) & (elig.dpt == info["dpt"])]
    assert len(target) > 0 and not ((elig.treated == 0) & (elig.dpt == info["dpt"])).any()
    matched = pd.read_parquet(build / "matching" / "matched.parquet")
    assert not (matched.dpt == info["dpt"]).any()
    # The unmatched patients are counted in the matching attrition rows (stage cohort, rule unmatched).
    att = pd.read_csv(build / "matching" / "attrition_matching.csv").set_index("rule")
    assert int(att.loc["unmatched", "rows_dropped"]) >= len(target)
    sizes = json.loads((build / "matching" / "params.json").read_text())["sizes"]
    assert sizes["unmatched_treated"] is None or sizes["unmatched_treated"] >= len(target)


def test_every_patient_unmatched_then_indicators_fail_clearly(baseline: Path, tmp_path: Path):
    build = tmp_path / "build"
    shutil.copytree(baseline / "clean", build / "clean")
    shutil.copytree(baseline / "audit", build / "audit")
    out = bi.cli("match", "--out", build, "--caliper", "1e-9", "--caliper-scale", "absolute")
    _assert_no_crash(out)
    assert out.exit_code == 0, out.text
    assert "matched 0" in out.text
    assert pq.ParquetFile(build / "matching" / "matched.parquet").metadata.num_rows == 0
    ind = json.loads((build / "matching" / "indicator_unmatched.json").read_text())[0]
    assert ind["value"] is None or ind["value"] == pytest.approx(1.0)
    out = bi.cli("indicators", "--out", build, "--replicates", "99")
    _assert_no_crash(out)
    assert out.exit_code == 2, out.text
    for fragment in ("matched.parquet has no rows", "caliper", "re-run `equilibres match`"):
        assert fragment in out.text, out.text
    assert not (build / "indicators" / "indicators.json").exists()


def test_survey_with_unknown_codes_is_a_clear_error(tmp_path: Path):
    data = bi.sample_copy(tmp_path / "extract")
    info = bi.survey_unknown_codes(data)
    out = bi.cli("surveys", "--data", data, "--out", tmp_path / "build")
    _assert_no_crash(out)
    assert out.exit_code == 2, out.text
    for fragment in ("patients_caregivers.csv", "'needs_met'", f"unknown code — {info['bad']} rows", "'7'",
                     "Fix the files"):
        assert fragment in out.text, out.text
    assert not (tmp_path / "build" / "surveys" / "indicators.json").exists()


@pytest.mark.parametrize("command", ["validate", "clean"])
def test_configuration_with_unknown_keys_or_out_of_range_values(command: str, tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[matching]\ncalipr = 0.1\nratio = 0\n[enginee]\nname = 'duckdb'\n"
                   "[indicators]\nci_level = 1.5\n[study]\nclaims_start = 2021-01-01\n", encoding="utf-8")
    args = [bi.SAMPLE_DIR] if command == "validate" else ["--data", bi.SAMPLE_DIR, "--out", tmp_path / "b"]
    out = bi.cli(command, *args, "--config", bad)
    _assert_no_crash(out)
    assert out.exit_code == 2, out.text
    for fragment in ("bad.toml", "unknown key 'matching.calipr'", "unknown key 'enginee'",
                     "'matching.ratio'", "(found 0)", "'indicators.ci_level'", "(found 1.5)",
                     "claims_start must be on or before inclusion_start", "remove it or check its spelling"):
        assert fragment in out.text, f"{fragment!r} missing from: {out.text}"
    assert not (tmp_path / "b").exists()


# -- plausibility (issue 17, parts 3 and 4) ------------------------------------------------------


@pytest.mark.parametrize("name", list(VALIDATE_NOTES))
def test_validate_notes_implausible_values_that_cleaning_handles(name: str, small_sample: Path, tmp_path: Path):
    data = bi.sample_copy(tmp_path / "extract", source=small_sample)
    bi.CASES[name].build(data)
    out = bi.cli("validate", data)
    _assert_no_crash(out)
    assert out.exit_code == 0 and "OK:" in out.text, out.text
    assert "1 note(s)" in out.text and "counts in audit/attrition.csv" in out.text, out.text
    assert VALIDATE_NOTES[name] in out.text, out.text
    assert "e.g. BEN_NIR_PSA=" in out.text  # examples, identifiers masked
    assert not any(len(w) == 17 and w.isalnum() and w.isupper() for w in out.text.replace("=", " ").split())


def _spend(build: Path) -> float:
    return float(pd.read_parquet(build / "clean" / "panel.parquet").filter(like="spend_").sum().sum())


@pytest.mark.parametrize("name", ["amount_corrupted", "amount_above_maximum"])
def test_implausible_amounts_are_dropped_with_their_euros(name: str, baseline: Path, tmp_path: Path):
    data, info = _damaged(tmp_path, name)
    build = tmp_path / "build"
    out = bi.cli("clean", "--data", data, "--out", build)  # cleaning alone: no validation before it
    assert out.exit_code == 0, out.text
    assert _delta(build, baseline, "dcir", "dpn_qlf_71", "rows_in") == info["lines"]
    assert _delta(build, baseline, "dcir", "amount_above_maximum", "rows_dropped") == info["lines"]
    assert _delta(build, baseline, "dcir", "amount_above_maximum", "euros_dropped") == pytest.approx(info["euros"])
    # ... and not a euro of them reaches the panel (hence any spending indicator).
    assert _spend(build) == pytest.approx(_spend(baseline), rel=1e-12)
    att = _attrition(build).loc[("dcir", "amount_above_maximum")]
    assert "montant_soins_de_ville" in att["source"] and "corrompu" in att["description_fr"]


def test_run_refuses_an_amount_beyond_the_contract(small_sample: Path, tmp_path: Path):
    data = bi.sample_copy(tmp_path / "extract", source=small_sample)
    bi.amount_corrupted(data)
    build = tmp_path / "build"
    out = bi.cli("run", "--data", data, "--out", build, "--no-sweep")
    _assert_no_crash(out)
    assert out.exit_code == 1, out.text
    for fragment in ("ER_PRS_F.parquet", "column BSE_REM_MNT: value out of range", "nothing was cleaned"):
        assert fragment in out.text, out.text
    assert not (build / "clean").exists()


def test_care_after_its_flux_date_is_dropped_and_counted(baseline: Path, tmp_path: Path):
    data, info = _damaged(tmp_path, "care_after_flux")
    build = tmp_path / "build"
    assert (out := bi.cli("clean", "--data", data, "--out", build)).exit_code == 0, out.text
    assert _delta(build, baseline, "dcir", "care_after_flux", "rows_dropped") == info["lines"]
    assert _delta(build, baseline, "dcir", "care_after_flux", "euros_dropped") == pytest.approx(info["euros"])
    # The lines it drops are lines the standard rules kept: nothing else changes before it.
    for rule in ("dpn_qlf_71", "bse_prs_nat_0", "care_window", "flux_window"):
        assert _delta(build, baseline, "dcir", rule, "rows_dropped") == 0


def test_birth_years_in_the_future_are_flagged_unknown(baseline: Path, tmp_path: Path):
    data, info = _damaged(tmp_path, "birth_year_in_future")
    build = tmp_path / "build"
    assert (out := bi.cli("clean", "--data", data, "--out", build)).exit_code == 0, out.text
    assert _attrition(baseline).loc[("ingest", "birth_year_in_future"), "rows_flagged"] == 0
    assert _attrition(build).loc[("ingest", "birth_year_in_future"), "rows_flagged"] == info["rows"]
    persons = pd.read_parquet(build / "clean" / "persons.parquet").set_index("person_id")
    assert persons.loc[info["person_ids"], "birth_date"].isna().all()
    assert pd.to_datetime(persons["birth_date"]).max() <= pd.Timestamp("2023-12-31")


def test_inclusions_outside_the_study_period_are_dropped_and_counted(baseline: Path, tmp_path: Path):
    data, info = _damaged(tmp_path, "inclusion_outside_study")
    build = tmp_path / "build"
    assert (out := bi.cli("clean", "--data", data, "--out", build)).exit_code == 0, out.text
    assert _delta(build, baseline, "roster", "roster_inclusion_outside_study", "rows_dropped") == info["rows"]
    treated = int(pd.read_parquet(build / "clean" / "persons.parquet")["treated"].sum())
    assert treated == int(pd.read_parquet(baseline / "clean" / "persons.parquet")["treated"].sum()) - info["rows"]


def test_a_column_entirely_null_is_refused_with_its_share(tmp_path: Path):
    data, info = _damaged(tmp_path, "column_entirely_null")
    out = bi.cli("clean", "--data", data, "--out", tmp_path / "build")
    _assert_no_crash(out)
    assert out.exit_code == 2, out.text
    assert f"({info['rows']:,} of {info['rows']:,} rows; rule column_mostly_null" in out.text, out.text
    # Before any stage ran: the message is not a downstream "no rows".
    assert "no rows" not in out.text and not (tmp_path / "build" / "clean" / "_stages" / "ingest.json").exists()


def test_a_mostly_null_column_is_refused_above_the_configured_share(tmp_path: Path):
    data = bi.sample_copy(tmp_path / "extract")
    t = pq.read_table(data / "ER_PRS_F.parquet")
    n = t.num_rows
    keep = int(n * 0.3)  # 70 % of PRS_NAT_REF missing
    codes = t.column("PRS_NAT_REF").to_pylist()[:keep] + [None] * (n - keep)
    pq.write_table(t.set_column(t.column_names.index("PRS_NAT_REF"), "PRS_NAT_REF",
                                pa.array(codes, pa.int64())), data / "ER_PRS_F.parquet")
    out = bi.cli("clean", "--data", data, "--out", tmp_path / "b1")
    assert out.exit_code == 2 and "column PRS_NAT_REF: 70.0 % of values are missing" in out.text, out.text
    assert f"({n - keep:,} of {n:,} rows" in out.text
    # The threshold is a setting: at 0.8 the same extract passes the check (and is cleaned).
    cfg = tmp_path / "lax.toml"
    cfg.write_text("[cleaning]\nmax_null_share = 0.8\n", encoding="utf-8")
    out = bi.cli("clean", "--data", data, "--out", tmp_path / "b2", "--config", cfg)
    assert out.exit_code == 0, out.text


def test_run_stops_at_the_first_step_that_sees_no_cohort(small_sample: Path, tmp_path: Path):
    # Entirely null amounts: validate refuses it (exit 1), nothing is cleaned.
    data = bi.sample_copy(tmp_path / "null", source=small_sample)
    bi.column_entirely_null(data)
    out = bi.cli("run", "--data", data, "--out", tmp_path / "b1", "--no-sweep")
    _assert_no_crash(out)
    assert out.exit_code == 1 and "column BSE_REM_MNT: column_mostly_null" in out.text, out.text
    assert not (tmp_path / "b1" / "clean").exists()
    # No roster patient in IR_BEN_R: validate's check across tables refuses it (exit 1), nothing is cleaned;
    # `clean` alone stops in its ingest stage (test_defect_stops_clean_with_a_clear_message).
    data = bi.sample_copy(tmp_path / "roster", source=small_sample)
    info = bi.roster_unlinked(data)
    out = bi.cli("run", "--data", data, "--out", tmp_path / "b2", "--no-sweep")
    _assert_no_crash(out)
    assert out.exit_code == 1, out.text
    assert f"roster_in_ir_ben_r — {info['rows']:,} row(s)" in out.text and "nothing was cleaned" in out.text
    assert "matched.parquet" not in out.text and not (tmp_path / "b2" / "clean").exists()


def test_no_eligible_control_names_the_rule_and_its_counts(tmp_path: Path):
    data, _ = _damaged(tmp_path, "no_eligible_control")
    out = bi.cli("clean", "--data", data, "--out", tmp_path / "build")
    assert out.exit_code == 2, out.text
    m = re.search(r"all ([\d,]+) candidate control row\(s\) fail an eligibility rule \(([^)]*)\)", out.text)
    assert m, out.text
    counts = {r: int(n.replace(",", "")) for r, n in (c.rsplit(" ", 1) for c in m.group(2).split(", "))}
    assert next(iter(counts)) == "outside_study_area" and sum(counts.values()) == int(m.group(1).replace(",", ""))
    assert not (tmp_path / "build" / "clean" / "persons.parquet").exists()  # rolled back


def test_plausibility_thresholds_come_from_the_study_file(baseline: Path, tmp_path: Path):
    """A lower nursing-acts maximum drops exactly the lines an independent pandas count finds."""
    cfg = tmp_path / "strict.toml"
    cfg.write_text("[cleaning.max_line_amount_by_category]\nnursing_acts = 1000.0\n", encoding="utf-8")
    build = tmp_path / "build"
    assert (out := bi.cli("clean", "--data", bi.SAMPLE_DIR, "--out", build, "--config", cfg)).exit_code == 0, out.text
    t = pd.read_parquet(bi.SAMPLE_DIR / "ER_PRS_F.parquet")
    care, flux = pd.to_datetime(t.EXE_SOI_DTD), pd.to_datetime(t.FLX_DIS_DTD)
    kept = ((t.DPN_QLF != 71) & (t.BSE_PRS_NAT != 0) & care.between("2019-01-01", "2023-12-31")
            & (flux <= "2024-06-30") & (care <= flux + pd.Timedelta(days=31)))
    # nursing_acts is the first category these codes match; the other categories keep 100 000 € (not reached).
    big = kept & t.PRS_NAT_REF.isin([3111, 3112, 3115]) & (t.BSE_REM_MNT.abs() > 1000)
    assert big.sum() > 0
    row = _attrition(build).loc[("dcir", "amount_above_maximum")]
    assert row["rows_dropped"] == int(big.sum())
    assert row["euros_dropped"] == pytest.approx(float(t.loc[big, "BSE_REM_MNT"].sum()), abs=0.01)
    # A category the study does not define is refused with the key's name.
    bad = tmp_path / "bad.toml"
    bad.write_text("[cleaning.max_line_amount_by_category]\nnursing = 1000.0\n", encoding="utf-8")
    out = bi.cli("validate", bi.SAMPLE_DIR, "--config", bad)
    assert out.exit_code == 2 and "max_line_amount_by_category" in out.text and "'nursing'" in out.text, out.text


def test_the_run_chain_checks_refusals_and_leaves_notes_to_the_audit(small_sample: Path, tmp_path: Path):
    """`equilibres validate` lists the plausibility notes; the run chain's validation (notes=False) skips
    them (cleaning's audit counts those rows and euros) but still refuses a mostly-null column."""
    from pipeline.config import load_config
    from pipeline.contract import validate_extract

    config = load_config()
    noted = tmp_path / "noted"
    shutil.copytree(small_sample, noted)
    bi.CASES["amount_above_maximum"].build(noted)
    assert [v.rule for v in validate_extract(noted, config).notes] == ["amount_above_maximum"]
    quiet = validate_extract(noted, config, notes=False)
    assert quiet.ok and quiet.notes == []

    refused = tmp_path / "refused"
    shutil.copytree(small_sample, refused)
    bi.CASES["column_entirely_null"].build(refused)
    rules = {v.rule for v in validate_extract(refused, config, notes=False).violations}
    assert "column_mostly_null" in rules


# -- checks across tables and nullable columns (issue 17, gaps 2 and 3) ---------------------------


def test_claims_of_unknown_persons_are_noted_then_dropped_with_their_euros(baseline: Path, tmp_path: Path):
    data, info = _damaged(tmp_path, "claims_of_unknown_persons")
    out = bi.cli("validate", data)
    assert out.exit_code == 0, out.text
    total = pq.ParquetFile(data / "ER_PRS_F.parquet").metadata.num_rows
    assert f"{info['lines']:,} of {total:,} lines" in out.text and f"{info['euros']:,.2f} €" in out.text, out.text
    assert "within [cleaning] max_unlinked_share = 5%, so not refused" in out.text
    build = tmp_path / "build"
    assert (out := bi.cli("clean", "--data", data, "--out", build)).exit_code == 0, out.text
    # What the note announced is what cleaning drops and counts: the same lines and euros.
    assert _delta(build, baseline, "dcir", "link_to_beneficiary", "rows_dropped") == info["lines"]
    assert _delta(build, baseline, "dcir", "link_to_beneficiary", "euros_dropped") == pytest.approx(info["euros"])


def test_link_thresholds_come_from_the_study_file(small_sample: Path, tmp_path: Path):
    """Below its threshold a link rule notes, above it refuses; both thresholds are [cleaning] settings."""
    roster = bi.sample_copy(tmp_path / "roster", source=small_sample)
    bi.roster_absent_from_ir_ben_r(roster)  # 5 of 91 roster rows: 5.5 %
    strict = tmp_path / "strict.toml"
    strict.write_text("[cleaning]\nmax_unlinked_roster_share = 0.05\nmax_unlinked_share = 0.001\n", encoding="utf-8")
    out = bi.cli("validate", roster, "--config", strict)
    assert out.exit_code == 1, out.text
    assert "5 of 91 roster rows (5.5 %" in out.text and "max_unlinked_roster_share = 5%: refused" in out.text
    # T_MCO19C rows of stays T_MCO19B does not hold: lost by cleaning without a count, so noted with that said.
    stays = bi.sample_copy(tmp_path / "stays", source=small_sample)
    info = bi.stay_links_without_stay(stays)
    out = bi.cli("validate", stays)
    assert out.exit_code == 0 and "1 note(s)" in out.text, out.text
    for fragment in (f"T_MCO19C.parquet [T_MCOaaC] column ETA_NUM+RSA_NUM: stay_links_in_mco_b — {info['rows']} row(s)",
                     "that T_MCOaaB does not hold in the same year", "without a count in audit/attrition.csv",
                     "schemas/PMSI/PMSI MCO/T_MCOaaC.json", "e.g. year=2019, ETA_NUM="):
        assert fragment in out.text, (fragment, out.text)
    out = bi.cli("validate", stays, "--config", strict)
    assert out.exit_code == 1 and "max_unlinked_share = 0%: refused" in out.text, out.text


def test_the_run_chain_refuses_unlinked_tables_but_leaves_link_notes(small_sample: Path, tmp_path: Path):
    from pipeline.config import load_config
    from pipeline.contract import validate_extract

    config = load_config()
    noted = bi.sample_copy(tmp_path / "noted", source=small_sample)
    bi.roster_absent_from_ir_ben_r(noted)
    assert [v.rule for v in validate_extract(noted, config).notes] == ["roster_in_ir_ben_r"]
    quiet = validate_extract(noted, config, notes=False)
    assert quiet.ok and quiet.notes == []
    refused = bi.sample_copy(tmp_path / "refused", source=small_sample)
    bi.claims_unlinked(refused)
    assert [v.rule for v in validate_extract(refused, config, notes=False).violations] == ["claims_in_ir_ben_r"]


def test_a_nullable_column_missing_everywhere_is_noted(small_sample: Path, tmp_path: Path):
    data = bi.sample_copy(tmp_path / "extract", source=small_sample)
    info = bi.nullable_column_null(data)
    out = bi.cli("validate", data)
    _assert_no_crash(out)
    assert out.exit_code == 0 and "1 note(s)" in out.text, out.text
    for fragment in (f"ER_PRS_F.parquet [ER_PRS_F] column EXE_SOI_DTF: nullable_column_mostly_null — "
                     f"{info['rows']:,} row(s)",
                     f"100.0 % of values are missing ({info['rows']:,} of {info['rows']:,} rows)",
                     "above [cleaning] max_null_share_nullable = 95%", "check the export of EXE_SOI_DTF"):
        assert fragment in out.text, (fragment, out.text)
    # A column partly missing, below the threshold, is not noted; the threshold is a setting.
    t = pq.read_table(bi.SAMPLE_DIR / "ER_PRS_F.parquet").slice(0, 20_000)
    half = pa.array(t.column("EXE_SOI_DTF").to_pylist()[:10_000] + [None] * 10_000, pa.date32())
    pq.write_table(t.set_column(t.column_names.index("EXE_SOI_DTF"), "EXE_SOI_DTF", half), data / "ER_PRS_F.parquet")
    assert "note(s)" not in (out := bi.cli("validate", data)).text, out.text
    lax = tmp_path / "lax.toml"
    lax.write_text("[cleaning]\nmax_null_share_nullable = 0.4\n", encoding="utf-8")
    out = bi.cli("validate", data, "--config", lax)
    assert out.exit_code == 0 and "column EXE_SOI_DTF: nullable_column_mostly_null — 10,000 row(s)" in out.text, out.text
