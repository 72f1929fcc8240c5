"""`equilibres sensitivity`: how far the headline effects can be trusted (issue 14) (:func:`run`).

Reads the cleaning and matching outputs (never recomputing them), rebuilds the headline matched
analysis (:func:`indicators.analysis.analyse`, the same matched sets, time zero, windows and bootstrap
as `equilibres indicators`) and writes under ``build/sensitivity/`` through
:class:`pipeline.writer.StepWriter`: ``summary.json`` (one record per headline with its verdict, and the
negative-control block), ``headlines.csv``, ``negative_controls.csv``, ``event_study.csv``,
``cumulative_incidence.csv``, ``generalisability.csv``, ``two_part.csv`` and ``params.json``.
Aggregates only; counts of people below ``report.min_cell_count`` are masked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from indicators.analysis import MatchedAnalysis, analyse
from indicators.inputs import load_claims, load_matched, require_inputs
from indicators.outcomes import perimeter_categories
from indicators.sensitivity.curves import arm_curves, first_stays, unit_times
from indicators.sensitivity.event_study import EventStudyResult, event_study_estimates, monthly_frame
from indicators.sensitivity.generalisability import generalisability
from indicators.sensitivity.headlines import HeadlineSensitivity, headline_sensitivity, unit_frame
from indicators.sensitivity.negative_controls import NegativeControlResult, negative_control_analysis
from indicators.sensitivity.two_part import two_part_model
from indicators.sensitivity.verdict import Verdict, headline_verdict
from indicators.spending import avoided_per_py, control_rate, treated_rate
from pipeline.config import StudyConfig
from pipeline.facts import (
    BalanceOverlap,
    CheckFacts,
    EventStudyTest,
    HeadlineDiagnostics,
    NegativeControlFacts,
    SensitivityFacts,
    SensitivitySizes,
    SensitivitySummary,
    VerdictThresholds,
)
from pipeline.io import PipelineError, file_hash, peak_rss_mb
from pipeline.paths import BuildPaths
from pipeline.privacy import mask_count, suppress_small_counts
from pipeline.results import json_number
from pipeline.writer import StepWriter


@dataclass(frozen=True)
class SensitivityResult:
    """Everything `equilibres sensitivity` computed, and where it wrote it."""

    headlines: list[HeadlineSensitivity]
    verdicts: list[Verdict]
    negative_controls: NegativeControlResult | None
    event_study: EventStudyResult
    summary: SensitivitySummary
    outputs: dict[str, Path]
    seconds: float
    notes: list[str] = field(default_factory=list)

    def summary_frame(self) -> pd.DataFrame:
        return pd.DataFrame([h.to_dict() for h in self.summary.headlines])

    def render(self) -> str:
        lines = [f"Sensitivity analyses of {len(self.headlines)} headlines in {self.seconds:.1f} s"]
        lines.append(f"{'headline':36} {'E-value':>8} {'E(CI)':>7} {'Γ':>6} {'MDRR':>6} {'pretrend p':>10}  verdict")
        for h in self.summary.headlines:
            def f(x: Any, fmt: str = ".2f") -> str:
                return "NA" if x is None else format(x, fmt)
            lines.append(f"{h.id[:36]:36} {f(h.evalue):>8} {f(h.evalue_ci):>7} "
                         f"{f(h.rosenbaum_gamma):>6} {f(h.mdrr):>6} {f(h.pretrend_p, '.3f'):>10}  {h.verdict}")
        lines.extend(self.notes)
        lines.append(f"outputs in {self.outputs['sensitivity_summary'].parent}")
        return "\n".join(lines)


def balance_and_overlap(paths: BuildPaths) -> tuple[float | None, float | None]:
    """Max |SMD| after matching (matching/balance.csv) and the share of eligible treated patients
    matched (matching/attrition_matching.csv, rule "unmatched": rows_out / rows_in)."""
    max_smd = share = None
    bal_path = paths.output("balance")
    if bal_path.exists():
        bal = pd.read_csv(bal_path)
        after = pd.to_numeric(bal.loc[bal["stage"] == "after", "smd"], errors="coerce").abs().dropna()
        max_smd = float(after.max()) if not after.empty else None
    att_path = paths.output("attrition_matching")
    if att_path.exists():
        att = pd.read_csv(att_path)
        row = att[att["rule"] == "unmatched"]
        if not row.empty and float(row["rows_in"].iloc[0]) > 0:
            share = float(row["rows_out"].iloc[0]) / float(row["rows_in"].iloc[0])
    return max_smd, share


def two_part_crosscheck(an: MatchedAnalysis) -> pd.DataFrame:
    """The two-part model of spending per patient-year beside the bootstrap ratio estimates."""
    rows = unit_frame(an)
    boot = {"treated": an.est(treated_rate), "control": an.est(control_rate), "avoided": an.est(avoided_per_py),
            "ratio": an.est(lambda T: treated_rate(T) / control_rate(T))}
    res = two_part_model(rows["s_perimeter"].to_numpy(), rows["pyears"].to_numpy(), rows["treated"].to_numpy(),
                         rows["w"].to_numpy(), rows["cluster_idx"].to_numpy(), an.boot.ci_level,
                         bootstrap={k: (e.value, e.ci_low, e.ci_high) for k, e in boot.items()})
    unit = {"treated": "eur_per_patient_year", "control": "eur_per_patient_year", "avoided": "eur_per_patient_year",
            "ratio": "ratio"}
    return res.table.assign(unit=res.table["quantity"].map(unit), n_rows=res.n_rows, n_clusters=res.n_clusters,
                            note="; ".join(res.notes))


def _clean(x: Any) -> Any:
    return json_number(x)


def run(paths: BuildPaths, config: StudyConfig, *, force: bool = False) -> SensitivityResult:
    """Compute every sensitivity analysis of the headline effects; write sensitivity/.

    Always recomputes from the cached cleaning and matching outputs; ``force`` is accepted for the
    common step signature.
    """
    start = time.perf_counter()
    require_inputs(paths.root)
    sc, ic = config.sensitivity, config.indicators
    min_cell = config.report.min_cell_count
    notes: list[str] = []
    with StepWriter(paths, "sensitivity") as out:
        claims = load_claims(paths.root, config)
        matched = load_matched(paths.root)
        an = analyse(matched, claims, config)
        heads = headline_sensitivity(an, sc.alpha, sc.power)
        nc = negative_control_analysis(an, config) if sc.negative_controls else None
        if nc is None:
            notes.append("note: no sensitivity.negative_controls configured; the negative-control check is not judged.")

        units = an.outcomes.reset_index(names="unit_id")[["unit_id", "person_id", "index_date", "fu_end"]]
        spend_cols = [f"spend_{c}" for c in perimeter_categories(config)]
        con = claims.connect()
        try:
            monthly = monthly_frame(con, units, spend_cols, sc.event_months_before, sc.event_months_after,
                                    claims_start=config.study.claims_start)
            stays = first_stays(con, units)
        finally:
            con.close()
        es = event_study_estimates(an.membership, monthly, sc.event_months_before, sc.event_months_after,
                         sc.event_replicates, ic.seed, ic.ci_level)
        curves = arm_curves(an.membership, unit_times(an.outcomes, stays), sc.curve_months, sc.curve_replicates,
                            ic.seed, ic.ci_level)
        cohort_path = paths.cohort
        if not cohort_path.exists():
            raise PipelineError(f"{cohort_path} is missing. Run `equilibres clean --data <extract> --out {paths.root}`.")
        cohort = pd.read_parquet(cohort_path)
        treated_units = matched.loc[matched["treated"] == 1,
                                    "cohort_unit_id" if "cohort_unit_id" in matched.columns else "unit_id"]
        covariates = [*dict.fromkeys([*config.matching.balance_covariates, *config.cohort.complex_flags])]
        gen = generalisability(cohort, treated_units, covariates)
        two_part = two_part_crosscheck(an)

        max_smd, matched_share = balance_and_overlap(paths)
        if max_smd is None or matched_share is None:
            notes.append("note: matching/balance.csv or attrition_matching.csv missing: balance or overlap not judged.")
        sys_err = None if nc is None else nc.systematic_error_mean
        sys_err_ci = None if nc is None else (nc.systematic_error_ci_low, nc.systematic_error_ci_high)
        records, verdicts = [], []
        for h in heads:
            pre_p = es.pretrend_p(h.pretrend_outcome)
            v = headline_verdict(h.id, max_abs_smd=max_smd, matched_share=matched_share, pretrend_p=pre_p,
                                 systematic_error=sys_err, systematic_error_ci=sys_err_ci, mde=_clean(h.detectable.mde), thresholds={
                                     "max_abs_smd": sc.max_abs_smd, "min_matched_share": sc.min_matched_share,
                                     "pretrend_alpha": sc.pretrend_alpha, "max_systematic_error": sc.max_systematic_error,
                                     "min_effect": sc.min_effect_of_interest.get(h.id)})
            verdicts.append(v)
            records.append(HeadlineDiagnostics(
                id=h.id, value=_clean(h.value), ci_low=_clean(h.ci_low), ci_high=_clean(h.ci_high),
                evalue=_clean(h.evalue.evalue), evalue_ci=_clean(h.evalue.evalue_ci),
                evalue_scale=h.evalue.scale, rosenbaum_gamma=_clean(h.rosenbaum.gamma),
                rosenbaum_test=h.rosenbaum.test, rosenbaum_p=_clean(h.rosenbaum.p_value),
                rosenbaum_pairs=mask_count(h.rosenbaum.n_pairs, min_cell),
                mdrr=_clean(h.detectable.mdrr), mde=_clean(h.detectable.mde),
                pretrend_outcome=h.pretrend_outcome, pretrend_p=_clean(pre_p),
                verdict=v.verdict, reasons=tuple(v.reasons),
                checks={c.name: CheckFacts(value=_clean(c.value), threshold=_clean(c.threshold), passed=c.passed)
                        for c in v.checks},
            ))
        # Written through its declaration (pipeline/facts.py), which the report reads it with.
        summary = SensitivitySummary(
            headlines=tuple(records),
            negative_controls=None if nc is None else NegativeControlFacts(
                **{k: _clean(v) for k, v in nc.summary().items()}),
            event_study={r["outcome"]: EventStudyTest(**{k: _clean(r[k]) for k in (
                "unit", "pretrend_chi2", "pretrend_df", "pretrend_p", "did", "did_ci_low", "did_ci_high")})
                for r in es.tests.to_dict("records")},
            balance=BalanceOverlap(max_abs_smd_after=_clean(max_smd), matched_share=_clean(matched_share)),
            thresholds=VerdictThresholds(**{k: getattr(sc, k) for k in (
                "max_abs_smd", "min_matched_share", "pretrend_alpha", "max_systematic_error", "alpha", "power",
                "min_effect_of_interest")}),
            ci_level=ic.ci_level, replicates=an.boot.n_replicates,
            event_replicates=es.replicates, curve_replicates=sc.curve_replicates,
            notes=tuple(notes),
        )
        out.json("sensitivity_summary", summary.to_dict())
        head_table = pd.DataFrame([h.summary_frame().iloc[0].to_dict() for h in heads])
        head_table["verdict"] = [v.verdict for v in verdicts]
        head_table["rosenbaum_pairs"] = [mask_count(n, min_cell) for n in head_table["rosenbaum_pairs"]]
        tables = {"sensitivity_headlines": head_table, "event_study": es.table,
                  "cumulative_incidence": curves.table, "generalisability": gen.table, "two_part": two_part}
        if nc is not None:
            tables["negative_controls"] = nc.summary_frame()
        for key, table in tables.items():
            out.table(key, suppress_small_counts(table, min_cell, columns=COUNTED[key]))
        seconds = time.perf_counter() - start
        facts = SensitivityFacts(
            inputs={p.name: file_hash(p)["sha256"][:16] for p in (paths.persons, paths.panel, paths.stays,
                                                                   paths.output("matched"))},
            sizes=SensitivitySizes(treated=mask_count(an.n_treated, min_cell), controls=mask_count(an.n_control, min_cell),
                                   matched_sets=mask_count(an.n_sets, min_cell), replicates=an.boot.n_replicates),
            negative_controls_included=nc is not None, seconds=round(seconds, 3), peak_rss_mb=peak_rss_mb())
        out.params(config, ["sensitivity", "indicators", "study", "report"], **facts.to_dict())
    return SensitivityResult(heads, verdicts, nc, es, summary, dict(out.written), seconds, notes)


# Columns of each table that hold counts of people (masked below report.min_cell_count).
COUNTED = {
    "sensitivity_headlines": (),
    "event_study": ("n_treated", "n_control"),
    "cumulative_incidence": ("n_at_risk",),
    "generalisability": ("n_matched_treated", "n_all_treated", "n_unmatched_complex"),
    "two_part": (),
    "negative_controls": (),
}
