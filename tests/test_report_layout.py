"""Issue 16, "the evidence, readable": a short balance table in the body and the full one in the annex;
long grids (every covariate, the scenario grid, every matching specification, generalisability,
negative controls, every cleaning rule) are a chart in the body and a table in the annex."""

from __future__ import annotations

import html as html_lib
import re
import shutil

import pandas as pd
import pytest

from pipeline.config import load_config
from pipeline.paths import BuildPaths
from reports.build import PART_OF, SECTION_IDS, run
from reports.i18n import text
from reports.sections.matching import SHORT_BALANCE_ROWS
from tests.report_fixture import make_fixture_build

# Covariates added to the fixture's balance table so that it is longer than the short table.
EXTRA = {f"CPX_FLAG{i}": 0.05 * i for i in range(1, 10)}  # |SMD| after 0.05 to 0.45


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, str]:
    base = make_fixture_build(tmp_path_factory.mktemp("layout_build"), with_sensitivity=True)
    bal = pd.read_csv(base / "matching/balance.csv")
    extra = []
    for cov, smd in EXTRA.items():
        for stage, value in (("before", 3 * smd), ("after", smd)):
            extra.append({**bal.iloc[0].to_dict(), "covariate": cov, "variable": cov, "stage": stage, "smd": value,
                          "mean_treated": 0.3, "mean_control": 0.3 - value / 2})
    pd.concat([bal, pd.DataFrame(extra)], ignore_index=True).to_csv(base / "matching/balance.csv", index=False)
    out = {}
    for lang in ("fr", "en"):
        build = tmp_path_factory.mktemp(f"layout_{lang}")
        shutil.copytree(base, build, dirs_exist_ok=True)
        cfg = load_config().with_overrides({"report": {"lang": lang}})
        out[lang] = run(BuildPaths(build), cfg, pdf=False).html_path.read_text(encoding="utf-8")
    return out


def section(html: str, sid: str) -> str:
    start = html.find(f'<section id="{sid}"')
    return html[start:html.find("</section>", start)]


def tables(html: str) -> dict[str, int]:
    """Caption (without its number) -> number of body rows, for every table of ``html``."""
    out = {}
    for m in re.finditer(r'<figure class="table-wrap[^"]*"[^>]*>\s*<figcaption>[^<]*?\d+\. (.*?)</figcaption>'
                         r'.*?<tbody>(.*?)</tbody>', html, flags=re.S):
        out[html_lib.unescape(m.group(1))] = m.group(2).count("<tr")
    return out


def evidence(html: str) -> str:
    return html[html.find('id="part-evidence"'):html.find('id="part-annex"')]


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_short_balance_table_in_the_body_full_one_in_the_annex(pages, lang):
    html = pages[lang]
    body = tables(section(html, "matching"))
    short = text("tab_balance_short", lang)
    assert body[short] == SHORT_BALANCE_ROWS  # 14 covariates in the fixture, the 10 least balanced shown
    assert text("tab_balance", lang) not in body
    assert 'href="#detailed"' in section(html, "matching")
    annex = tables(section(html, "detailed"))
    assert annex[text("tab_balance", lang)] == 5 + len(EXTRA)  # every covariate
    # The short table holds the largest |SMD| after matching, largest first: the nine flags, then the
    # fixture's prior nursing cost (0.024); the four better balanced covariates are left out.
    matching = section(html, "matching")
    table = matching[matching.find(short):matching.find("</table>", matching.find(short))]
    rows = re.findall(r"<tr>\s*<td[^>]*>(.*?)</td>", table)
    assert rows[:9] == [f"CPX_FLAG{i}" for i in range(9, 0, -1)], rows
    assert len(rows) == SHORT_BALANCE_ROWS


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_long_grids_are_charts_in_the_body_and_tables_in_the_annex(pages, lang):
    html = pages[lang]
    body, annex = evidence(html), section(html, "detailed")
    grids = {"tab_scenarios": "fig_scenarios", "tab_sweep": "fig_spec_curve", "tab_balance": "fig_love",
             "tab_generalisability": "fig_generalisability", "tab_cleaning": "fig_flow"}
    body_tables, annex_tables = tables(body), tables(annex)
    for table_key, figure_key in grids.items():
        caption = text(table_key, lang)
        assert caption not in body_tables, caption
        assert caption in annex_tables or any(c.startswith(caption) for c in annex_tables), (caption, list(annex_tables))
        assert html_lib.escape(text(figure_key, lang), quote=True).replace("&#x27;", "&#39;") in body, figure_key
    # The annex section comes in the technical annex, and every table there is numbered after the body's.
    assert PART_OF["detailed"] == "annex" and SECTION_IDS.index("detailed") > SECTION_IDS.index("limitations")
    numbers = [int(n) for n in re.findall(r'id="table-(\d+)"', html)]
    assert numbers == sorted(numbers) == list(range(1, len(numbers) + 1))


