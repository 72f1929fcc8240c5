"""Hostile inputs: each defect of the corpus (tests/bad_inputs.py) through the real CLI.

A defect either stops the command with a clear message (what, where, how many, what to do; non-zero
exit; no crash) or is handled, audited and counted (audit/attrition.csv, matching sizes). The corpus
and the handling of each case are described in docs/reliability.md.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import bad_inputs as bi
import pandas as pd
import pyarrow.parquet as pq
import pytest

# Fragments the clean/run message must contain: the file or table (where), the defect and its count
# (what, how many) and the remedy (what to do). Whitespace is collapsed before matching.
CLEAN_MESSAGES = {
    "missing_table": ["IR_IMB_R", "1 table(s) missing", "add the file"],
    "empty_table": ["ER_PRS_F.parquet: 0 rows", "no rows", "Export the table again"],
    "truncated_parquet": ["ER_PRS_F.parquet", "truncated", "copy or export it again"],
    "corrupt_parquet": ["ER_PRS_F.parquet", "damaged", "copy or export it again"],
    "csv_wrong_separator": ["IR_BEN_R.csv", "seems separated by ','", "csv_separator"],
    "csv_wrong_encoding": ["IR_IMB_R.csv", "UTF-16", "re-export it as UTF-8"],
    "missing_column": ["IR_BEN_R.parquet", "BEN_DCD_DTE", "missing", "Export them under their SNDS names"],
    "renamed_column": ["ER_PRS_F.parquet", "BSE_REM_MNT (found BSE_REM_MT: renamed?)", "Export them"],
    "text_in_amounts": ["ER_PRS_F.parquet", "column BSE_REM_MNT: 3 value(s) are not float", "'douze'",
                        "Fix the export"],
    "impossible_dates": ["IR_IMB_R.csv", "column IMB_ALD_DTD: 2 value(s) are not date", "31FEB2021",
                         "Fix the export"],
    "duplicated_line_keys": ["ER_PRS_F.parquet", "40 value(s) of the nine join keys", "80 rows",
                             "remove the duplicate rows"],
}

# What `equilibres validate` must report for the same cases (rule and count, with the file).
VALIDATE_MESSAGES = {
    "missing_table": ["[IR_IMB_R]: table present", "expected IR_IMB_R.parquet"],
    "empty_table": ["ER_PRS_F.parquet [ER_PRS_F]: table has rows", "export the table again"],
    "truncated_parquet": ["ER_PRS_F.parquet [ER_PRS_F]: readable", "truncated"],
    "corrupt_parquet": ["ER_PRS_F.parquet [ER_PRS_F]: readable", "damaged"],
    "csv_wrong_separator": ["IR_BEN_R.csv [IR_BEN_R]: readable", "seems separated by ','"],
    "csv_wrong_encoding": ["IR_IMB_R.csv [IR_IMB_R]: readable", "UTF-16"],
    "missing_column": ["IR_BEN_R.parquet [IR_BEN_R] column BEN_DCD_DTE: column present"],
    "renamed_column": ["column BSE_REM_MNT: column present", "found BSE_REM_MT instead: renamed?"],
    "text_in_amounts": ["column BSE_REM_MNT: type float", "3 row(s)", "'douze'"],
    "impossible_dates": ["IR_IMB_R.csv [IR_IMB_R] column IMB_ALD_DTD: type date", "2 row(s)"],
    "duplicated_line_keys": ["unique line key — 80 row(s)", "copies=2"],
    "dates_outside_window": ["column EXE_SOI_DTD: value out of range", "10 row(s)", "2031-05-01"],
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
