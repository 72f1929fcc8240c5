"""The report's texts are data (reports/texts/fr.toml and en.toml): both languages hold the same keys
with the same placeholders, and every key the code asks for exists."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from reports.i18n import LANGS, TABLES, TEXT_DIR, texts

REPORTS = Path(__file__).resolve().parents[1] / "reports"
# ctx.t("key" / ctx.html("key" / text("key" / has_text("key": a text looked up by a literal key.
TEXT_CALL = re.compile(r"""\b(?:t|html|text)\(\s*["']([a-z0-9_]+)["']\s*[,)]""")
# Keys the code builds: "status_" + the agreement status (reports/sections/summary.py).
BUILT_KEYS = [f"status_{s}" for s in ("agrees", "close", "differs", "missing", "input", "masked")]


def _placeholders(value: object) -> set[str]:
    items = value if isinstance(value, list) else [value]
    return {name for item in items for _, name, _, _ in string.Formatter().parse(str(item)) if name}


def _raw(lang: str) -> dict:
    import tomllib

    return tomllib.loads((TEXT_DIR / f"{lang}.toml").read_text(encoding="utf-8"))


def test_both_languages_have_the_same_tables_and_keys():
    fr, en = _raw("fr"), _raw("en")
    assert set(fr) == set(en) == set(TABLES)
    for table in TABLES:
        assert set(fr[table]) == set(en[table]), (table, set(fr[table]) ^ set(en[table]))


@pytest.mark.parametrize("table", TABLES)
def test_a_text_has_the_same_placeholders_in_both_languages(table):
    fr, en = _raw("fr")[table], _raw("en")[table]
    differ = {k: (_placeholders(fr[k]), _placeholders(en[k])) for k in fr
              if _placeholders(fr[k]) != _placeholders(en[k])}
    assert not differ


def test_every_text_key_used_by_the_code_exists():
    used = {}
    for path in [*REPORTS.rglob("*.py"), *REPORTS.rglob("*.j2")]:
        for key in TEXT_CALL.findall(path.read_text(encoding="utf-8")):
            used.setdefault(key, path.relative_to(REPORTS).as_posix())
    assert len(used) > 100  # the pattern finds the calls (a pattern that finds nothing proves nothing)
    used.update({k: "sections/summary.py" for k in BUILT_KEYS})
    for lang in LANGS:
        missing = {k: where for k, where in used.items() if k not in texts(lang)["text"]}
        assert not missing, (lang, missing)


def test_every_note_id_of_the_matching_step_has_a_text():
    from matching import profiles

    ids = set(getattr(profiles, "SUPPRESSION_NOTES", {}))
    assert ids, "matching/profiles.py no longer declares its note ids (SUPPRESSION_NOTES)"
    for lang in LANGS:
        assert ids <= set(texts(lang)["note"]), (lang, ids - set(texts(lang)["note"]))


def test_unknown_language_is_refused():
    with pytest.raises(ValueError, match="must be one of"):
        texts("de")
