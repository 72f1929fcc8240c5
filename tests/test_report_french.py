"""The report in French shows the French texts of the indicator records and cleaning rules.

Indicator records carry ``definition_fr`` / ``population_fr`` / ``method_fr`` beside the English keys
(docs/CONTRACTS.md §4) and ``audit/attrition.csv`` a ``description_fr`` column; the report picks the
language's version and falls back to English only when it is absent. Checked on the report fixture
and on a real build of the committed sample (clean → match → indicators → surveys, few replicates).
"""

from __future__ import annotations

import html
import importlib
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from data_samples import SAMPLE_DIR
from pipeline.config import load_config
from pipeline.paths import BuildPaths
from reports.build import run
from tests.report_fixture import make_fixture_build

# English phrases of the record texts and rule descriptions that must not survive in French.
ENGLISH_MARKERS = [
    "Share of", "per patient-year", "Drop ", "matched controls", "per decedent", "Wilson score interval",
    "respondents to whom", "Share answering", "spending perimeter", "Cohort rows whose",
    "Persons in the extract", "caseload taken as known", "cluster bootstrap", "Mean score", "unweighted",
    # producer strings of tables (regression cross-check, DiD, survey method, unmatched-profile notes)
    "cluster-robust SE", "(treated − control)", "Student t interval", "fewer than", "pre eur per",
    "mean followup",
]
# Their French counterparts, as produced by the pipeline on the sample.
FRENCH_MARKERS = [
    "Part des personnes décédées", "témoins appariés", "patients-années", "Lignes DPN_QLF = 71 retirées",
    "intervalle de Wilson", "Part répondant", "périmètre de dépenses", "premier critère non rempli",
    "file active considérée comme connue", "bootstrap des ensembles appariés",
    "Personnes de l'extraction", "Note moyenne",
]
FIXTURE_FRENCH = ["Patients ÉQUILIBRES appariés", "Définition de l'indicateur", "bootstrap par ensembles appariés",
                  "Lignes DPN_QLF = 71 retirées", "Lignes gardées par l'appariement"]
FIXTURE_ENGLISH = ["Matched ÉQUILIBRES patients", "Definition of ", "matched-set bootstrap",
                   "Drop DPN_QLF = 71 lines", "Rows kept by matching"]


def _visible(path: Path) -> str:
    """The HTML with styles, scripts and embedded images removed, entities decoded."""
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"<(style|script)\b.*?</\1>", " ", text, flags=re.S)
    text = re.sub(r'(src|href)="data:[^"]+"', "", text)
    return html.unescape(text)


def _render(build: Path, lang: str, data_dir: Path | None = None) -> str:
    cfg = load_config().with_overrides({"report": {"lang": lang}})
    return _visible(run(BuildPaths(build, data_dir), cfg, pdf=False).html_path)


def test_every_cleaning_rule_has_a_french_description() -> None:
    for mod in ("ingest", "ald", "dcir", "pmsi", "deaths", "cohort"):
        importlib.import_module(f"pipeline.stages.{mod}")
    from pipeline.stages.rules import REGISTRY

    assert len(REGISTRY) > 20
    missing = [name for (_, name), r in REGISTRY.items() if not r.description_fr]
    assert missing == []


def test_fixture_report_uses_french_texts_in_french_and_english_in_english(tmp_path: Path) -> None:
    build = make_fixture_build(tmp_path / "build")
    fr = _render(build, "fr")
    for phrase in FIXTURE_FRENCH:
        assert phrase in fr, phrase
    for phrase in FIXTURE_ENGLISH:
        assert phrase not in fr, phrase
    en = _render(build, "en")
    for phrase in FIXTURE_ENGLISH:
        assert phrase in en, phrase
    for phrase in FIXTURE_FRENCH:
        assert phrase not in en, phrase


