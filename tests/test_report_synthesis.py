"""Issue 16: the synthesis up front, one language per report, no raw structures, readable tables.

Renders the fixture build (tests/report_fixture.py) in French and English, with and without the
sensitivity outputs, and reads the visible text of the HTML.
"""

from __future__ import annotations

import html as html_lib
import re
import shutil
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.paths import BuildPaths
from reports.build import PART_OF, SECTION_IDS, run
from tests.report_fixture import make_fixture_build

# Words that betray the other language in a report's visible text (whole words, case-insensitive).
# Kept to words that cannot be proper names or SNDS codes in the other language.
ENGLISH_WORDS = ("the", "and", "of", "with", "without", "outcome", "estimator", "rows", "clusters", "weights",
                 "matched", "pairs", "partial", "treated", "controls", "spending", "share", "not run",
                 "bootstrap estimate", "row", "yes", "none", "all", "before", "after", "change", "did")
FRENCH_WORDS = ("les", "des", "du", "avec", "sans", "pour", "témoins", "dépense", "dépenses", "appariés",
                "non réalisés", "oui", "secret", "effectif", "lignes", "avant", "après", "ensemble")
RAW = ("{'", "[{", "dtype", "nan", "None", "<NA>", "NaN", "{{", "}}")


def scan_other_language(text: str, lang: str) -> list[str]:
    """Words of the other language found in ``text``, each with some context."""
    words = ENGLISH_WORDS if lang == "fr" else FRENCH_WORDS
    out = []
    for w in words:
        m = re.search(rf"(?<![\w'’-]){re.escape(w)}(?![\w'’-])", text, re.I)
        if m:
            out.append(f"{w!r}: …{text[max(m.start() - 60, 0):m.end() + 60]}…")
    return out


def visible_text(html: str) -> str:
    """The text a reader sees: no CSS, no images, no <code> (SNDS column names, file names, hashes),
    no URLs; entities decoded."""
    html = re.sub(r"<style>.*?</style>", " ", html, flags=re.S)
    html = re.sub(r"<code[^>]*>.*?</code>", " ", html, flags=re.S)
    html = re.sub(r"<[^>]+>", " ", html)
    text = html_lib.unescape(html)
    text = re.sub(r"https?://\S+", " ", text)
    return re.sub(r"\s+", " ", text)


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[tuple[str, bool], str]:
    out = {}
    for sensitivity in (False, True):
        base = make_fixture_build(tmp_path_factory.mktemp("syn_build"), with_sensitivity=sensitivity)
        for lang in ("fr", "en"):
            build = tmp_path_factory.mktemp(f"syn_{lang}")
            shutil.copytree(base, build, dirs_exist_ok=True)
            cfg = load_config().with_overrides({"report": {"lang": lang}})
            result = run(BuildPaths(build), cfg, pdf=False)
            out[(lang, sensitivity)] = result.html_path.read_text(encoding="utf-8")
    return out


def section(html: str, sid: str) -> str:
    start = html.find(f'<section id="{sid}"')
    end = html.find("</section>", start)
    assert start > 0 and end > start, sid
    return html[start:end]


@pytest.mark.parametrize("sensitivity", [False, True])
@pytest.mark.parametrize("lang", ["fr", "en"])
def test_one_language_per_report(reports, lang, sensitivity):
    found = scan_other_language(visible_text(reports[(lang, sensitivity)]), lang)
    assert not found, f"the {lang} report shows words of the other language:\n" + "\n".join(found)


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_no_raw_structure_in_the_report(reports, lang):
    text = visible_text(reports[(lang, True)])
    for token in RAW:
        pattern = rf"\b{re.escape(token)}\b" if token.isalpha() else re.escape(token)
        hit = re.search(pattern, text)
        assert hit is None, f"{token!r} in the {lang} report: …{text[max(hit.start() - 80, 0):hit.end() + 80]}…"


