"""Result types two packages exchange, declared once: indicator records and saved step parameters.

A step builds :class:`IndicatorRecord` objects and writes them with :func:`write_records`; the
report (or another step) reads them back with :func:`read_records`, which checks every record
against this declaration. A step saves the settings it used, and the facts it recorded (:mod:`pipeline.facts`), with
``StepWriter.params`` (pipeline/writer.py); a reader gets them back, typed, from :func:`read_params`
(the report renders those, never the live configuration).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import StudyConfig, config_from_dict
from pipeline.facts import STEP_FACTS, CleanFacts, Facts, NoFacts
from pipeline.io import PipelineError, atomic_write_json
from pipeline.provenance import StepProvenance


def json_number(x: Any) -> Any:
    """A JSON-safe number: NaN and infinities become None; anything not a number is returned as is."""
    if x is None or isinstance(x, bool):
        return x
    if isinstance(x, numbers.Integral):
        return int(x)
    try:
        xf = float(x)
    except (TypeError, ValueError):
        return x
    return None if not math.isfinite(xf) else xf


@dataclass(frozen=True)
class IndicatorRecord:
    """One published indicator (docs/CONTRACTS.md §4): value, interval, what it measures and how.

    Claims indicators, the matching's unmatched share and the survey indicators all share this shape.
    ``suppressed``: the value is masked for confidentiality (small count of people); ``n_suppressed``:
    only ``n`` is. Survey records also carry ``survey``, ``question`` and the display strings.
    """

    id: str
    label_fr: str
    label_en: str
    unit: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int | None
    method: str
    population: str
    definition: str
    published: float | None = None
    ci_level: float | None = None
    method_fr: str | None = None
    population_fr: str | None = None
    definition_fr: str | None = None
    arm_values: Mapping[str, float | None] = field(default_factory=dict)
    arm_ci: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    replicates: int | None = None
    suppressed: bool = False
    n_suppressed: bool = False
    suppressed_arm_values: tuple[str, ...] = ()
    survey: str | None = None
    question: str | None = None
    display_fr: str | None = None
    display_en: str | None = None
    small_n_warning: bool | None = None

    def conf_int(self) -> tuple[float | None, float | None]:
        return self.ci_low, self.ci_high

    def text(self, name: str, lang: str) -> str:
        """``method``, ``population`` or ``definition`` in ``lang`` (English when no French exists)."""
        if lang == "fr" and getattr(self, f"{name}_fr"):
            return getattr(self, f"{name}_fr")
        return getattr(self, name)

    def label(self, lang: str) -> str:
        return self.label_fr if lang == "fr" else self.label_en

    def to_dict(self) -> dict[str, Any]:
        """The JSON record: every field, numbers JSON-safe."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "arm_values":
                v = {k: json_number(x) for k, x in v.items()}
            elif f.name == "arm_ci":
                v = {k: [json_number(lo), json_number(hi)] for k, (lo, hi) in v.items()}
            elif f.name == "suppressed_arm_values":
                v = list(v)
            else:
                v = json_number(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "record") -> IndicatorRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [k for k in required if k not in data]
        if unknown or missing:
            raise PipelineError(
                f"{where} (id {data.get('id')!r}) does not match the indicator record contract "
                f"(pipeline/results.py): missing {missing}, unknown {unknown}. Re-run the step that wrote it."
            )
        values = dict(data)
        values["arm_values"] = dict(values.get("arm_values") or {})
        values["arm_ci"] = {k: (v[0], v[1]) for k, v in (values.get("arm_ci") or {}).items()}
        values["suppressed_arm_values"] = tuple(values.get("suppressed_arm_values") or ())
        values["suppressed"] = bool(values.get("suppressed") or False)
        values["n_suppressed"] = bool(values.get("n_suppressed") or False)
        for key in ("value", "ci_low", "ci_high", "published", "ci_level"):
            v = values.get(key)
            if v is not None and not isinstance(v, (int, float)):
                raise PipelineError(f"{where} (id {data.get('id')!r}): field {key!r} must be a number or "
                                    f"null, got {v!r}. Re-run the step that wrote it.")
        return cls(**values)


def write_records(path: Path, records: Sequence[IndicatorRecord]) -> None:
    """Write indicator records as one JSON list (atomically); ids must be unique."""
    ids = [r.id for r in records]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"write_records: duplicate indicator ids {dup} for {path}")
    atomic_write_json(Path(path), [r.to_dict() for r in records])


def read_records(path: Path) -> list[IndicatorRecord]:
    """Read and check the indicator records of ``path`` (a JSON list)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PipelineError(f"Cannot read {path}: invalid JSON ({err.msg} at line {err.lineno}). "
                            f"Re-run the step that writes it.") from None
    if not isinstance(data, list):
        raise PipelineError(f"{path} must hold a JSON list of indicator records, found a {type(data).__name__}. "
                            f"Re-run the step that writes it.")
    return [IndicatorRecord.from_dict(r, where=f"{path} record {i}") for i, r in enumerate(data)]


# ------------------------------------------------------------------------------------ saved parameters
@dataclass(frozen=True)
class StepParams:
    """The parameters a step saved beside its outputs: its configuration sections (``config``, typed
    with the defaults filling any section it did not save), what it recorded about the run (``facts``,
    typed by :data:`pipeline.facts.STEP_FACTS`: sizes, input hashes, timings...) and its provenance."""

    step: str
    config: StudyConfig
    sections: tuple[str, ...]
    facts: Facts
    provenance: StepProvenance | None = None


def _read_json_object(path: Path, step: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PipelineError(f"Cannot read {path}: invalid JSON ({err.msg}). Re-run `equilibres {step}`.") from None
    if not isinstance(data, dict):
        raise PipelineError(f"{path} must hold a JSON object, found a {type(data).__name__}. "
                            f"Re-run `equilibres {step}`.")
    return data


def read_params(path: Path, step: str) -> StepParams:
    """Read ``<step>/params.json``: the config sections it holds are validated as settings, the rest
    against the step's fact class (a missing or unknown key is an error naming the file and the key)."""
    data = _read_json_object(path, step)
    section_names = set(StudyConfig.model_fields)
    sections = {k: v for k, v in data.items() if k in section_names and isinstance(v, dict)}
    config = config_from_dict(sections, str(path))
    saved = data.get("provenance")
    provenance = StepProvenance.from_dict(saved) if isinstance(saved, dict) else None
    rest = {k: v for k, v in data.items() if k not in sections and k != "provenance"}
    facts = STEP_FACTS.get(step, NoFacts).from_dict(rest, where=str(path))
    return StepParams(step=step, config=config, sections=tuple(sorted(sections)), facts=facts,
                      provenance=provenance)


def read_clean_manifest(path: Path) -> StepParams:
    """``clean/manifest.json`` as the cleaning's saved parameters: the settings it used (``parameters``,
    typed) and the manifest itself as :class:`~pipeline.facts.CleanFacts`."""
    facts = CleanFacts.from_dict(_read_json_object(path, "clean"), where=str(path))
    sections = {k: dict(v) for k, v in facts.parameters.items() if k in StudyConfig.model_fields}
    return StepParams(step="clean", config=config_from_dict(sections, f"{path} parameters"),
                      sections=tuple(sorted(sections)), facts=facts)
