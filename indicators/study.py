"""`equilibres indicators`: every claims indicator with its CI, from the cached cleaning and matching
outputs (never recomputed). Writes build/indicators/{indicators.json, *.csv, params.json} atomically
under the build lock. Aggregates only: no identifiers; counts of people below
``report.min_cell_count`` are suppressed (and flagged) in every CSV and record.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
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
from indicators.results import Indicator, _fmt, records_frame
from indicators.spending import spending
from pipeline.config import StudyConfig, write_params
from pipeline.io import atomic_write_csv, atomic_write_json, build_lock, peak_rss_mb, restore_on_failure

# CSV columns that count people (suppressed when 0 < count < report.min_cell_count).
_COUNT_COLUMNS = ("n", "n_units", "n_treated", "n_control", "deaths", "end_death", "end_study", "end_exit",
                  "patients", "weighted_n", "control_weighted")


def suppress_small_counts(frame: pd.DataFrame, min_cell: int) -> pd.DataFrame:
    """Mask counts of people in (0, min_cell) and flag the row (``suppressed`` lists the columns)."""
    f = frame.copy()
    flags = pd.Series([""] * len(f), index=f.index, dtype=object)
    for col in _COUNT_COLUMNS:
        if col not in f.columns:
            continue
        v = pd.to_numeric(f[col], errors="coerce")
        small = (v > 0) & (v < min_cell)
        if small.any():
            f[col] = f[col].astype(object).where(~small, None)
            flags[small] = flags[small] + np.where(flags[small] == "", "", ";") + col
    f["suppressed"] = flags
    return f


@dataclass(frozen=True)
class IndicatorRunResult:
    indicators: list[Indicator]
    records: list[dict]
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
            ci = ("" if r.get("ci_low") is None else f"[{_fmt(r['ci_low'])}; {_fmt(r['ci_high'])}]")
            pub = "" if r.get("published") is None else _fmt(r["published"])
            lines.append(f"{r['id'][:33]:33} {_fmt(r.get('value')):>10} {ci:>23} {pub:>10}")
        lines.extend(self.notes)
        lines.append(f"outputs in {self.outputs['indicators'].parent}")
        return "\n".join(lines)


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def run_indicators(build: Path, config: StudyConfig, data_dir: Path | None = None) -> IndicatorRunResult:
    """Compute every claims indicator from build/clean and build/matching; write build/indicators/."""
    start = time.perf_counter()
    build = Path(build)
    paths = require_inputs(build)
    perimeter_categories(config)  # fail early on a bad perimeter
    min_cell = config.report.min_cell_count
    # restore_on_failure: all of indicators/ or nothing, so params.json never describes other outputs.
    with build_lock(build, "indicators"), restore_on_failure(build, paths.indicators):
        claims = load_claims(build, config)
        matched = load_matched(build)
        an = analyse(matched, claims, config)
        fu, hosp, eol = followup(an), hospitalisation(an), end_of_life(an)
        spend, econ = spending(an), economics(an)
        cross, did = regression_crosscheck(an), difference_in_differences(an)
        eol_bal = decedent_balance(an, matched)
        indicators = [*fu.indicators, *hosp.indicators, *eol.indicators, *spend.indicators,
                      *econ.indicators, did.indicator]
        records = [ind.to_record(config) for ind in indicators]
        notes = []
        unmatched_path = paths.matching / "indicator_unmatched.json"
        if unmatched_path.exists():
            rec = json.loads(unmatched_path.read_text(encoding="utf-8"))
            records.insert(0, rec[0] if isinstance(rec, list) else rec)
        else:
            notes.append(f"note: {unmatched_path} not found; unmatched_share_complex not included "
                         f"(re-run `equilibres match`).")
        _suppress_record_counts(records, min_cell)

        out = paths.indicators
        outputs = {name: out / f"{name}.csv" for name in
                   ("indicators", "spending_by_category", "eol", "hospitalisation", "followup",
                    "economics_scenarios", "caseload", "did", "regression_crosscheck", "eol_balance")}
        outputs["json"] = out / "indicators.json"
        outputs["params"] = out / "params.json"
        atomic_write_json(outputs["json"], records)
        flat = records_frame(indicators, config)
        extra = [r for r in records if r["id"] not in set(flat["id"])]
        if extra:
            flat = pd.concat([pd.DataFrame([{k: r.get(k) for k in flat.columns} for r in extra]), flat],
                             ignore_index=True)
        tables = {
            "indicators": flat, "spending_by_category": spend.table, "eol": eol.table,
            "hospitalisation": hosp.table, "followup": fu.table, "economics_scenarios": econ.scenarios,
            "caseload": econ.caseload, "did": did.table, "regression_crosscheck": cross.table,
            "eol_balance": eol_bal,
        }
        for name, frame in tables.items():
            atomic_write_csv(outputs[name], suppress_small_counts(frame, min_cell))
        seconds = time.perf_counter() - start
        write_params(
            config, outputs["params"], sections=["indicators", "economics", "study", "report"],
            perimeter=perimeter_categories(config),
            inputs={p.name: _sha(p) for p in (paths.persons, paths.panel, paths.stays, paths.eol_daily,
                                               paths.matching / "matched.parquet")},
            data_dir=None if data_dir is None else str(data_dir),
            extract_scale=extract_scale(data_dir),
            sizes={"treated": _mask(an.n_treated, min_cell), "controls": _mask(an.n_control, min_cell),
                   "matched_sets": _mask(an.n_sets, min_cell),
                   "control_persons": _mask(an.n_control_persons, min_cell),
                   "resampling_clusters": _mask(an.n_clusters, min_cell),
                   "replicates": an.boot.n_replicates},
            bootstrap={"kind": "bootstrap of matched sets; sets sharing a control person resampled together "
                               "(clusters of the set-person graph); percentile CI",
                       "seed": config.indicators.seed},
            seconds=round(seconds, 3),
            peak_rss_mb=peak_rss_mb(),
        )
    return IndicatorRunResult(indicators, records, {**outputs, "indicators": outputs["json"]},
                              an.n_treated, an.n_control, an.n_sets, an.boot.n_replicates, seconds, notes)


def extract_scale(data_dir: Path | None) -> float:
    """Size of a synthetic extract relative to the study (its truth.json ``scale``); 1 for a real one."""
    truth = None if data_dir is None else Path(data_dir) / "truth.json"
    if truth is None or not truth.exists():
        return 1.0
    return float(json.loads(truth.read_text(encoding="utf-8")).get("scale") or 1.0)


def _mask(n: int, min_cell: int) -> int | None:
    return None if 0 < n < min_cell else n


def _suppress_record_counts(records: list[dict], min_cell: int) -> None:
    """Counts of people inside records (count-valued indicators and their arm counts)."""
    for r in records:
        if r.get("unit") == "count":
            v = r.get("value")
            if v is not None and 0 < v < min_cell:
                r["value"] = None
                r["value_suppressed"] = True
            arms = r.get("arm_values") or {}
            for k, v in list(arms.items()):
                if v is not None and 0 < v < min_cell:
                    arms[k] = None
                    r.setdefault("suppressed_arm_values", []).append(k)
