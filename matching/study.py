"""Study runners: `equilibres match` (one specification) and `equilibres sweep` (a grid).

Both read the cached cohort table written by cleaning (``build/clean/cohort.parquet``, docs/CONTRACTS.md
§2) and never re-clean. Outputs are written atomically under ``build/matching/`` and ``build/sweep/``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matching.balance import MatchSummary, balance_overview, kish_ess, unit_rows
from matching.matcher import Matcher
from matching.profiles import INDICATOR_ID, is_small, unmatched_indicator, unmatched_profiles
from pipeline.config import StudyConfig
from pipeline.io import (
    PipelineError,
    atomic_path,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_parquet,
    build_lock,
    peak_rss_mb,
    restore_on_failure,
)
from pipeline.labels import CALIPER_SCALE_FR, MATCHING_METHOD_FR
from pipeline.paths import BuildPaths
from pipeline.stages.rules import DESCRIPTIONS_FR

COHORT_REQUIRED = ["unit_id", "person_id", "treated", "index_date", "age", "eligible"]
STAT_COLUMNS = ["mean_treated", "mean_control", "smd", "sd_denominator", "variance_ratio", "ecdf_mean",
                "ecdf_max"]


# ---------------------------------------------------------------------------------------- inputs
def load_cohort(build: Path, config: StudyConfig, data_dir: Path | None = None) -> pd.DataFrame:
    """The eligible rows of the cached cohort table; PipelineError if cleaning has not run."""
    path = BuildPaths(Path(build)).cohort
    if not path.exists():
        data = f"--data {data_dir} " if data_dir is not None else "--data <extract> "
        raise PipelineError(
            f"No cleaned cohort table at {path}. Matching re-uses the cached cleaning outputs: run "
            f"`equilibres clean {data}--out {build}` first."
        )
    import pyarrow.parquet as pq

    # date32 columns as datetime64 (midnight) rather than Python date objects: much faster to load
    risk_set = ["at_risk_until"] if config.matching.time_zero == "treated_index" else []
    needed = list(dict.fromkeys([*COHORT_REQUIRED, *risk_set, *config.matching.exact, config.matching.on]))
    needed = [c for c in needed if c != "age_band"]
    missing = [c for c in needed if c not in pq.read_schema(path).names]
    if missing:
        raise PipelineError(
            f"The cohort table {path} lacks column(s) {missing} needed by matching (docs/CONTRACTS.md §2; "
            f"matching.exact / matching.on in the configuration). Re-run `equilibres clean --force`, or "
            f"change the matching columns."
        )
    # only eligible rows are converted to pandas (the string columns' conversion dominates the load)
    return pq.read_table(path, filters=[("eligible", "=", 1)]).to_pandas(date_as_object=False)


def with_age_band(cohort: pd.DataFrame, width: int, max_age_band: int) -> pd.DataFrame:
    """Add `age_band` (lower bound of the band, years); ages >= max_age_band are pooled into one band."""
    age = cohort["age"].to_numpy(dtype=float, na_value=np.nan)
    band = np.where(age >= max_age_band, max_age_band, np.floor(age / width) * width)
    out = cohort.copy(deep=False)
    out["age_band"] = pd.array(np.where(np.isfinite(band), band, np.nan), dtype="Float64").astype("Int64")
    return out


#: Cohort columns of risk-set matching (docs/CONTRACTS.md §2): a treated patient's time zero is its
#: inclusion date (``index_date``); a candidate control must still be at risk (``at_risk_until``: death
#: date, or study end) on that day.
TIME_ZERO_COLUMN = "index_date"
AT_RISK_UNTIL_COLUMN = "at_risk_until"


def matcher_from_config(config: StudyConfig) -> Matcher:
    """The `Matcher` of the [matching] settings. ``time_zero = "treated_index"`` makes matched controls
    start follow-up on their treated patient's index date (risk-set matching); ``"candidate_index"``
    keeps each candidate row's own index date. An empty ``person``/``period`` means none."""
    m = config.matching
    time_zero = ({"time_zero": TIME_ZERO_COLUMN, "at_risk_until": AT_RISK_UNTIL_COLUMN}
                 if m.time_zero == "treated_index" else {})
    return Matcher(
        method=m.method, exact=list(m.exact), on=m.on, transform=m.transform, caliper=m.caliper,
        caliper_scale=m.caliper_scale, ratio=m.ratio, replace=m.replace, max_reuse=m.max_reuse,
        person=m.person or None, period=m.period or None, order=m.order, random_state=m.seed, **time_zero,
    )


