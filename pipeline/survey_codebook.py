"""Survey codebooks: the typed description of one survey file, loaded from YAML.

Everything specific to a survey lives in its codebook (``pipeline/config/codebooks/*.yaml``): the
questions and their answer codes, which answers count as favourable, which respondent type a question
applies to, the missing-value codes, the invited population (response rates, optional
post-stratification margins), the indicator ids a question feeds, and the calibration targets of the
synthetic files. The code only interprets these files; a new survey is a new YAML file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.io import PipelineError

QuestionType = Literal["yes_no", "likert", "score_0_10", "before_after", "categorical"]
# The statistics an indicator can be taken from, by question type.
STATISTICS_BY_TYPE: dict[str, set[str]] = {
    "yes_no": {"favourable"},
    "likert": {"favourable"},
    "categorical": {"favourable", "level"},
    "score_0_10": {"mean"},
    "before_after": {"mean_before", "mean_after", "mean_change"},
}
UNITS_BY_STATISTIC = {
    "favourable": "share",
    "level": "share",
    "mean": "score_0_10",
    "mean_before": "score_0_10",
    "mean_after": "score_0_10",
    "mean_change": "score_0_10",
}


class CodebookError(PipelineError):
    """A codebook that cannot be used; the message names the file, the key and what to do."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Code(_Model):
    """One answer code and its labels; ``key`` is a stable name used in indicator statistics."""

    code: int
    label_fr: str
    label_en: str
    key: str | None = None

    @property
    def name(self) -> str:
        return self.key or str(self.code)


class IndicatorLink(_Model):
    """A published figure fed by a question: which statistic of the question becomes the indicator."""

    id: str
    statistic: Literal["favourable", "level", "mean", "mean_before", "mean_after", "mean_change"]
    level: int | None = None  # the answer code, for statistic = "level"
    label_fr: str
    label_en: str


