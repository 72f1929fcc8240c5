"""Read the saved results of the other steps for the report (never the person-level tables).

Where each file lives and which command writes it is declared once, in :data:`pipeline.paths.OUTPUTS`;
this module says which of them the report reads and which it cannot do without. A missing *required*
input is a :class:`~pipeline.io.PipelineError` naming the file and the command to run; a missing
optional input makes its section show a "not run" notice.

Result tables are checked against their declaration (:mod:`pipeline.result_tables`), indicator
records against :class:`~pipeline.results.IndicatorRecord`, and step parameters are read typed
(:func:`~pipeline.results.read_params`, :func:`~pipeline.results.read_clean_manifest`: the facts each
step recorded are the typed classes of :mod:`pipeline.facts`), and so is the sensitivity summary
(:class:`~pipeline.facts.SensitivitySummary`). Columns that hold person, unit or team identifiers are
dropped on read, so no identifier can reach a template even if a producer writes one by mistake.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.contract_spec import IDENTIFIER_COLUMNS
from pipeline.facts import CleanFacts, SensitivitySummary, read_facts
from pipeline.io import PipelineError
from pipeline.paths import OUTPUT, STEPS, BuildPaths
from pipeline.result_tables import validate_result
from pipeline.results import IndicatorRecord, StepParams, read_clean_manifest, read_params, read_records

# Columns that identify a person, a matched unit or a team: never rendered (the extract's identifier
# columns, and those the steps derive from them).
RESULT_IDENTIFIER_COLUMNS = IDENTIFIER_COLUMNS | {
    "person_id", "unit_id", "treated_id", "control_id", "team_id", "subclass", "respondent_id", "RSA_NUM", "ETA_NUM",
}

# The outputs the report reads (keys of pipeline.paths.OUTPUTS); without these it cannot be written.
REQUIRED = ("attrition", "manifest", "matching_params", "balance", "indicators")
OPTIONAL = ("attrition_matching", "unmatched_profiles", "indicator_unmatched", "indicators_params",
            "spending_by_category", "eol", "hospitalisation", "followup", "economics_scenarios", "did",
            "regression_crosscheck", "survey_indicators", "survey_items", "likert", "before_after",
            "response_rates", "surveys_params", "sweep", "sweep_params")
# The sensitivity step's outputs (issue 14), read when present: the summary as its declared facts, the
# tables against their declaration in pipeline/result_tables.py.
SENSITIVITY = ("sensitivity_summary", "negative_controls", "event_study", "cumulative_incidence", "generalisability")
RECORDS = ("indicators", "indicator_unmatched", "survey_indicators")  # first occurrence of an id wins
PARAMS = {"matching_params": "match", "indicators_params": "indicators", "surveys_params": "surveys",
          "sweep_params": "sweep"}


@dataclass(frozen=True)
class Missing:
    """An absent optional input: shown in its section as a "not run" notice."""

    key: str
    path: str
    command: str


@dataclass
class BuildResults:
    """Every result the report uses, read once: tables, indicator records, saved step parameters."""

    root: Path
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    records: dict[str, IndicatorRecord] = field(default_factory=dict)
    params: dict[str, StepParams] = field(default_factory=dict)
    manifest: CleanFacts | None = None  # clean/manifest.json, typed
    missing: dict[str, Missing] = field(default_factory=dict)
    sensitivity: SensitivitySummary | None = None  # sensitivity/summary.json, typed, when present

    def table(self, key: str) -> pd.DataFrame | None:
        return self.tables.get(key)

    def has(self, key: str) -> bool:
        frame = self.tables.get(key)
        return frame is not None and not frame.empty

    def ran(self, key: str) -> bool:
        """The output ``key`` was written (by the step that produces it)."""
        return key not in self.missing

    def step_params(self, step: str) -> StepParams | None:
        return self.params.get(step)

    def files(self) -> Iterator[tuple[str, Path]]:
        for key in (*REQUIRED, *OPTIONAL, *SENSITIVITY):
            path = self.root / OUTPUT[key].path
            if path.exists():
                yield OUTPUT[key].path, path


def read_csv(path: Path, key: str) -> pd.DataFrame:
    """A result CSV without its identifier columns, checked against its declaration (empty frame for
    an empty file)."""
    try:
        frame = pd.read_csv(path, keep_default_na=True)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise PipelineError(
            f"Cannot read {path}: {err}. The file is not a valid CSV; re-run the step that writes it."
        ) from None
    frame = frame.drop(columns=[c for c in frame.columns if c in RESULT_IDENTIFIER_COLUMNS])
    return validate_result(key, frame)


def load_build(paths: BuildPaths) -> BuildResults:
    """Read every input; raise for the required ones that are absent (all listed at once)."""
    results = BuildResults(root=paths.root)
    absent = [key for key in REQUIRED if not paths.output(key).exists()]
    if absent:
        commands = sorted({OUTPUT[k].command for k in absent}, key=lambda c: STEPS.index(c.split()[-1]))
        lines = [f"  - {paths.output(k)} (written by `{OUTPUT[k].command}`)" for k in absent]
        raise PipelineError(
            f"The report needs {len(absent)} result file(s) that are missing from {paths.root}:\n"
            + "\n".join(lines)
            + f"\nRun `{commands[0]}` first (or `equilibres run --data <extract> --out {paths.root}` for "
            f"the whole chain), then `equilibres report`."
        )
    for key in (*REQUIRED, *OPTIONAL, *SENSITIVITY):
        out, path = OUTPUT[key], paths.output(key)
        if not path.exists():
            results.missing[key] = Missing(key, out.path, out.command)
        elif key in RECORDS:
            for rec in read_records(path):
                results.records.setdefault(rec.id, rec)
        elif key in PARAMS:
            results.params[PARAMS[key]] = read_params(path, PARAMS[key])
        elif key == "manifest":
            results.params["clean"] = read_clean_manifest(path)
            results.manifest = results.params["clean"].facts  # type: ignore[assignment]
        elif key == "sensitivity_summary":
            results.sensitivity = read_facts(SensitivitySummary, path)
        else:
            results.tables[key] = read_csv(path, key)
    return results