def reuse_sizes(matcher: Matcher, min_cell: int) -> dict[str, Any]:
    """How matched control persons are reused, for params.json: counts of persons below ``min_cell`` are
    masked (None), and so is the share of rows from reused persons when their count is masked."""
    r = matcher.reuse_
    reused = masked(r.persons_reused, min_cell)
    return {
        "control_persons_matched": masked(matcher.n_control_persons_, min_cell),
        "control_persons_used_once": masked(r.persons_once, min_cell),
        "control_persons_reused": reused,
        "control_max_uses": r.max_uses,  # a number of matched sets, not of people
        "control_rows_share_from_reused": round(r.share_rows_reused, 4) if reused is not None else None,
    }


def file_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:16]


def balance_covariates(config: StudyConfig) -> list[str]:
    return list(dict.fromkeys([*config.matching.balance_covariates, *config.matching.exact]))


def method_description(config: StudyConfig) -> str:
    m = config.matching
    cal = "no caliper" if m.caliper is None else f"caliper {m.caliper} ({m.caliper_scale})"
    bands = f", age bands of {config.cohort.age_band_width} years" if "age_band" in m.exact else ""
    return (f"{m.method} matching 1:{m.ratio} on {m.on} ({m.transform}), exact on {', '.join(m.exact) or 'nothing'}, "
            f"{cal}, {'with' if m.replace else 'without'} replacement{bands}")


def method_description_fr(config: StudyConfig) -> str:
    """The French version of :func:`method_description`, for the report in French."""
    m = config.matching
    cal = ("sans caliper" if m.caliper is None
           else f"caliper {str(m.caliper).replace('.', ',')} ({CALIPER_SCALE_FR.get(m.caliper_scale, m.caliper_scale)})")
    bands = f", classes d'âge de {config.cohort.age_band_width} ans" if "age_band" in m.exact else ""
    transform = "sans transformation" if m.transform == "none" else m.transform
    return (f"appariement {MATCHING_METHOD_FR.get(m.method, m.method)} 1:{m.ratio} sur {m.on} ({transform}), exact sur "
            f"{', '.join(m.exact) or 'aucune variable'}, {cal}, {'avec' if m.replace else 'sans'} remise{bands}")


# ---------------------------------------------------------------------------------------- privacy
def suppress_balance(balance: pd.DataFrame, min_cell: int) -> pd.DataFrame:
    """Mask statistics of rows that would reveal a small count of people (dummies of rare levels)."""
    out = balance.copy()
    counts_t = out["mean_treated"] * out["n_treated"]
    counts_c = out["mean_control"] * out["n_control"]
    binary = out["type"] == "binary"
    small = binary & (
        counts_t.round().map(lambda c: is_small(c, min_cell)) | counts_c.round().map(lambda c: is_small(c, min_cell))
        | (out["n_treated"] - counts_t).round().map(lambda c: is_small(c, min_cell))
    )
    small |= out["n_treated"].map(lambda c: is_small(c, min_cell)) | out["n_control"].map(lambda c: is_small(c, min_cell))
    out.loc[small, STAT_COLUMNS + ["n_treated", "n_control", "ess_control"]] = np.nan
    out["suppressed"] = small
    return out


def masked(count: int | None, min_cell: int) -> int | None:
    return None if is_small(count, min_cell) else count


# ---------------------------------------------------------------------------------------- one match
@dataclass(frozen=True)
class FitOutcome:
    """A fitted matcher and the derived tables of one specification (no file access)."""

    matcher: Matcher
    frame: pd.DataFrame
    matched: pd.DataFrame        # matched rows keyed by unit = person at time zero (matched_units)
    balance: pd.DataFrame
    profiles: pd.DataFrame
    indicator: dict[str, Any]
    sizes: dict[str, int]


