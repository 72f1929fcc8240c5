"""The one writer of step outputs: every declared output (:data:`pipeline.paths.OUTPUTS`) of a step
is written through a :class:`StepWriter`, atomically, under the build lock, all or nothing.

    with StepWriter(paths, "match") as out:
        out.table("pairs", pairs, schema=PAIRS)     # parquet or CSV, as the output is declared
        out.records("indicator_unmatched", [record])
        out.params(config, ["matching", "cohort"], sizes=...)   # <step>/params.json

Entering takes the build lock and snapshots the step's directories (those of its declared outputs):
if the block fails or is interrupted, every file is put back as it was, so ``params.json`` never
describes other outputs. Outputs are found by key, never by a path written in step code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd
import pandera.pandas as pa

from pipeline.config import StudyConfig, write_params
from pipeline.io import (
    atomic_write_csv,
    atomic_write_json,
    atomic_write_parquet,
    atomic_write_text,
    build_lock,
    restore_on_failure,
)
from pipeline.paths import OUTPUT, OUTPUTS, STEP_DIRS, BuildPaths, step_outputs
from pipeline.provenance import check_upstream, make_record
from pipeline.result_tables import TABLES as RESULT_TABLES
from pipeline.result_tables import validate_result
from pipeline.results import IndicatorRecord, write_records
from pipeline.tables import validate_frame


def step_dirs(paths: BuildPaths, step: str) -> list[Path]:
    """The directories a step writes: its own (where params.json goes), then those of its declared
    outputs, in declaration order (the order names the rollback snapshot of a killed run)."""
    dirs = [paths.root / STEP_DIRS[step], *(paths.output(o.key).parent for o in OUTPUTS if o.step == step)]
    return list(dict.fromkeys(dirs))


class StepWriter:
    """Writes the outputs of one step (see the module doc); ``written`` maps each key to its path."""

    def __init__(self, paths: BuildPaths, step: str) -> None:
        self.paths = paths
        self.step = step
        self.written: dict[str, Path] = {}
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> StepWriter:
        # A step never consumes results that no longer follow from what is upstream of them.
        check_upstream(self.paths, self.step)
        stack = contextlib.ExitStack()
        stack.enter_context(build_lock(self.paths.root, self.step))
        stack.enter_context(restore_on_failure(self.paths.root, *step_dirs(self.paths, self.step)))
        self._stack = stack
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool | None:
        stack, self._stack = self._stack, None
        return stack.__exit__(exc_type, exc, tb) if stack is not None else None

    def path(self, key: str) -> Path:
        """Where output ``key`` of this step goes."""
        declared = OUTPUT[key]
        if declared.step != self.step:
            raise ValueError(f"output {key!r} is written by step {declared.step!r}, not {self.step!r}")
        return self.paths.output(key)

    def table(self, key: str, frame: pd.DataFrame, schema: pa.DataFrameSchema | None = None) -> Path:
        """Write a table as its declared kind (parquet or CSV), after checking it against ``schema``."""
        path = self.path(key)
        if schema is not None:
            validate_frame(schema, frame.copy(deep=False), path)
        kind = OUTPUT[key].kind
        if kind == "parquet":
            atomic_write_parquet(path, frame)
        elif kind == "csv":
            # Result tables the report reads are declared with their column kinds: checked on write.
            if key in RESULT_TABLES:
                validate_result(key, frame.copy(deep=False))
            atomic_write_csv(path, frame)
        else:
            raise ValueError(f"output {key!r} is a {kind} file, not a table")
        self.written[key] = path
        return path

    def records(self, key: str, records: Sequence[IndicatorRecord]) -> Path:
        """Write indicator records (a JSON list, checked by :func:`pipeline.results.write_records`)."""
        path = self.path(key)
        write_records(path, records)
        self.written[key] = path
        return path

    def text(self, key: str, text: str) -> Path:
        """Write an output already rendered as text (the audit trail's CSV)."""
        path = self.path(key)
        atomic_write_text(path, text)
        self.written[key] = path
        return path

    def json(self, key: str, data: Any) -> Path:
        """Write a JSON output that is not a list of indicator records (the cleaning manifest)."""
        path = self.path(key)
        atomic_write_json(path, data)
        self.written[key] = path
        return path

    def params(self, config: StudyConfig, sections: Sequence[str], *,
               extract_inputs: Mapping[str, str] | None = None, **facts: Any) -> Path:
        """Save the configuration sections the step used, what it recorded about the run, and its
        provenance (:mod:`pipeline.provenance`: hashes of its settings, code, inputs and of every output
        of the step now in place). ``extract_inputs``: the hashes of the files it read outside the build
        (``extract:<path under --data>`` or ``file:<path>``). Call it last, once every output is written."""
        path = self.paths.params(self.step)
        record = make_record(self.paths, config, self.step, [*step_outputs(self.step), *self.written],
                             extra_inputs=extract_inputs)
        write_params(config, path, sections=list(sections), **facts, provenance=record.to_dict())
        self.written["params"] = path
        return path
