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
