"""How a CSV file of the extract is read: its separator and encoding, detected when the configured ones
do not fit.

Encoding: the configured encodings (``[extract] csv_encodings``) are tried in order, then UTF-8,
latin-1 and cp1252. The whole file is scanned once, in chunks (never held in memory): UTF-8 fits
when the bytes decode; latin-1 fits when no byte lies in 0x80–0x9F (C1 control characters, which no
text export holds: such bytes are cp1252 characters — €, œ, ’, … — that latin-1 would corrupt);
cp1252 fits unless one of its five undefined bytes occurs. DuckDB reads UTF-8 and latin-1 itself;
a cp1252 file is transcoded to UTF-8 into the staging directory first (streamed).

Separator: the header line is split with the configured separator (``[extract] csv_separator``), then
with ``;``, ``,``, ``|`` and tab; the one giving the most contract columns (names compared
case-insensitively) wins, the configured one on ties. When none gives a single contract column the
file is refused with what its header looked like and which setting to change.
"""

from __future__ import annotations

import codecs
import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import StudyConfig
from pipeline.extract_files import UnreadableFileError

SEPARATORS = (";", ",", "|", "\t")
# latin-1 before cp1252: they decode 0xA0–0xFF alike, and latin-1 only fits without 0x80–0x9F bytes,
# so the order changes no character; DuckDB reads latin-1 itself (cp1252 is transcoded first).
DETECTED_ENCODINGS = ("utf-8", "latin-1", "cp1252")
SCAN_CHUNK_BYTES = 8 * 1024 * 1024
TRANSCODE_CHUNK_CHARS = 4 * 1024 * 1024
C1_BYTES = frozenset(range(0x80, 0xA0))
CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")
_NOT_C1 = bytes(b for b in range(256) if b not in C1_BYTES)
_DUCKDB_ENCODINGS = {"utf-8": "utf-8", "latin-1": "latin-1"}


def encoding_name(name: str) -> str:
    """A canonical encoding name: 'utf-8', 'latin-1', 'cp1252' or Python's name for others."""
    try:
        canonical = codecs.lookup(name).name
    except LookupError:
        raise UnreadableFileError(f"Unknown encoding {name!r} in [extract] csv_encodings; use utf-8, latin-1 "
                                  "or cp1252.") from None
    return {"iso8859-1": "latin-1", "utf-8-sig": "utf-8"}.get(canonical, canonical)


def separator_name(sep: str) -> str:
    return "TAB" if sep == "\t" else sep


@dataclass(frozen=True)
class CsvDialect:
    """How one CSV file is read, and whether it differs from the configuration."""

    separator: str
    encoding: str
    separator_detected: bool
    encoding_detected: bool

    def describe(self) -> str:
        sep = f"separator '{separator_name(self.separator)}'" + (" (detected)" if self.separator_detected else "")
        enc = f"encoding {self.encoding}" + (" (detected)" if self.encoding_detected else "")
        return f"CSV, {sep}, {enc}"

    def as_record(self) -> dict[str, object]:
        return {"format": "csv", "separator": self.separator, "encoding": self.encoding,
                "detected": [k for k, v in (("separator", self.separator_detected),
                                            ("encoding", self.encoding_detected)) if v]}

    @property
    def needs_transcoding(self) -> bool:
        return self.encoding not in _DUCKDB_ENCODINGS


@dataclass(frozen=True)
class _ByteScan:
    utf8: bool
    c1: frozenset[int]
    utf16: bool


_SCANS: dict[tuple[str, int, int], _ByteScan] = {}