def fit_specification(cohort: pd.DataFrame, config: StudyConfig, stages=("before", "after"),
                      before_cache: Path | None = None) -> FitOutcome:
    """Fit one specification. ``before_cache`` = a parquet file holding the 'before' balance rows of
    this very cohort and covariate set (they do not depend on the matching settings): read if present,
    written otherwise — re-running with other settings then skips the pass over every candidate row."""
    frame = with_age_band(cohort, config.cohort.age_band_width, config.cohort.max_age_band)
    matcher = matcher_from_config(config)
    try:
        matcher.fit(frame, treatment="treated", id="unit_id")
    except ValueError as err:
        raise PipelineError(f"Matching failed on the cohort table: {err}") from None
    covariates = balance_covariates(config)
    if before_cache is not None and "before" in stages:
        if before_cache.exists():
            before = pd.read_parquet(before_cache)
        else:
            before = matcher.balance(covariates, stages=("before",))
            atomic_write_parquet(before_cache, before)
        after = matcher.balance(covariates, stages=[s for s in stages if s != "before"])
        bal = pd.concat([before, after], ignore_index=True)
        order = {c: i for i, c in enumerate(before["covariate"])}
        bal = bal.sort_values(["covariate", "stage"], key=lambda col: col.map(order) if col.name == "covariate"
                              else col.map({"before": 0, "after": 1}), kind="stable").reset_index(drop=True)
    else:
        bal = matcher.balance(covariates, stages=stages)
    treated = frame[frame["treated"] == 1].reset_index(drop=True)
    unmatched_ids = matcher.unmatched_.set_index("unit_id")["unmatched_reason"]
    mask = treated["unit_id"].isin(unmatched_ids.index).to_numpy()
    reasons = treated["unit_id"].map(unmatched_ids)
    flags = list(config.cohort.complex_flags)
    min_cell = config.report.min_cell_count
    level = config.indicators.ci_level
    profiles = unmatched_profiles(treated, mask, flags, config.matching.balance_covariates, min_cell, level,
                                  reasons=reasons)
    indicator = unmatched_indicator(treated, mask, flags, min_cell, config.published.get(INDICATOR_ID),
                                    method_description(config), level, method_fr=method_description_fr(config))
    matched = matched_units(matcher.matched_)
    per_unit = unit_rows(matched, "unit_id")
    w = per_unit.loc[per_unit["treated"] == 0, "weight"].to_numpy(dtype=float)
    sizes = {
        "eligible_rows": int(len(frame)),
        "treated": matcher.n_treated_, "controls": matcher.n_controls_,
        "treated_matched": matcher.n_treated_matched_, "controls_matched": matcher.n_controls_matched_,
        "unmatched_treated": matcher.n_unmatched_, "partial_sets": matcher.n_partial_,
        "pairs": matcher.n_pairs_, "strata_with_treated": matcher.n_strata_,
        "strata_matched": matcher.n_strata_matched_, "ess_controls": round(kish_ess(w), 1),
    }
    return FitOutcome(matcher, frame, matched, bal, profiles, indicator, sizes)


def matched_units(matched: pd.DataFrame) -> pd.DataFrame:
    """The matcher's rows keyed by *unit* = a person at a time zero: ``unit_id`` becomes
    ``<person_id>@<index_date>`` (a control's index date is its treated patient's, under risk-set
    matching) and the cohort row it came from is kept in ``cohort_unit_id``."""
    m = matched.rename(columns={"unit_id": "cohort_unit_id"})
    day = pd.to_datetime(m["index_date"]).dt.strftime("%Y-%m-%d")
    m.insert(0, "unit_id", m["person_id"].astype(str) + "@" + day)
    return m


def cohort_flow(sizes: dict[str, int]) -> pd.DataFrame:
    """Cohort-flow rows continuing cleaning's `eligible` row (rows = cohort rows, treated + controls).

    * `matched`: rows_in = eligible cohort rows, rows_out = rows kept by matching (matched treated +
      distinct controls used), rows_dropped = the others (unused candidate controls, unmatched treated).
    * `unmatched`: the treated side only: rows_in = eligible treated, rows_out = treated with at least one
      control, rows_dropped = treated with no control.
    """
    kept = sizes["treated_matched"] + sizes["controls_matched"]
    return pd.DataFrame([
        {"stage": "cohort", "rule": "matched", "rows_in": sizes["eligible_rows"], "rows_out": kept,
         "rows_dropped": sizes["eligible_rows"] - kept, "euros_dropped": 0.0,
         "description": "Rows kept by matching: matched ÉQUILIBRES patients and the distinct controls used "
                        "(candidate controls not selected and unmatched patients are dropped)",
         "source": "docs/matching.md", "description_fr": DESCRIPTIONS_FR["matched"]},
        {"stage": "cohort", "rule": "unmatched", "rows_in": sizes["treated"], "rows_out": sizes["treated_matched"],
         "rows_dropped": sizes["unmatched_treated"], "euros_dropped": 0.0,
         "description": "ÉQUILIBRES patients (eligible at inclusion) for whom no control was found in their "
                        "exact stratum within the caliper (dropped = unmatched)",
         "source": "docs/matching.md", "description_fr": DESCRIPTIONS_FR["unmatched"]},
    ])


