"""End to end on the committed sample extract: no identifier of the input reaches the report.

Runs the whole chain (clean, match, indicators, surveys; no sweep) on ``data_samples.SAMPLE_DIR``,
renders the report in French with its PDF, and scans the HTML and the PDF text for every
BEN_NIR_PSA, BEN_IDT_ANO, NIR_ANO_17 and EQL_EQP_ID value of the extract.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from data_samples import SAMPLE_DIR
from pipeline.config import load_config
from pipeline.paths import BuildPaths
from pipeline.privacy import extract_identifiers
from reports.build import SECTION_IDS, run

pytestmark = pytest.mark.slow


def _all_identifiers(sample: Path) -> set[str]:
    """Independent of reports.build: read every identifier column of every table of the sample."""
    cols = {"BEN_NIR_PSA", "BEN_IDT_ANO", "NIR_ANO_17", "EQL_EQP_ID"}
    ids: set[str] = set()
    for path in sample.glob("*.parquet"):
        frame = pd.read_parquet(path)
        for c in cols & set(frame.columns):
            ids |= set(frame[c].dropna().astype(str))
    # NIR_ANO_17 'xxxxxxxxxxxxxxxxx' is the SNDS marker of an invalid link, not an identifier.
    return {i for i in ids if i and set(i) != {"x"}}


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory):
    if not (SAMPLE_DIR / "IR_BEN_R.parquet").exists():
        pytest.skip(f"the committed sample extract is missing from {SAMPLE_DIR}")
    from study.chain import run_chain

    paths = BuildPaths(tmp_path_factory.mktemp("sample_build"), SAMPLE_DIR)
    cfg = load_config()
    run_chain(paths, cfg, sweep=False, report_too=False)
    return run(paths, cfg, pdf=True)


def test_sample_has_identifiers_to_look_for():
    ids = _all_identifiers(SAMPLE_DIR)
    assert len(ids) > 100
    # The report's own guard reads the same identifiers (it only skips strings shorter than 5).
    assert {i for i in ids if len(i) >= 5} <= extract_identifiers(SAMPLE_DIR, load_config())


def test_no_identifier_in_html_or_pdf(sample_report):
    from pypdf import PdfReader

    ids = _all_identifiers(SAMPLE_DIR)
    html = sample_report.html_path.read_text(encoding="utf-8")
    html_text = re.sub(r"data:[a-z/+]+;base64,[A-Za-z0-9+/=]+", " ", html)
    pdf_text = "\n".join(p.extract_text() or "" for p in PdfReader(str(sample_report.pdf_path)).pages)
    for name, content in (("HTML", html_text), ("PDF", pdf_text)):
        found = [i for i in ids if i in content]
        assert not found, f"{len(found)} identifier(s) of the extract in the {name} report"


def test_sample_report_structure(sample_report):
    html = sample_report.html_path.read_text(encoding="utf-8")
    for sid in SECTION_IDS:
        assert f'<section id="{sid}"' in html
    assert "sweep" in sample_report.not_run  # the sweep was not run here: a notice, not a failure
    assert not re.search(r"\b(nan|NaN|None)\b", re.sub(r"<[^>]+>|data:[^\"]+", " ", html))
    assert 10 <= sample_report.n_pages <= 60