def _scan(path: Path) -> _ByteScan:
    """One streamed pass over the bytes: do they decode as UTF-8, which C1 bytes occur (cached by file state)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _SCANS:
        return _SCANS[key]
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8, c1 = True, set()
    with open(path, "rb") as fh:
        head = fh.read(256)
        fh.seek(0)
        while chunk := fh.read(SCAN_CHUNK_BYTES):
            if utf8:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
            if len(c1) < len(C1_BYTES):
                c1.update(chunk.translate(None, _NOT_C1))
    if utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    utf16 = head.startswith((b"\xff\xfe", b"\xfe\xff")) or head.count(b"\x00") > 10
    scan = _ByteScan(utf8=utf8 and not utf16, c1=frozenset(c1), utf16=utf16)
    _SCANS[key] = scan
    return scan


def _fits(encoding: str, scan: _ByteScan) -> bool:
    if scan.utf16:
        return encoding.startswith("utf-16")
    if encoding == "utf-8":
        return scan.utf8
    if encoding == "latin-1":
        return not scan.c1
    if encoding == "cp1252":
        return not (scan.c1 & CP1252_UNDEFINED)
    return True  # another encoding the user configured: DuckDB or Python will tell


def detect_encoding(path: Path, configured: Sequence[str]) -> tuple[str, bool]:
    """(encoding, detected): the first configured encoding that fits the bytes, else the first of UTF-8,
    latin-1, cp1252 that does."""
    scan = _scan(Path(path))
    for enc in configured:
        if _fits(encoding_name(enc), scan):
            return encoding_name(enc), False
    for enc in DETECTED_ENCODINGS:
        if _fits(enc, scan):
            return enc, True
    if scan.utf16:
        raise UnreadableFileError(f"{path}: the file looks UTF-16 encoded (byte-order mark or NUL bytes): "
                                  "re-export it as UTF-8, latin-1 or cp1252, or add 'utf-16' to [extract] "
                                  "csv_encodings.")
    shown = ", ".join(f"0x{b:02X}" for b in sorted(scan.c1 & CP1252_UNDEFINED))
    raise UnreadableFileError(f"{path}: the bytes are neither UTF-8 nor cp1252/latin-1 text (bytes {shown} occur): "
                              "is it a text export? Re-export it as UTF-8, or name its encoding in [extract] "
                              "csv_encodings.")


def header_fields(path: Path, encoding: str, separator: str) -> list[str]:
    """The column names of the header line split by ``separator`` (quotes honoured, blanks stripped)."""
    with open(path, encoding=encoding if not encoding.startswith("utf-8") else "utf-8-sig", errors="replace",
              newline="") as fh:
        line = fh.readline()
    line = line.rstrip("\r\n")
    if not line:
        return []
    return [f.strip() for f in next(csv.reader([line], delimiter=separator, quotechar='"'))]


def _shown_header(fields: list[str]) -> str:
    text = separator_name(",").join(fields) if len(fields) > 1 else (fields[0] if fields else "")
    return text if len(text) <= 60 else text[:60] + "…"


def detect_separator(path: Path, encoding: str, configured: str, expected: Sequence[str] | None,
                     label: str) -> tuple[str, bool]:
    """(separator, detected): the separator whose header gives the most ``expected`` columns (the
    configured one on ties); without ``expected``, the configured one unless it gives a single column."""
    wanted = {e.upper() for e in expected} if expected else None
    candidates = [configured] + [s for s in SEPARATORS if s != configured]
    fields = {s: header_fields(path, encoding, s) for s in candidates}

    def score(sep: str) -> int:
        names = fields[sep]
        if wanted is None:
            return len(names) if len(names) > 1 else 0
        return len({n.upper() for n in names} & wanted)

    best = max(candidates, key=score)  # the first maximum: the configured separator on ties
    if score(best) > 0:
        return best, best != configured
    head = fields[configured]
    raw = separator_name(configured).join(head)
    counts = {s: raw.count(s) for s in SEPARATORS if s != configured}
    likely = max(counts, key=lambda s: counts[s])
    guess = (f": the separator seems to be '{separator_name(likely)}'" if counts[likely] else "")
    if not head:
        raise UnreadableFileError(f"{path}: the file is empty or its first line is blank; {label} needs a header "
                                  "line of SNDS column names. Export the table again with its header.")
    example = ", ".join(sorted(wanted)[:3]) + ", …" if wanted else "the SNDS column names"
    raise UnreadableFileError(
        f"{path}: no column of {label} found in the header line. With the separator "
        f"'{separator_name(configured)}' ([extract] csv_separator) and encoding {encoding} it reads as "
        f"{len(head)} column(s) named '{_shown_header(head)}'{guess}; none of ';', ',', '|', TAB gives a "
        f"contract column either (expected names such as {example}, matched whatever their case). Check that the "
        "file holds this table with a header line of SNDS names, or set [extract] csv_separator / csv_encodings "
        "in the study configuration.")


def detect_dialect(path: Path, config: StudyConfig, expected: Sequence[str] | None = None,
                   label: str = "the table") -> CsvDialect:
    """The separator and encoding to read ``path`` with (see the module docstring)."""
    path = Path(path)
    encoding, enc_detected = detect_encoding(path, config.extract.csv_encodings)
    separator, sep_detected = detect_separator(path, encoding, config.extract.csv_separator, expected, label)
    return CsvDialect(separator, encoding, sep_detected, enc_detected)


def transcode_to_utf8(path: Path, encoding: str, dest: Path) -> Path:
    """``path`` rewritten as UTF-8 at ``dest``, streamed (a few MB in memory whatever the file size)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    with open(path, encoding=encoding, newline="") as src, open(tmp, "w", encoding="utf-8", newline="") as out:
        while chunk := src.read(TRANSCODE_CHUNK_CHARS):
            out.write(chunk)
    os.replace(tmp, dest)
    return dest


def duckdb_csv_source(path: Path, dialect: CsvDialect, scratch: Path | None) -> str:
    """A DuckDB FROM clause reading ``path`` with ``dialect``, every column as text; a cp1252 file is
    transcoded to UTF-8 at ``scratch`` first."""
    encoding = _DUCKDB_ENCODINGS.get(dialect.encoding)
    if encoding is None:
        if scratch is None:
            raise ValueError(f"reading {path} as {dialect.encoding} needs a staging path")
        path, encoding = transcode_to_utf8(path, dialect.encoding, scratch), "utf-8"
    quoted = str(path).replace("'", "''")
    sep = dialect.separator.replace("'", "''")
    return (f"read_csv('{quoted}', delim='{sep}', header=true, all_varchar=true, encoding='{encoding}', "
            "quote='\"', escape='\"')")