def test_the_synthesis_comes_first_and_the_annex_last(reports):
    html = reports[("en", False)]
    assert SECTION_IDS[0] == "synthesis" and PART_OF["synthesis"] == "synthesis"
    assert [PART_OF[s] for s in SECTION_IDS[-3:]] == ["annex"] * 3 and SECTION_IDS[-1] == "reproducibility"
    positions = [html.find(f'id="part-{p}"') for p in ("synthesis", "evidence", "annex")]
    assert 0 < positions[0] < positions[1] < positions[2]


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_synthesis_shows_headlines_with_published_value_agreement_and_verdict(reports, lang):
    without, with_diag = section(reports[(lang, False)], "synthesis"), section(reports[(lang, True)], "synthesis")
    for sid in ("eol_hosp", "eol_spending", "avoided", "net", "unmatched", "surveys"):
        assert f"headline-{sid}" in without, sid
    # Without sensitivity/summary.json every verdict says "not run"; never an invented verdict.
    not_run = "non réalisés" if lang == "fr" else "not run"
    assert "verdict-none" in without and not_run in without
    assert "verdict-pass" not in without and "verdict-fail" not in without
    # With it, the verdicts of the file, on the right headline.
    card = with_diag[with_diag.find("headline-eol_hosp"):with_diag.find("headline-eol_spending")]
    assert "verdict-pass" in card
    card = with_diag[with_diag.find("headline-avoided"):with_diag.find("headline-net")]
    assert "verdict-fail" in card
    # Reproduced value, interval and published value on the end-of-life card: fixture −19 % [−30 %, −7 %].
    card = without[without.find("headline-eol_hosp"):without.find("headline-eol_spending")]
    assert "19" in card and "30" in card and "21" in card and 'class="status agrees"' in card
    assert without.count('<figure class="chart') >= 3
    # No table longer than ten rows in the synthesis.
    for table in re.findall(r"<tbody>(.*?)</tbody>", without, flags=re.S):
        assert table.count("<tr>") <= 10


def test_conclusions_use_reproduced_values_not_published_ones(reports):
    text = visible_text(section(reports[("en", False)], "synthesis"))
    conclusions = text[text.find("What the numbers show"):text.find("Limits to keep in mind")]
    assert "−19%" in conclusions  # the reproduced relative difference of the fixture
    assert "−21%" not in conclusions  # the published one appears only in the cards


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_sensitivity_outputs_are_rendered_or_announced_not_run(reports, lang):
    without, with_diag = section(reports[(lang, False)], "sensitivity"), section(reports[(lang, True)], "sensitivity")
    assert "not-run" in without and "sensitivity/summary.json" in without
    n_fig_without = without.count('<figure class="chart')
    # One event-study chart per outcome (2), one cumulative-incidence chart and the generalisability chart.
    assert with_diag.count('<figure class="chart') == n_fig_without + 4
    assert "1,9" in with_diag or "1.9" in with_diag  # the E-value of the fixture
    # The generalisability table is in the annex; the 7 complex unmatched patients there are masked.
    detailed = section(reports[(lang, True)], "detailed")
    assert "&lt;\u00a010" in detailed[detailed.find("Table" if lang == "en" else "Tableau"):]


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_reproducibility_inputs_are_a_real_table(reports, lang):
    repro = section(reports[(lang, False)], "reproducibility")
    assert "{&#39;" not in repro and "[{" not in repro
    header = re.search(r"<thead><tr>(.*?)</tr></thead>", repro, flags=re.S).group(1)
    assert header.count("<th") == 5  # file, table, rows, size, short hash


def test_counts_agree_in_number(reports):
    text = visible_text(section(reports[("fr", False)], "summary"))
    text = text[text.find("Sur 24 chiffres publiés"):]
    text = text[:text.find(".") + 1]
    assert "concord" in text, text
    assert not re.search(r"\b1 sont\b|\b1 concordent\b|\b1 diffèrent\b", text), text[:400]
    assert not re.search(r"(?<![\d\u202f])(?:[2-9]|\d\d+) (?:est|concorde|diffère)\b", text)


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_every_in_page_link_resolves_and_every_figure_has_alt_and_caption(reports, lang):
    html = reports[(lang, True)]
    ids = set(re.findall(r'\bid="([^"]+)"', html))
    targets = set(re.findall(r'href="#([^"]+)"', html))
    assert targets and targets <= ids, targets - ids
    assert '<nav class="toc"' in html
    for fig in re.findall(r'<figure class="chart.*?</figure>', html, flags=re.S):
        alt = re.search(r'alt="([^"]*)"', fig).group(1)
        assert alt.strip() and re.search(r"<figcaption>[^<]*\d+\.", fig), fig[:300]


def test_long_tables_are_collapsible_and_headers_repeat_in_print(reports):
    html = reports[("en", False)]
    assert "<details" in html and "<summary>" in html
    css = Path(__file__).parents[1].joinpath("reports/static/report.css").read_text(encoding="utf-8")
    assert "thead { display: table-header-group; }" in css and "break-inside: avoid" in css
