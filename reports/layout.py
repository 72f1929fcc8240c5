"""Column widths of the report's tables in print, computed from their text.

WeasyPrint's automatic table layout measures the smallest and largest width of every cell by
laying its text out line by line; on the full report that was three quarters of the PDF's time.
In print the tables use ``table-layout: fixed`` instead, with the widths computed here from the
same two quantities, estimated from the characters' advance widths in the font file: a column's
*minimum* is its widest unbreakable word (a formatted number is one word: its thousands separator
does not break), its *maximum* its widest line. The screen keeps the browser's automatic layout
(the widths are CSS variables read only by the print stylesheet).
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Sequence
from typing import Any

# Room across the page width (A4, 16 mm margins: 504 pt) in em of each table class's type size
# (report.css print sizes: 9.5 pt, tables 0.9 em, "small" 0.78 em, "wide" 0.7 em), and the cell
# padding of each column in em.
LINE_EM = {"": 504 / (9.5 * 0.9), "small": 504 / (9.5 * 0.78), "wide": 504 / (9.5 * 0.7)}
PADDING_EM = {"": 0.9, "small": 0.9, "wide": 0.5}
BOLD = 1.1  # headers are bold: wider glyphs
SAFETY = 1.05  # estimates are rounded; a column a little too wide is better than a number cut in two
_TAG = re.compile(r"<[^>]+>")
_BADGE = re.compile(r'class="(?:verdict|status)\b')
SHORT_EM = 12.0  # a column whose lines are no wider is kept unwrapped when the table allows it
TEXT_WORD_EM = 8.0  # a longer word of a text cell is broken rather than widening its column
BADGE_EM = 1.4  # padding and border of a badge (report.css .verdict, .status)
_BREAK = re.compile(r"<br\s*/?>", re.I)
_SPACES = re.compile(r"[ \t\n]+")  # not the no-break spaces of numbers and units


@functools.cache
def _font() -> Any:
    """DejaVu Sans, the report's font, as matplotlib ships it (read with its FreeType binding)."""
    from matplotlib import font_manager, ft2font

    return ft2font.FT2Font(font_manager.findfont("DejaVu Sans"))


@functools.cache
def _advance(c: str) -> float:
    """Advance width of character ``c`` in em, from the font file."""
    from matplotlib import ft2font

    font = _font()
    no_scale = ft2font.LoadFlags.NO_SCALE if hasattr(ft2font, "LoadFlags") else ft2font.LOAD_NO_SCALING  # < 3.10
    return font.load_char(ord(c), flags=no_scale).horiAdvance / font.units_per_EM


def em(text: str) -> float:
    """Width of ``text`` in em of DejaVu Sans (regular), ignoring kerning."""
    return sum(_advance(c) for c in text)


def _lines(cell: Any) -> list[str]:
    """The lines of a cell's text (markup removed, a ``<br>`` starts a line)."""
    text = "" if cell is None else str(cell)
    return [html.unescape(_TAG.sub("", part)).strip() for part in _BREAK.split(text)]


def _extent(lines: Sequence[str], factor: float = 1.0) -> tuple[float, float]:
    """(widest word, widest line) of ``lines``, in em."""
    words = [em(w) for line in lines for w in _SPACES.split(line) if w]
    return max(words, default=0.5) * factor, max((em(line) for line in lines), default=0.5) * factor


def _cell_extent(cells: Sequence[Any]) -> tuple[float, float]:
    """(widest word, widest line) of a column's cells, in em; a badge (a verdict, an agreement
    status: a framed word that does not wrap) counts with its padding."""
    low, high = 0.5, 0.5
    for cell in cells:
        extra = BADGE_EM if _BADGE.search(str(cell)) else 0.0
        lo, hi = _extent(_lines(cell))
        low, high = max(low, lo + extra), max(high, hi + extra)
    return low, high


def print_widths(columns: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "",
                 align: Sequence[str] = ()) -> list[float]:
    """Width of each column in percent of the table (summing to 100), for ``table-layout: fixed``.

    Every column gets at least its widest word. Then, narrowest first, columns whose widest cell line
    is short (at most :data:`SHORT_EM`) get that width while the table still fits, so that numbers,
    intervals and short labels do not wrap; a header may wrap at its spaces. What is left goes to the columns whose cells still wrap
    (long texts), in proportion to what they lack, and then to the headers that wrap. A left-aligned
    (text) column may break a long identifier anywhere (report.css ``td.a-l``): its widest word
    counts for at most :data:`TEXT_WORD_EM`."""
    if not columns:
        return []
    classes = cls.split()
    size = "wide" if "wide" in classes else "small" if "small" in classes else ""
    available = (LINE_EM[size] - PADDING_EM[size] * len(columns)) / SAFETY
    mins, fits, fulls = [], [], []
    for j, header in enumerate(columns):
        head_min, head_max = _extent(_lines(header), BOLD)
        cell_min, cell_max = _cell_extent([row[j] for row in rows if j < len(row)])
        if j < len(align) and align[j] == "l":
            cell_min = min(cell_min, TEXT_WORD_EM)
        mins.append(max(head_min, cell_min))
        fits.append(max(cell_max, mins[-1]))
        fulls.append(max(head_max, fits[-1]))
    widths = list(mins)
    for j in sorted(range(len(columns)), key=lambda j: fits[j]):
        if fits[j] <= SHORT_EM and sum(widths) + fits[j] - widths[j] <= available:
            widths[j] = fits[j]
    for target in (fits, fulls):  # the cells' lines first, then the headers'
        lack = [max(t - w, 0.0) for w, t in zip(widths, target, strict=True)]
        room = available - sum(widths)
        if room > 0 and sum(lack) > 0:
            widths = [w + min(d, room * d / sum(lack)) for w, d in zip(widths, lack, strict=True)]
    widths = [w * SAFETY + PADDING_EM[size] for w in widths]
    total = sum(widths)
    return [round(100 * w / total, 2) for w in widths]
