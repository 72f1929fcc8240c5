"""Codebook and survey-file validation: every problem reported at once, naming file, column, rule, count."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from data_samples.surveys import write_synthetic_surveys
from pipeline.config import load_config
from pipeline.io import PipelineError
from pipeline.survey_codebook import CodebookError, load_codebook, load_codebooks
from surveys.responses import SurveyValidationError, load_responses, read_survey_table, validate_responses

CONFIG = load_config()
PATIENTS_YAML = Path(CONFIG.base_dir) / "codebooks" / "patients_caregivers.yaml"


@pytest.fixture(scope="module")
def clean_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("surveys_valid")
    write_synthetic_surveys(root, 11, CONFIG)
    return root


@pytest.fixture
def data(clean_data: Path, tmp_path: Path) -> Path:
    shutil.copytree(clean_data / "surveys", tmp_path / "surveys")
    return tmp_path


def _books():
    return load_codebooks(CONFIG.codebook_paths())


def _edit(path: Path, fn) -> None:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    fn(frame)
    frame.to_csv(path, index=False)


def test_shipped_codebooks_load_and_feed_every_published_survey_figure():
    books = _books()
    assert [b.id for b in books] == ["patients_caregivers", "nurses_phone", "nurses_online"]
    ids = {i for b in books for i in b.indicator_ids}
    expected = {
        "patients_qol_improved", "patients_home_support", "caregivers_supported", "patients_needs_met",
        "patients_mean_score", "nurses_qvt_before", "nurses_qvt_after", "nurses_conditions_before",
        "nurses_conditions_after", "nurses_caseload_same", "nurses_caseload_up", "nurses_caseload_down",
        "nurses_more_solicited", "nurses_accept_more", "nurses_coordination", "nurses_coordination_gp_aide",
    }
    assert ids == expected
    assert ids <= set(CONFIG.published)


def test_clean_synthetic_files_validate(clean_data: Path):
    loaded = load_responses(clean_data, _books())
    assert set(loaded) == {"patients_caregivers", "nurses_phone", "nurses_online"}
    # the respondent id column never leaves the reader
    for _, frame in loaded.values():
        assert "respondent_id" not in frame.columns


def test_every_problem_is_reported_at_once(data: Path):
    pc = data / "surveys" / "patients_caregivers.csv"
    no = data / "surveys" / "nurses_online.csv"

    def break_patients(f: pd.DataFrame) -> None:
        patients = f.index[f["respondent_type"] == "1"]
        f.loc[patients[:3], "qol_improved"] = "7"        # unknown code, 3 rows
        f.loc[patients[3:5], "service_rating"] = "12"    # out of range, 2 rows
        f.loc[patients[5], "service_rating"] = "abc"     # not a number
        f.loc[[0, 1], "respondent_id"] = f.loc[2, "respondent_id"]  # 3 rows share one id
        f.loc[patients[6], "caregiver_supported"] = "4"  # a patient answering the caregiver item

    _edit(pc, break_patients)
    _edit(no, lambda f: f.drop(columns=["caseload"], inplace=True))
    with pytest.raises(SurveyValidationError) as info:
        load_responses(data, _books())
    err = info.value
    assert isinstance(err, PipelineError)
    by_rule = {(i.file, i.column, i.rule): i for i in err.issues}
    assert by_rule[("patients_caregivers.csv", "qol_improved", "unknown code")].count == 3
    assert by_rule[("patients_caregivers.csv", "service_rating", "out-of-range score")].count == 2
    assert by_rule[("patients_caregivers.csv", "service_rating", "not a number")].count == 1
    assert by_rule[("patients_caregivers.csv", "respondent_id", "duplicated respondent id")].count == 3
    assert by_rule[("patients_caregivers.csv", "caregiver_supported",
                    "answer from a respondent type the question does not apply to")].count == 1
    assert ("nurses_online.csv", "caseload", "missing column") in by_rule
    text = str(err)
    assert "patients_caregivers.csv, column 'qol_improved': unknown code — 3 rows" in text
    assert "'7'" in text  # the offending value is shown
    assert "nurses_online.csv, column 'caseload': missing column" in text
    assert "service_rating" in text and "between 0 and 10" in text
    # respondent ids are never echoed in messages, only line numbers
    assert "PC0003" not in text


def test_missing_file_is_named(data: Path):
    (data / "surveys" / "nurses_phone.csv").unlink()
    with pytest.raises(SurveyValidationError, match=r"nurses_phone\.csv.*missing file"):
        load_responses(data, _books())


def test_unknown_respondent_type_and_blank_id(data: Path):
    def edit(f: pd.DataFrame) -> None:
        f.loc[4, "respondent_type"] = "3"
        f.loc[5, "respondent_id"] = ""

    _edit(data / "surveys" / "patients_caregivers.csv", edit)
    with pytest.raises(SurveyValidationError) as info:
        load_responses(data, _books())
    rules = {(i.column, i.rule, i.count) for i in info.value.issues}
    assert ("respondent_type", "unknown code", 1) in rules
    assert ("respondent_id", "missing respondent id", 1) in rules
    line = next(i for i in info.value.issues if i.rule == "missing respondent id").rows
    assert line == (7,)  # 0-based row 5 is line 7 of the file (header = line 1)


def test_xlsx_input_is_read_like_csv(data: Path):
    csv = data / "surveys" / "nurses_phone.csv"
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    xlsx_data = data / "x"
    (xlsx_data / "surveys").mkdir(parents=True)
    for p in (data / "surveys").glob("*.csv"):
        shutil.copy(p, xlsx_data / "surveys" / p.name)
    (xlsx_data / "surveys" / "nurses_phone.csv").unlink()
    # Excel stores codes as numbers
    numeric = frame.replace("", None)
    for col in numeric.columns[1:]:
        numeric[col] = pd.to_numeric(numeric[col])
    numeric.to_excel(xlsx_data / "surveys" / "nurses_phone.xlsx", index=False)
    loaded = load_responses(xlsx_data, _books())
    from_csv = load_responses(data, _books())
    pd.testing.assert_frame_equal(loaded["nurses_phone"][1], from_csv["nurses_phone"][1])
    assert loaded["nurses_phone"][0].suffix == ".xlsx"


def test_decimal_comma_and_spaces_are_read(tmp_path: Path):
    book = load_codebook(PATIENTS_YAML)
    p = tmp_path / "x.csv"
    p.write_text("respondent_id;respondent_type;qol_improved;home_support;needs_met;symptoms_management;"
                 "listening_quality;service_rating;caregiver_supported\n"
                 "a; 1 ;4;1;4;5;5;9,0;\n", encoding="latin-1")
    frame = read_survey_table(p, ";")
    assert validate_responses(frame, book, "x.csv") == []
    frame.loc[0, "service_rating"] = "9,5"
    issues = validate_responses(frame, book, "x.csv")
    assert [(i.column, i.rule) for i in issues] == [("service_rating", "non-integer score")]


def _write_yaml(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "book.yaml"
    p.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return p


def test_codebook_field_errors_name_file_and_key(tmp_path: Path):
    data = yaml.safe_load(PATIENTS_YAML.read_text(encoding="utf-8"))
    data["colour"] = "blue"                          # unknown key
    data["questions"][0]["type"] = "slider"          # unknown question type
    data["population"]["invited"] = 0                # must be >= 1
    with pytest.raises(CodebookError) as info:
        load_codebook(_write_yaml(tmp_path, data))
    text = str(info.value)
    assert str(tmp_path / "book.yaml") in text
    assert "unknown key 'colour'" in text
    assert "'questions.0.type'" in text
    assert "'population.invited'" in text


def test_codebook_cross_checks_are_reported_together(tmp_path: Path):
    data = yaml.safe_load(PATIENTS_YAML.read_text(encoding="utf-8"))
    data["questions"][0]["favourable"] = [3, 8]          # not an answer code
    data["questions"][1]["scale"] = "yes_no_maybe"       # unknown scale
    data["questions"][2]["respondent_types"] = ["nurse"]  # unknown respondent type
    data["questions"][5]["indicators"][0]["statistic"] = "favourable"  # a score has no favourable share
    with pytest.raises(CodebookError) as info:
        load_codebook(_write_yaml(tmp_path, data))
    text = str(info.value)
    assert "favourable codes [8] are not answer codes" in text
    assert "respondent types ['nurse'] are not defined" in text
    assert "not available for a score_0_10 question" in text
    assert "scale 'yes_no_maybe' is not defined" in text


def test_missing_codebook_and_bad_yaml(tmp_path: Path):
    with pytest.raises(CodebookError, match="does not exist"):
        load_codebook(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: [unclosed\n", encoding="utf-8")
    with pytest.raises(CodebookError, match="not valid UTF-8 YAML"):
        load_codebook(bad)


def test_duplicate_survey_ids_are_rejected():
    with pytest.raises(CodebookError, match="Survey ids used by more than one codebook"):
        load_codebooks([PATIENTS_YAML, PATIENTS_YAML])
