"""`equilibres match`: one matching specification on the cached cohort (:func:`run`).

Reads the cohort table written by cleaning (``clean/cohort.parquet``, docs/CONTRACTS.md §2; checked
against :data:`pipeline.tables.COHORT`) and never re-cleans. Outputs are written under ``matching/``
through :class:`pipeline.writer.StepWriter`. :func:`fit_specification` (no file access) is what the
sweep of :mod:`study.sweep` repeats over a grid.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matching.balance import MatchSummary, kish_ess, unit_rows
from matching.matcher import Matcher
from matching.profiles import INDICATOR_ID, unmatched_indicator, unmatched_profiles
from pipeline import provenance
from pipeline.config import StudyConfig
from pipeline.facts import MatchingFacts, MatchingSizes
from pipeline.io import PipelineError, atomic_write_parquet, file_hash, peak_rss_mb
from pipeline.labels import CALIPER_SCALE_FR, MATCHING_METHOD_FR
from pipeline.paths import BuildPaths
from pipeline.privacy import is_small, mask_count
from pipeline.results import IndicatorRecord
from pipeline.tables import COHORT, MATCHED, PAIRS
from pipeline.writer import StepWriter

STAT_COLUMNS = ["mean_treated", "mean_control", "smd", "sd_denominator", "variance_ratio", "ecdf_mean",
                "ecdf_max"]


# ---------------------------------------------------------------------------------------- inputs
def load_cohort(paths: BuildPaths, config: StudyConfig) -> pd.DataFrame:
    """The eligible rows of the cached cohort table; PipelineError if cleaning has not run."""
    path = paths.cohort
    if not path.exists():
        data = f"--data {paths.data} " if paths.data is not None else "--data <extract> "
        raise PipelineError(
            f"No cleaned cohort table at {path}. Matching re-uses the cached cleaning outputs: run "
            f"`equilibres clean {data}--out {paths.root}` first."
        )
    import pyarrow.parquet as pq

    # date32 columns as datetime64 (midnight) rather than Python date objects: much faster to load
    risk_set = ["at_risk_until"] if config.matching.time_zero == "treated_index" else []
    needed = list(dict.fromkeys([*COHORT.columns, *risk_set, *config.matching.exact, config.matching.on]))
    needed = [c for c in needed if c != "age_band"]
    missing = [c for c in needed if c not in pq.read_schema(path).names]
    if missing:
        raise PipelineError(
            f"The cohort table {path} lacks column(s) {missing} needed by matching (docs/CONTRACTS.md §2; "
            f"matching.exact / matching.on in the configuration). Re-run `equilibres clean --force`, or "
            f"change the matching columns."
        )
    COHORT.check(path, "Re-run `equilibres clean --force`.")  # and the types of the columns it declares
    # Text columns the file stores dictionary-encoded come as dictionaries at no cost; the others are
    # encoded by cohort_frame, after the ineligible rows are dropped.
    text, meta = coded_columns(pq.read_schema(path)), pq.read_metadata(path)
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    stored = [c for c in text if all(meta.row_group(g).column(names.index(c)).has_dictionary_page
                                     for g in range(meta.num_row_groups))]
    # The ineligible rows are dropped while reading (row group by row group: no copy of the table).
    table = pq.read_table(path, read_dictionary=stored, filters=[("eligible", "=", 1)])
    return cohort_frame(table, path, threads=config.engine.duckdb_threads)


#: The cohort column naming a row: unique, ``<person_id>@<index_date>`` (docs/CONTRACTS.md §2).
ROW_ID_COLUMN = "unit_id"
#: The id :func:`fit_specification` gives the matcher: the row's position in the cohort frame. Hashing
#: millions of text ids takes seconds; positions are unique by construction, :func:`cohort_frame`
#: checks the text ids once, and the outputs get them back by position.
ROW_POSITION = "cohort_row"


def coded_columns(schema: Any) -> list[str]:
    """The text columns of a cohort table (pyarrow schema) read as categoricals: all but the row id.

    At full scale, turning millions of strings into Python objects is most of the load, and hashing
    them is most of the matching (strata, persons, periods); a categorical carries integer codes, and
    its levels are few (a person, a département, a quarter repeat over many rows)."""
    import pyarrow as pa

    return [f.name for f in schema if f.name != ROW_ID_COLUMN and (pa.types.is_string(f.type)
                                                                  or pa.types.is_large_string(f.type))]


def cohort_frame(table: Any, path: Path | str = "the cohort table", threads: int = 2) -> pd.DataFrame:
    """The eligible rows of a cohort table (pyarrow, its other text columns dictionary-encoded) as a
    frame: dates as datetime64, text columns as categoricals with sorted, observed levels (so their
    codes order as the text does), the row id as Arrow-backed text, checked unique (PipelineError
    naming the duplicates otherwise). :func:`plain_text` gives text columns back as Python strings."""
    import pyarrow as pa
    import pyarrow.compute as pc

    eligible = pc.fill_null(pc.equal(table["eligible"], 1), False)
    if not pc.all(eligible).as_py():
        table = table.filter(eligible)
    for name in coded_columns(table.schema):
        table = table.set_column(table.column_names.index(name), name, table[name].dictionary_encode())
    if ROW_ID_COLUMN in table.column_names:
        # One chunk: taking rows from a chunked text column (the matched rows) copies it whole first
        # (kept chunked beyond the 2 GiB a text array can hold).
        with contextlib.suppress(pa.ArrowInvalid):
            ids = pa.chunked_array([table[ROW_ID_COLUMN].combine_chunks()])
            table = table.set_column(table.column_names.index(ROW_ID_COLUMN), ROW_ID_COLUMN, ids)
        repeated = repeated_values(table[ROW_ID_COLUMN], threads)
        if repeated:
            raise PipelineError(
                f"{path}: the column '{ROW_ID_COLUMN}' must be unique among eligible rows (docs/CONTRACTS.md §2, "
                f"<person_id>@<index_date>); {len(repeated)} value(s) repeat, e.g. {repeated[:3]}. Re-run "
                f"`equilibres clean --force`."
            )
    frame = table.to_pandas(date_as_object=False, types_mapper={pa.string(): pd.ArrowDtype(pa.string())}.get)
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = sorted_levels(frame[name])
    return frame


def sorted_levels(column: pd.Series) -> pd.Series:
    """A categorical column with only its observed levels, sorted (codes then order as the values)."""
    codes = column.cat.codes.to_numpy()
    levels = column.cat.categories
    used = np.bincount(codes[codes >= 0], minlength=len(levels)) > 0
    if used.all() and levels.is_monotonic_increasing:
        return column
    keep = levels[used]
    order = np.argsort(np.asarray(keep, dtype=object), kind="stable")
    rank = np.full(len(levels) + 1, -1, dtype=np.int64)  # old code -> new code; the last slot: missing
    rank[np.flatnonzero(used)[order]] = np.arange(len(keep))
    new = pd.Categorical.from_codes(rank[np.where(codes >= 0, codes, len(levels))], categories=keep[order],
                                    validate=False)
    return pd.Series(new, index=column.index, name=column.name)


def repeated_values(ids: Any, threads: int = 2) -> list[str]:
    """The values that occur more than once in a pyarrow (chunked) array of text, nulls as a value.

    Exact, and fast at millions of rows: 64-bit DuckDB hashes of the values are sorted and compared,
    and only values whose hashes collide are compared as text."""
    import duckdb
    import pyarrow as pa

    con = duckdb.connect()
    try:
        con.execute(f"SET threads = {int(threads)}")
        con.register("ids", pa.table({"id": ids}))
        hashes = con.execute("SELECT hash(id) AS h FROM ids").fetchnumpy()["h"]
    finally:
        con.close()
    ordered = np.sort(hashes)
    shared = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    if not len(shared):
        return []
    candidates = pd.Series(ids.take(np.flatnonzero(np.isin(hashes, shared))).to_pylist(), dtype=object)
    return [str(v) for v in candidates[candidates.duplicated()].unique()]


def plain_text(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its categorical and Arrow-backed text columns as Python strings (object, None
    where missing), as the output contracts and the indicators read them: the frames matching writes
    or hands on are small."""
    coded = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype | pd.ArrowDtype)]
    if not coded:
        return frame
    out = frame.copy(deep=False)
    for name in coded:
        column = out[name]
        if isinstance(column.dtype, pd.ArrowDtype):
            out[name] = column.to_numpy(dtype=object, na_value=None)
            continue
        codes = column.cat.codes.to_numpy()
        values = np.full(len(codes), None, dtype=object)
        values[codes >= 0] = np.asarray(column.cat.categories, dtype=object)[codes[codes >= 0]]
        out[name] = values
    return out