def test_the_methods_annex_points_to_the_cleaning_table_by_its_number(pages):
    html = pages["en"]
    annex = section(html, "detailed")
    m = re.search(r'id="table-(\d+)">\s*<figcaption>[^<]*?\d+\. ' + re.escape(text("tab_cleaning", "en")), annex)
    assert m, "cleaning table not in the annex"
    assert f"are in Table {m.group(1)} (annex" in section(html, "methods")


def test_no_evidence_table_is_a_long_grid(pages):
    """In the body, no table longer than the annex's threshold is left (they are charts + annex tables)."""
    long_ones = {c: n for c, n in tables(evidence(pages["en"])).items() if n > 25}
    assert not long_ones, long_ones


# ------------------------------------------------------------------ issue 16: no long table in the body
SYNTHESIS_MAX_ROWS = 10  # "no table longer than ten rows" in the synthesis
BODY_MAX_ROWS = 12  # the evidence chapters: longer grids are a chart here and a table in the annex
# Body tables allowed to be longer, caption key -> why (none today; a new entry needs its reason).
JUSTIFIED_LONG: dict[str, str] = {}


def long_body_tables(html: str, lang: str) -> list[str]:
    """Every table of the synthesis longer than SYNTHESIS_MAX_ROWS and of the evidence chapters longer
    than BODY_MAX_ROWS (unless justified), as "section: caption (rows)"."""
    allowed = {text(key, lang) for key in JUSTIFIED_LONG}
    found = []
    for sid in SECTION_IDS:
        part = PART_OF[sid]
        if part == "annex":
            continue
        limit = SYNTHESIS_MAX_ROWS if part == "synthesis" else BODY_MAX_ROWS
        found += [f"{sid}: {caption} ({n} rows)" for caption, n in tables(section(html, sid)).items()
                  if n > limit and caption not in allowed]
    return found


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_no_long_table_in_the_synthesis_or_the_evidence_chapters(pages, lang):
    assert not long_body_tables(pages[lang], lang)
    # The check can fail: a 13-row table in a chapter is found.
    rows = "".join(f"<tr><td>{i}</td></tr>" for i in range(BODY_MAX_ROWS + 1))
    bad = pages[lang].replace('<section id="economics"', '<section id="economics"><figure class="table-wrap" '
                              f'id="table-99"><figcaption>Table 99. Long</figcaption><table><tbody>{rows}</tbody>'
                              '</table></figure', 1)
    assert long_body_tables(bad, lang) == [f"economics: Long ({BODY_MAX_ROWS + 1} rows)"]


