"""Reading survey files (CSV or XLSX) and checking them against their codebook.

A survey file has one row per respondent and one column per question (two for a before/after pair),
holding answer codes. Validation collects every problem of every file before raising, each naming
the file, the column, the rule broken and how many rows break it, with example row numbers (never
respondent ids) and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.io import PipelineError
from pipeline.survey_codebook import Codebook, Question

TYPE_COLUMN = "_respondent_type"  # respondent type key in the coded frame (not written anywhere)
SUPPORTED_SUFFIXES = (".csv", ".xlsx")


@dataclass(frozen=True)
class ValidationIssue:
    """One broken rule in one column of one file."""

    file: str
    column: str | None
    rule: str
    count: int
    detail: str
    rows: tuple[int, ...] = ()  # 1-based file line numbers of examples (header = line 1)

    def message(self) -> str:
        where = f"{self.file}, column '{self.column}'" if self.column else self.file
        rows = ""
        if self.rows:
            rows = f" (e.g. line{'s' if len(self.rows) > 1 else ''} {', '.join(map(str, self.rows))})"
        return f"{where}: {self.rule} — {self.count} row{'s' if self.count != 1 else ''}: {self.detail}{rows}"


class SurveyValidationError(PipelineError):
    """Survey files that do not match their codebooks; ``issues`` lists every problem found."""

    def __init__(self, issues: list[ValidationIssue]):
        self.issues = list(issues)
        files = sorted({i.file for i in issues})
        lines = [f"{len(issues)} problem{'s' if len(issues) != 1 else ''} in the survey files "
                 f"({', '.join(files)}):"]
        lines += [f"  - {i.message()}" for i in issues]
        lines.append("Fix the files (or the codebooks under pipeline/config/codebooks/) and run again; "
                     "docs/surveys.md describes each rule.")
        super().__init__("\n".join(lines))


def survey_file(data_dir: Path, codebook: Codebook) -> Path | None:
    """The file of a survey under ``<data>/surveys/``: ``<file>.csv`` first, else ``<file>.xlsx``."""
    for suffix in SUPPORTED_SUFFIXES:
        p = Path(data_dir) / "surveys" / f"{codebook.file}{suffix}"
        if p.exists():
            return p
    return None


def read_survey_table(path: Path, separator: str = ",") -> pd.DataFrame:
    """Read every cell as text (codes are checked, never silently coerced); blanks become NA."""
    if path.suffix.lower() == ".xlsx":
        frame = pd.read_excel(path, dtype=str, engine="openpyxl")
    else:
        last: Exception | None = None
        for encoding in ("utf-8", "latin-1"):
            try:
                frame = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False, encoding=encoding)
                break
            except UnicodeDecodeError as err:
                last = err
        else:  # pragma: no cover - latin-1 decodes any byte string
            raise PipelineError(f"{path}: cannot decode as UTF-8 or latin-1 ({last})")
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.apply(lambda s: s.str.strip() if s.dtype == object else s)
    return frame.replace({"": pd.NA}).astype("object")


def _as_number(s: pd.Series) -> pd.Series:
    """Numeric view of a text column; '1', '1.0' and '1,0' are numbers, anything else NaN."""
    text = s.astype("string").str.replace(",", ".", regex=False)
    return pd.to_numeric(text, errors="coerce").astype("float64")


def _lines(mask: pd.Series, limit: int = 3) -> tuple[int, ...]:
    return tuple(int(i) + 2 for i in np.flatnonzero(mask.to_numpy())[:limit])


def _examples(values: pd.Series, limit: int = 5) -> str:
    uniq = list(dict.fromkeys(values.astype(str).tolist()))
    shown = ", ".join(repr(v) for v in uniq[:limit])
    return shown + (", …" if len(uniq) > limit else "")


def validate_responses(frame: pd.DataFrame, codebook: Codebook, file: str) -> list[ValidationIssue]:
    """Every violation of the codebook in one survey file (empty list = valid)."""
    issues: list[ValidationIssue] = []
    n = len(frame)

    def add(column: str | None, rule: str, mask_or_count: pd.Series | int, detail: str) -> None:
        if isinstance(mask_or_count, pd.Series):
            count, rows = int(mask_or_count.sum()), _lines(mask_or_count)
        else:
            count, rows = int(mask_or_count), ()
        if count:
            issues.append(ValidationIssue(file, column, rule, count, detail, rows))

    expected = [codebook.respondent_id]
    if codebook.respondent_types:
        expected.append(codebook.respondent_types.column)
    expected += [c for q in codebook.questions for c in q.columns]
    for col in expected:
        if col not in frame.columns:
            add(col, "missing column", n or 1,
                f"the codebook {codebook.id} expects this column; add it (blank cells are item non-response) "
                f"or fix the column name in the codebook")
    if n == 0:
        add(None, "empty file", 1, "no respondent rows; export the survey answers again")

    rid = codebook.respondent_id
    if rid in frame.columns:
        blank = frame[rid].isna()
        add(rid, "missing respondent id", blank, "every row needs a respondent id")
        dup = frame[rid].duplicated(keep=False) & ~blank
        if dup.any():
            n_ids = int(frame.loc[dup, rid].nunique())
            add(rid, "duplicated respondent id", dup,
                f"{n_ids} respondent id{'s' if n_ids != 1 else ''} appear on more than one row; keep one row "
                f"per respondent")

    type_keys = pd.Series([pd.NA] * n, index=frame.index, dtype="object")
    if codebook.respondent_types and codebook.respondent_types.column in frame.columns:
        col = codebook.respondent_types.column
        num = _as_number(frame[col])
        valid_codes = {c.code: c.name for c in codebook.respondent_types.codes}
        bad = frame[col].isna() | ~num.isin(list(valid_codes))
        add(col, "unknown code", bad,
            f"respondent type must be one of {sorted(valid_codes)} "
            f"({', '.join(f'{k} = {v}' for k, v in valid_codes.items())}); found "
            f"{_examples(frame.loc[bad, col].fillna('<blank>'))}")
        type_keys = num.map(valid_codes)

    for q in codebook.questions:
        missing_codes = set(codebook.missing_codes_of(q))
        applicable = (type_keys.isin(codebook.applicable_types(q)) if codebook.respondent_types
                      else pd.Series(True, index=frame.index))
        for col in q.columns:
            if col not in frame.columns:
                continue
            raw = frame[col]
            num = _as_number(raw)
            present = raw.notna()
            is_missing_code = num.isin(list(missing_codes))
            answered = present & ~is_missing_code
            if q.has_codes:
                codes = {c.code for c in q.codes}
                bad = answered & ~num.isin(list(codes))
                add(col, "unknown code", bad,
                    f"allowed codes are {sorted(codes)} and missing-value codes {sorted(missing_codes)}; "
                    f"found {_examples(raw[bad])}")
            else:
                not_number = answered & num.isna()
                add(col, "not a number", not_number,
                    f"a score between {q.min} and {q.max} (or a missing-value code {sorted(missing_codes)}) is "
                    f"expected; found {_examples(raw[not_number])}")
                out = answered & num.notna() & ((num < q.min) | (num > q.max))
                add(col, "out-of-range score", out,
                    f"scores must lie between {q.min} and {q.max} (missing-value codes: {sorted(missing_codes)}); "
                    f"found {_examples(raw[out])}")
                frac = answered & num.notna() & (num % 1 != 0) & ~out
                add(col, "non-integer score", frac,
                    f"scores are whole numbers; found {_examples(raw[frac])}")
            if codebook.respondent_types:
                na = answered & ~applicable & type_keys.notna()
                add(col, "answer from a respondent type the question does not apply to", na,
                    f"the question applies to {list(codebook.applicable_types(q))} only; clear these cells or "
                    f"fix 'respondent_types' of question {q.id!r} in the codebook")
    return issues


def coded_responses(frame: pd.DataFrame, codebook: Codebook) -> pd.DataFrame:
    """The answers as numbers, item non-response as NaN, plus the respondent type key.

    Call only on a frame that passed :func:`validate_responses`. The respondent id column is dropped
    here, so no identifier travels further than this function.
    """
    out = pd.DataFrame(index=frame.index)
    if codebook.respondent_types:
        codes = {c.code: c.name for c in codebook.respondent_types.codes}
        out[TYPE_COLUMN] = _as_number(frame[codebook.respondent_types.column]).map(codes)
    else:
        out[TYPE_COLUMN] = codebook.respondent_label_en
    for q in codebook.questions:
        missing_codes = list(codebook.missing_codes_of(q))
        for col in q.columns:
            num = _as_number(frame[col])
            out[col] = num.mask(num.isin(missing_codes))
    return out.reset_index(drop=True)


def applicable_mask(coded: pd.DataFrame, codebook: Codebook, q: Question) -> pd.Series:
    if not codebook.respondent_types:
        return pd.Series(True, index=coded.index)
    return coded[TYPE_COLUMN].isin(codebook.applicable_types(q))


def load_responses(data_dir: Path, codebooks: list[Codebook]) -> dict[str, tuple[Path, pd.DataFrame]]:
    """Read and validate every survey; raise one SurveyValidationError listing all problems."""
    issues: list[ValidationIssue] = []
    loaded: dict[str, tuple[Path, pd.DataFrame]] = {}
    for book in codebooks:
        path = survey_file(data_dir, book)
        if path is None:
            expected = " or ".join(str(Path(data_dir) / "surveys" / f"{book.file}{s}") for s in SUPPORTED_SUFFIXES)
            issues.append(ValidationIssue(f"{book.file}.csv", None, "missing file", 1,
                                          f"survey {book.id!r} expects {expected}; export it there (synthetic "
                                          f"files: `equilibres generate` writes them) or remove its codebook "
                                          f"from [surveys].codebooks"))
            continue
        try:
            frame = read_survey_table(path, book.csv_separator)
        except (ValueError, OSError) as err:
            issues.append(ValidationIssue(path.name, None, "unreadable file", 1, f"{err}"))
            continue
        found = validate_responses(frame, book, path.name)
        issues += found
        if not found:
            loaded[book.id] = (path, coded_responses(frame, book))
    if issues:
        raise SurveyValidationError(issues)
    return loaded