class Question(_Model):
    id: str
    text_fr: str
    text_en: str
    type: QuestionType
    # Column of the survey file; before/after pairs use ``column_before`` and ``column_after``.
    column: str | None = None
    column_before: str | None = None
    column_after: str | None = None
    # Answer codes, in their natural order (ordered for Likert items), or the name of a shared scale.
    scale: str | None = None
    codes: tuple[Code, ...] = ()
    favourable: tuple[int, ...] = ()
    min: int = 0
    max: int = 10
    respondent_types: tuple[str, ...] = ()  # empty = every respondent type
    missing_codes: tuple[int, ...] | None = None  # None = the survey's missing codes
    indicators: tuple[IndicatorLink, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        if self.type == "before_after":
            return (self.column_before or f"{self.id}_before", self.column_after or f"{self.id}_after")
        return (self.column or self.id,)

    @property
    def has_codes(self) -> bool:
        return self.type in ("yes_no", "likert", "categorical")

    def code_of(self, code: int) -> Code:
        for c in self.codes:
            if c.code == code:
                return c
        raise KeyError(code)


class RespondentTypes(_Model):
    column: str
    codes: tuple[Code, ...]


class Weighting(_Model):
    """Post-stratification on one respondent attribute (a question), with invited counts per code."""

    question: str
    margins: dict[int, int]

    @field_validator("margins")
    @classmethod
    def _positive(cls, v: dict[int, int]) -> dict[int, int]:
        bad = {k: n for k, n in v.items() if n <= 0}
        if bad:
            raise ValueError(f"margins must be positive counts; found {bad}")
        return v


class InvitedPopulation(_Model):
    """The invited population, for AAPOR-style response rates and weighting."""

    invited: int | None = Field(None, ge=1)
    invited_by_type: dict[str, int] = Field(default_factory=dict)
    # Known final dispositions of the non-respondents (AAPOR): refusals, non-contacts, other, unknown
    # eligibility. With none given, every invited non-respondent counts in the denominator of RR1.
    refusals: int | None = Field(None, ge=0)
    non_contacts: int | None = Field(None, ge=0)
    other: int | None = Field(None, ge=0)
    unknown: int | None = Field(None, ge=0)
    # A respondent who answered at least this share of the questions that apply to them is a complete
    # interview (I); below it, a partial (P).
    complete_threshold: float = Field(0.5, ge=0, le=1)
    weighting: Weighting | None = None


class Codebook(_Model):
    id: str
    title_fr: str
    title_en: str
    mode: Literal["phone", "online", "paper", "face_to_face"]
    fieldwork: str
    file: str  # stem of the survey file in <data>/surveys/ (.csv or .xlsx)
    csv_separator: str = ","
    respondent_id: str
    respondent_label_fr: str = "répondant"
    respondent_label_en: str = "respondent"
    respondent_types: RespondentTypes | None = None
    missing_codes: tuple[Code, ...] = ()
    population: InvitedPopulation = Field(default_factory=InvitedPopulation)
    scales: dict[str, tuple[Code, ...]] = Field(default_factory=dict)
    questions: tuple[Question, ...]
    calibration: dict[str, Any] = Field(default_factory=dict)
    source_note: str = ""
    # Filled by the loader: the file it came from and its hash (recorded in params.json).
    path: str = ""
    sha256: str = ""

    @model_validator(mode="before")
    @classmethod
    def _resolve_scales(cls, data: Any) -> Any:
        """Questions may name a shared scale; copy its codes in so every question carries its codes."""
        if not isinstance(data, dict):
            return data
        scales = data.get("scales") or {}
        questions = []
        for q in data.get("questions") or []:
            # An unknown scale is reported by _consistent, with every other cross-check.
            if isinstance(q, dict) and q.get("scale") in scales and not q.get("codes"):
                q = {**q, "codes": scales[q["scale"]]}
            questions.append(q)
        return {**data, "questions": questions}

    @model_validator(mode="after")
    def _consistent(self) -> Codebook:
        problems: list[str] = []
        type_keys = {c.name for c in self.respondent_types.codes} if self.respondent_types else set()
        seen_ids: set[str] = set()
        seen_cols: set[str] = {self.respondent_id}
        if self.respondent_types:
            seen_cols.add(self.respondent_types.column)
        for q in self.questions:
            where = f"question {q.id!r}"
            if q.scale is not None and q.scale not in self.scales:
                problems.append(f"{where}: scale {q.scale!r} is not defined under 'scales' "
                                f"(defined: {sorted(self.scales)})")
            if q.id in seen_ids:
                problems.append(f"{where}: duplicated question id")
            seen_ids.add(q.id)
            for col in q.columns:
                if col in seen_cols:
                    problems.append(f"{where}: column {col!r} is used twice")
                seen_cols.add(col)
            codes = {c.code for c in q.codes}
            if q.type == "yes_no" and not q.codes:
                problems.append(f"{where}: a yes_no question needs codes (or scale: yes_no)")
            if q.type in ("likert", "categorical") and len(q.codes) < 2:
                problems.append(f"{where}: a {q.type} question needs at least two codes")
            if q.type in ("score_0_10", "before_after") and q.codes:
                problems.append(f"{where}: a {q.type} question has a numeric range, not codes")
            if len(codes) != len(q.codes):
                problems.append(f"{where}: duplicated answer codes")
            missing = set(self.missing_codes_of(q))
            if codes & missing:
                problems.append(f"{where}: codes {sorted(codes & missing)} are also missing-value codes")
            if q.type in ("score_0_10", "before_after") and any(q.min <= m <= q.max for m in missing):
                problems.append(f"{where}: a missing-value code lies inside the score range {q.min}–{q.max}")
            if not set(q.favourable) <= codes:
                problems.append(f"{where}: favourable codes {sorted(set(q.favourable) - codes)} are not answer codes")
            if q.type in ("yes_no", "likert") and not q.favourable:
                problems.append(f"{where}: say which answers count as favourable ('favourable: [codes]')")
            if q.min >= q.max:
                problems.append(f"{where}: min must be below max")
            unknown_types = set(q.respondent_types) - type_keys
            if unknown_types:
                problems.append(
                    f"{where}: respondent types {sorted(unknown_types)} are not defined under "
                    f"'respondent_types' (defined: {sorted(type_keys) or 'none'})"
                )
            for link in q.indicators:
                if link.statistic not in STATISTICS_BY_TYPE[q.type] and not (
                    link.statistic == "level" and q.type in ("yes_no", "likert")
                ):
                    problems.append(f"{where}: indicator {link.id!r} uses statistic {link.statistic!r}, "
                                    f"not available for a {q.type} question")
                if link.statistic == "level" and link.level not in codes:
                    problems.append(f"{where}: indicator {link.id!r} needs 'level' set to one of {sorted(codes)}")
                if link.statistic == "favourable" and not q.favourable:
                    problems.append(f"{where}: indicator {link.id!r} uses the favourable share, but no "
                                    f"favourable codes are given")
        ids = [link.id for q in self.questions for link in q.indicators]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            problems.append(f"indicator ids fed by more than one question: {dup}")
        pop = self.population
        if pop.invited_by_type:
            if not self.respondent_types:
                problems.append("population.invited_by_type needs respondent_types")
            elif set(pop.invited_by_type) - type_keys:
                problems.append(f"population.invited_by_type names unknown types "
                                f"{sorted(set(pop.invited_by_type) - type_keys)}")
        if pop.weighting is not None:
            wq = next((q for q in self.questions if q.id == pop.weighting.question), None)
            if wq is None or not wq.has_codes:
                problems.append(f"population.weighting.question {pop.weighting.question!r} must be a coded question")
            elif set(pop.weighting.margins) != {c.code for c in wq.codes}:
                problems.append(
                    f"population.weighting.margins must give a count for every code of "
                    f"{wq.id!r}: expected {sorted(c.code for c in wq.codes)}, found {sorted(pop.weighting.margins)}"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # -- helpers -------------------------------------------------------------------------------
    def missing_codes_of(self, q: Question) -> tuple[int, ...]:
        return q.missing_codes if q.missing_codes is not None else tuple(c.code for c in self.missing_codes)

    def question(self, qid: str) -> Question:
        for q in self.questions:
            if q.id == qid:
                return q
        raise KeyError(f"{self.id}: no question {qid!r}")

    @property
    def type_keys(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.respondent_types.codes) if self.respondent_types else ()

    def applicable_types(self, q: Question) -> tuple[str, ...]:
        return q.respondent_types or self.type_keys

    @property
    def indicator_ids(self) -> list[str]:
        return [link.id for q in self.questions for link in q.indicators]


def _format_pydantic(err: ValidationError, path: Path) -> str:
    lines = [f"Invalid survey codebook {path}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            lines.append(f"  - unknown key '{key}': remove it or check its spelling")
        else:
            lines.append(f"  - '{key}': {msg}")
    lines.append("See docs/surveys.md, section 'Codebooks', for every key.")
    return "\n".join(lines)


def load_codebook(path: str | Path) -> Codebook:
    """Read and validate one codebook; every problem is reported at once, naming the file and key."""
    path = Path(path)
    if not path.exists():
        raise CodebookError(
            f"Survey codebook {path} does not exist: fix [surveys].codebooks in the study configuration "
            f"(paths are relative to the configuration file)."
        )
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise CodebookError(f"Survey codebook {path} is not valid UTF-8 YAML: {err}. Fix the syntax.") from None
    if not isinstance(data, dict):
        raise CodebookError(f"Survey codebook {path} must be a YAML mapping (id, title_fr, questions, ...).")
    try:
        return Codebook(**data, path=str(path), sha256=hashlib.sha256(raw).hexdigest())
    except ValidationError as err:
        raise CodebookError(_format_pydantic(err, path)) from None


def load_codebooks(paths: list[Path]) -> list[Codebook]:
    books = [load_codebook(p) for p in paths]
    ids = [b.id for b in books]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise CodebookError(f"Survey ids used by more than one codebook: {dup}. Give each survey its own id.")
    files = [b.file for b in books]
    dupf = sorted({f for f in files if files.count(f) > 1})
    if dupf:
        raise CodebookError(f"Survey files named by more than one codebook: {dupf}.")
    indicator_ids = [i for b in books for i in b.indicator_ids]
    dupi = sorted({i for i in indicator_ids if indicator_ids.count(i) > 1})
    if dupi:
        raise CodebookError(f"Indicator ids fed by more than one survey: {dupi}. Each figure has one source.")
    return books
