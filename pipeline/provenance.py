"""What every step was computed from, and whether a build still forms one consistent chain.

Each step saves, in its ``<step>/params.json`` (key ``provenance``, written by
``StepWriter.params``), a :class:`StepProvenance`: the hash of the settings it used (:data:`SETTINGS`,
one hash per section or key so a change can be named), the hash of its code (:data:`CODE`), the
content hash of every input it read (the outputs of earlier steps, :data:`READS`; the extract files
for cleaning and the surveys) and of every output it wrote, and when it finished.

A consumer's input hash is the producer's *recorded* output hash whenever the file still has the
size and modification time the producer recorded (no re-reading of large parquet files); otherwise
the file is hashed again (:func:`pipeline.io.file_hash`). A step is

* **inconsistent** (:func:`inconsistencies`) when an output it recorded was edited or removed, or
  when an input it read has since been rewritten by its producer: its results mix two runs. Every
  step run alone checks its upstream steps (:func:`check_upstream`, called by the StepWriter), and
  the report checks the whole build (:func:`check_chain`): both refuse to go on.
* **outdated** (:func:`outdated`) when, in addition, its settings or code differ from the live
  ones: `equilibres run` re-runs exactly the outdated steps, as make does.

A build where no step recorded its provenance (written before provenance existed, or assembled by
hand as the report tests do) is not checked.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import StudyConfig
from pipeline.io import PipelineError, file_hash
from pipeline.paths import OUTPUT, OUTPUTS, STEP_DIRS, STEPS, BuildPaths

PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: Outputs that record a run rather than hold a result (timestamps, timings): never hashed as inputs.
RUN_RECORDS = frozenset({"manifest"} | {o.key for o in OUTPUTS if o.path.endswith("params.json")})

#: The outputs of earlier steps each step reads (cleaning and the surveys read the extract).
READS: dict[str, tuple[str, ...]] = {
    "clean": (),
    "match": ("cohort",),
    "indicators": ("persons", "panel", "stays", "eol_daily", "matched", "indicator_unmatched"),
    "surveys": (),
    # The sweep's main specification is the saved matching's ("matched": a re-match makes it stale).
    "sweep": ("cohort", "persons", "panel", "stays", "eol_daily", "matched"),
    "sensitivity": ("persons", "panel", "stays", "eol_daily", "cohort", "matched"),
}

#: The settings each step's results depend on: a whole section, or ``section.key``.
SETTINGS: dict[str, tuple[str, ...]] = {
    "clean": ("study", "extract", "cleaning", "cohort"),
    "match": ("matching", "cohort", "indicators.ci_level", "report.min_cell_count", "published"),
    "indicators": ("indicators", "economics", "study", "cleaning", "report.min_cell_count", "published"),
    "surveys": ("surveys", "published"),
    "sweep": ("sweep", "matching", "cohort", "indicators", "study", "cleaning", "report.min_cell_count",
              "published"),
    "sensitivity": ("sensitivity", "indicators", "economics", "study", "cleaning", "matching", "cohort",
                    "report.min_cell_count", "published"),
    "report": ("report", "study", "published"),
    "validate": ("study", "extract", "cleaning", "cohort"),
}

#: The source files of each step (globs under the project root): a change makes the step outdated.
CODE: dict[str, tuple[str, ...]] = {
    "clean": ("pipeline/stages/*.py", "pipeline/engine.py", "pipeline/readers.py", "pipeline/clean_stages.py",
              "pipeline/tables.py", "pipeline/runner.py"),
    "match": ("matching/*.py",),
    "indicators": ("indicators/*.py",),
    "surveys": ("surveys/*.py", "pipeline/survey_codebook.py"),
    "sweep": ("study/sweep*.py", "matching/*.py", "indicators/*.py"),
    "sensitivity": ("indicators/sensitivity/*.py",),
    "report": ("reports/**/*.py", "reports/texts/*", "reports/templates/*", "reports/static/*"),
    # The input contract and the readers it checks the extract with (all of the ground: conservative).
    "validate": ("pipeline/*.py", "pipeline/config/*.toml"),
}

#: Input keys that are not outputs of a step: ``extract:<path under --data>`` or ``file:<path>``.
EXTRACT, FILE = "extract:", "file:"


# ------------------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class OutputHash:
    """The content hash of one written file, with the size and mtime that let a reader trust it."""

    sha256: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> OutputHash:
        st = path.stat()
        return cls(file_hash(path)["sha256"], st.st_size, st.st_mtime_ns)

    def still_describes(self, path: Path) -> bool | None:
        """True if ``path`` still holds this content, False if not, None if the file is gone."""
        if not path.exists():
            return None
        st = path.stat()
        if st.st_size == self.size and st.st_mtime_ns == self.mtime_ns:
            return True
        return st.st_size == self.size and file_hash(path)["sha256"] == self.sha256


@dataclass(frozen=True)
class StepProvenance:
    """What one step was computed from (see the module doc); ``inputs`` maps an input to its hash."""

    step: str
    settings_hash: str
    settings: Mapping[str, str]  # selector -> hash of its value, to name what changed
    code: str
    inputs: Mapping[str, str]
    outputs: Mapping[str, OutputHash]
    finished_at: str

    @property
    def command(self) -> str:
        return f"equilibres {self.step}"

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "settings_hash": self.settings_hash, "settings": dict(self.settings),
                "code": self.code, "inputs": dict(self.inputs),
                "outputs": {k: vars(v) for k, v in self.outputs.items()}, "finished_at": self.finished_at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepProvenance:
        return cls(step=data["step"], settings_hash=data["settings_hash"], settings=dict(data.get("settings") or {}),
                   code=data.get("code", ""), inputs=dict(data.get("inputs") or {}),
                   outputs={k: OutputHash(**v) for k, v in (data.get("outputs") or {}).items()},
                   finished_at=data.get("finished_at", ""))


def settings_hashes(config: StudyConfig, step: str) -> dict[str, str]:
    """The hash of every setting :data:`SETTINGS` lists for ``step``, by selector."""
    data = config.to_dict()
    out = {}
    for selector in SETTINGS.get(step, ()):
        section, _, key = selector.partition(".")
        value = data.get(section)
        if key:
            value = (value or {}).get(key)
        out[selector] = _digest(value)
    return out


def settings_hash(config: StudyConfig, step: str) -> str:
    return _digest(settings_hashes(config, step))


@functools.cache
def code_hash(step: str) -> str:
    """A hash of the source files of ``step`` (:data:`CODE`)."""
    h = hashlib.sha256()
    for pattern in CODE.get(step, ()):
        for f in sorted(PROJECT_ROOT.glob(pattern)):
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(f.relative_to(PROJECT_ROOT).as_posix().encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def output_path(paths: BuildPaths, key: str) -> Path:
    """A declared output by key, or a file named by its path under the build (the report's files)."""
    return paths.output(key) if key in OUTPUT else paths.root / key


def make_record(paths: BuildPaths, config: StudyConfig, step: str, outputs: Iterable[str],
                extra_inputs: Mapping[str, str] | None = None) -> StepProvenance:
    """The provenance of ``step`` as it finishes: its inputs as they are now, its ``outputs`` hashed."""
    inputs = {key: h for key in reads(paths, step) if (h := current_hash(paths, key)) is not None}
    inputs.update(extra_inputs or {})
    hashed = {key: OutputHash.of(output_path(paths, key)) for key in outputs
              if key not in RUN_RECORDS and output_path(paths, key).exists()}
    return StepProvenance(step=step, settings_hash=settings_hash(config, step),
                          settings=settings_hashes(config, step), code=code_hash(step), inputs=inputs,
                          outputs=hashed, finished_at=dt.datetime.now(dt.UTC).isoformat(sep=" "))


def reads(paths: BuildPaths, step: str) -> tuple[str, ...]:
    """The outputs ``step`` reads; the report reads every result present in the build."""
    if step == "report":
        return tuple(o.key for o in OUTPUTS if o.key not in RUN_RECORDS and paths.output(o.key).exists())
    return READS.get(step, ())


def read_provenance(paths: BuildPaths, step: str) -> StepProvenance | None:
    """The provenance ``step`` saved in its params.json; None if it saved none (or never ran)."""
    path = paths.params(step)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8")).get("provenance")
    except (OSError, ValueError, AttributeError):
        return None
    return StepProvenance.from_dict(data) if isinstance(data, dict) else None


def current_hash(paths: BuildPaths, key: str) -> str | None:
    """The content hash of output ``key`` now (its producer's record when the file is untouched)."""
    path = paths.output(key)
    if not path.exists():
        return None
    record = read_provenance(paths, OUTPUT[key].step)
    saved = None if record is None else record.outputs.get(key)
    if saved is not None:
        st = path.stat()
        if st.st_size == saved.size and st.st_mtime_ns == saved.mtime_ns:
            return saved.sha256
    return file_hash(path)["sha256"]


# ------------------------------------------------------------------------------------------ checks
@dataclass(frozen=True)
class Staleness:
    """Why the results of one step cannot be used as they are, and the command that redoes them."""

    step: str
    reasons: tuple[str, ...]
    finished_at: str | None = None

    @property
    def command(self) -> str:
        return f"equilibres {self.step}"


def _present_steps(paths: BuildPaths) -> list[str]:
    """Steps (in chain order) that have at least one output in the build."""
    have = {o.step for o in OUTPUTS if o.key not in RUN_RECORDS and paths.output(o.key).exists()}
    return [s for s in STEPS if s in have]


def recorded_anywhere(paths: BuildPaths) -> bool:
    return any(read_provenance(paths, s) is not None for s in STEP_DIRS)


def inconsistencies(paths: BuildPaths, step: str) -> tuple[str, ...]:
    """Why the saved results of ``step`` no longer follow from what is upstream now (empty: they do)."""
    record = read_provenance(paths, step)
    if record is None:
        return (f"its outputs in {paths.root / STEP_DIRS[step]} carry no provenance record (written by an older "
                f"version, or by hand)",)
    reasons = []
    for key, saved in record.outputs.items():
        state = saved.still_describes(output_path(paths, key))
        where = OUTPUT[key].path if key in OUTPUT else key
        if state is None:
            reasons.append(f"{where} was removed after `{record.command}` wrote it")
        elif not state:
            reasons.append(f"{where} was modified after `{record.command}` wrote it ({record.finished_at})")
    for key, used in record.inputs.items():
        if key.startswith((EXTRACT, FILE)) or key not in OUTPUT:
            continue
        now = current_hash(paths, key)
        producer = read_provenance(paths, OUTPUT[key].step)
        by = f"`equilibres {OUTPUT[key].step}`" + (f" at {producer.finished_at}" if producer else "")
        if now is None:
            reasons.append(f"its input {OUTPUT[key].path} is missing")
        elif now != used:
            reasons.append(f"it was computed from {OUTPUT[key].path} {used[:12]}, which {by} has since "
                           f"rewritten (now {now[:12]})")
    return tuple(reasons)


def outdated(paths: BuildPaths, step: str, config: StudyConfig) -> tuple[str, ...]:
    """Why ``step`` must be re-run to follow the live ``config`` and code (empty: it is up to date)."""
    record = read_provenance(paths, step)
    if record is None:
        return ("it has no provenance record",)
    reasons = list(inconsistencies(paths, step))
    live = settings_hashes(config, step)
    changed = [s for s in sorted(set(live) | set(record.settings)) if live.get(s) != record.settings.get(s)]
    if changed:
        reasons.append("settings changed: " + ", ".join(f"[{s}]" for s in changed))
    if record.code != code_hash(step):
        reasons.append("its code changed")
    new = [OUTPUT[k].path for k in reads(paths, step) if k not in record.inputs and paths.output(k).exists()]
    if new:
        reasons.append(f"new input(s) since it ran: {', '.join(new)}")
    for key, used in record.inputs.items():
        path = _external_path(paths, key)
        if path is not None and (not path.exists() or file_hash(path)["sha256"] != used):
            reasons.append(f"its input file {path} changed")
    return tuple(reasons)


def _external_path(paths: BuildPaths, key: str) -> Path | None:
    if key.startswith(FILE):
        return Path(key[len(FILE):])
    if key.startswith(EXTRACT) and paths.data is not None:
        return paths.data / key[len(EXTRACT):]
    return None


def upstream(step: str) -> list[str]:
    """The steps whose outputs ``step`` reads, directly or not, in chain order."""
    found: set[str] = set()
    todo = [OUTPUT[k].step for k in READS.get(step, ())]
    while todo:
        s = todo.pop()
        if s not in found:
            found.add(s)
            todo += [OUTPUT[k].step for k in READS.get(s, ())]
    return [s for s in STEPS if s in found]


def stale_steps(paths: BuildPaths, steps: Sequence[str] | None = None) -> list[Staleness]:
    """The inconsistent steps among ``steps`` (default: every step present in the build)."""
    if not recorded_anywhere(paths):
        return []
    present = _present_steps(paths)
    out = []
    for s in steps if steps is not None else present:
        # A step without a record is judged only if something upstream of it has one (it may have
        # changed since): results assembled by hand at the head of a build are taken as they are.
        if read_provenance(paths, s) is None and not any(read_provenance(paths, u) for u in upstream(s)):
            continue
        if s in present and (reasons := inconsistencies(paths, s)):
            record = read_provenance(paths, s)
            out.append(Staleness(s, reasons, None if record is None else record.finished_at))
    return out


def stale_error(paths: BuildPaths, stale: Sequence[Staleness], what: str, refresh: str) -> PipelineError:
    """The error that stops ``what`` because of ``stale`` upstream results: names each, why, and the fix."""
    data = f" --data {paths.data}" if paths.data is not None else " --data <extract>"
    lines = [f"{what} stopped: {len(stale)} upstream result(s) in {paths.root} do not follow from the "
             f"results they were computed from, and using them would mix two runs:"]
    for s in stale:
        lines.append(f"  - {STEP_DIRS[s.step]}/ (`{s.command}`): " + "; ".join(s.reasons))
    first = stale[0]
    fix = f"`{first.command}{data if first.step in ('clean', 'surveys') else ''} --out {paths.root}`"
    lines.append(f"Bring {'them' if len(stale) > 1 else 'it'} up to date with {fix}"
                 + (" and the commands after it" if len(stale) > 1 else "")
                 + f", or {refresh}, or `equilibres run{data} --out {paths.root}`.")
    return PipelineError("\n".join(lines))


def check_upstream(paths: BuildPaths, step: str) -> None:
    """Raise a PipelineError if an upstream result ``step`` would read is inconsistent."""
    stale = stale_steps(paths, upstream(step))
    if stale:
        raise stale_error(paths, stale, f"`equilibres {step}`", f"add --refresh to `equilibres {step}`")


def build_chain(paths: BuildPaths) -> list[StepProvenance]:
    """The recorded provenance of every step present in the build, in chain order (report excluded)."""
    return [r for s in _present_steps(paths) if (r := read_provenance(paths, s)) is not None]


def check_chain(paths: BuildPaths) -> list[StepProvenance]:
    """The provenance chain of the build; a PipelineError if its steps do not form one consistent chain."""
    stale = stale_steps(paths)
    if stale:
        raise stale_error(paths, stale, "The report", "add --refresh to `equilibres report`")
    return build_chain(paths)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]
