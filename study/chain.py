"""The run chain of `equilibres run`: validate → clean → match → indicators → surveys → sweep → report.

Every step has the same entry, ``run(paths, config, *, force=False)`` (:data:`STEPS`); the chain calls
them in order on one :class:`pipeline.paths.BuildPaths` and stops at the first error. An extract that
breaks the input contract stops it before cleaning (:class:`ExtractInvalid`, exit code 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from indicators import study as indicators_study
from matching import study as matching_study
from pipeline import runner as clean_runner
from pipeline.config import StudyConfig
from pipeline.contract import ValidationReport, validate_extract
from pipeline.io import PipelineError
from pipeline.paths import BuildPaths
from reports.build import ReportResult
from reports.build import run as render_report
from study import sweep as sweep_study
from surveys import study as surveys_study

#: The steps of the chain after validation, each ``run(paths, config, *, force=False) -> result``.
STEPS: dict[str, Callable[..., Any]] = {
    "clean": clean_runner.run,
    "match": matching_study.run,
    "indicators": indicators_study.run,
    "surveys": surveys_study.run,
    "sweep": sweep_study.run,
}


class ExtractInvalid(PipelineError):
    """The extract breaks the SNDS input contract: the chain stops before cleaning."""

    exit_code = 1


def validate(paths: BuildPaths, config: StudyConfig, *, max_examples: int = 3) -> ValidationReport:
    """Check the extract ``paths.data`` against the SNDS input contract (every violation collected)."""
    if paths.data is None:
        raise PipelineError("Validation reads an extract: give its directory to --data.")
    return validate_extract(paths.data, config, max_examples=max_examples)


def report(paths: BuildPaths, config: StudyConfig, *, pdf: bool = True) -> ReportResult:
    """Render the report from the saved results (HTML, and PDF unless ``pdf=False``)."""
    return render_report(paths, config, pdf=pdf)


@dataclass
class ChainResult:
    """What `equilibres run` did: the validation report and each step's result, in order."""

    validation: ValidationReport
    results: dict[str, Any] = field(default_factory=dict)


def run_chain(paths: BuildPaths, config: StudyConfig, *, force: bool = False, sweep: bool = True,
              report_too: bool = True, pdf: bool = True,
              on_step: Callable[[str], None] | None = None,
              on_result: Callable[[str, Any], None] | None = None) -> ChainResult:
    """Validate, then run every step (the sweep and the report unless turned off).

    ``on_step(name)`` is called before a step and ``on_result(name, result)`` after it (the command
    line prints them). Raises :class:`ExtractInvalid` if the extract breaks the input contract.
    """
    def announce(name: str) -> None:
        if on_step is not None:
            on_step(name)

    def done(name: str, result: Any) -> None:
        if on_result is not None:
            on_result(name, result)

    announce("validate")
    checked = validate(paths, config)
    if not checked.ok:
        raise ExtractInvalid(f"{checked.render()}\nThe extract breaks the input contract: nothing was cleaned. "
                             f"Fix the extract, then re-run.")
    done("validate", checked)
    chain = ChainResult(validation=checked)
    for name, step in STEPS.items():
        if name == "sweep" and not sweep:
            continue
        announce(name)
        chain.results[name] = step(paths, config, force=force)
        done(name, chain.results[name])
    if report_too:
        announce("report")
        chain.results["report"] = report(paths, config, pdf=pdf)
        done("report", chain.results["report"])
    return chain
