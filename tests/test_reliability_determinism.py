"""Determinism and privacy: two builds of the sample are byte-identical, and no identifier of the
extract is written outside the person-level files or printed by a command."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import bad_inputs as bi
import pandas as pd
import pyarrow.parquet as pq
import pytest

STEPS = [
    ["clean", "--data", bi.SAMPLE_DIR],
    ["match", "--data", bi.SAMPLE_DIR],
    ["indicators", "--data", bi.SAMPLE_DIR, "--replicates", "199"],
    ["surveys", "--data", bi.SAMPLE_DIR],
    ["report", "--data", bi.SAMPLE_DIR, "--no-pdf"],
]

# Run records: they hold times, dates and memory, so they differ between runs by design.
RUN_RECORDS = re.compile(r"^(clean/_stages/[a-z]+\.json|clean/manifest\.json|[a-z]+/params\.json|logs/.*|\.lock)$")
# Intermediate stage tables written without a sort (sorting the claims summary would cost the DCIR
# stage time for nothing): same rows, in an order that depends on thread scheduling.
UNSORTED = re.compile(r"^clean/_stages/[a-z]+/[a-z_]+\.parquet$")

# The only files allowed to hold person identifiers (docs/reliability.md, "Privacy").
PERSON_LEVEL = re.compile(r"^(clean/[a-z_]+\.parquet|clean/_stages/[a-z]+/[a-z_]+\.parquet|"
                          r"matching/(pairs|matched)\.parquet)$")


def _build(root: Path) -> tuple[Path, list[str]]:
    texts = []
    for step in STEPS:
        out = bi.cli(*step, "--out", root)
        assert out.exit_code == 0, (step, out.text)
        texts.append(out.text)
    return root, texts


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> tuple[tuple[Path, list[str]], tuple[Path, list[str]]]:
    base = tmp_path_factory.mktemp("determinism")
    return _build(base / "a"), _build(base / "b")


def _files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


# The report's provenance table shows when each step finished (issue 18): the only bytes of the
# report that legitimately differ between two builds of the same inputs.
FINISH_TIME = re.compile(rb"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def _content(p: Path, name: str) -> str:
    if name == "report/report.html":
        return hashlib.sha256(FINISH_TIME.sub(b"<time>", p.read_bytes())).hexdigest()
    return _sha(p)


def test_two_builds_are_byte_identical(builds):
    (a, _), (b, _) = builds
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    compared = [name for name in fa if not RUN_RECORDS.match(name) and not UNSORTED.match(name)]
    different = [name for name in compared if _content(fa[name], name) != _content(fb[name], name)]
    assert different == []
    for name in filter(UNSORTED.match, fa):
        ta, tb = (pq.read_table(f[name]).to_pandas() for f in (fa, fb))
        cols = list(ta.columns)
        ta, tb = (t.sort_values(cols, na_position="first").reset_index(drop=True) for t in (ta, tb))
        # The claims summary is written unrounded (engine.write_parquet): its parallel sums may
        # differ in the last bits, so floats are compared to 1e-9 relative; everything else exactly.
        pd.testing.assert_frame_equal(ta, tb, check_exact=False, rtol=1e-9, atol=1e-9, obj=name)
    # The files the issue names are among those compared.
    for name in ("clean/persons.parquet", "clean/panel.parquet", "clean/stays.parquet", "clean/cohort.parquet",
                 "audit/attrition.csv", "matching/pairs.parquet", "matching/matched.parquet",
                 "matching/balance.csv", "indicators/indicators.json",
                 "surveys/indicators.json", "report/report.html"):
        assert name in compared, name


def test_manifests_agree_on_every_output_hash(builds):
    (a, _), (b, _) = builds
    ma = json.loads((a / "clean" / "manifest.json").read_text())
    mb = json.loads((b / "clean" / "manifest.json").read_text())
    assert ma["outputs"] == mb["outputs"]
    assert ma["inputs"] == mb["inputs"] and ma["parameters"] == mb["parameters"]


def _identifiers() -> set[str]:
    ids: set[str] = set()
    for table, cols in bi.IDENTIFIER_COLUMNS.items():
        t = pq.read_table(bi.SAMPLE_DIR / f"{table}.parquet", columns=cols)
        for c in cols:
            ids |= {v for v in t.column(c).to_pylist() if v}
    for f in bi.SAMPLE_DIR.glob("T_MCO??C.parquet"):
        ids |= {v for v in pq.read_table(f, columns=["NIR_ANO_17"]).column(0).to_pylist()
                if v and set(v) != {"x"}}
    return ids


def test_identifiers_stay_in_person_level_files(builds):
    (a, texts), _ = builds
    ids = _identifiers()
    assert len(ids) > 500  # persons, identities, stays and teams of the sample
    pattern = re.compile(b"|".join(re.escape(i.encode()) for i in sorted(ids, key=len, reverse=True)))
    scanned, leaks = [], []
    for name, path in _files(a).items():
        if PERSON_LEVEL.match(name):
            continue
        scanned.append(name)
        data = path.read_bytes()
        for m in pattern.finditer(data):
            leaks.append((name, m.group().decode()[:3] + "…"))
    assert not leaks, leaks[:10]
    # Logs, run records, audit, aggregates and the report were all scanned.
    for name in ("logs/clean.log", "clean/manifest.json", "clean/_stages/ingest.json", "audit/attrition.csv",
                 "matching/params.json", "matching/unmatched_profiles.csv", "indicators/indicators.json",
                 "surveys/items.csv", "report/report.html"):
        assert name in scanned, name
    # ... and nothing any command printed.
    for text in texts:
        assert not pattern.search(text.encode()), "a command printed an identifier"
    # The check can fail: an identifier is found where it is allowed.
    assert pattern.search(pq.read_table(a / "clean" / "persons.parquet").to_pandas().to_csv().encode())


def test_error_messages_mask_identifiers(tmp_path: Path):
    data = bi.sample_copy(tmp_path / "extract")
    bi.impossible_dates(data)
    ids = _identifiers()
    for args in (["validate", data], ["clean", "--data", data, "--out", tmp_path / "b"]):
        out = bi.cli(*args)
        assert out.exit_code in (1, 2)
        assert not any(i in out.text for i in ids), args
        assert "…" in out.text or args[0] == "clean"  # validate shows masked examples
