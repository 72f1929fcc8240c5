"""The per-specification cache of `equilibres sweep`: a specification is computed again only when what
its row follows from has changed.

A row of ``sweep.csv`` is a function of three things, and its cache key hashes exactly those
(:func:`spec_key`):

* the *effective settings of that specification*: the study settings the sweep step depends on
  (:data:`pipeline.provenance.SETTINGS`, the ``[sweep]`` grid itself aside) with the specification's
  own method, caliper, ratio, age band, transform and replacement applied. A grid specification
  therefore keeps its key when another ``[matching]`` value that it overrides changes (the main
  caliper, say); it changes when a value it inherits changes (``caliper_scale``, ``exact``...);
* the content hashes of the *cleaned tables* it reads (cohort, persons, panel, stays, eol_daily), as
  the provenance records them (:func:`pipeline.provenance.current_hash`): a cleaning change
  invalidates every entry. No specification reads the saved matching outputs: each is matched afresh
  on the cohort;
* the *code hash* of the sweep step (:func:`pipeline.provenance.code_hash`: the sweep, matching and
  indicator modules): an edited module invalidates every entry.

Entries live under ``<build>/tmp/sweep_cache/<key>.json`` (:attr:`pipeline.paths.BuildPaths.sweep_cache`),
one JSON file each, holding the key, what it was computed from and the row with its own checksum. An
entry that cannot be read, whose key or checksum does not match its content (edited by hand,
truncated), is ignored and recomputed: a cache entry is never trusted further than its checksum.
Rows are stored as JSON *and* the rows computed in a run go through the same JSON round trip before
the table is assembled, so a sweep built from the cache is identical to one computed from scratch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import provenance
from pipeline.config import StudyConfig
from pipeline.io import atomic_write_text
from pipeline.paths import BuildPaths

#: Bumped when the layout of an entry or of a row changes: older entries are then ignored.
FORMAT = 1

#: The cleaned tables a specification reads (the sweep step's inputs).
CLEANED_INPUTS = ("cohort", "persons", "panel", "stays", "eol_daily")


def plain(value: Any) -> Any:
    """A JSON value for one cell of a row (numpy scalars as Python numbers, pandas' NA as None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def canonical_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` as it reads back from the cache (column order kept): computed and cached rows alike
    go through this before the table is assembled."""
    return json.loads(_dump({k: plain(v) for k, v in row.items()}))


def _dump(value: Any) -> str:
    # Column order is part of a row (it orders the table's columns): never sort keys here.
    return json.dumps(value, ensure_ascii=False)  # NaN and infinities round-trip as Python's json writes them


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cleaned_input_hashes(paths: BuildPaths) -> dict[str, str | None]:
    """The content hash of every cleaned table a specification reads (None when missing)."""
    return {key: provenance.current_hash(paths, key) for key in CLEANED_INPUTS}


def spec_key(spec_config: StudyConfig, spec: Mapping[str, Any], inputs: Mapping[str, str | None],
             code: str) -> tuple[str, dict[str, Any]]:
    """The cache key of one specification and what it hashes (see the module doc)."""
    settings = {k: v for k, v in provenance.settings_hashes(spec_config, "sweep").items() if k != "sweep"}
    parts = {"format": FORMAT, "spec": {k: plain(v) for k, v in spec.items()}, "settings": settings,
             "inputs": dict(inputs), "code": code}
    return _sha(json.dumps(parts, sort_keys=True, default=str))[:32], parts


@dataclass
class SpecCache:
    """The cache directory of one build, and what a sweep took from it, computed and rejected."""

    directory: Path
    hits: int = 0
    computed: int = 0
    rejected: list[str] = field(default_factory=list)  # why entries were ignored

    @classmethod
    def of(cls, paths: BuildPaths) -> SpecCache:
        return cls(paths.sweep_cache)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached row of ``key``; None if absent or not to be trusted (counted in ``rejected``)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            row, ok = entry["row"], entry["key"] == key and entry["row_sha256"] == _sha(_dump(entry["row"]))
        except (OSError, ValueError, KeyError, TypeError):
            ok, row = False, None
        if not ok or not isinstance(row, dict):
            self.rejected.append(f"{path.name}: unreadable or modified since it was written; recomputed")
            return None
        self.hits += 1
        return row

    def put(self, key: str, parts: Mapping[str, Any], row: Mapping[str, Any]) -> None:
        """Store the canonical ``row`` of ``key`` (atomically: a killed sweep leaves no half entry)."""
        self.computed += 1
        entry = {"key": key, "computed_from": dict(parts), "row": dict(row), "row_sha256": _sha(_dump(row))}
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path(key), json.dumps(entry, ensure_ascii=False, indent=1))

    def render(self) -> str:
        text = f"{self.computed} computed, {self.hits} from the cache ({self.directory})"
        return text + (f"; {len(self.rejected)} cache entr{'y' if len(self.rejected) == 1 else 'ies'} ignored"
                       if self.rejected else "")


def rows_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The sweep table from canonical rows (one per specification, in order)."""
    return pd.DataFrame(list(rows))