def with_age_band(cohort: pd.DataFrame, width: int, max_age_band: int) -> pd.DataFrame:
    """Add `age_band` (lower bound of the band, years); ages >= max_age_band are pooled into one band."""
    out = cohort.copy(deep=False)
    if pd.api.types.is_integer_dtype(cohort["age"].dtype) and not cohort["age"].hasnans:
        # whole years (the cohort table's type): integer arithmetic, no float copies of millions of rows
        age = cohort["age"].to_numpy()
        band = np.where(age >= max_age_band, max_age_band, age // width * width).astype(np.int64)
        out["age_band"] = pd.arrays.IntegerArray(band, np.zeros(len(band), dtype=bool))
        return out
    age = cohort["age"].to_numpy(dtype=float, na_value=np.nan)
    band = np.where(age >= max_age_band, max_age_band, np.floor(age / width) * width)
    known = np.isfinite(band)
    out["age_band"] = pd.arrays.IntegerArray(np.where(known, band, 0).astype(np.int64), ~known)
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
        person=m.person or None, period=m.period or None, order=m.order, seed=m.seed,
        ps_covariates=list(m.ps_covariates) or None, ps_model=m.ps_model, ps_scale=m.ps_scale, discard=m.discard,
        **time_zero,
    )


def reuse_sizes(matcher: Matcher, min_cell_count: int) -> dict[str, Any]:
    """How matched control persons are reused, for params.json: counts of persons below ``min_cell_count`` are
    masked (None), and so is the share of rows from reused persons when their count is masked."""
    r = matcher.reuse_
    reused = mask_count(r.persons_reused, min_cell_count)
    return {
        "control_persons_matched": mask_count(matcher.n_control_persons_, min_cell_count),
        "control_persons_used_once": mask_count(r.persons_once, min_cell_count),
        "control_persons_reused": reused,
        "control_max_uses": r.max_uses,  # a number of matched sets, not of people
        "control_rows_share_from_reused": round(r.share_rows_reused, 4) if reused is not None else None,
    }


