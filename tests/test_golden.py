"""Golden test: a full run on the committed sample, and on a small generated extract, gives the same
extract, cleaning, matching, indicator, survey and sweep outputs and the same report text (French
and English) as the stored golden run. It guards refactorings: behaviour must not change unless the
golden files are regenerated on purpose (see tests/golden.py)."""

from __future__ import annotations

import os
from pathlib import Path

import bad_inputs as bi
import golden
import pytest

UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
RESULT_DIRS = ("clean", "audit", "matching", "indicators", "sensitivity", "surveys", "sweep")


def _run(data: Path, out: Path, *extra: str) -> None:
    outcome = bi.cli("run", "--data", str(data), "--out", str(out), "--no-report", *extra)
    assert outcome.exit_code == 0, outcome.text


@pytest.fixture(scope="module")
def sample_build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("golden_sample")
    _run(bi.SAMPLE_DIR, out)
    for lang in ("fr", "en"):
        outcome = bi.cli("report", "--data", str(bi.SAMPLE_DIR), "--out", str(out), "--no-pdf",
                         "--lang", lang)
        assert outcome.exit_code == 0, outcome.text
        (out / "report" / "report.html").rename(out / "report" / f"report_{lang}.html")
    return out


def test_sample_outputs_match_golden(sample_build):
    diff = golden.differences("sample_outputs.json", golden.output_digest(sample_build, RESULT_DIRS), UPDATE)
    assert diff == "", diff


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_sample_report_text_matches_golden(sample_build, lang):
    text = golden.report_text(sample_build / "report" / f"report_{lang}.html")
    diff = golden.differences(f"sample_report_{lang}.txt", text, UPDATE)
    assert diff == "", diff


def test_generated_extract_and_outputs_match_golden(tmp_path):
    data = tmp_path / "extract"
    outcome = bi.cli("generate", "--scale", "0.0015", "--seed", "7", "--out", str(data))
    assert outcome.exit_code == 0, outcome.text
    extract = {p.name: golden.parquet_digest(p) if p.suffix == ".parquet" else golden.short_sha(p.read_bytes())
               for p in sorted(data.rglob("*")) if p.is_file()}
    _run(data, tmp_path / "build", "--no-sweep")
    outputs = golden.output_digest(tmp_path / "build", RESULT_DIRS)
    diff = golden.differences("generated_outputs.json",
                              {**{f"extract/{k}": v for k, v in extract.items()}, **outputs}, UPDATE)
    assert diff == "", diff
