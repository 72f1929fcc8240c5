"""The report's fixed texts, read from one data file per language (``reports/texts/<lang>.toml``).

Both files hold the same tables and keys (tests/test_report_texts.py checks it):

- ``[text]``: titles, paragraphs, column headers and captions, looked up by :func:`text`;
- ``[value]``: labels of data values met in result tables (covariates, profiles, estimators);
- ``[column]``: headers of result-table columns; ``[measure]``: measures of the end-of-life tables;
- ``[published]``: labels of the published figures, for a figure with no indicator record;
- ``[rule]``: cleaning rules, when the audit trail has no description in the report language;
- ``[note]``: producers' note ids (``matching/unmatched_profiles.csv`` ``suppression_note``).

The vocabulary the steps share with the report (matching methods, caliper scales, survey method
texts) is declared in :mod:`pipeline.labels` and added to ``[value]``.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.labels import vocabulary

LANGS = ("fr", "en")
TEXT_DIR = Path(__file__).parent / "texts"
TABLES = ("text", "value", "column", "measure", "published", "rule", "note")


@functools.cache
def texts(lang: str) -> Mapping[str, Mapping[str, Any]]:
    """Every table of ``reports/texts/<lang>.toml``, ``[value]`` completed with the shared vocabulary."""
    if lang not in LANGS:
        raise ValueError(f"The report language must be one of {LANGS}. Got {lang!r} instead.")
    path = TEXT_DIR / f"{lang}.toml"
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    absent = [t for t in TABLES if t not in data]
    if absent:
        raise KeyError(f"{path} has no table(s) {absent}; both text files hold {list(TABLES)}")
    data["value"] = {**data["value"], **vocabulary(lang)}
    return data


def text(key: str, lang: str, **fmt: Any) -> Any:
    """The fixed text ``key`` in ``lang``; ``fmt`` fills its ``{placeholders}``."""
    try:
        value = texts(lang)["text"][key]
    except KeyError:
        raise KeyError(f"report text {key!r} is not defined in reports/texts/{lang}.toml [text]") from None
    if fmt and isinstance(value, str):
        return value.format(**fmt)
    return value


def has_text(key: str, lang: str) -> bool:
    return key in texts(lang)["text"]


def value_label(value: Any, lang: str) -> str:
    """The label of a data value, or the value itself."""
    key = str(value)
    return texts(lang)["value"].get(key, key)


def column_label(column: str, lang: str) -> str:
    """The header of a result-table column (a value label, else the name with spaces)."""
    t = texts(lang)
    return t["column"].get(column) or t["value"].get(column) or column.replace("_", " ")


def measure_label(measure: str, lang: str) -> str | None:
    return texts(lang)["measure"].get(measure)


def published_label(key: str, lang: str) -> str | None:
    return texts(lang)["published"].get(key)


def rule_label(rule: str, lang: str) -> str | None:
    return texts(lang)["rule"].get(rule)


def note_text(ids: str, lang: str, n: int) -> str:
    """Producers' note ids joined by ';' (e.g. ``few_treated;reason_shares_masked``) as one sentence
    part each; ``n`` is the small-cell threshold the producer applied."""
    notes = texts(lang)["note"]
    parts = [p.strip() for p in str(ids).split(";") if p.strip()]
    unknown = [p for p in parts if p not in notes]
    if unknown:
        raise KeyError(f"note id(s) {unknown} are not defined in reports/texts/{lang}.toml [note]")
    return "; ".join(notes[p].format(n=n) for p in parts)