@dataclass(frozen=True)
class MatchResult:
    """What `equilibres match` produced; renders itself (counts below the small-cell threshold masked)."""

    summary: MatchSummary
    indicator: dict[str, Any]
    sizes: dict[str, int]
    outputs: dict[str, Path]
    seconds: float
    min_cell_count: int = 10
    profiles: pd.DataFrame = field(default=None, repr=False)

    def render(self) -> str:
        s = self.sizes
        m = self.min_cell_count

        def f(v):
            v = masked(v, m)
            return f"<{m}" if v is None else f"{v:,}"

        lines = [self.summary.render().split("\n")[0]]
        lines.append(f"treated: {f(s['treated'])} → matched {f(s['treated_matched'])}, unmatched "
                     f"{f(s['unmatched_treated'])}; controls used: {f(s['controls_matched'])} of "
                     f"{f(s['controls'])} candidate rows (ESS {s['ess_controls']:,}); strata with treated "
                     f"{s['strata_with_treated']:,}")  # strata are not people: not masked
        ov = self.summary.overview_after
        if ov.get("n_covariates"):
            lines.append(f"balance after matching: max |SMD| {ov['max_abs_smd']:.3f}, "
                         f"{ov['n_flagged']}/{ov['n_covariates']} covariates flagged")
        ind = self.indicator
        if ind["value"] is None:
            lines.append(f"{ind['id']}: suppressed (small counts)")
        else:
            pub = "" if ind["published"] is None else f" — published {ind['published']:.0%}"
            lines.append(f"{ind['id']}: {ind['value']:.1%} [{ind['ci_low']:.1%}, {ind['ci_high']:.1%}] "
                         f"(n = {ind['n']:,}){pub}")
        lines.append(f"outputs in {self.outputs['pairs'].parent} ({self.seconds:.1f} s)")
        return "\n".join(lines)


def run_match(build: Path, config: StudyConfig, data_dir: Path | None = None) -> MatchResult:
    """Match on the cached cohort and write build/matching/* (see docs/CONTRACTS.md §3)."""
    start = time.perf_counter()
    build = Path(build)
    paths = BuildPaths(build)
    # restore_on_failure: all of matching/ or nothing, so params.json never describes other outputs.
    with build_lock(build, "match"), restore_on_failure(build, paths.matching):
        cohort = load_cohort(build, config, data_dir)
        fingerprint = file_fingerprint(paths.cohort)
        key = hashlib.sha256(json.dumps([fingerprint, balance_covariates(config), config.section("cohort")],
                                        sort_keys=True).encode()).hexdigest()[:16]
        cache = paths.matching / "cache" / f"balance_before_{key}.parquet"
        outcome = fit_specification(cohort, config, before_cache=cache)
        m = outcome.matcher
        min_cell = config.report.min_cell_count
        out = paths.matching
        outputs = {
            "pairs": out / "pairs.parquet", "matched": out / "matched.parquet", "balance": out / "balance.csv",
            "unmatched_profiles": out / "unmatched_profiles.csv", "params": out / "params.json",
            "indicator": out / "indicator_unmatched.json", "love_plot": out / "love_plot.png",
            "attrition": out / "attrition_matching.csv",
        }
        atomic_write_parquet(outputs["pairs"], m.pairs_)
        atomic_write_parquet(outputs["matched"], outcome.matched)
        published_balance = suppress_balance(outcome.balance, min_cell)
        atomic_write_csv(outputs["balance"], published_balance)
        atomic_write_csv(outputs["unmatched_profiles"], outcome.profiles)
        atomic_write_json(outputs["indicator"], [outcome.indicator])
        atomic_write_csv(outputs["attrition"], cohort_flow(outcome.sizes))
        from matching.plots import love_plot

        ax = love_plot(published_balance)  # suppressed rows (small cells) are not drawn
        with atomic_path(outputs["love_plot"]) as tmp:
            ax.figure.savefig(tmp, format="png", dpi=110)
        seconds = time.perf_counter() - start
        atomic_write_json(outputs["params"], {
            "matching": config.section("matching"),
            "cohort": config.section("cohort"),
            "method_description": method_description(config),
            "caliper_width": m.caliper_width_,
            "pooled_sd": getattr(m, "pooled_sd_", None),
            "sizes": {k: (masked(v, min_cell) if isinstance(v, int) and not k.startswith("strata") else v)
                      for k, v in outcome.sizes.items()} | reuse_sizes(m, min_cell),
            "cohort_file": str(paths.cohort),
            "cohort_fingerprint": fingerprint,
            "config_fingerprint": config.fingerprint("matching", "cohort"),
            "seconds": round(seconds, 3),
            "peak_rss_mb": peak_rss_mb(),
        })
    summary = MatchSummary.from_matcher(m, outcome.balance)
    return MatchResult(summary, outcome.indicator, outcome.sizes, outputs, seconds, min_cell, outcome.profiles)


