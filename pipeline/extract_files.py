"""Which files of an extract directory hold which SNDS table, and the errors of reading them.

A table is one file (``ER_PRS_F.parquet``), or one file per period — year or flux month —
(``ER_PRS_F_2021.parquet``, ``ER_PRS_F_202101.csv``, ``ER_PRS_F_2021_01.csv``), or a directory of
part files (``ER_PRS_F/part-0001.parquet``, ``ER_PRS_F.parquet/`` as Spark writes it, nested
``year=2021/`` folders included; also one directory per period). PMSI tables are per year
(``T_MCO21B``), and each year may in turn be one file, several numbered files (``T_MCO21B_1.csv``,
``T_MCO21B_part2.parquet``) or a directory of parts (``T_MCO21B/part-0001.parquet``); the year of a
part comes from its directory (:func:`pmsi_year`). The files of one table may mix formats; each is
read and checked on its own, then stacked. Stems come from ``[extract]`` of the study configuration
and match case-insensitively; when one stem exists in several formats, Parquet > CSV > SAS7BDAT > XPT.

Ambiguous layouts are refused rather than guessed (a table read twice would count its euros
twice): a whole-table file beside period files, a year file beside month files of the same year, a
whole-year PMSI file beside numbered files of that year, a file and a directory of the same name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import StudyConfig
from pipeline.contract_spec import TABLES
from pipeline.io import PipelineError

FORMAT_PREFERENCE = (".parquet", ".csv", ".sas7bdat", ".xpt")
TABLE_KEYS = ("IR_BEN_R", "IR_IMB_R", "ER_PRS_F", "MCO_B", "MCO_C", "MCO_VALO", "ROSTER")
# A period suffix: _YYYY (year), _YYYYMM or _YYYY_MM (flux month); '-' works as '_'.
PERIOD_SUFFIX = r"(?:[_-](\d{4})(?:[_-]?(\d{2}))?)?"
PERIOD_YEARS = (1990, 2099)
# A part number of a PMSI year table: _1, -02, _part3, _part-0004 (the year is already in the stem).
PART_SUFFIX = r"(?:[_-](?:part[_-]?)?(\d{1,6}))?"


class MissingTableError(PipelineError):
    """A required table of the extract is not in the directory."""


class ContractTypeError(PipelineError):
    """Values of a column cannot be converted to the contract type."""


class UnreadableFileError(PipelineError):
    """A file of the extract cannot be read in its format."""


def stem_regex(pattern: str, periods: bool = False, parts: bool = False) -> re.Pattern[str]:
    """The file stems of a table: ``periods`` accepts a year or month suffix (DCIR, referentials),
    ``parts`` a part number (PMSI year tables)."""
    pieces = pattern.split("{aa}")
    body = r"(\d{2})".join(re.escape(p) for p in pieces)
    suffix = PERIOD_SUFFIX if periods else PART_SUFFIX if parts else ""
    return re.compile(rf"^{body}{suffix}$", re.IGNORECASE)


def table_pattern(key: str, config: StudyConfig) -> str:
    return getattr(config.extract, TABLES[key].config_attr)


def _unit_stem(path: Path) -> str:
    """The stem a file or a directory of parts stands for: ``T_MCO21B.parquet/`` (Spark) is ``T_MCO21B``."""
    return path.stem if path.suffix.lower() in FORMAT_PREFERENCE else path.name


def pmsi_year(path: Path, key: str, config: StudyConfig) -> int:
    """The year (2021) of a file of the PMSI table ``key``: from its name (``T_MCO21B.csv``,
    ``T_MCO21B_2.csv``) or, for a part of a directory (``T_MCO21B/part-0001.parquet``,
    ``T_MCO21B.parquet/year=2021/part-0.parquet``), from the nearest directory so named."""
    rx = stem_regex(table_pattern(key, config), parts=True)
    path = Path(path)
    for name in (path.stem, *(_unit_stem(d) for d in path.parents)):
        m = rx.match(name)
        if m:
            return 2000 + int(m.group(1))
    raise ValueError(f"{path} is not a {key} file (expected a name such as "
                     f"{table_pattern(key, config).format(aa='21')}.parquet, or a part of such a directory)")


def pmsi_year_groups(files: list[Path], key: str, config: StudyConfig) -> dict[int, list[int]]:
    """The positions in ``files`` (the files of the PMSI table ``key``, as :func:`find_tables` lists
    them) of each year's files, years in order: the parts of one year form that year's table."""
    groups: dict[int, list[int]] = {}
    for i, f in enumerate(files):
        groups.setdefault(pmsi_year(f, key, config), []).append(i)
    return dict(sorted(groups.items()))


def display_name(path: Path, data_dir: Path | None) -> str:
    """A file of the extract as messages and reports name it: its path under the extract directory."""
    if data_dir is None:
        return Path(path).name
    try:
        return Path(os.path.relpath(path, data_dir)).as_posix()
    except ValueError:  # another drive (Windows)
        return Path(path).name


@dataclass(frozen=True)
class TableSearch:
    found: dict[str, list[Path]]
    missing: dict[str, str]  # key -> what was expected and what to do
    conflicts: dict[str, str] = field(default_factory=dict)  # key -> ambiguous layout and what to do
    data_dir: Path | None = None

    def name(self, path: Path) -> str:
        return display_name(path, self.data_dir)


@dataclass(frozen=True)
class _Unit:
    """A file, or a directory of part files, standing for a table or one period of it."""

    path: Path
    stem: str
    parts: tuple[Path, ...]

    @property
    def is_dir(self) -> bool:
        return self.path.is_dir()


def _hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def _parts(directory: Path) -> tuple[Path, ...]:
    out = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        out += [Path(root) / f for f in sorted(files)
                if not _hidden(f) and Path(f).suffix.lower() in FORMAT_PREFERENCE]
    return tuple(sorted(out, key=lambda p: p.relative_to(directory).as_posix()))


def _units(data_dir: Path) -> list[_Unit]:
    units = []
    for p in sorted(data_dir.iterdir()):
        if _hidden(p.name):
            continue
        if p.is_file() and p.suffix.lower() in FORMAT_PREFERENCE:
            units.append(_Unit(p, p.stem, (p,)))
        elif p.is_dir():
            units.append(_Unit(p, _unit_stem(p), _parts(p)))
    return units


def _period(m: re.Match[str], first_group: int) -> tuple[int, int] | None:
    """(year, month) of a period suffix, (0, 0) for none, None when not a plausible period."""
    year, month = m.group(first_group), m.group(first_group + 1)
    if year is None:
        return (0, 0)
    y, mo = int(year), int(month or 0)
    if not PERIOD_YEARS[0] <= y <= PERIOD_YEARS[1] or (month is not None and not 1 <= mo <= 12):
        return None
    return (y, mo)


def _choose(units: list[_Unit], label: str) -> tuple[_Unit | None, str]:
    """One unit among those of the same stem (formats by preference); a file beside a directory is ambiguous."""
    dirs = [u for u in units if u.is_dir]
    files = sorted((u for u in units if not u.is_dir), key=lambda u: FORMAT_PREFERENCE.index(u.path.suffix.lower()))
    if dirs and files:
        return None, (f"{label}: both the file {files[0].path.name} and the directory {dirs[0].path.name}/ hold it; "
                      "keep one of them in the extract directory")
    if len(dirs) > 1:
        return None, f"{label}: several directories hold it ({', '.join(d.path.name for d in dirs)}); keep one"
    return (dirs or files)[0], ""


def _table_units(key: str, units: list[_Unit], config: StudyConfig) -> tuple[list[_Unit], str]:
    """The units of one table in order (PMSI by year, others by period), or a conflict message."""
    spec = TABLES[key]
    pattern = table_pattern(key, config)
    rx = stem_regex(pattern, periods=not spec.per_year, parts=spec.per_year)
    by_stem: dict[str, list[_Unit]] = {}
    order: dict[str, tuple[int, ...]] = {}
    for u in units:
        m = rx.match(u.stem)
        if not m:
            continue
        if spec.per_year:  # (year, part number; -1 for the whole year)
            rank: tuple[int, ...] | None = (int(m.group(1)), -1 if m.group(2) is None else int(m.group(2)))
        else:
            rank = _period(m, 1)
        if rank is None:
            continue
        by_stem.setdefault(u.stem.upper(), []).append(u)
        order[u.stem.upper()] = rank
    chosen: list[_Unit] = []
    for stem in sorted(by_stem, key=lambda s: (order[s], s)):
        unit, problem = _choose(by_stem[stem], spec.label)
        if unit is None:
            return [], problem
        chosen.append(unit)
    if len(chosen) < 2:
        return chosen, ""
    ranks = {u.stem.upper(): order[u.stem.upper()] for u in chosen}
    if spec.per_year:
        return chosen, _pmsi_year_conflict(spec.label, chosen, ranks)
    whole = [u for u in chosen if ranks[u.stem.upper()] == (0, 0)]
    if whole:
        others = [u.path.name for u in chosen if u not in whole]
        return [], (f"{spec.label}: {whole[0].path.name} holds the whole table but {', '.join(others[:4])}"
                    f"{' …' if len(others) > 4 else ''} hold parts of it; keep either the single file or the "
                    "files by period in the extract directory, not both (the lines would be counted twice)")
    years = {y for (y, mo) in ranks.values() if mo == 0}
    overlap = sorted({u.path.name for u in chosen if ranks[u.stem.upper()][1] and ranks[u.stem.upper()][0] in years})
    if overlap:
        return [], (f"{spec.label}: {', '.join(overlap[:4])} are months of a year that also has a whole-year file; "
                    "keep either the year file or its month files (the lines would be counted twice)")
    return chosen, ""


def _pmsi_year_conflict(label: str, chosen: list[_Unit], ranks: dict[str, tuple[int, ...]]) -> str:
    """A whole-year PMSI file beside numbered files of the same year: which to keep ('' when none)."""
    whole = {ranks[u.stem.upper()][0]: u for u in chosen if ranks[u.stem.upper()][1] < 0}
    parts = [u for u in chosen if ranks[u.stem.upper()][1] >= 0 and ranks[u.stem.upper()][0] in whole]
    if not parts:
        return ""
    year_file = whole[ranks[parts[0].stem.upper()][0]]
    names = [u.path.name for u in parts if ranks[u.stem.upper()][0] == ranks[parts[0].stem.upper()][0]]
    return (f"{label}: {year_file.path.name} holds the whole year but {', '.join(names[:4])}"
            f"{' …' if len(names) > 4 else ''} hold parts of the same year; keep either the year file or its "
            "numbered parts in the extract directory, not both (the stays would be counted twice)")


def find_tables(data_dir: Path, config: StudyConfig) -> TableSearch:
    """Every table file of the extract, without raising; missing tables and ambiguous layouts are described.

    ``found[key]`` lists the files to read, in order (PMSI: by year, each year one file, its numbered
    files or the part files of its directory; other tables: one, one per period, or the part files of
    a directory)."""
    data_dir = Path(data_dir)
    units = _units(data_dir) if data_dir.is_dir() else []
    found: dict[str, list[Path]] = {}
    missing: dict[str, str] = {}
    conflicts: dict[str, str] = {}
    for key in TABLE_KEYS:
        spec = TABLES[key]
        chosen, problem = _table_units(key, units, config)
        if problem:
            conflicts[key] = problem
            continue
        empty = [u for u in chosen if not u.parts]
        if empty:
            conflicts[key] = (f"{spec.label}: the directory {empty[0].path.name}/ holds no .parquet, .csv, .sas7bdat "
                              "or .xpt file; copy the parts of the table into it or remove it")
            continue
        if chosen:
            found[key] = [p for u in chosen for p in u.parts]
        else:
            pattern = table_pattern(key, config)
            example = pattern.format(aa="21") if spec.per_year else pattern
            what = ("one file per year, e.g. " if spec.per_year else "")
            split = (f" — or several files per year ({example}_1, {example}_2) or a directory {example}/ of part "
                     "files —" if spec.per_year else
                     f" — or one file per year or month ({example}_2021, {example}_202101) or a directory "
                     f"{example}/ of part files —")
            missing[key] = (f"{spec.label}: expected {what}{example}.parquet (or .csv, .sas7bdat, .xpt){split} in "
                            f"{data_dir}; add the file, or set [extract] {spec.config_attr} in the study "
                            "configuration to the file name used")
    if "MCO_B" in found:
        years_b = {pmsi_year(p, "MCO_B", config) for p in found["MCO_B"]}
        for key in ("MCO_C", "MCO_VALO"):
            years = {pmsi_year(p, key, config) for p in found.get(key, [])}
            lacking = sorted(years_b - years)
            if lacking and key not in missing and key not in conflicts:
                pattern = table_pattern(key, config)
                names = ", ".join(pattern.format(aa=f"{y % 100:02d}") for y in lacking)
                missing[key] = (f"{TABLES[key].label}: no file for year(s) {', '.join(map(str, lacking))} "
                                f"although {TABLES['MCO_B'].label} has them; expected {names} in {data_dir}")
    return TableSearch(found=found, missing=missing, conflicts=conflicts, data_dir=data_dir)


def locate_tables(data_dir: Path, config: StudyConfig) -> dict[str, list[Path]]:
    """The files of each input table, in order (see :func:`find_tables`). Raises if a table is missing
    or its files are ambiguous."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise MissingTableError(f"Extract directory {data_dir} does not exist: give the directory holding "
                                "IR_BEN_R, ER_PRS_F, … with --data (or run `equilibres generate`).")
    search = find_tables(data_dir, config)
    if search.missing or search.conflicts:
        lines = []
        if search.missing:
            lines.append(f"The extract in {data_dir} is incomplete ({len(search.missing)} table(s) missing):")
            lines += [f"  - {msg}" for msg in search.missing.values()]
        if search.conflicts:
            lines.append(f"The files of {len(search.conflicts)} table(s) in {data_dir} are ambiguous:")
            lines += [f"  - {msg}" for msg in search.conflicts.values()]
        lines.append("Run `equilibres validate DIR` for a full check of the extract.")
        raise MissingTableError("\n".join(lines))
    return search.found
