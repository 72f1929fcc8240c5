"""The run chain of `equilibres run`: validate → clean → match → indicators → surveys → sweep →
sensitivity → report (the order of :data:`pipeline.paths.STEPS`).

Every step has the same entry, ``run(paths, config, *, force=False)`` (:data:`STEPS`). Like make, the
chain re-runs exactly the steps whose results are out of date (:func:`pipeline.provenance.outdated`:
an input rewritten since, other settings or code, an output edited by hand, no record) and reuses the
others; cleaning is always called, since it caches stage by stage itself. It stops at the first error;
an extract that breaks the input contract stops it before cleaning (:class:`ExtractInvalid`, exit
code 1); an extract that passed the contract and has not changed since is not read again
(:func:`validate_once`). A step run alone refuses inconsistent upstream results (the StepWriter checks them);
:func:`run_step` and :func:`report` with ``refresh=True`` first re-run the upstream steps whose results
no longer follow from their inputs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import StudyConfig, write_params
from pipeline.io import PipelineError, atomic_write_json, build_lock, file_hash
from pipeline.paths import STEPS as CHAIN_ORDER
from pipeline.paths import BuildPaths
from pipeline.provenance import (
    code_hash,
    make_record,
    outdated,
    read_provenance,
    settings_hashes,
    stale_steps,
    upstream,
)

if TYPE_CHECKING:
    from pipeline.contract import ValidationReport
    from reports.build import ReportResult


class _StepEntries(Mapping[str, Callable[..., Any]]):
    """Step name -> the ``run`` of its module, imported when first looked up: `equilibres match` then
    loads matching alone, not the libraries of the indicators and the report (seconds at start-up)."""

    def __init__(self, modules: Mapping[str, str]) -> None:
        self._modules = dict(modules)

    def __getitem__(self, name: str) -> Callable[..., Any]:
        return importlib.import_module(self._modules[name]).run

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)


#: The steps of the chain after validation, each ``run(paths, config, *, force=False) -> result``.
STEPS: Mapping[str, Callable[..., Any]] = _StepEntries({
    "clean": "pipeline.runner",
    "match": "matching.study",
    "indicators": "indicators.study",
    "surveys": "surveys.study",
    "sweep": "study.sweep",
    "sensitivity": "indicators.sensitivity",
})


class ExtractInvalid(PipelineError):
    """The extract breaks the SNDS input contract: the chain stops before cleaning."""

    exit_code = 1


def validate(paths: BuildPaths, config: StudyConfig, *, max_examples: int = 3, notes: bool = True
             ) -> ValidationReport:
    """Check the extract ``paths.data`` against the SNDS input contract (every violation collected).
    ``notes=False``: without the plausibility notes, which the run chain leaves to the audit trail."""
    from pipeline.contract import validate_extract

    if paths.data is None:
        raise PipelineError("Validation reads an extract: give its directory to --data.")
    return validate_extract(paths.data, config, max_examples=max_examples, notes=notes)


@dataclass(frozen=True)
class ValidationReused:
    """The extract passed the input contract before, and neither its files (content hashes), the
    settings the contract reads nor the contract's code changed since: it is not read again."""

    data_dir: Path
    files: int
    validated_at: str
    ok: bool = True

    def render(self) -> str:
        return (f"OK: extract {self.data_dir} unchanged since it passed validation ({self.validated_at}; "
                f"{self.files} file(s), same content hashes, settings and contract code); not re-read.")