def cohort_fingerprint(paths: BuildPaths) -> str:
    """The content hash of the cohort table (first 16 hex digits), recorded beside matching outputs:
    the hash cleaning recorded when the file is as cleaning left it (no re-reading), else computed."""
    recorded = provenance.current_hash(paths, "cohort")
    return (recorded if recorded is not None else file_hash(paths.cohort)["sha256"])[:16]


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
def suppress_balance(balance: pd.DataFrame, min_cell_count: int) -> pd.DataFrame:
    """Mask statistics of rows that would reveal a small count of people (dummies of rare levels)."""
    out = balance.copy()
    counts_t = out["mean_treated"] * out["n_treated"]
    counts_c = out["mean_control"] * out["n_control"]
    binary = out["type"] == "binary"
    small = binary & (
        counts_t.round().map(lambda c: is_small(c, min_cell_count)) | counts_c.round().map(lambda c: is_small(c, min_cell_count))
        | (out["n_treated"] - counts_t).round().map(lambda c: is_small(c, min_cell_count))
    )
    small |= out["n_treated"].map(lambda c: is_small(c, min_cell_count)) | out["n_control"].map(lambda c: is_small(c, min_cell_count))
    out.loc[small, STAT_COLUMNS + ["n_treated", "n_control", "ess_control"]] = np.nan
    out["suppressed"] = small
    return out


# ---------------------------------------------------------------------------------------- one match
@dataclass(frozen=True)
class FitOutcome:
    """A fitted matcher and the derived tables of one specification (no file access)."""

    matcher: Matcher
    frame: pd.DataFrame
    matched: pd.DataFrame        # matched rows keyed by unit = person at time zero (matched_units)
    balance: pd.DataFrame
    profiles: pd.DataFrame
    indicator: IndicatorRecord
    sizes: dict[str, int]
    pairs: pd.DataFrame          # the matcher's pairs with cohort unit ids (contract PAIRS)


