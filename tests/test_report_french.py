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
from tests.report_fixture import make_fixture_build, make_sample_build

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
    return make_sample_build(tmp_path_factory.mktemp("sample_build"))


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


# -- issue 16: one language per report, checked against the whole texts table --------------------------
# Every visible text node of a report (and every alt text) is checked against the strings of the other
# language: the fixed texts (reports/texts/<lang>.toml, every table), the indicator records' labels and
# method / population / definition texts, the cleaning rules' descriptions and the category labels of
# the configuration. A string of the other language that is not also a string of the report's language
# (names such as "ÉQUILIBRES" or "DCIR" are the same in both) must not appear: whole, as a text node,
# or, for longer strings, as a literal run of words between placeholders.
MIN_FRAGMENT = 14  # shorter runs ("n", "IC", "%") are too common to tell a language


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(s).replace("\u00a0", " ").replace("\u202f", " ")).strip()


def language_strings(lang: str, build: Path | None) -> set[str]:
    """Every text the report can show in ``lang``: its texts table and the build's own texts."""
    from pipeline.results import read_records
    from reports.i18n import texts

    out = {_norm(s) for s in _strings(dict(texts(lang)))}
    cfg = load_config()
    for cat in cfg.cleaning.categories.values():
        out.add(_norm(cat.label_fr if lang == "fr" else cat.label_en))
    if build is not None:
        for name in ("indicators/indicators.json", "matching/indicator_unmatched.json", "surveys/indicators.json"):
            if (build / name).exists():
                for rec in read_records(build / name):
                    out.add(_norm(rec.label(lang)))
                    for field in ("method", "population", "definition"):
                        text = getattr(rec, f"{field}_fr") if lang == "fr" else getattr(rec, field)
                        if text:
                            out.add(_norm(text))
        for name in ("audit/attrition.csv", "matching/attrition_matching.csv"):
            if (build / name).exists():
                att = pd.read_csv(build / name)
                col = "description_fr" if lang == "fr" else "description"
                if col in att.columns:
                    out |= {_norm(str(s)) for s in att[col].dropna()}
    return {s for s in out if s}


def visible_nodes(page: str) -> list[str]:
    """The visible text nodes of a rendered report (and its alt texts); <code> (column names, file
    names, hashes), <style> and <script> left out."""
    from html.parser import HTMLParser

    class Nodes(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.nodes: list[str] = []
            self.skip = 0

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag in ("style", "script", "code"):
                self.skip += 1
            alt = dict(attrs).get("alt")
            if alt:
                self.nodes.append(alt)

        def handle_endtag(self, tag: str) -> None:
            if tag in ("style", "script", "code") and self.skip:
                self.skip -= 1

        def handle_data(self, data: str) -> None:
            if not self.skip and data.strip():
                self.nodes.append(data)

    parser = Nodes()
    parser.feed(page)
    return [n for n in (_norm(x) for x in parser.nodes) if n]


def other_language_leaks(page: str, lang: str, build: Path | None) -> list[str]:
    """Strings of the other language found in the report in ``lang``, each with its text node."""
    other = "en" if lang == "fr" else "fr"
    own, foreign = language_strings(lang, build), language_strings(other, build)
    own_text = "\n".join(own)
    only = foreign - own
    nodes = visible_nodes(page)
    text = "\n".join(nodes)
    leaks = [f"node {n!r}" for n in nodes if n in only]
    for s in only:
        for fragment in re.split(r"\{[^{}]*\}|<[^>]+>", s):
            fragment = fragment.strip(" .,;:()«»“”\"'")
            if len(fragment) >= MIN_FRAGMENT and " " in fragment and fragment not in own_text and fragment in text:
                i = text.find(fragment)
                leaks.append(f"{fragment!r} (from {s[:60]!r}): …{text[max(i - 40, 0):i + len(fragment) + 40]}…")
    return sorted(set(leaks))


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_fixture_report_has_no_string_of_the_other_language(tmp_path: Path, lang: str) -> None:
    build = make_fixture_build(tmp_path / "build", with_sensitivity=True)
    page = run(BuildPaths(build), load_config().with_overrides({"report": {"lang": lang}}),
               pdf=False).html_path.read_text(encoding="utf-8")
    leaks = other_language_leaks(page, lang, build)
    assert not leaks, f"the {lang} report shows texts of the other language:\n" + "\n".join(leaks)


def test_the_language_check_finds_a_leak(tmp_path: Path) -> None:
    """The check above can fail: an English header, note or caption in the French report is found."""
    build = make_fixture_build(tmp_path / "build")
    page = run(BuildPaths(build), load_config(), pdf=False).html_path.read_text(encoding="utf-8")
    from reports.i18n import texts

    en = texts("en")["text"]
    for leaked in (en["col_covariate"], en["balance_note"].split("{")[0], en["fig_love"]):
        bad = page.replace("</main>", f"<p>{leaked}</p></main>")
        assert other_language_leaks(bad, "fr", build), leaked


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_sample_report_has_no_string_of_the_other_language(sample_build: Path, tmp_path: Path, lang: str) -> None:
    build = tmp_path / "build"
    shutil.copytree(sample_build, build)
    page = run(BuildPaths(build), load_config().with_overrides({"report": {"lang": lang}}),
               pdf=False).html_path.read_text(encoding="utf-8")
    leaks = other_language_leaks(page, lang, build)
    assert not leaks, f"the {lang} report shows texts of the other language:\n" + "\n".join(leaks)
