"""`equilibres sweep`: the grid of matching specifications of the ``[sweep]`` settings, each matched on
the cached cohort, with its sizes, balance, unmatched share and headline effects.

The sweep crosses two steps (matching, then the indicators' headline effects on each matched sample),
so it lives above them. It writes ``sweep/sweep.csv`` and ``sweep/params.json`` through
:class:`pipeline.writer.StepWriter`; the report draws the specification curve from ``sweep.csv``.

The main specification (the matching `equilibres match` last fitted, as its params.json records it)
is always one of the rows, appended after the grid when the grid does not hold it; the sweep reads
``matching/matched.parquet``'s hash, so a re-match makes it stale like the indicators. Grid
specifications are matched afresh on the cohort and never read the saved matching. Each row is cached
by what it follows from (:mod:`study.sweep_cache`: the specification's effective settings, the
cleaned tables, the code), so after a re-match only the new main specification is computed.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from indicators.headline import headline_effects
from matching.balance import balance_overview
from matching.study import cohort_fingerprint, fit_specification, load_cohort
from pipeline import provenance
from pipeline.config import StudyConfig, config_from_dict
from pipeline.facts import SweepFacts
from pipeline.io import PipelineError
from pipeline.paths import BuildPaths
from pipeline.privacy import mask_count
from pipeline.writer import StepWriter
from study.sweep_cache import SpecCache, canonical_row, cleaned_input_hashes, rows_frame, spec_key

SPEC_KEYS = ("method", "caliper", "ratio", "age_band_width", "transform", "replace")


def _normalised(spec: dict[str, Any]) -> dict[str, Any]:
    # CEM ignores the caliper, the ratio and replacement.
    if spec["method"] == "cem":
        spec.update(caliper=None, ratio=1, replace=False)
    return spec


def main_specification(config: StudyConfig) -> dict[str, Any]:
    """The specification of the ``[matching]`` settings themselves (what `equilibres match` fits)."""
    m = config.matching
    return _normalised({"method": m.method, "caliper": m.caliper, "ratio": m.ratio,
                        "age_band_width": config.cohort.age_band_width, "transform": m.transform,
                        "replace": m.replace})


def saved_matching_config(paths: BuildPaths, config: StudyConfig) -> StudyConfig:
    """``config`` with the ``[matching]`` and ``[cohort]`` settings `equilibres match` last used (its
    params.json), so that the sweep's main specification is the matching the report shows even after
    `equilibres match --caliper ...`; ``config`` itself when matching has not run."""
    path = paths.params("match")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return config
    except (OSError, ValueError) as err:
        raise PipelineError(f"Cannot read {path} ({err}): re-run `equilibres match --out {paths.root}`.") from None
    sections = {s: data[s] for s in ("matching", "cohort") if isinstance(data.get(s), dict)}
    saved = config_from_dict(sections, str(path))
    return config.model_copy(update={s: getattr(saved, s) for s in sections})


def _grid(config: StudyConfig) -> tuple[list[dict[str, Any]], int]:
    s = config.sweep
    grid = list(itertools.product(s.method, s.caliper, s.ratio, s.age_band_width, s.transform, s.replace))
    seen, specs = set(), []
    for values in grid:
        spec = _normalised(dict(zip(SPEC_KEYS, values, strict=True)))
        key = tuple(spec.values())
        if key in seen:
            continue
        seen.add(key)
        specs.append(spec)
    return specs[: s.max_specs], len(specs)


def specifications(config: StudyConfig, main_config: StudyConfig | None = None
                   ) -> tuple[list[tuple[dict[str, Any], StudyConfig]], int]:
    """Each specification swept with its settings: the distinct ones of the [sweep] grid (capped at
    max_specs), then the main one (``main_config``, default ``config``) unless the grid holds it with
    the very same matching settings; and the number of distinct grid specifications.

    CEM ignores the caliper, the ratio and replacement, so its specifications differing only in those
    are run once.
    """
    grid, n_grid = _grid(config)
    specs = [(spec, spec_config(config, spec)) for spec in grid]
    main_config = config if main_config is None else main_config
    main = main_specification(main_config)

    def matching(cfg: StudyConfig) -> tuple[dict[str, Any], dict[str, Any]]:
        return cfg.section("matching"), cfg.section("cohort")

    if not any(spec == main and matching(cfg) == matching(main_config) for spec, cfg in specs):
        specs.append((main, main_config))
    return specs, n_grid


def sweep_specs(config: StudyConfig) -> tuple[list[dict[str, Any]], int]:
    """The specifications of :func:`specifications` (without their settings) and the grid size."""
    specs, n_grid = specifications(config)
    return [spec for spec, _ in specs], n_grid


def spec_config(config: StudyConfig, spec: dict[str, Any]) -> StudyConfig:
    """The study settings of one specification of the grid."""
    return config.with_overrides({
        "matching": {k: spec[k] for k in ("method", "ratio", "transform", "replace")}
        | ({"caliper": spec["caliper"]} if spec["caliper"] is not None else {}),
        "cohort": {"age_band_width": spec["age_band_width"]},
    })


def effect_ids(frame: pd.DataFrame) -> list[str]:
    """The headline effects recorded in a sweep table (columns with a ``_ci_low`` companion)."""
    return [c for c in frame.columns if c not in SPEC_KEYS and c + "_ci_low" in frame.columns
            and c != "unmatched_share_complex"]


@dataclass(frozen=True)
class SweepResult:
    """What `equilibres sweep` ran: one row per specification (``frame``), the files written, and how
    many rows were computed (``n_computed``) or taken from the per-specification cache (``n_cached``)."""

    frame: pd.DataFrame
    outputs: dict[str, Path]
    n_grid: int
    seconds: float
    n_computed: int = 0
    n_cached: int = 0
    main_added: bool = False
    cache_notes: tuple[str, ...] = ()
    workers: int = 1  # processes that computed the rows (0: none computed)

    def _by_workers(self) -> str:
        return f" by {self.workers} worker processes" if self.workers > 1 else ""

    def render(self) -> str:
        f = self.frame
        main = ", then the main specification" if self.main_added else ""
        lines = [f"Sweep: {len(f)} specifications (of {self.n_grid} distinct in the grid{main}): "
                 f"{self.n_computed} computed{self._by_workers()}, {self.n_cached} from the cache, in "
                 f"{self.seconds:.1f} s; "
                 f"results in {self.outputs['sweep']}"]
        lines += [f"cache: {note}" for note in self.cache_notes]
        if len(f):
            v = f["unmatched_share_complex"].dropna()
            if len(v):
                lines.append(f"unmatched_share_complex ranges {v.min():.1%} – {v.max():.1%}")
            lines.append(f"max |SMD| after matching ranges {f['max_abs_smd_after'].min():.3f} – "
                         f"{f['max_abs_smd_after'].max():.3f}")
        failed = int(f["effects_error"].notna().sum()) if "effects_error" in f.columns else 0
        lines.append("headline effects: recorded per specification"
                     + (f" ({failed} failed: see effects_error)" if failed else ""))
        return "\n".join(lines)


def sweep_row(i: int, spec: dict[str, Any], cohort: pd.DataFrame, paths: BuildPaths,
              cfg: StudyConfig) -> dict[str, Any]:
    """Fit one specification (``cfg``: its settings, :func:`specifications`); its sizes (small counts
    masked), balance, unmatched share and effects."""
    t0 = time.perf_counter()
    min_cell_count = cfg.report.min_cell_count
    outcome = fit_specification(cohort, cfg, stages=("after",))
    ov = balance_overview(outcome.balance, "after")
    ind = outcome.indicator
    row: dict[str, Any] = {"spec": i, **spec}
    row.update({f"n_{k}": mask_count(outcome.sizes[k], min_cell_count) for k in
                ("treated", "treated_matched", "controls_matched", "unmatched_treated")})
    row.update(ess_controls=outcome.sizes["ess_controls"], max_abs_smd_after=ov["max_abs_smd"],
               share_flagged_after=ov["share_flagged"], unmatched_share_complex=ind.value,
               unmatched_share_complex_ci_low=ind.ci_low, unmatched_share_complex_ci_high=ind.ci_high)
    try:
        for rec in headline_effects(outcome.matched, paths.root, cfg):
            row[rec["id"]] = rec.get("value")
            row[f"{rec['id']}_ci_low"] = rec.get("ci_low")
            row[f"{rec['id']}_ci_high"] = rec.get("ci_high")
    except Exception as err:  # a failing effect must not hide the other specifications
        row["effects_error"] = f"{type(err).__name__}: {err}"
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row


#: ``[sweep] workers = 0`` uses at most this many processes: each holds the cohort and the claims'
#: persons in memory (pipeline/config/equilibres.toml, [sweep]).
AUTO_MAX_WORKERS = 2

def resolved_workers(setting: int, n_todo: int) -> int:
    """How many worker processes compute ``n_todo`` specifications under ``[sweep] workers = setting``:
    0 means the CPUs this process may use, at most :data:`AUTO_MAX_WORKERS`; never more than there are
    specifications to compute; 1 means the sequential sweep in this process."""
    if setting == 0:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cpus = os.cpu_count() or 1
        setting = min(cpus, AUTO_MAX_WORKERS)
    return max(1, min(setting, n_todo))


# One sweep worker process's state, set once by _start_worker: (paths, cohort).
_WORKER: tuple[BuildPaths, pd.DataFrame] | None = None


def _start_worker(paths: BuildPaths, config: StudyConfig, cohort: pd.DataFrame | None) -> None:
    """Initialiser of a sweep worker: the cohort its parent loaded (forked workers share its memory),
    or loaded here, once. The claims are loaded once as well, by the first specification's headline
    effects (:func:`indicators.inputs.load_claims` keeps them)."""
    global _WORKER
    _WORKER = (paths, cohort if cohort is not None else load_cohort(paths, config))


def pool_context() -> Any:
    """How sweep workers start: forked on Linux, so that they begin with this process's modules and
    cohort (copy-on-write: no second copy in memory, no seconds of imports and loading per worker;
    the parent holds no open DuckDB connection when it forks); spawned elsewhere."""
    import multiprocessing

    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def _worker_row(i: int, spec: dict[str, Any], cfg: StudyConfig) -> dict[str, Any]:
    assert _WORKER is not None, "a sweep worker runs its specifications after _start_worker"
    paths, cohort = _WORKER
    return sweep_row(i, spec, cohort, paths, cfg)


def single_threaded(cfg: StudyConfig) -> StudyConfig:
    """``cfg`` with one DuckDB thread: several worker processes already share the CPUs."""
    return cfg.with_overrides({"engine": {"duckdb_threads": 1}})


def computed_rows(paths: BuildPaths, config: StudyConfig, todo: list[tuple[int, dict[str, Any], StudyConfig]],
                  workers: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(i, row)`` of every specification of ``todo`` (``(i, spec, settings)``), computed in this process
    (``workers`` 1: in order) or by ``workers`` processes (in the order they finish).

    Each worker process holds the cohort (loaded once, :func:`pool_context`) and loads its claims once,
    and runs its specifications with one DuckDB thread. A row depends only on its specification, the
    cleaned tables and the code (each specification is matched afresh, and its bootstrap has its own seed from the settings), so the
    rows are the same whichever process computes them; the caller orders them by ``i``."""
    if workers <= 1:
        cohort = load_cohort(paths, config)
        for i, spec, cfg in todo:
            yield i, sweep_row(i, spec, cohort, paths, cfg)
        return
    context = pool_context()
    # A forked worker inherits the cohort; a spawned one would receive it pickled: it loads its own.
    cohort = load_cohort(paths, config) if context.get_start_method() == "fork" else None
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker,
                               initargs=(paths, single_threaded(config), cohort))
    try:
        pending = {pool.submit(_worker_row, i, spec, single_threaded(cfg)): i for i, spec, cfg in todo}
        while pending:
            done, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                yield pending.pop(future), future.result()  # a failed specification stops the sweep
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def sweep_rows(paths: BuildPaths, config: StudyConfig, specs: list[tuple[dict[str, Any], StudyConfig]],
               cache: SpecCache, *, force: bool = False, workers: int = 1) -> tuple[list[dict[str, Any]], int]:
    """The row of every specification, from the cache when its key is there (unless ``force``),
    computed (and cached) otherwise; and the number of processes that computed them.

    ``workers`` is the ``[sweep] workers`` setting (:func:`resolved_workers`; 1 = in this process); the
    cohort is loaded only if a row must be computed. Rows come in specification order, whoever
    computed them, and cache entries are the same whichever process computed their row."""
    inputs, code = cleaned_input_hashes(paths), provenance.code_hash("sweep")
    keys = [spec_key(cfg, spec, inputs, code) for spec, cfg in specs]
    rows: dict[int, dict[str, Any]] = {}
    todo = []
    for i, ((spec, cfg), (key, _)) in enumerate(zip(specs, keys, strict=True), start=1):
        row = None if force else cache.get(key)
        if row is None:
            todo.append((i, spec, cfg))
        else:
            rows[i] = row
    processes = resolved_workers(workers, len(todo)) if todo else 0
    for i, computed in computed_rows(paths, config, todo, processes):
        row = canonical_row({k: v for k, v in computed.items() if k != "spec"})
        if "effects_error" not in row:  # a failure may be transient: never kept
            cache.put(*keys[i - 1], row)
        rows[i] = row
    return [{"spec": i, **rows[i]} for i in range(1, len(specs) + 1)], processes


