"""Rendering the report on a fixture build directory, in French and English."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.io import PipelineError
from pipeline.paths import BuildPaths
from pipeline.privacy import identifiers_in
from pipeline.results import IndicatorRecord
from reports.build import SECTION_IDS, run
from reports.format import Formatter
from reports.records import agreement
from tests.report_fixture import FAKE_IDENTIFIERS, make_fixture_build

TEXT_RE = re.compile(r"<[^>]+>")


def _text(html: str) -> str:
    """Visible text: tags, the inline CSS and embedded images removed."""
    html = re.sub(r"<style>.*?</style>", " ", html, flags=re.S)
    html = re.sub(r'src="data:[^"]+"', "", html)
    return TEXT_RE.sub(" ", html)


@pytest.fixture(scope="module")
def fixture_build(tmp_path_factory) -> Path:
    return make_fixture_build(tmp_path_factory.mktemp("report_build"))


@pytest.fixture(scope="module")
def rendered(fixture_build: Path, tmp_path_factory) -> dict[str, tuple[str, object]]:
    out = {}
    for lang in ("fr", "en"):
        build = tmp_path_factory.mktemp(f"build_{lang}")
        shutil.copytree(fixture_build, build, dirs_exist_ok=True)
        cfg = load_config().with_overrides({"report": {"lang": lang}})
        result = run(BuildPaths(build), cfg, pdf=False)
        out[lang] = (result.html_path.read_text(encoding="utf-8"), result)
    return out


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_every_section_is_present_in_order(rendered, lang):
    html, result = rendered[lang]
    positions = [html.find(f'<section id="{sid}"') for sid in SECTION_IDS]
    assert all(p > 0 for p in positions), dict(zip(SECTION_IDS, positions, strict=True))
    assert positions == sorted(positions)
    assert result.sections == list(SECTION_IDS)
    assert f'<html lang="{lang}">' in html


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_no_template_markers_and_no_missing_value_words(rendered, lang):
    html, _ = rendered[lang]
    assert "{{" not in html and "{%" not in html and "%}" not in html
    words = set(re.findall(r"[A-Za-z]+", _text(html)))
    assert not words & {"nan", "NaN", "None", "undefined"}, words & {"nan", "NaN", "None", "undefined"}


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_html_is_self_contained(rendered, lang):
    html, _ = rendered[lang]
    assert "<style>" in html
    assert not re.search(r'<link[^>]+stylesheet', html)
    assert not re.search(r'<(img|script)[^>]+src="(?!data:)', html)
    assert html.count('src="data:image/png;base64,') >= 6  # flow, love plot, end of life, spending, ...


def test_french_and_english_number_formats(rendered):
    fr, _ = rendered["fr"]
    en, _ = rendered["en"]
    # The published end-of-life spending 11 400 € (from the config) and −21 %.
    assert "11\u202f400\u00a0€" in fr and "€11,400" in en
    assert "\u221221\u00a0%" in fr and "\u221221%" in en
    assert "Synthèse" in fr and "Synthesis" in en
    assert "Synthèse" not in en and "Synthesis" not in fr


def test_summary_lists_every_published_figure_with_its_status(rendered):
    html, result = rendered["en"]
    summary = html[html.find('<section id="summary"'):html.find('<section id="reproducibility"')]
    cfg = load_config()
    assert summary.count("<tr>") - 1 == len(cfg.published)  # header row + one row per figure
    # Fixture: eol_hosp_rate −19 % [−30 %, −7 %] contains the published −21 % → agrees;
    # eol_spending_control 12 900 [12 000, 13 800] vs 11 400 → differs (13 % away, tolerance 10 %).
    assert result.agreement["agrees"] >= 1 and result.agreement["differs"] >= 1
    assert "not computed" in summary
    assert "input" in summary  # programme_investment is an input, not an agreement


def _record(**values) -> IndicatorRecord:
    base = {"id": "eol_hosp_rate", "label_fr": "x", "label_en": "x", "unit": "relative_difference", "value": -0.19,
            "ci_low": -0.30, "ci_high": -0.07, "n": 150, "method": "matched-set bootstrap", "population": "p",
            "definition": "d"}
    return IndicatorRecord(**{**base, **values})


def test_agreement_rules():
    rec = _record()
    assert agreement(rec, -0.21, 0.10)[0] == "agrees"
    assert agreement(_record(ci_low=-0.20, ci_high=-0.18), -0.21, 0.10)[0] == "close"
    assert agreement(_record(value=-0.10, ci_low=-0.12, ci_high=-0.08), -0.21, 0.10)[0] == "differs"
    assert agreement(None, 0.3, 0.1)[0] == "missing"
    assert agreement(_record(value=374000.0, ci_low=None, ci_high=None, method="input"), 374000.0, 0.1)[0] == "input"


def test_small_counts_are_masked_in_the_html(rendered):
    html, result = rendered["fr"]
    assert result.n_masked_cells > 0
    # The fixture's small indicator (n = 6) and the 7 persons dropped by cleaning never show as such.
    hosp = html[html.find('<section id="hospitalisation"'):html.find('<section id="economics"')]
    assert "&lt;\u00a010" in hosp
    assert not re.search(r">\s*6\s*<", hosp)
    cleaning = html[html.find('<section id="intervention"'):html.find('<section id="matching"')]
    assert not re.search(r">\s*7\s*<", cleaning)


def test_identifier_columns_never_reach_the_report(rendered):
    for lang in ("fr", "en"):
        html, _ = rendered[lang]
        assert identifiers_in(html, set(FAKE_IDENTIFIERS)) == 0
        for ident in FAKE_IDENTIFIERS:
            assert ident not in html


def test_optional_steps_absent_show_not_run_notices(tmp_path):
    build = make_fixture_build(tmp_path / "b", with_surveys=False, with_sweep=False)
    result = run(BuildPaths(build), load_config(), pdf=False)
    html = result.html_path.read_text(encoding="utf-8")
    assert "sweep" in result.not_run and "survey_indicators" in result.not_run
    assert html.count('class="notice not-run"') >= 2
    assert "equilibres sweep" in html and "equilibres surveys" in html


def test_missing_required_input_names_the_file_and_the_command(tmp_path):
    build = make_fixture_build(tmp_path / "b")
    (build / "indicators" / "indicators.json").unlink()
    with pytest.raises(PipelineError) as err:
        run(BuildPaths(build), load_config(), pdf=False)
    msg = str(err.value)
    assert "indicators/indicators.json" in msg and "equilibres indicators" in msg
    assert not (build / "report" / "report.html").exists()


def test_missing_build_directory_is_a_clear_error(tmp_path):
    with pytest.raises(PipelineError, match="does not exist"):
        run(BuildPaths(tmp_path / "nope"), load_config(), pdf=False)


def test_privacy_guard_refuses_to_write_a_report_with_an_extract_identifier(tmp_path):
    import pandas as pd

    build = make_fixture_build(tmp_path / "b")
    data = tmp_path / "extract"
    data.mkdir()
    # An "extract" whose person identifier happens to be a string the fixture report prints
    # (the code of a rule): the guard must stop the report from being written.
    pd.DataFrame({"BEN_NIR_PSA": ["dpn_qlf_71"], "BEN_IDT_ANO": ["ANOFAKE0001"]}).to_parquet(data / "IR_BEN_R.parquet")
    with pytest.raises(PipelineError, match="Privacy check failed"):
        run(BuildPaths(build, data), load_config(), pdf=False)
    assert not (build / "report" / "report.html").exists()


def test_formatter_known_answers():
    fr, en = Formatter("fr"), Formatter("en")
    assert fr.eur(11400) == "11\u202f400\u00a0€" and en.eur(11400) == "€11,400"
    assert fr.pct(-0.21) == "\u221221\u00a0%" and en.pct(-0.21) == "\u221221%"
    assert fr.number(0.8312, 2) == "0,83" and en.number(0.8312, 2) == "0.83"
    assert en.eur(9e6) == "€9.0M" and fr.eur(9e6) == "9,0\u00a0M€"
    assert fr.value(None, "share") == "—" and en.value(float("nan"), "eur_per_patient") == "—"
    assert en.number(-0.0001, 2) == "0.00"  # never "−0.00"
    assert en.value(1625, "eur_per_patient_year") == "€1,625/patient/year"
