"""`equilibres indicators`: every claims indicator with its CI, from the cached cleaning and matching
outputs (never recomputed) (:func:`run`). Writes indicators/{indicators.json, *.csv, params.json}
through :class:`pipeline.writer.StepWriter`. Aggregates only: no identifiers; counts of people below
``report.min_cell_count`` are suppressed (and flagged) in every CSV and record.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from indicators.analysis import analyse
from indicators.economics import economics
from indicators.end_of_life import end_of_life
from indicators.eol_balance import decedent_balance
from indicators.followup import followup
from indicators.hospitalisation import hospitalisation
from indicators.inference import difference_in_differences, regression_crosscheck
from indicators.inputs import load_claims, load_matched, require_inputs
from indicators.outcomes import perimeter_categories
from indicators.results import Indicator, format_value, records_frame
from indicators.spending import spending
from pipeline.config import StudyConfig
from pipeline.facts import BootstrapFacts, IndicatorsFacts, IndicatorsSizes
from pipeline.io import file_hash, peak_rss_mb
from pipeline.paths import BuildPaths
from pipeline.privacy import is_small, mask_count, suppress_small_counts
from pipeline.results import IndicatorRecord, read_records
from pipeline.writer import StepWriter


@dataclass(frozen=True)
class IndicatorRunResult:
    indicators: list[Indicator]
    records: list[IndicatorRecord]
    outputs: dict[str, Path]
    n_treated: int
    n_control: int
    n_sets: int
    replicates: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"Indicators: {len(self.records)} records from {self.n_sets} matched sets "
                 f"({self.replicates} bootstrap replicates) in {self.seconds:.1f} s"]
        lines.append(f"{'indicator':33} {'value':>10} {'CI':>23} {'published':>10}")
        for r in self.records:
            ci = "" if r.ci_low is None else f"[{format_value(r.ci_low)}; {format_value(r.ci_high)}]"
            pub = "" if r.published is None else format_value(r.published)
            lines.append(f"{r.id[:33]:33} {format_value(r.value):>10} {ci:>23} {pub:>10}")
        lines.extend(self.notes)
        lines.append(f"outputs in {self.outputs['indicators'].parent}")
        return "\n".join(lines)


# Tables of indicators/ and the CSV output each is written to.
INDICATOR_TABLES = ("indicators_csv", "spending_by_category", "eol", "hospitalisation", "followup",
                 "economics_scenarios", "caseload", "did", "regression_crosscheck", "eol_balance")


def run(paths: BuildPaths, config: StudyConfig, *, force: bool = False) -> IndicatorRunResult:
    """Compute every claims indicator from clean/ and matching/; write indicators/.

    The indicators always recompute from the cached inputs; ``force`` is accepted for the common step
    signature.
    """
    start = time.perf_counter()
    require_inputs(paths.root)
    perimeter_categories(config)  # fail early on a bad perimeter
    min_cell_count = config.report.min_cell_count
    with StepWriter(paths, "indicators") as out:
        claims = load_claims(paths.root, config)
        matched = load_matched(paths.root)
        an = analyse(matched, claims, config)
        fu, hosp, eol = followup(an), hospitalisation(an), end_of_life(an)
        spend, econ = spending(an), economics(an)
        cross, did = regression_crosscheck(an), difference_in_differences(an)
        eol_bal = decedent_balance(an, matched)
        indicators = [*fu.indicators, *hosp.indicators, *eol.indicators, *spend.indicators,
                      *econ.indicators, did.indicator]
        records = [ind.to_record(config) for ind in indicators]
        notes = []
        unmatched_path = paths.output("indicator_unmatched")
        if unmatched_path.exists():
            records[:0] = read_records(unmatched_path)
        else:
            notes.append(f"note: {unmatched_path} not found; unmatched_share_complex not included "
                         f"(re-run `equilibres match`).")
        records = [suppress_record_counts(r, min_cell_count) for r in records]
        out.records("indicators", records)
        flat = records_frame(indicators, config)
        extra = [r for r in records if r.id not in set(flat["id"])]
        if extra:
            flat = pd.concat([pd.DataFrame([{k: getattr(r, k) for k in flat.columns} for r in extra]), flat],
                             ignore_index=True)
        tables = {
            "indicators_csv": flat, "spending_by_category": spend.table, "eol": eol.table,
            "hospitalisation": hosp.table, "followup": fu.table, "economics_scenarios": econ.scenarios,
            "caseload": econ.caseload, "did": did.table, "regression_crosscheck": cross.table,
            "eol_balance": eol_bal,
        }
        for key in INDICATOR_TABLES:
            out.table(key, suppress_small_counts(tables[key], min_cell_count))
        seconds = time.perf_counter() - start
        facts = IndicatorsFacts(
            perimeter=tuple(perimeter_categories(config)),
            inputs={p.name: file_hash(p)["sha256"][:16] for p in (paths.persons, paths.panel, paths.stays,
                                                                   paths.eol_daily, paths.output("matched"))},
            data_dir=None if paths.data is None else str(paths.data),
            extract_scale=extract_scale(paths.data),
            sizes=IndicatorsSizes(treated=mask_count(an.n_treated, min_cell_count),
                                  controls=mask_count(an.n_control, min_cell_count),
                                  matched_sets=mask_count(an.n_sets, min_cell_count),
                                  control_persons=mask_count(an.n_control_persons, min_cell_count),
                                  resampling_clusters=mask_count(an.n_clusters, min_cell_count),
                                  replicates=an.boot.n_replicates),
            bootstrap=BootstrapFacts(kind="bootstrap of matched sets; sets sharing a control person resampled "
                                          "together (clusters of the set-person graph); percentile CI",
                                     seed=config.indicators.seed),
            seconds=round(seconds, 3),
            peak_rss_mb=peak_rss_mb(),
        )
        out.params(config, ["indicators", "economics", "study", "report"], **facts.to_dict())
    return IndicatorRunResult(indicators, records, dict(out.written), an.n_treated, an.n_control, an.n_sets,
                              an.boot.n_replicates, seconds, notes)


def extract_scale(data_dir: Path | None) -> float:
    """Size of a synthetic extract relative to the study (its truth.json ``scale``); 1 for a real one."""
    truth = None if data_dir is None else Path(data_dir) / "truth.json"
    if truth is None or not truth.exists():
        return 1.0
    return float(json.loads(truth.read_text(encoding="utf-8")).get("scale") or 1.0)


def suppress_record_counts(record: IndicatorRecord, min_cell_count: int) -> IndicatorRecord:
    """Mask the counts of people inside a count-valued record: its value (``suppressed``) and its arm
    counts (listed in ``suppressed_arm_values``)."""
    if record.unit != "count":
        return record
    changes: dict = {}
    if is_small(record.value, min_cell_count):
        changes.update(value=None, suppressed=True)
    small_arms = [k for k, v in record.arm_values.items() if is_small(v, min_cell_count)]
    if small_arms:
        changes["arm_values"] = {k: (None if k in small_arms else v) for k, v in record.arm_values.items()}
        changes["suppressed_arm_values"] = (*record.suppressed_arm_values, *small_arms)
    return dataclasses.replace(record, **changes) if changes else record