@pytest.fixture(scope="module")
def sample_pages(tmp_path_factory) -> dict[str, str]:
    """The report of a real build of the committed sample, in both languages (HTML only)."""
    from tests.report_fixture import make_sample_build

    base = make_sample_build(tmp_path_factory.mktemp("layout_sample"))
    out = {}
    for lang in ("fr", "en"):
        build = tmp_path_factory.mktemp(f"layout_sample_{lang}")
        shutil.copytree(base, build, dirs_exist_ok=True)
        cfg = load_config().with_overrides({"report": {"lang": lang}})
        out[lang] = run(BuildPaths(build), cfg, pdf=False).html_path.read_text(encoding="utf-8")
    return out


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_no_long_table_in_the_body_of_a_real_report(sample_pages, lang):
    html = sample_pages[lang]
    assert not long_body_tables(html, lang)
    # The long grids of a real build are in the annex, each announced by its chapter.
    annex = tables(section(html, "detailed"))
    for key in ("tab_eol", "tab_spending", "tab_survey_items", "tab_matching_params", "tab_matching_sizes"):
        assert text(key, lang) in annex, key
    for sid in ("matching", "hospitalisation", "surveys"):
        assert 'href="#detailed"' in section(html, sid), sid


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_every_chart_has_a_numbered_caption_and_alt_text(sample_pages, lang):
    html = sample_pages[lang]
    charts = re.findall(r'<figure class="chart[^"]*" id="figure-(\d+)">\s*<img [^>]*alt="([^"]*)"[^>]*>\s*'
                        r'<figcaption>[^<]*?(\d+)\. ([^<]+)</figcaption>', html)
    assert len(charts) == html.count('<figure class="chart')
    for number, alt, caption_number, caption in charts:
        assert number == caption_number and alt.strip() and caption.strip(), (number, caption)


def test_print_widths_keep_numbers_whole_and_give_the_rest_to_the_text():
    from reports.layout import LINE_EM, PADDING_EM, em, print_widths

    label = "Journées d'hospitalisation pour 100 patients-années, dans les 90 jours avant le décès"
    columns = ["Indicateur", "ÉQUILIBRES", "Témoins", "Valeur", "IC à 95 %", "n"]
    rows = [[label, "114,93", "176,11", "−61,18", "[−73,02 ; −49,06]", "5 874"]] * 3
    widths = print_widths(columns, rows, "", ["l", "r", "r", "r", "r", "r"])
    assert len(widths) == len(columns) and abs(sum(widths) - 100) < 0.1
    line = LINE_EM[""]
    for j in range(1, len(columns)):  # every number and interval on one line
        assert widths[j] / 100 * line - PADDING_EM[""] >= em(rows[0][j]), (columns[j], widths)
    assert widths[0] == max(widths)  # the label takes what is left, and wraps
    assert widths[0] / 100 * line < em(label)
    # A table that fits is shared in proportion to its lines; a badge counts with its frame.
    short = print_widths(["a", "b"], [["x" * 10, '<span class="verdict verdict-pass">pass</span>']])
    assert abs(sum(short) - 100) < 0.1 and short[0] > short[1]
    assert print_widths(["a"], []) == [100.0] and print_widths([], []) == []


def test_a_run_of_charts_is_not_kept_as_one_block_in_print():
    """Captions sit below charts: glueing each caption to what follows chained a run of charts into one
    unbreakable block, so three Likert charts that did not fit together left a page almost empty. With the
    shipped stylesheet, the first of three tall charts after a short paragraph stays on the first page."""
    from reports.build import STATIC, html_to_pdf

    css = (STATIC / "report.css").read_text(encoding="utf-8")
    png = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGA"
           "hKmMIQAAAABJRU5ErkJggg==")
    charts = "".join(f'<figure class="chart" id="figure-{i}"><img src="{png}" alt="" style="width: 600px; '
                     f'height: 330px"><figcaption>Figure {i}</figcaption></figure>' for i in (1, 2, 3))
    html = f"<html><head><style>{css}</style></head><body><p>Short paragraph.</p>{charts}</body></html>"
    _pdf, pages = html_to_pdf(html)  # the report's own PDF path must run on it
    assert pages == 2
    from weasyprint import HTML

    document = HTML(string=html).render()  # the same layout, kept to read the boxes of page 1
    first_page = str([b.element.get("id") for b in _boxes(document.pages[0]._page_box)
                      if getattr(b, "element", None) is not None and b.element.get("id")])
    assert "figure-1" in first_page


def _boxes(box):
    yield box
    for child in getattr(box, "children", []) or []:
        yield from _boxes(child)