# ---------------------------------------------------------------------------------------- sweep
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


def _headline_function():
    try:
        from indicators.headline import headline_effects
    except ImportError:
        return None
    return headline_effects


@dataclass(frozen=True)
class SweepResult:
    frame: pd.DataFrame
    outputs: dict[str, Path]
    n_grid: int
    effects_available: bool
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
        lines.append("headline effects: " + ("recorded per specification" if self.effects_available else
                                             "not recorded (indicators.headline is not available yet)"))
        return "\n".join(lines)


def run_sweep(build: Path, config: StudyConfig, data_dir: Path | None = None) -> SweepResult:
    """Run every specification of [sweep] on the cached cohort; write build/sweep/*."""
    start = time.perf_counter()
    build = Path(build)
    paths = BuildPaths(build)
    headline = _headline_function()
    specs, n_grid = sweep_specs(config)
    min_cell = config.report.min_cell_count
    with build_lock(build, "sweep"), restore_on_failure(build, BuildPaths(build).sweep):
        cohort = load_cohort(build, config, data_dir)
        rows = []
        for i, spec in enumerate(specs, start=1):
            t0 = time.perf_counter()
            cfg = config.with_overrides({
                "matching": {k: spec[k] for k in ("method", "ratio", "transform", "replace")}
                | ({"caliper": spec["caliper"]} if spec["caliper"] is not None else {}),
                "cohort": {"age_band_width": spec["age_band_width"]},
            })
            outcome = fit_specification(cohort, cfg, stages=("after",))
            ov = balance_overview(outcome.balance, "after")
            ind = outcome.indicator
            row: dict[str, Any] = {"spec": i, **spec}
            row.update({f"n_{k}": masked(outcome.sizes[k], min_cell) for k in
                        ("treated", "treated_matched", "controls_matched", "unmatched_treated")})
            row.update(ess_controls=outcome.sizes["ess_controls"], max_abs_smd_after=ov["max_abs_smd"],
                       share_flagged_after=ov["share_flagged"], unmatched_share_complex=ind["value"],
                       unmatched_share_complex_ci_low=ind["ci_low"], unmatched_share_complex_ci_high=ind["ci_high"])
            if headline is not None:
                try:
                    for rec in headline(outcome.matched, build, cfg):
                        row[rec["id"]] = rec.get("value")
                        row[f"{rec['id']}_ci_low"] = rec.get("ci_low")
                        row[f"{rec['id']}_ci_high"] = rec.get("ci_high")
                except Exception as err:  # a failing effect must not hide the other specifications
                    row["effects_error"] = f"{type(err).__name__}: {err}"
            row["seconds"] = round(time.perf_counter() - t0, 3)
            rows.append(row)
        frame = pd.DataFrame(rows)
        out = paths.sweep
        outputs = {"sweep": out / "sweep.csv", "params": out / "params.json",
                   "curve": out / "specification_curve.png"}
        atomic_write_csv(outputs["sweep"], frame)
        effect_ids = [c for c in frame.columns if c not in SPEC_KEYS and c + "_ci_low" in frame.columns
                      and c != "unmatched_share_complex"]
        estimate = effect_ids[0] if effect_ids else "unmatched_share_complex"
        from matching.plots import specification_curve

        fig = specification_curve(frame, estimate, f"{estimate}_ci_low", f"{estimate}_ci_high",
                                  list(SPEC_KEYS), label=estimate, reference=config.published.get(estimate))
        with atomic_path(outputs["curve"]) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        seconds = time.perf_counter() - start
        atomic_write_json(outputs["params"], {
            "sweep": config.section("sweep"), "matching_base": config.section("matching"),
            "cohort": config.section("cohort"), "n_grid_distinct": n_grid, "n_run": len(specs),
            "truncated": n_grid > len(specs), "effects_available": headline is not None,
            "curve_estimate": estimate, "cohort_fingerprint": file_fingerprint(paths.cohort),
            "seconds": round(seconds, 3),
        })
    return SweepResult(frame, outputs, n_grid, headline is not None, seconds)
