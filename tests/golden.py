"""Golden outputs: a digest of everything a full run produces, to prove a refactoring changed nothing.

The digest holds, per output file, a hash of its *content*: the rows for CSV and Parquet (so writer
metadata does not count), canonical JSON for result records. Floats in CSV and JSON results count to
``SIGNIFICANT`` significant digits: a new numpy, scipy or pandas release may sum in another order and
move the last bits of a figure (seen on 2026-12-03 with a fresh environment: DiD and sweep figures
changed in their 16th digit, every displayed figure the same), which is not a change of what the
pipeline computes. Run records (``params.json``,
manifests, logs) hold times, paths and memory by design and are left out; the figures are PNGs whose
bytes depend on the matplotlib build, also left out. The report is compared as text (tags, styles
and embedded images stripped), so a diff shows the sentence that changed.

Regenerate deliberately, after checking the diff is intended:
``UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd

GOLDEN_DIR = Path(__file__).parent / "golden"

# Files that record how a run went (time, memory, paths, dates), not what it computed.
RUN_RECORD = re.compile(r"(^|/)(params\.json|manifest\.json|\.lock)$|^(logs|tmp|clean/_stages|matching/cache)/")


def short_sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:20]


def parquet_digest(path: Path) -> str:
    frame = pd.read_parquet(path)
    head = json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()])
    rows = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    return short_sha(head.encode() + rows)


#: Significant digits of a float that count in a CSV or JSON result's digest.
SIGNIFICANT = 10


def _rounded(value: Any) -> Any:
    """``value`` with every float written to ``SIGNIFICANT`` significant digits (recursively)."""
    if isinstance(value, float):
        return f"{value:.{SIGNIFICANT}g}"
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def json_digest(path: Path) -> str:
    doc = _rounded(json.loads(path.read_text(encoding="utf-8")))
    return short_sha(json.dumps(doc, sort_keys=True).encode())


def csv_digest(path: Path, drop: tuple[str, ...] = ()) -> str:
    """The rows of a CSV result, floats to ``SIGNIFICANT`` digits, without the ``drop`` columns."""
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""]).drop(columns=list(drop))
    for c in frame.columns[frame.dtypes == "float64"]:
        frame[c] = frame[c].map(lambda v: "" if pd.isna(v) else f"{v:.{SIGNIFICANT}g}")
    return short_sha(frame.to_csv(index=False).encode())


def output_digest(root: Path, dirs: tuple[str, ...]) -> dict[str, str]:
    """Content hash of every result file under ``root/<dir>`` (run records and images excluded)."""
    out: dict[str, str] = {}
    for d in dirs:
        for p in sorted((root / d).rglob("*")):
            rel = p.relative_to(root).as_posix()
            if not p.is_file() or RUN_RECORD.search(rel) or p.suffix in {".png", ".svg", ".pdf", ".html"}:
                continue
            if p.suffix == ".parquet":
                out[rel] = parquet_digest(p)
            elif p.suffix == ".json":
                out[rel] = json_digest(p)
            elif p.suffix == ".csv":
                # Per-row timings (the sweep's) are run records inside a result table.
                header = p.read_text(encoding="utf-8").split("\n", 1)[0].split(",")
                out[rel] = csv_digest(p, ("seconds",) if "seconds" in header else ())
            else:
                out[rel] = short_sha(p.read_bytes())
    return out


class _Text(HTMLParser):
    BLOCK = {"p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "table", "section", "figcaption",
             "caption", "br", "dt", "dd", "header", "footer", "nav"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style"}:
            self._skip += 1
        if tag in self.BLOCK:
            self.parts.append("\n")
        if tag in {"td", "th"}:
            self.parts.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style"}:
            self._skip -= 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


# Lines that legitimately differ between two runs of the same code on the same data.
VOLATILE = [
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?([+-]\d{2}:\d{2}|Z)?"), "<time>"),
    (re.compile(r"/[\w./-]*(tmp|pytest)[\w./-]*"), "<path>"),
    (re.compile(r"\b\d+(?:[.,]\d+)?\s?(?:s|Mo|MB|MiB)\b"), "<measure>"),
    (re.compile(r"\b[0-9a-f]{12,64}\b"), "<hash>"),
    # Software versions (the reproducibility table): the environment, not the code, decides them.
    (re.compile(r"^([A-Za-z][\w.-]*) \| \d+(?:\.\d+)+\S*$"), r"\1 | <version>"),
]


MONTHS = {"fr": ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
                  "octobre", "novembre", "décembre"],
          "en": ["January", "February", "March", "April", "May", "June", "July", "August", "September",
                 "October", "November", "December"]}


def _today_pattern() -> re.Pattern[str]:
    """The day the report was rendered, as it prints it in either language ("2 décembre 2026")."""
    import datetime as dt

    today = dt.date.today()
    names = "|".join(m[today.month - 1] for m in MONTHS.values())
    return re.compile(rf"\b{today.day} (?:{names}) {today.year}\b")


def report_text(html_path: Path) -> str:
    today = _today_pattern()
    parser = _Text()
    parser.feed(html_path.read_text(encoding="utf-8"))
    text = "".join(parser.parts)
    lines = []
    for line in text.splitlines():
        line = re.sub(r"\s+", " ", line).strip(" |")
        if not line:
            continue
        line = today.sub("<today>", line)
        for pattern, token in VOLATILE:
            line = pattern.sub(token, line)
        lines.append(line)
    return "\n".join(lines) + "\n"


def differences(name: str, actual: Any, update: bool) -> str:
    """How ``actual`` differs from the stored golden file ``name`` ("" when equal); when ``update``,
    store ``actual`` as the new golden file instead and return ""."""
    path = GOLDEN_DIR / name
    text = actual if isinstance(actual, str) else json.dumps(actual, indent=1, sort_keys=True) + "\n"
    if update:
        GOLDEN_DIR.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return ""
    if not path.exists():
        return f"{path} missing: create it with UPDATE_GOLDEN=1 (see tests/golden.py)"
    expected = path.read_text(encoding="utf-8")
    if isinstance(actual, str):
        if expected == text:
            return ""
        import difflib
        diff = difflib.unified_diff(expected.splitlines(), text.splitlines(), "golden", "now", lineterm="", n=1)
        return f"{name} differs from the golden output:\n" + "\n".join(list(diff)[:80])
    want = json.loads(expected)
    changed = sorted(k for k in set(want) | set(actual) if want.get(k) != actual.get(k))
    return f"{name}: outputs differ from the golden run: {changed}" if changed else ""
