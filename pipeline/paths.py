"""Where everything lives: the extract a run reads and every output it writes, declared once.

:class:`BuildPaths` is the one place an output's location is written down. Each step reads and
writes through it; the report reads the same declarations (:data:`OUTPUTS`) to find its inputs and
to name the command that produces a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Output:
    """One result file: its key, its path under the build directory, the step that writes it."""

    key: str
    path: str
    step: str  # clean | match | indicators | surveys | sweep | sensitivity
    kind: str  # csv | json | parquet | png

    @property
    def command(self) -> str:
        return f"equilibres {self.step}"


# Steps in the order of the run chain (a missing input names the earliest command to run).
STEPS = ("clean", "match", "indicators", "surveys", "sweep", "sensitivity", "report")

OUTPUTS: tuple[Output, ...] = (
    Output("persons", "clean/persons.parquet", "clean", "parquet"),
    Output("panel", "clean/panel.parquet", "clean", "parquet"),
    Output("stays", "clean/stays.parquet", "clean", "parquet"),
    Output("eol_daily", "clean/eol_daily.parquet", "clean", "parquet"),
    Output("cohort", "clean/cohort.parquet", "clean", "parquet"),
    Output("manifest", "clean/manifest.json", "clean", "json"),
    Output("attrition", "audit/attrition.csv", "clean", "csv"),
    Output("matching_params", "matching/params.json", "match", "json"),
    Output("pairs", "matching/pairs.parquet", "match", "parquet"),
    Output("matched", "matching/matched.parquet", "match", "parquet"),
    Output("balance", "matching/balance.csv", "match", "csv"),
    Output("attrition_matching", "matching/attrition_matching.csv", "match", "csv"),
    Output("unmatched_profiles", "matching/unmatched_profiles.csv", "match", "csv"),
    Output("indicator_unmatched", "matching/indicator_unmatched.json", "match", "json"),
    Output("indicators", "indicators/indicators.json", "indicators", "json"),
    Output("indicators_csv", "indicators/indicators.csv", "indicators", "csv"),
    Output("indicators_params", "indicators/params.json", "indicators", "json"),
    Output("spending_by_category", "indicators/spending_by_category.csv", "indicators", "csv"),
    Output("eol", "indicators/eol.csv", "indicators", "csv"),
    Output("eol_balance", "indicators/eol_balance.csv", "indicators", "csv"),
    Output("hospitalisation", "indicators/hospitalisation.csv", "indicators", "csv"),
    Output("followup", "indicators/followup.csv", "indicators", "csv"),
    Output("caseload", "indicators/caseload.csv", "indicators", "csv"),
    Output("economics_scenarios", "indicators/economics_scenarios.csv", "indicators", "csv"),
    Output("did", "indicators/did.csv", "indicators", "csv"),
    Output("regression_crosscheck", "indicators/regression_crosscheck.csv", "indicators", "csv"),
    Output("survey_indicators", "surveys/indicators.json", "surveys", "json"),
    Output("survey_items", "surveys/items.csv", "surveys", "csv"),
    Output("likert", "surveys/likert.csv", "surveys", "csv"),
    Output("before_after", "surveys/before_after.csv", "surveys", "csv"),
    Output("response_rates", "surveys/response_rates.csv", "surveys", "csv"),
    Output("surveys_params", "surveys/params.json", "surveys", "json"),
    Output("sweep", "sweep/sweep.csv", "sweep", "csv"),
    Output("sweep_params", "sweep/params.json", "sweep", "json"),
    Output("sensitivity_summary", "sensitivity/summary.json", "sensitivity", "json"),
    Output("negative_controls", "sensitivity/negative_controls.csv", "sensitivity", "csv"),
    Output("event_study", "sensitivity/event_study.csv", "sensitivity", "csv"),
    Output("cumulative_incidence", "sensitivity/cumulative_incidence.csv", "sensitivity", "csv"),
    Output("generalisability", "sensitivity/generalisability.csv", "sensitivity", "csv"),
    Output("sensitivity_headlines", "sensitivity/headlines.csv", "sensitivity", "csv"),
    Output("two_part", "sensitivity/two_part.csv", "sensitivity", "csv"),
    Output("sensitivity_params", "sensitivity/params.json", "sensitivity", "json"),
)
OUTPUT = {o.key: o for o in OUTPUTS}


def step_outputs(step: str, kind: str | None = None) -> tuple[str, ...]:
    """Keys of the outputs ``step`` writes (of one ``kind`` when given), in declaration order."""
    return tuple(o.key for o in OUTPUTS if o.step == step and (kind is None or o.kind == kind))


@dataclass(frozen=True)
class BuildPaths:
    """The build directory of a run (``root``) and, when the step reads it, the extract (``data``)."""

    root: Path
    data: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        if self.data is not None:
            object.__setattr__(self, "data", Path(self.data))

    def output(self, key: str) -> Path:
        """The path of a declared output (:data:`OUTPUTS`), e.g. ``paths.output("balance")``."""
        return self.root / OUTPUT[key].path

    def params(self, step: str) -> Path:
        """Where a step saves the parameters it used (``<step dir>/params.json``)."""
        return self.root / STEP_DIRS[step] / "params.json"

    @property
    def clean(self) -> Path:
        return self.root / "clean"

    @property
    def persons(self) -> Path:
        return self.clean / "persons.parquet"

    @property
    def panel(self) -> Path:
        return self.clean / "panel.parquet"

    @property
    def stays(self) -> Path:
        return self.clean / "stays.parquet"

    @property
    def eol_daily(self) -> Path:
        return self.clean / "eol_daily.parquet"

    @property
    def cohort(self) -> Path:
        return self.clean / "cohort.parquet"

    @property
    def clean_manifest(self) -> Path:
        return self.clean / "manifest.json"

    @property
    def audit(self) -> Path:
        return self.root / "audit"

    @property
    def attrition(self) -> Path:
        return self.audit / "attrition.csv"

    @property
    def matching(self) -> Path:
        return self.root / "matching"

    @property
    def sweep(self) -> Path:
        return self.root / "sweep"

    @property
    def sweep_cache(self) -> Path:
        """The sweep's per-specification cache (study/sweep_cache.py): disposable, hence under tmp/."""
        return self.tmp / "sweep_cache"

    @property
    def indicators(self) -> Path:
        return self.root / "indicators"

    @property
    def surveys(self) -> Path:
        return self.root / "surveys"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"


STEP_DIRS = {"clean": "clean", "match": "matching", "indicators": "indicators", "surveys": "surveys",
             "sweep": "sweep", "sensitivity": "sensitivity", "report": "report"}