def test_fixture_report_falls_back_to_english_when_french_is_absent(tmp_path: Path) -> None:
    build = make_fixture_build(tmp_path / "build")
    path = build / "indicators/indicators.json"
    recs = json.loads(path.read_text(encoding="utf-8"))
    for rec in recs:
        for key in ("definition_fr", "population_fr", "method_fr"):
            rec.pop(key, None)
    path.write_text(json.dumps(recs), encoding="utf-8")
    att = pd.read_csv(build / "audit/attrition.csv").drop(columns="description_fr")
    att.to_csv(build / "audit/attrition.csv", index=False)
    fr = _render(build, "fr")
    assert "Definition of " in fr  # no French text: the English one rather than a blank cell
    # A rule with neither a description_fr nor a report label keeps its English description.
    assert "Persons whose death precedes birth" in fr
    assert "Personnes dont le décès précède la naissance" not in fr


@pytest.fixture(scope="module")
def sample_build(tmp_path_factory) -> Path:
    """A real build of the committed sample (199 bootstrap replicates to stay fast)."""
    from study.chain import run_chain

    build = tmp_path_factory.mktemp("sample_build")
    cfg = load_config().with_overrides({"indicators": {"bootstrap_replicates": 199}})
    run_chain(BuildPaths(build, SAMPLE_DIR), cfg, sweep=False, report_too=False)
    return build


def test_sample_records_and_audit_carry_french_texts(sample_build: Path) -> None:
    recs = json.loads((sample_build / "indicators/indicators.json").read_text(encoding="utf-8"))
    recs += json.loads((sample_build / "surveys/indicators.json").read_text(encoding="utf-8"))
    assert len(recs) > 20
    for rec in recs:
        for key in ("definition", "population", "method"):
            assert rec.get(f"{key}_fr"), (rec["id"], key)
            assert rec[f"{key}_fr"] != rec[key], (rec["id"], key)
    for csv in ("audit/attrition.csv", "matching/attrition_matching.csv"):
        att = pd.read_csv(sample_build / csv)
        assert att["description_fr"].notna().all() and (att["description_fr"].str.len() > 0).all(), csv


def test_sample_report_in_french_has_no_english_record_texts(sample_build: Path, tmp_path: Path) -> None:
    build = tmp_path / "build"
    shutil.copytree(sample_build, build)
    fr = _render(build, "fr", data_dir=SAMPLE_DIR)
    left = [p for p in ENGLISH_MARKERS if p in fr]
    assert left == []
    absent = [p for p in FRENCH_MARKERS if p not in fr]
    assert absent == []
    # French typography of the record texts: no-break space before % in confidence levels.
    assert "IC à 95\u00a0%" in fr


def test_sample_report_in_english_keeps_english_record_texts(sample_build: Path, tmp_path: Path) -> None:
    build = tmp_path / "build"
    shutil.copytree(sample_build, build)
    en = _render(build, "en", data_dir=SAMPLE_DIR)
    for phrase in ("per decedent", "Drop ", "spending perimeter", "Share answering", "bootstrap of matched sets"):
        assert phrase in en, phrase
    for phrase in ("Part des personnes décédées", "périmètre de dépenses", "Part répondant"):
        assert phrase not in en, phrase


def test_producer_note_ids_and_values_are_translated():
    from reports.i18n import note_text, value_label

    assert note_text("few_unmatched_or_matched;reason_shares_masked", "fr", 10) == (
        "moins de 10 non appariés ou appariés; certaines parts par motif masquent de petits effectifs")
    assert note_text("few_treated", "fr", 5) == "moins de 5 traités"
    assert note_text("few_treated", "en", 5) == "fewer than 5 treated"
    with pytest.raises(KeyError, match="not defined"):
        note_text("fewer than 5 treated", "fr", 5)  # sentences are not translated, only ids
    assert value_label("WLS, cluster-robust SE by matched set", "fr").startswith("moindres carrés pondérés")
    assert value_label("an unknown note", "fr") == "an unknown note"