def fit_specification(cohort: pd.DataFrame, config: StudyConfig, stages=("before", "after"),
                      before_cache: Path | None = None) -> FitOutcome:
    """Fit one specification. ``before_cache`` = a parquet file holding the 'before' balance rows of
    this very cohort and covariate set (they do not depend on the matching settings): read if present,
    written otherwise — re-running with other settings then skips the pass over every candidate row."""
    frame = with_age_band(cohort, config.cohort.age_band_width, config.cohort.max_age_band)
    frame[ROW_POSITION] = np.arange(len(frame), dtype=np.int32 if len(frame) < 2**31 else np.int64)
    matcher = matcher_from_config(config)
    try:
        matcher.fit(frame, treatment="treated", id=ROW_POSITION)
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
    unmatched_rows = matcher.unmatched_.set_index(ROW_POSITION)
    treated_rows = treated[ROW_POSITION]
    mask = treated_rows.isin(unmatched_rows.index).to_numpy()
    reasons = treated_rows.map(unmatched_rows["unmatched_reason"])
    treated = plain_text(treated.drop(columns=ROW_POSITION))
    flags = list(config.cohort.complex_flags)
    min_cell_count = config.report.min_cell_count
    level = config.indicators.ci_level
    profiles = unmatched_profiles(treated, mask, flags, config.matching.balance_covariates, min_cell_count, level,
                                  reasons=reasons)
    no_comparable = mask & (treated_rows.map(unmatched_rows["n_comparable_any_period"]).fillna(1).to_numpy() == 0)
    indicator = unmatched_indicator(treated, mask, flags, min_cell_count, config.published.get(INDICATOR_ID),
                                    method_description(config), level, method_fr=method_description_fr(config),
                                    no_comparable=no_comparable)
    matched = matched_units(plain_text(matcher.matched_.drop(columns=ROW_POSITION)))
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
    return FitOutcome(matcher, frame, matched, bal, profiles, indicator, sizes,
                      labelled_pairs(matcher.pairs_, frame[ROW_ID_COLUMN]))


def labelled_pairs(pairs: pd.DataFrame, ids: pd.Series) -> pd.DataFrame:
    """The matcher's pairs (treated and control as row positions) with the rows' ids, as text."""
    out = pairs.copy()
    for side in ("treated_id", "control_id"):
        out[side] = ids.iloc[pairs[side].to_numpy()].to_numpy(dtype=object, na_value=None)
    return out


def matched_units(matched: pd.DataFrame) -> pd.DataFrame:
    """The matcher's rows keyed by *unit* = a person at a time zero: ``unit_id`` becomes
    ``<person_id>@<index_date>`` (a control's index date is its treated patient's, under risk-set
    matching) and the cohort row it came from is kept in ``cohort_unit_id``."""
    m = matched.rename(columns={"unit_id": "cohort_unit_id"})
    dates = pd.to_datetime(m["index_date"]).to_numpy()
    day = pd.Series(dates.astype("datetime64[D]").astype(str), index=m.index).where(~np.isnat(dates))
    m.insert(0, "unit_id", m["person_id"].astype(str) + "@" + day)
    return m


def matching_flow(sizes: dict[str, int]) -> pd.DataFrame:
    """Cohort-flow rows continuing cleaning's `eligible` row (rows = cohort rows, treated + controls).

    * `matched`: rows_in = eligible cohort rows, rows_out = rows kept by matching (matched treated +
      distinct controls used), rows_dropped = the others (unused candidate controls, unmatched treated).
    * `unmatched`: the treated side only: rows_in = eligible treated, rows_out = treated with at least one
      control, rows_dropped = treated with no control.
    """
    # Imported here: the module of the cleaning rules loads ibis, a second at start-up.
    from pipeline.stages.rules import DESCRIPTIONS_FR

    kept = sizes["treated_matched"] + sizes["controls_matched"]
    return pd.DataFrame([
        {"stage": "cohort", "rule": "matched", "unit": "cohort_rows", "rows_in": sizes["eligible_rows"], "rows_out": kept,
         "rows_dropped": sizes["eligible_rows"] - kept, "euros_dropped": 0.0,
         "description": "Rows kept by matching: matched ÉQUILIBRES patients and the distinct controls used "
                        "(candidate controls not selected and unmatched patients are dropped)",
         "source": "docs/matching.md", "description_fr": DESCRIPTIONS_FR["matched"]},
        {"stage": "cohort", "rule": "unmatched", "unit": "persons", "rows_in": sizes["treated"], "rows_out": sizes["treated_matched"],
         "rows_dropped": sizes["unmatched_treated"], "euros_dropped": 0.0,
         "description": "ÉQUILIBRES patients (eligible at inclusion) for whom no control was found in their "
                        "exact stratum within the caliper (dropped = unmatched)",
         "source": "docs/matching.md", "description_fr": DESCRIPTIONS_FR["unmatched"]},
    ])


