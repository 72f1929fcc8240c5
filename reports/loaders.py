"""Read the result files of the other steps for the report (never the person-level tables).

Each input is declared once (:data:`INPUTS`): where it lives in the build directory, which command
writes it, and whether the report can be rendered without it. A missing *required* input is a
:class:`~pipeline.io.PipelineError` naming the file and the command to run; a missing optional input
makes its section show a "not run" notice.

Readers are defensive: the column sets of the CSVs are those of docs/CONTRACTS.md when documented,
and otherwise whatever the producing step writes; the report looks columns up by name and renders
what it does not know generically. Columns that hold person, unit or team identifiers are dropped on
read, so no identifier can reach a template even if a producer writes one by mistake.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.io import PipelineError

# Columns that identify a person, a matched unit or a team: never rendered.
IDENTIFIER_COLUMNS = frozenset({
    "person_id", "unit_id", "treated_id", "control_id", "BEN_NIR_PSA", "BEN_IDT_ANO", "NIR_ANO_17",
    "EQL_EQP_ID", "team_id", "subclass", "respondent_id", "RSA_NUM", "ETA_NUM",
})


@dataclass(frozen=True)
class InputSpec:
    key: str
    path: str
    command: str
    required: bool
    kind: str  # csv | json | png


INPUTS: tuple[InputSpec, ...] = (
    InputSpec("attrition", "audit/attrition.csv", "equilibres clean", True, "csv"),
    InputSpec("manifest", "clean/manifest.json", "equilibres clean", True, "json"),
    InputSpec("matching_params", "matching/params.json", "equilibres match", True, "json"),
    InputSpec("balance", "matching/balance.csv", "equilibres match", True, "csv"),
    InputSpec("attrition_matching", "matching/attrition_matching.csv", "equilibres match", False, "csv"),
    InputSpec("unmatched_profiles", "matching/unmatched_profiles.csv", "equilibres match", False, "csv"),
    InputSpec("love_plot", "matching/love_plot.png", "equilibres match", False, "png"),
    InputSpec("indicator_unmatched", "matching/indicator_unmatched.json", "equilibres match", False, "json"),
    InputSpec("indicators", "indicators/indicators.json", "equilibres indicators", True, "json"),
    InputSpec("indicators_params", "indicators/params.json", "equilibres indicators", False, "json"),
    InputSpec("spending_by_category", "indicators/spending_by_category.csv", "equilibres indicators", False, "csv"),
    InputSpec("eol", "indicators/eol.csv", "equilibres indicators", False, "csv"),
    InputSpec("hospitalisation", "indicators/hospitalisation.csv", "equilibres indicators", False, "csv"),
    InputSpec("followup", "indicators/followup.csv", "equilibres indicators", False, "csv"),
    InputSpec("economics_scenarios", "indicators/economics_scenarios.csv", "equilibres indicators", False, "csv"),
    InputSpec("did", "indicators/did.csv", "equilibres indicators", False, "csv"),
    InputSpec("regression_crosscheck", "indicators/regression_crosscheck.csv", "equilibres indicators", False, "csv"),
    InputSpec("survey_indicators", "surveys/indicators.json", "equilibres surveys", False, "json"),
    InputSpec("survey_items", "surveys/items.csv", "equilibres surveys", False, "csv"),
    InputSpec("likert", "surveys/likert.csv", "equilibres surveys", False, "csv"),
    InputSpec("before_after", "surveys/before_after.csv", "equilibres surveys", False, "csv"),
    InputSpec("response_rates", "surveys/response_rates.csv", "equilibres surveys", False, "csv"),
    InputSpec("surveys_params", "surveys/params.json", "equilibres surveys", False, "json"),
    InputSpec("sweep", "sweep/sweep.csv", "equilibres sweep", False, "csv"),
    InputSpec("spec_curve", "sweep/specification_curve.png", "equilibres sweep", False, "png"),
    InputSpec("sweep_params", "sweep/params.json", "equilibres sweep", False, "json"),
)
SPECS = {s.key: s for s in INPUTS}


@dataclass
class Missing:
    """An absent optional input: shown in its section as a "not run" notice."""

    key: str
    path: str
    command: str


@dataclass
class BuildResults:
    """Every result file the report uses, read once; absent optional ones are None."""

    root: Path
    data: dict[str, Any] = field(default_factory=dict)
    missing: dict[str, Missing] = field(default_factory=dict)
    survey_pngs: dict[str, bytes] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.data.get(key)

    def has(self, key: str) -> bool:
        value = self.data.get(key)
        if value is None:
            return False
        if isinstance(value, pd.DataFrame):
            return not value.empty
        return True

    def indicator_records(self) -> list[dict[str, Any]]:
        """Claims, matching and survey indicator records merged (first occurrence of an id wins)."""
        seen: dict[str, dict[str, Any]] = {}
        for key in ("indicators", "indicator_unmatched", "survey_indicators"):
            for rec in _as_records(self.data.get(key)):
                if isinstance(rec, dict) and rec.get("id") and rec["id"] not in seen:
                    seen[rec["id"]] = rec
        return list(seen.values())

    def files(self) -> Iterator[tuple[str, Path]]:
        for spec in INPUTS:
            path = self.root / spec.path
            if path.exists():
                yield spec.path, path


def _as_records(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        # Either one record, or {"indicators": [...]}.
        if "id" in value:
            return [value]
        for k in ("indicators", "records"):
            if isinstance(value.get(k), list):
                return value[k]
    return []


def read_csv(path: Path) -> pd.DataFrame:
    """A result CSV without its identifier columns (empty frame for an empty file)."""
    try:
        frame = pd.read_csv(path, keep_default_na=True)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise PipelineError(
            f"Cannot read {path}: {err}. The file is not a valid CSV; re-run the step that writes it."
        ) from None
    drop = [c for c in frame.columns if c in IDENTIFIER_COLUMNS]
    return frame.drop(columns=drop)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PipelineError(
            f"Cannot read {path}: invalid JSON ({err.msg} at line {err.lineno}). Re-run the step that "
            f"writes it."
        ) from None


def load_build(build: Path) -> BuildResults:
    """Read every declared input; raise for the required ones that are absent (all listed at once)."""
    build = Path(build)
    results = BuildResults(root=build)
    absent_required: list[InputSpec] = []
    for spec in INPUTS:
        path = build / spec.path
        if not path.exists():
            if spec.required:
                absent_required.append(spec)
            else:
                results.missing[spec.key] = Missing(spec.key, spec.path, spec.command)
            results.data[spec.key] = None
            continue
        if spec.kind == "csv":
            results.data[spec.key] = read_csv(path)
        elif spec.kind == "json":
            results.data[spec.key] = read_json(path)
        else:
            results.data[spec.key] = path.read_bytes()
    if absent_required:
        commands = sorted({s.command for s in absent_required}, key=_command_order)
        lines = [f"  - {build / s.path} (written by `{s.command}`)" for s in absent_required]
        raise PipelineError(
            f"The report needs {len(absent_required)} result file(s) that are missing from {build}:\n"
            + "\n".join(lines)
            + f"\nRun `{commands[0]}` first (or `equilibres run --data <extract> --out {build}` for "
            f"the whole chain), then `equilibres report`."
        )
    surveys_dir = build / "surveys"
    if surveys_dir.is_dir():
        for png in sorted([*surveys_dir.glob("*.png"), *surveys_dir.glob("figures/*.png")]):
            results.survey_pngs[png.stem] = png.read_bytes()
    return results


_ORDER = ["equilibres clean", "equilibres match", "equilibres indicators", "equilibres surveys",
          "equilibres sweep"]


def _command_order(cmd: str) -> int:
    return _ORDER.index(cmd) if cmd in _ORDER else len(_ORDER)
