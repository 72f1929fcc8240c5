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
import time
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

    def render(self) -> str:
        f = self.frame
        main = ", then the main specification" if self.main_added else ""
        lines = [f"Sweep: {len(f)} specifications (of {self.n_grid} distinct in the grid{main}): "
                 f"{self.n_computed} computed, {self.n_cached} from the cache, in {self.seconds:.1f} s; "
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


def sweep_rows(paths: BuildPaths, config: StudyConfig, specs: list[tuple[dict[str, Any], StudyConfig]],
               cache: SpecCache, *, force: bool = False) -> list[dict[str, Any]]:
    """The row of every specification, from the cache when its key is there (unless ``force``),
    computed (and cached) otherwise; the cohort is loaded only if a row must be computed."""
    inputs, code = cleaned_input_hashes(paths), provenance.code_hash("sweep")
    cohort: pd.DataFrame | None = None
    rows = []
    for i, (spec, cfg) in enumerate(specs, start=1):
        key, parts = spec_key(cfg, spec, inputs, code)
        row = None if force else cache.get(key)
        if row is None:
            if cohort is None:
                cohort = load_cohort(paths, config)
            computed = sweep_row(i, spec, cohort, paths, cfg)
            row = canonical_row({k: v for k, v in computed.items() if k != "spec"})
            if "effects_error" not in row:  # a failure may be transient: never kept
                cache.put(key, parts, row)
        rows.append({"spec": i, **row})
    return rows


def run(paths: BuildPaths, config: StudyConfig, *, force: bool = False) -> SweepResult:
    """Run every specification of [sweep] and the main one on the cached cohort; write sweep/sweep.csv
    and params.json. Rows whose settings, cleaned inputs and code are unchanged come from the cache
    (:mod:`study.sweep_cache`); ``force`` recomputes them all."""
    start = time.perf_counter()
    cache = SpecCache.of(paths)
    with StepWriter(paths, "sweep") as out:
        specs, n_grid = specifications(config, saved_matching_config(paths, config))
        frame = rows_frame(sweep_rows(paths, config, specs, cache, force=force))
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
                       main_added=main_added, cache_notes=tuple(cache.rejected))
