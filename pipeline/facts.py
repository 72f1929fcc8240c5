"""What each step recorded about its run ("facts"), declared once: sizes, input hashes, timings...

A step saves, beside its configuration sections and its provenance, what it observed while running
(``<step>/params.json``; for the cleaning, ``clean/manifest.json``). Those facts cross a package
boundary (the report renders them), so they are frozen, typed classes here, not loose dicts:

    out.params(config, ["matching", "cohort"], **MatchingFacts(...).to_dict())   # producer
    facts = MatchingFacts.from_dict(saved, where="matching/params.json")         # consumer

``to_dict`` checks the values against the declaration before they are written; ``from_dict`` checks
what was read: a missing or unknown key, or a value of the wrong type, is a
:class:`~pipeline.io.PipelineError` naming the file, the key and the command that rewrites it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TypeVar

from pipeline.io import PipelineError


class Facts:
    """Mixin of the frozen fact classes: validated ``from_dict`` / ``to_dict`` (see the module doc)."""

    STEP: ClassVar[str] = ""  # the command that writes them, named in errors

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "params.json") -> Self:
        """The facts saved in ``data`` (read from ``where``), checked against this declaration."""
        return _build(cls, data, where, cls.STEP or "run")

    def to_dict(self) -> dict[str, Any]:
        """The JSON mapping, in declaration order; checked against the declaration first."""
        out = _plain(self)
        type(self).from_dict(out, where=f"{type(self).__name__} (before writing)")
        return out


F = TypeVar("F", bound=Facts)


def read_facts(cls: type[F], path: Path) -> F:
    """The facts a step saved as a JSON file of their own (``path``, e.g. sensitivity/summary.json),
    checked against ``cls``: a file that is not valid JSON, or that breaks the declaration, is a
    :class:`~pipeline.io.PipelineError` naming the file and the command that rewrites it."""
    step = cls.STEP or "run"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PipelineError(f"Cannot read {path}: invalid JSON ({err.msg} at line {err.lineno}). The file was "
                            f"cut short or edited by hand: re-run {_command(step)}.") from None
    return cls.from_dict(data, where=str(path))


def _command(step: str) -> str:
    return f"`equilibres {step}`"


def _fail(where: str, key: str, expected: str, found: Any, step: str) -> PipelineError:
    shown = repr(found) if len(repr(found)) <= 120 else repr(found)[:117] + "..."
    return PipelineError(f"{where}: key {key!r} must be {expected}, found {shown}. The file was written by "
                         f"another version of the pipeline or edited by hand: re-run {_command(step)}.")


def _build(cls: type, data: Any, where: str, step: str, key: str = "") -> Any:
    if not isinstance(data, Mapping):
        raise _fail(where, key or cls.__name__, f"a JSON object ({cls.__name__})", data, step)
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    required = [f.name for f in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in data]
    unknown = [k for k in data if k not in names]
    if missing or unknown:
        prefix = f"{key}." if key else ""
        parts = ([f"missing key(s) {', '.join(prefix + k for k in missing)}"] if missing else []) + \
                ([f"unknown key(s) {', '.join(prefix + k for k in unknown)}"] if unknown else [])
        raise PipelineError(
            f"{where} does not match its declaration ({cls.__name__}, pipeline/facts.py): {'; '.join(parts)}. "
            f"The file was written by another version of the pipeline or edited by hand: re-run "
            f"{_command(step)}.")
    hints = typing.get_type_hints(cls)
    values = {name: _check(data[name], hints[name], where, step, f"{key}.{name}" if key else name)
              for name in names if name in data}
    return cls(**values)


def _check(value: Any, tp: Any, where: str, step: str, key: str) -> Any:
    """``value`` read from JSON, checked against the annotation ``tp`` (and made immutable)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # X | None: the error of X, which names the nested key
            return _check(value, options[0], where, step, key)
        for option in options:
            try:
                return _check(value, option, where, step, key)
            except PipelineError:
                continue
        raise _fail(where, key, " or ".join(_name(a) for a in args), value, step)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, step, key)
    if origin is typing.Literal:
        if not any(value == a and type(value) is type(a) for a in args):
            raise _fail(where, key, "one of " + ", ".join(repr(a) for a in args), value, step)
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _fail(where, key, "a list", value, step)
        return tuple(_check(v, args[0], where, step, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (Mapping, dict) or tp is Mapping:
        if not isinstance(value, Mapping):
            raise _fail(where, key, "a JSON object", value, step)
        vt = args[1] if args else Any
        return types.MappingProxyType({str(k): _check(v, vt, where, step, f"{key}.{k}") for k, v in value.items()})
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(where, key, "true or false", value, step)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise _fail(where, key, "an integer", value, step)
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise _fail(where, key, "a number", value, step)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _fail(where, key, "a string", value, step)
        return value
    raise TypeError(f"pipeline/facts.py: no check for the annotation {tp!r} of {key!r}")


def _name(tp: Any) -> str:
    """How an annotation reads in an error message."""
    names = {type(None): "null", int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if tp in names:
        return names[tp]
    if dataclasses.is_dataclass(tp):
        return f"a JSON object ({tp.__name__})"
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return "a list" if typing.get_origin(tp) is tuple else "a JSON object"


def _plain(value: Any) -> Any:
    """A JSON-ready copy: fact classes and mappings as dicts, tuples as lists, numpy scalars as numbers."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        return f if math.isfinite(f) else None
    return value


# ------------------------------------------------------------------------------------------ matching
@dataclass(frozen=True)
class MatchingSizes(Facts):
    """Sizes of the matching; counts of people below ``min_cell_count`` are saved masked (null)."""

    STEP: ClassVar[str] = "match"
    eligible_rows: int | None
    treated: int | None
    controls: int | None
    treated_matched: int | None
    controls_matched: int | None
    unmatched_treated: int | None
    partial_sets: int | None
    pairs: int | None
    strata_with_treated: int  # strata are not people: never masked
    strata_matched: int
    ess_controls: float | None
    control_persons_matched: int | None
    control_persons_used_once: int | None
    control_persons_reused: int | None
    control_max_uses: int  # a number of matched sets, not of people
    control_rows_share_from_reused: float | None


@dataclass(frozen=True)
class MatchingFacts(Facts):
    """What `equilibres match` recorded (matching/params.json besides its settings)."""

    STEP: ClassVar[str] = "match"
    method_description: str
    caliper_width: float | None
    pooled_sd: float | None
    sizes: MatchingSizes
    min_cell_count: int
    cohort_file: str
    cohort_fingerprint: str
    config_fingerprint: str
    seconds: float
    peak_rss_mb: float | None


# ---------------------------------------------------------------------------------------- indicators
@dataclass(frozen=True)
class IndicatorsSizes(Facts):
    """Sizes of the analysed matched sample (counts below ``min_cell_count`` saved as null)."""

    STEP: ClassVar[str] = "indicators"
    treated: int | None
    controls: int | None
    matched_sets: int | None
    control_persons: int | None
    resampling_clusters: int | None
    replicates: int


@dataclass(frozen=True)
class BootstrapFacts(Facts):
    STEP: ClassVar[str] = "indicators"
    kind: str
    seed: int


@dataclass(frozen=True)
class IndicatorsFacts(Facts):
    """What `equilibres indicators` recorded (indicators/params.json besides its settings).
    ``inputs``: first 16 hex digits of the SHA-256 of each clean table read; ``extract_scale``: size of
    a synthetic extract relative to the study (1 for a real extract)."""

    STEP: ClassVar[str] = "indicators"
    perimeter: tuple[str, ...]
    inputs: Mapping[str, str]
    data_dir: str | None
    extract_scale: float
    sizes: IndicatorsSizes
    bootstrap: BootstrapFacts
    seconds: float
    peak_rss_mb: float | None


# ------------------------------------------------------------------------------------------- surveys
@dataclass(frozen=True)
class CodebookFile(Facts):
    STEP: ClassVar[str] = "surveys"
    id: str
    path: str
    sha256: str


@dataclass(frozen=True)
class SurveyInput(Facts):
    STEP: ClassVar[str] = "surveys"
    survey: str
    file: str
    sha256: str
    respondents: int


@dataclass(frozen=True)
class SurveysFacts(Facts):
    """What `equilibres surveys` recorded: the codebooks and response files it read. (The published
    figures of its indicators are saved as a ``published`` settings section, read with the others.)"""

    STEP: ClassVar[str] = "surveys"
    codebooks: tuple[CodebookFile, ...]
    inputs: tuple[SurveyInput, ...]


# --------------------------------------------------------------------------------------- sensitivity
@dataclass(frozen=True)
class SensitivitySizes(Facts):
    STEP: ClassVar[str] = "sensitivity"
    treated: int | None
    controls: int | None
    matched_sets: int | None
    replicates: int


@dataclass(frozen=True)
class SensitivityFacts(Facts):
    """What `equilibres sensitivity` recorded (sensitivity/params.json besides its settings)."""

    STEP: ClassVar[str] = "sensitivity"
    inputs: Mapping[str, str]
    sizes: SensitivitySizes
    negative_controls_included: bool
    seconds: float
    peak_rss_mb: float | None


@dataclass(frozen=True)
class CheckFacts(Facts):
    """One check behind a headline's verdict: the value measured, the threshold, whether it passed
    (null: not judged, its input missing)."""

    STEP: ClassVar[str] = "sensitivity"
    value: float | None
    threshold: float | None
    passed: bool | None


@dataclass(frozen=True)
class HeadlineDiagnostics(Facts):
    """The robustness reading of one headline effect (indicators/sensitivity/headlines.py): its estimate,
    E-value, Rosenbaum bound, detectable effect, pre-trend test and the verdict of its checks
    (indicators/sensitivity/verdict.py). ``reasons``: one sentence per check, failed ones first."""

    STEP: ClassVar[str] = "sensitivity"
    id: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    evalue: float | None
    evalue_ci: float | None
    evalue_scale: str
    rosenbaum_gamma: float | None
    rosenbaum_test: str
    rosenbaum_p: float | None
    rosenbaum_pairs: int | None  # matched pairs of the test; null below min_cell_count
    mdrr: float | None
    mde: float | None
    pretrend_outcome: str
    pretrend_p: float | None
    verdict: Literal["pass", "fail", "incomplete"]
    reasons: tuple[str, ...]
    checks: Mapping[str, CheckFacts]


@dataclass(frozen=True)
class NegativeControlFacts(Facts):
    """The systematic error the negative-control outcomes show (indicators/sensitivity/negative_controls.py)."""

    STEP: ClassVar[str] = "sensitivity"
    n: int
    systematic_error_mean: float | None
    systematic_error_sd: float | None
    systematic_error_ci_low: float | None
    systematic_error_ci_high: float | None
    expected_absolute_systematic_error: float | None
    ci_level: float
    replicates: int
    method: str
    assumption: str


@dataclass(frozen=True)
class EventStudyTest(Facts):
    """One outcome of the event study: the joint pre-trend test and the difference in differences."""

    STEP: ClassVar[str] = "sensitivity"
    unit: str
    pretrend_chi2: float | None
    pretrend_df: int
    pretrend_p: float | None
    did: float | None
    did_ci_low: float | None
    did_ci_high: float | None


@dataclass(frozen=True)
class BalanceOverlap(Facts):
    """Max |SMD| after matching and the share of eligible ÉQUILIBRES patients matched (null: not read)."""

    STEP: ClassVar[str] = "sensitivity"
    max_abs_smd_after: float | None
    matched_share: float | None


@dataclass(frozen=True)
class VerdictThresholds(Facts):
    """The ``[sensitivity]`` thresholds the verdicts were judged against."""

    STEP: ClassVar[str] = "sensitivity"
    max_abs_smd: float
    min_matched_share: float
    pretrend_alpha: float
    max_systematic_error: float
    alpha: float
    power: float
    min_effect_of_interest: Mapping[str, float]


@dataclass(frozen=True)
class SensitivitySummary(Facts):
    """``sensitivity/summary.json``: the diagnostics of every headline, the negative controls (null when
    none are configured), the event study's tests per outcome, the balance and overlap judged, the
    thresholds, and the resampling used."""

    STEP: ClassVar[str] = "sensitivity"
    headlines: tuple[HeadlineDiagnostics, ...]
    negative_controls: NegativeControlFacts | None
    event_study: Mapping[str, EventStudyTest]
    balance: BalanceOverlap
    thresholds: VerdictThresholds
    ci_level: float
    replicates: int
    event_replicates: int
    curve_replicates: int
    notes: tuple[str, ...]

    def headline(self, id: str) -> HeadlineDiagnostics | None:
        """The diagnostics of the headline ``id`` (None when it was not assessed)."""
        return next((h for h in self.headlines if h.id == id), None)


# --------------------------------------------------------------------------------------------- sweep
@dataclass(frozen=True)
class SweepFacts(Facts):
    """What `equilibres sweep` recorded: the grid run and the estimate its curve is drawn for."""

    STEP: ClassVar[str] = "sweep"
    matching_base: Mapping[str, Any]
    n_grid_distinct: int
    n_run: int
    truncated: bool
    effects_available: bool
    curve_estimate: str
    cohort_fingerprint: str
    seconds: float
    n_computed: int = 0  # specifications computed by this run (the others came from the cache)
    n_cached: int = 0
    main_added: bool = False  # the main specification was not in the grid and was appended to it


# ------------------------------------------------------------------------------------------ cleaning
@dataclass(frozen=True)
class InputFileHash(Facts):
    """One file of the extract: its hash (``method``: see pipeline/io.py HASH_METHOD), its size and
    how it was read (``read_as``: format, and for a CSV its separator and encoding)."""

    STEP: ClassVar[str] = "clean"
    file: str
    sha256: str
    size: int
    method: str
    table: str
    read_as: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class InputFileCheck(Facts):
    STEP: ClassVar[str] = "clean"
    file: str
    table: str
    rows: int
    duplicate_keys: int
    cached: bool


@dataclass(frozen=True)
class InputChecks(Facts):
    STEP: ClassVar[str] = "clean"
    seconds: float
    files: tuple[InputFileCheck, ...]
    checks: tuple[str, ...]
    null_shares: Mapping[str, Mapping[str, float]] | None = None  # table -> column -> share of nulls (> 0)


@dataclass(frozen=True)
class CodeVersion(Facts):
    STEP: ClassVar[str] = "clean"
    package_version: str
    stages_sha256: str


@dataclass(frozen=True)
class StageFacts(Facts):
    STEP: ClassVar[str] = "clean"
    status: str
    fingerprint: str
    seconds: float | None
    peak_rss_mb: float | None
    engine: str | None
    finished_at: str | None


@dataclass(frozen=True)
class CleanOutput(Facts):
    STEP: ClassVar[str] = "clean"
    path: str
    sha256: str
    size: int
    rows: int | None = None


@dataclass(frozen=True)
class CleanFacts(Facts):
    """``clean/manifest.json``: the extract's files and their hashes, the settings and code used, every
    stage (ran or cached) and output, and the input checks (None when no stage had to run)."""

    STEP: ClassVar[str] = "clean"
    created_at: str
    engine: str
    inputs: Mapping[str, tuple[InputFileHash, ...]]
    input_hash_method: str
    parameters: Mapping[str, Mapping[str, Any]]
    code: CodeVersion
    stages: Mapping[str, StageFacts]
    outputs: Mapping[str, CleanOutput]
    input_checks: InputChecks | None

    def input_files(self) -> tuple[InputFileHash, ...]:
        """Every file of the extract, one per file (a table may span several files)."""
        return tuple(f for files in self.inputs.values() for f in files)

    def rows_of(self, file: str) -> int | None:
        """Rows of an input file as the input checks counted them (None when not checked this run)."""
        checks = self.input_checks.files if self.input_checks is not None else ()
        return next((c.rows for c in checks if c.file == file), None)


# The facts each step saves in its params.json (the cleaning's are its manifest: see CleanFacts).
STEP_FACTS: dict[str, type[Facts]] = {
    "match": MatchingFacts, "indicators": IndicatorsFacts, "surveys": SurveysFacts,
    "sensitivity": SensitivityFacts, "sweep": SweepFacts,
}


@dataclass(frozen=True)
class NoFacts(Facts):
    """A step that records nothing beyond its settings and provenance (clean/params.json, report)."""