def run(paths: BuildPaths, config: StudyConfig, *, force: bool = False) -> SweepResult:
    """Run every specification of [sweep] and the main one on the cached cohort; write sweep/sweep.csv
    and params.json. Rows whose settings, cleaned inputs and code are unchanged come from the cache
    (:mod:`study.sweep_cache`); ``force`` recomputes them all."""
    start = time.perf_counter()
    cache = SpecCache.of(paths)
    with StepWriter(paths, "sweep") as out:
        specs, n_grid = specifications(config, saved_matching_config(paths, config))
        rows, workers = sweep_rows(paths, config, specs, cache, force=force, workers=config.sweep.workers)
        frame = rows_frame(rows)
        out.table("sweep", frame)
        effects = effect_ids(frame)
        seconds = time.perf_counter() - start
        main_added = len(specs) > min(n_grid, config.sweep.max_specs)
        facts = SweepFacts(
            matching_base=config.section("matching"), n_grid_distinct=n_grid, n_run=len(specs),
            truncated=n_grid > config.sweep.max_specs, effects_available=True,
            curve_estimate=effects[0] if effects else "unmatched_share_complex",
            cohort_fingerprint=cohort_fingerprint(paths), seconds=round(seconds, 3),
            n_computed=cache.computed, n_cached=cache.hits, main_added=main_added,
        )
        out.params(config, ["sweep", "cohort"], **facts.to_dict())
    return SweepResult(frame, dict(out.written), n_grid, seconds, n_computed=cache.computed, n_cached=cache.hits,
                       main_added=main_added, cache_notes=tuple(cache.rejected), workers=workers)
