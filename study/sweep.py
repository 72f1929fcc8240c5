"""`equilibres sweep`: the grid of matching specifications of the ``[sweep]`` settings, each matched on
the cached cohort, with its sizes, balance, unmatched share and headline effects.

The sweep crosses two steps (matching, then the indicators' headline effects on each matched sample),
so it lives above them. It writes ``sweep/sweep.csv`` and ``sweep/params.json`` through
:class:`pipeline.writer.StepWriter`; the report draws the specification curve from ``sweep.csv``.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from indicators.headline import headline_effects
from matching.balance import balance_overview
from matching.study import cohort_fingerprint, fit_specification, load_cohort
from pipeline.config import StudyConfig
from pipeline.paths import BuildPaths
from pipeline.privacy import mask_count
from pipeline.writer import StepWriter

SPEC_KEYS = ("method", "caliper", "ratio", "age_band_width", "transform", "replace")


def sweep_specs(config: StudyConfig) -> tuple[list[dict[str, Any]], int]:
    """The distinct specifications of the [sweep] grid (capped at max_specs) and the grid size.

    CEM ignores the caliper, the ratio and replacement, so its specifications differing only in those
    are run once.
    """
    s = config.sweep
    grid = list(itertools.product(s.method, s.caliper, s.ratio, s.age_band_width, s.transform, s.replace))
    seen, specs = set(), []
    for values in grid:
        spec = dict(zip(SPEC_KEYS, values, strict=True))
        if spec["method"] == "cem":
            spec.update(caliper=None, ratio=1, replace=False)
        key = tuple(spec.values())
        if key in seen:
            continue
        seen.add(key)
        specs.append(spec)
    return specs[: s.max_specs], len(specs)


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
    """What `equilibres sweep` ran: one row per specification (``frame``) and the files written."""

    frame: pd.DataFrame
    outputs: dict[str, Path]
    n_grid: int
    seconds: float

    def render(self) -> str:
        f = self.frame
        lines = [f"Sweep: {len(f)} specifications run (of {self.n_grid} distinct in the grid) in "
                 f"{self.seconds:.1f} s; results in {self.outputs['sweep']}"]
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
              config: StudyConfig) -> dict[str, Any]:
    """Fit one specification; its sizes (small counts masked), balance, unmatched share and effects."""
    t0 = time.perf_counter()
    min_cell_count = config.report.min_cell_count
    cfg = spec_config(config, spec)
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


def run(paths: BuildPaths, config: StudyConfig, *, force: bool = False) -> SweepResult:
    """Run every specification of [sweep] on the cached cohort; write sweep/sweep.csv and params.json.

    The sweep always recomputes; ``force`` is accepted for the common step signature.
    """
    start = time.perf_counter()
    specs, n_grid = sweep_specs(config)
    with StepWriter(paths, "sweep") as out:
        cohort = load_cohort(paths, config)
        frame = pd.DataFrame([sweep_row(i, spec, cohort, paths, config) for i, spec in enumerate(specs, start=1)])
        out.table("sweep", frame)
        effects = effect_ids(frame)
        seconds = time.perf_counter() - start
        out.params(
            config, ["sweep", "cohort"], matching_base=config.section("matching"),
            n_grid_distinct=n_grid, n_run=len(specs), truncated=n_grid > len(specs), effects_available=True,
            curve_estimate=effects[0] if effects else "unmatched_share_complex",
            cohort_fingerprint=cohort_fingerprint(paths), seconds=round(seconds, 3),
        )
    return SweepResult(frame, dict(out.written), n_grid, seconds)