def _validation_key(paths: BuildPaths, config: StudyConfig) -> tuple[str, int]:
    assert paths.data is not None
    files = sorted(f for f in paths.data.rglob("*") if f.is_file())
    # file_hash samples files above 256 MiB (with their size and mtime): seconds even at full scale.
    hashes = {f.relative_to(paths.data).as_posix(): file_hash(f)["sha256"] for f in files}
    blob = json.dumps({"files": hashes, "settings": settings_hashes(config, "validate"),
                       "code": code_hash("validate")}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest(), len(files)


def validate_once(paths: BuildPaths, config: StudyConfig) -> ValidationReport | ValidationReused:
    """:func:`validate`, unless the same extract passed it already with the same settings and code
    (recorded in ``<build>/tmp/validation.json``): re-reading a full-scale extract takes minutes, and
    `equilibres run` after a re-match must not."""
    if paths.data is None:
        raise PipelineError("Validation reads an extract: give its directory to --data.")
    record = paths.tmp / "validation.json"
    try:
        key, n_files = _validation_key(paths, config)
    except OSError:  # an unreadable file or directory: validation itself says which, and how to fix it
        return validate(paths, config, notes=False)
    try:
        saved = json.loads(record.read_text(encoding="utf-8"))
        if saved.get("key") == key and saved.get("ok") is True:
            return ValidationReused(paths.data, n_files, str(saved.get("validated_at", "")))
    except (OSError, ValueError, AttributeError):
        pass
    checked = validate(paths, config, notes=False)
    if checked.ok:
        atomic_write_json(record, {"key": key, "ok": True, "data_dir": str(paths.data),
                                   "validated_at": dt.datetime.now(dt.UTC).isoformat(sep=" ", timespec="seconds")})
    return checked


Announce = Callable[[str], None] | None
Done = Callable[[str, Any], None] | None


def report(paths: BuildPaths, config: StudyConfig, *, pdf: bool = True, refresh: bool = False,
           on_step: Announce = None, on_result: Done = None) -> ReportResult:
    """Render the report from the saved results (HTML, and PDF unless ``pdf=False``) and record its
    provenance in ``report/params.json``. The report refuses results that do not form one consistent
    chain; ``refresh=True`` first re-runs the steps whose results no longer follow from their inputs."""
    if refresh:
        refresh_stale(paths, config, None, on_step=on_step, on_result=on_result)
    from reports.build import run as render_report

    result = render_report(paths, config, pdf=pdf)
    files = [result.html_path, *([result.pdf_path] if result.pdf_path is not None else [])]
    record = make_record(paths, config, "report", [f.relative_to(paths.root).as_posix() for f in files])
    with build_lock(paths.root, "report"):
        write_params(config, paths.params("report"), sections=["report"], pdf=pdf, provenance=record.to_dict())
    return result


def report_outdated(paths: BuildPaths, config: StudyConfig, *, pdf: bool = True) -> tuple[str, ...]:
    """Why the report must be rendered again (empty: report.html, and report.pdf if asked, are current)."""
    reasons = list(outdated(paths, "report", config))
    record = read_provenance(paths, "report")
    if pdf and record is not None and "report/report.pdf" not in record.outputs:
        reasons.append("no PDF was rendered")
    return tuple(reasons)


@dataclass(frozen=True)
class UpToDate:
    """A step the chain did not re-run: its results follow from the current inputs, settings and code."""

    step: str
    finished_at: str

    def render(self) -> str:
        return (f"{self.step}: up to date (computed {self.finished_at} from the same inputs, settings and "
                f"code); reused.")


def run_step(paths: BuildPaths, config: StudyConfig, name: str, *, refresh: bool = False, force: bool = False,
             on_step: Announce = None, on_result: Done = None) -> Any:
    """Run one step alone; ``refresh=True`` first re-runs its stale upstream steps (else they stop it)."""
    if refresh:
        refresh_stale(paths, config, name, on_step=on_step, on_result=on_result)
    return STEPS[name](paths, config, force=force)


def refresh_stale(paths: BuildPaths, config: StudyConfig, step: str | None, *, on_step: Announce = None,
                  on_result: Done = None) -> list[str]:
    """Re-run, in chain order, the steps upstream of ``step`` (every step for the report: ``None``) whose
    saved results no longer follow from their inputs; the names of the steps run."""
    candidates = None if step is None else upstream(step)
    ran: list[str] = []
    while stale := stale_steps(paths, candidates):
        name = stale[0].step
        if name in ran or name not in STEPS:
            raise PipelineError(f"`equilibres {name}` cannot bring {paths.root / name} up to date: "
                                + "; ".join(stale[0].reasons))
        if on_step is not None:
            on_step(name)
        result = STEPS[name](paths, config)
        if on_result is not None:
            on_result(name, result)
        ran.append(name)
    return ran


@dataclass
class ChainResult:
    """What `equilibres run` did: the validation report and each step's result, in order."""

    validation: ValidationReport | ValidationReused
    results: dict[str, Any] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    reasons: dict[str, tuple[str, ...]] = field(default_factory=dict)


def run_chain(paths: BuildPaths, config: StudyConfig, *, force: bool = False, sweep: bool = True,
              sensitivity: bool = True, report_too: bool = True, pdf: bool = True, on_step: Announce = None,
              on_result: Done = None) -> ChainResult:
    """Validate, then bring every step up to date, in the order of :data:`pipeline.paths.STEPS` (the
    sweep, the sensitivity analyses and the report unless turned off).

    A step is re-run when :func:`pipeline.provenance.outdated` gives a reason (or ``force``), else its
    saved results are reused (:class:`UpToDate`); ``ChainResult.ran`` / ``reused`` / ``reasons`` say
    which and why. ``on_step(name)`` is called before a step and ``on_result(name, result)`` after it
    (the command line prints them). Raises :class:`ExtractInvalid` if the extract breaks the input
    contract.
    """
    def announce(name: str) -> None:
        if on_step is not None:
            on_step(name)

    def done(name: str, result: Any) -> None:
        if on_result is not None:
            on_result(name, result)

    announce("validate")
    # Plausibility notes are values cleaning drops or flags with an audited rule: in a run, the audit
    # trail (and the report's cleaning table) counts them, so the chain checks only what refuses a run.
    checked = validate(paths, config, notes=False) if force else validate_once(paths, config)
    if not checked.ok:
        raise ExtractInvalid(f"{checked.render()}\nThe extract breaks the input contract: nothing was cleaned. "
                             f"Fix the extract, then re-run.")
    done("validate", checked)
    chain = ChainResult(validation=checked)
    for name in (s for s in CHAIN_ORDER if s in STEPS):
        if (name == "sweep" and not sweep) or (name == "sensitivity" and not sensitivity):
            continue
        announce(name)
        reasons = ("forced",) if force else () if name == "clean" else outdated(paths, name, config)
        record = read_provenance(paths, name)
        if name == "clean" or force or reasons or record is None:
            result = STEPS[name](paths, config, force=force)
            fresh = not (name == "clean" and result.up_to_date)
        else:
            result, fresh = UpToDate(name, record.finished_at), False
        (chain.ran if fresh else chain.reused).append(name)
        if fresh and reasons:
            chain.reasons[name] = reasons
        chain.results[name] = result
        done(name, result)
    if report_too:
        announce("report")
        reasons = report_outdated(paths, config, pdf=pdf)
        record = read_provenance(paths, "report")
        if force or reasons or record is None:
            chain.results["report"] = report(paths, config, pdf=pdf)
            chain.ran.append("report")
            if reasons:
                chain.reasons["report"] = reasons
        else:
            chain.results["report"] = UpToDate("report", record.finished_at)
            chain.reused.append("report")
        done("report", chain.results["report"])
    return chain