@dataclass(frozen=True)
class MatchResult:
    """What `equilibres match` produced; renders itself (counts below the small-cell threshold masked)."""

    summary: MatchSummary
    indicator: IndicatorRecord
    sizes: dict[str, int]
    outputs: dict[str, Path]
    seconds: float
    min_cell_count: int = 10
    profiles: pd.DataFrame = field(default=None, repr=False)

    def render(self) -> str:
        s = self.sizes
        m = self.min_cell_count

        def f(v):
            v = mask_count(v, m)
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
        if ind.value is None:
            lines.append(f"{ind.id}: suppressed (small counts)")
        else:
            pub = "" if ind.published is None else f" — published {ind.published:.0%}"
            lines.append(f"{ind.id}: {ind.value:.1%} [{ind.ci_low:.1%}, {ind.ci_high:.1%}] "
                         f"(n = {ind.n:,}){pub}")
        lines.append(f"outputs in {self.outputs['pairs'].parent} ({self.seconds:.1f} s)")
        return "\n".join(lines)


def run(paths: BuildPaths, config: StudyConfig, *, force: bool = False) -> MatchResult:
    """Match on the cached cohort and write matching/* (docs/CONTRACTS.md §3).

    Matching always recomputes (seconds on the cached cohort); ``force`` is accepted for the common
    step signature. Only the 'before' balance rows, which do not depend on the matching settings, are
    cached under ``matching/cache``.
    """
    start = time.perf_counter()
    with StepWriter(paths, "match") as out:
        cohort = load_cohort(paths, config)
        fingerprint = cohort_fingerprint(paths)
        key = hashlib.sha256(json.dumps([fingerprint, balance_covariates(config), config.section("cohort")],
                                        sort_keys=True).encode()).hexdigest()[:16]
        cache = paths.matching / "cache" / f"balance_before_{key}.parquet"
        outcome = fit_specification(cohort, config, before_cache=None if force else cache)
        m = outcome.matcher
        min_cell_count = config.report.min_cell_count
        out.table("pairs", outcome.pairs, schema=PAIRS)
        out.table("matched", outcome.matched, schema=MATCHED)
        out.table("balance", suppress_balance(outcome.balance, min_cell_count))
        out.table("unmatched_profiles", outcome.profiles)
        out.records("indicator_unmatched", [outcome.indicator])
        out.table("attrition_matching", matching_flow(outcome.sizes))
        seconds = time.perf_counter() - start
        facts = MatchingFacts(
            method_description=method_description(config),
            caliper_width=m.caliper_width_,
            pooled_sd=getattr(m, "pooled_sd_", None),
            sizes=MatchingSizes(**{k: (mask_count(v, min_cell_count) if isinstance(v, int) and not k.startswith("strata")
                                       else v) for k, v in outcome.sizes.items()} | reuse_sizes(m, min_cell_count)),
            min_cell_count=min_cell_count,
            cohort_file=str(paths.cohort),
            cohort_fingerprint=fingerprint,
            config_fingerprint=config.fingerprint("matching", "cohort"),
            seconds=round(seconds, 3),
            peak_rss_mb=peak_rss_mb(),
        )
        out.params(config, ["matching", "cohort"], **facts.to_dict())
    summary = MatchSummary.from_matcher(m, outcome.balance)
    return MatchResult(summary, outcome.indicator, outcome.sizes, dict(out.written), seconds, min_cell_count,
                       outcome.profiles)
