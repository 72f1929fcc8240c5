"""The columns of every result CSV and what each holds, declared once (pandera schemas).

Each CSV declared in :data:`pipeline.paths.OUTPUTS` has a schema here: its columns, and per column a
*kind* (``metadata={"kind": ...}``) that says how a reader must treat its values (see :data:`KINDS`).
The producer validates a table with :func:`validate_result` before writing it; the report validates
it again on read and formats every cell by its declared kind, never by guessing from a column name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from pipeline.io import PipelineError
from pipeline.paths import OUTPUT

KINDS: Mapping[str, str] = {
    "text": "words, codes or yes/no flags, shown as they are (translated when the report knows them)",
    "count": "a count of people: masked below the small-cell threshold",
    "share": "a proportion between 0 and 1, shown as a percentage",
    "eur": "an amount in euros",
    "score": "a mean score (0-10 scales)",
    "smd": "a standardised difference, p-value or standard error (3 decimals)",
    "number": "any other number (a count of rows, years, a factor)",
    "by_row": "a value in the unit named by the row's ``unit`` column",
    "unit": "the unit of the row's values (see ``by_row``)",
    "note": "language-neutral note ids separated by ';' (translated by the report)",
    "indicator": "a column named after an indicator id (or its ``_ci_low``/``_ci_high``): its unit is the "
                 "indicator record's",
    "technical": "a run detail (timing, formula, CI level...) a reader of the report does not need",
}
NUMERIC_KINDS = frozenset({"count", "share", "eur", "score", "smd", "number", "by_row", "indicator"})

# Balance covariates measured in euros (the others are ages, shares or counts of stays).
EURO_COVARIATES = frozenset({"prior_nursing_cost", "prior_total_cost"})


def covariate_kind(covariate: str) -> str:
    """Kind of a matching covariate's mean (balance.csv, unmatched_profiles.csv ``mean_*`` columns)."""
    return "eur" if covariate in EURO_COVARIATES else "number"


def _is_numeric(values: pd.Series) -> pd.Series:
    return values.isna() | pd.to_numeric(values, errors="coerce").notna()


def _col(kind: str, *, regex: bool = False, required: bool = False) -> pa.Column:
    checks = [pa.Check(_is_numeric, error=f"{kind} values must be numbers")] if kind in NUMERIC_KINDS else []
    return pa.Column(None, checks=checks, nullable=True, required=required, regex=regex, metadata={"kind": kind})


def _cols(kind: str, names: Iterable[str], ci: bool = False) -> dict[str, pa.Column]:
    out = {}
    for name in names:
        out[name] = _col(kind)
        if ci:
            out[f"{name}_ci_low"] = _col(kind)
            out[f"{name}_ci_high"] = _col(kind)
    return out


def _schema(key: str, columns: Mapping[str, pa.Column], **metadata: str) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(dict(columns), name=OUTPUT[key].path, strict=True, metadata=metadata or None)


SUPPRESSED = {"suppressed": _col("technical")}  # the producer's small-count marker (True, or column names)
FLOW = {"stage": _col("text", required=True), "rule": _col("text", required=True), "unit": _col("technical"),
        **_cols("count", ("rows_in", "rows_out", "rows_dropped")), "euros_dropped": _col("eur"),
        "description": _col("text"), "description_fr": _col("text"), "source": _col("technical")}
BY_ARM = {"unit": _col("unit"), **_cols("by_row", ("treated", "control", "difference", "ratio"), ci=True),
          **_cols("count", ("n_treated", "n_control"))}
CI = _cols("number", ("ci_low", "ci_high"))
SURVEY_KEYS = {"survey_id": _col("text"), "question_id": _col("text")}
RUN_DETAILS = _cols("technical", ("ci_level", "small_n_warning"))

TABLES: dict[str, pa.DataFrameSchema] = {
    "attrition": _schema("attrition", {**FLOW, "rows_flagged": _col("count"),
                                       **_cols("count", ("treated_rows", "control_rows"))}),
    "attrition_matching": _schema("attrition_matching", FLOW),
    "balance": _schema("balance", {
        "covariate": _col("text", required=True), "stage": _col("text"),
        **_cols("technical", ("variable", "type", "sd_denominator")),
        **_cols("number", ("mean_treated", "mean_control", "ess_control")),
        **_cols("smd", ("smd", "variance_ratio", "ecdf_mean", "ecdf_max")), "smd_denominator": _col("text"),
        **_cols("text", ("flag_smd", "flag_vr")), **_cols("count", ("n_treated", "n_control")), **SUPPRESSED}),
    "unmatched_profiles": _schema("unmatched_profiles", {
        "profile": _col("text", required=True), **_cols("count", ("n_treated", "n_unmatched")),
        "share_unmatched": _col("share"), **CI,
        # One mean per balance covariate and side; its kind is the covariate's (covariate_kind).
        r"^mean_(matched|unmatched)_.+$": _col("number", regex=True),
        r"^share_reason_.+$": _col("share", regex=True), **SUPPRESSED, "suppression_note": _col("note")},
        ci_of="share_unmatched"),
    "indicators_csv": _schema("indicators_csv", {
        **_cols("text", ("id", "label_fr", "label_en", "unit", "method", "population", "definition")),
        **_cols("number", ("value", "published")), **CI, "n": _col("count"), **SUPPRESSED}, ci_of="value"),
    "spending_by_category": _schema("spending_by_category", {
        "category": _col("text", required=True), "in_perimeter": _col("text"), **BY_ARM,
        **_cols("eur", ("avoided",), ci=True), **SUPPRESSED}, row_unit="unit"),
    # The decedents row of eol.csv has no unit: it is a count of people.
    "eol": _schema("eol", {"measure": _col("text", required=True), **BY_ARM, "control_weighted": _col("number"),
                           "in_perimeter": _col("text"), **SUPPRESSED}, row_unit="unit", missing_unit="count"),
    "eol_balance": _schema("eol_balance", {
        "covariate": _col("text"),
        **_cols("number", ("decedents_mean_treated", "decedents_mean_control", "all_matched_mean_treated",
                           "all_matched_mean_control")),
        **_cols("smd", ("decedents_smd", "all_matched_smd")), **_cols("count", ("n_treated", "n_control")),
        "flag_smd": _col("text"), **SUPPRESSED}),
    "hospitalisation": _schema("hospitalisation", {"measure": _col("text", required=True), **BY_ARM,
                                                   **SUPPRESSED}, row_unit="unit"),
    "followup": _schema("followup", {
        "arm": _col("text", required=True), **_cols("count", ("n_units", "weighted_n")),
        **_cols("number", ("patient_years", "deaths", "end_death", "end_study", "end_exit")),
        "mean_followup_years": _col("score"), "weighting": _col("text"), **SUPPRESSED}),
    # patients / patient_years: follow-up rule (intention to treat by default); active_*: in the programme
    # (inclusion to exit, death or end of study), the caseload of the savings per year.
    "caseload": _schema("caseload", {"year": _col("number"), **_cols("count", ("patients", "active_patients")),
                                     **_cols("number", ("patient_years", "active_patient_years",
                                                        "matched_patient_years")), **SUPPRESSED}),
    "economics_scenarios": _schema("economics_scenarios", {
        **_cols("eur", ("hourly_rate_eur", "investment_eur")),
        **_cols("number", ("caseload_factor", "caseload_patient_years")),
        # return_per_euro_invested is a ratio, declared "eur" as the report has always shown it.
        **_cols("eur", ("avoided_eur_per_patient_year", "gross_savings_year", "net_savings_year",
                        "return_per_euro_invested"), ci=True),
        "experiment_repriced": _col("text"), **SUPPRESSED}),
    "did": _schema("did", {"row": _col("text"), **_cols("eur", ("pre_eur_per_patient_year",
                                                                 "post_eur_per_patient_year")),
                           **_cols("number", ("change", "estimate")), "se": _col("smd"), **CI, **SUPPRESSED},
                   ci_of="estimate"),
    "regression_crosscheck": _schema("regression_crosscheck", {
        **_cols("text", ("outcome", "estimator")), "estimate": _col("number"), "se": _col("smd"), **CI,
        **_cols("count", ("n_rows", "n_clusters")),
        **_cols("number", ("bootstrap_estimate", "bootstrap_ci_low", "bootstrap_ci_high")), **SUPPRESSED}, ci_of="estimate"),
    "survey_items": _schema("survey_items", {
        **SURVEY_KEYS, **_cols("technical", ("type", "respondent_types", "weighted_value", "weighted_ci_low",
                                             "weighted_ci_high", "n_eff")),
        **_cols("count", ("n_applicable", "n", "n_missing")),
        **_cols("text", ("text_en", "text_fr", "statistic", "indicator_id", "unit", "method", "display_en",
                         "display_fr")),
        **_cols("number", ("k", "value")), **CI, **RUN_DETAILS}, ci_of="value"),
    "likert": _schema("likert", {
        **SURVEY_KEYS, **_cols("technical", ("type", "code", "is_median")),
        **_cols("text", ("label_fr", "label_en", "favourable", "method")),
        **_cols("count", ("count", "n", "n_missing")), **_cols("share", ("share", "cumulative_share")), **CI,
        **RUN_DETAILS}, ci_of="share"),
    "before_after": _schema("before_after", {
        **SURVEY_KEYS, **_cols("count", ("n_pairs", "n_incomplete", "n_unchanged", "n_increased", "n_decreased")),
        **_cols("score", ("mean_before", "mean_after", "mean_change")),
        **_cols("number", ("before_ci_low", "before_ci_high", "median_before", "after_ci_low", "after_ci_high",
                           "median_after", "change_ci_low", "change_ci_high", "sd_change", "median_change",
                           "wilcoxon_statistic")),
        "p_value": _col("smd"), **_cols("technical", ("test_method", "zero_method")),
        "method": _col("text"), **RUN_DETAILS}),
    "response_rates": _schema("response_rates", {
        **_cols("text", ("survey_id", "group")), "invited": _col("count"),
        **_cols("number", ("complete_I", "partial_P", "refusals_R", "non_contacts_NC", "other_O", "unknown_U",
                           "rr1", "rr2")),
        **_cols("technical", ("formula", "note", "small_n_warning"))}),
    "sweep": _schema("sweep", {
        **_cols("number", ("spec", "caliper", "ratio", "age_band_width", "ess_controls")),
        **_cols("text", ("method", "transform", "replace")),
        **_cols("count", ("n_treated", "n_treated_matched", "n_controls_matched", "n_unmatched_treated")),
        "max_abs_smd_after": _col("smd"), "share_flagged_after": _col("share"), "seconds": _col("technical"),
        "effects_error": _col("technical"),  # why the headline effects of a specification failed
        # Every other column is the estimate of an indicator (its id), with its interval.
        r"^(?!(spec|caliper|ratio|age_band_width|ess_controls|method|transform|replace|n_treated|"
        r"n_treated_matched|n_controls_matched|n_unmatched_treated|max_abs_smd_after|share_flagged_after|"
        r"seconds|effects_error)$)[a-z0-9_]+$": _col("indicator", regex=True)}),
    # -- sensitivity/ (indicators/sensitivity/, docs/indicators.md "Sensitivity analyses") --------------
    "sensitivity_headlines": _schema("sensitivity_headlines", {
        "id": _col("text", required=True), **_cols("number", ("value", "ci_low", "ci_high")),
        "evalue_scale": _col("text"), **_cols("number", ("rr", "rr_ci_low", "rr_ci_high", "evalue", "evalue_ci")),
        "outcome_sd": _col("number"), **_cols("text", ("rosenbaum_test", "rosenbaum_direction", "verdict")),
        "rosenbaum_pairs": _col("count"), **_cols("smd", ("rosenbaum_p", "se_log_ratio")),
        **_cols("number", ("rosenbaum_gamma", "se", "mdrr", "mde")), **_cols("technical", ("alpha", "power")),
        **SUPPRESSED}, ci_of="value"),
    "negative_controls": _schema("negative_controls", {
        "outcome": _col("text", required=True), **_cols("text", ("kind", "label_en", "label_fr", "transform")),
        "unit": _col("unit"),
        **_cols("by_row", ("treated", "control")), **_cols("number", ("ratio", "ratio_ci_low", "ratio_ci_high",
                                                                       "log_ratio", "true_effect", "value")),
        "se_log_ratio": _col("smd"), "estimable": _col("text"), **CI,
        **_cols("number", ("calibrated_log_ratio", "calibrated_log_ci_low", "calibrated_log_ci_high",
                           "calibrated_value", "calibrated_ci_low", "calibrated_ci_high")), **SUPPRESSED},
        row_unit="unit"),
    "event_study": _schema("event_study", {
        "outcome": _col("text", required=True), "relative_month": _col("number"), "unit": _col("unit"),
        **_cols("by_row", ("treated", "control", "estimate", "ci_low", "ci_high")),
        **_cols("count", ("n_treated", "n_control")), **SUPPRESSED}, row_unit="unit", ci_of="estimate"),
    "cumulative_incidence": _schema("cumulative_incidence", {
        **_cols("text", ("curve", "arm")), **_cols("number", ("month", "day")),
        **_cols("share", ("estimate", "ci_low", "ci_high")), "n_at_risk": _col("count"), **SUPPRESSED},
        ci_of="estimate"),
    "generalisability": _schema("generalisability", {
        "covariate": _col("text", required=True),
        **_cols("number", ("mean_matched_treated", "mean_all_treated", "mean_unmatched_complex")),
        **_cols("smd", ("smd_matched_vs_all", "smd_matched_vs_unmatched_complex")),
        **_cols("count", ("n_matched_treated", "n_all_treated", "n_unmatched_complex")), **SUPPRESSED}),
    "two_part": _schema("two_part", {
        "quantity": _col("text", required=True), "unit": _col("unit"),
        **_cols("by_row", ("estimate", "ci_low", "ci_high", "bootstrap_estimate", "bootstrap_ci_low",
                           "bootstrap_ci_high")), "se": _col("smd"),
        **_cols("number", ("n_rows", "n_clusters")), "note": _col("technical"), **SUPPRESSED},
        row_unit="unit", ci_of="estimate"),
}


def schema(key: str) -> pa.DataFrameSchema:
    try:
        return TABLES[key]
    except KeyError:
        raise KeyError(f"no result table {key!r} is declared in pipeline/result_tables.py") from None


def column_kinds(key: str, columns: Iterable[str]) -> dict[str, str]:
    """Declared kind of each of ``columns`` of result table ``key`` (a named column before a pattern)."""
    import re

    spec = schema(key)
    out = {}
    for name in columns:
        col = spec.columns.get(name)
        if col is None or col.regex:
            col = next((c for pattern, c in spec.columns.items() if c.regex and re.match(pattern, str(name))), None)
        if col is None:
            raise PipelineError(f"column {name!r} of {spec.name} is not declared in pipeline/result_tables.py")
        out[name] = col.metadata["kind"]
    return out


def table_metadata(key: str) -> Mapping[str, str]:
    """Table-level declarations: ``row_unit`` (the column naming each row's unit) and ``missing_unit``
    (the unit of a row that names none); ``ci_of`` (the column that ``ci_low``/``ci_high`` bound)."""
    return schema(key).metadata or {}


def validate_result(key: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Check ``frame`` against the declaration of result table ``key``; all failures are reported at once."""
    spec = schema(key)
    try:
        return spec.validate(frame, lazy=True)
    except SchemaErrors as err:
        lines = []
        for row in err.failure_cases.drop_duplicates(["column", "check"]).head(12).itertuples():
            if row.check == "column_in_schema":
                lines.append(f"  - column {row.failure_case!r} is not declared")
            elif row.check == "column_in_dataframe":
                lines.append(f"  - required column {row.failure_case!r} is missing")
            else:
                lines.append(f"  - column {row.column!r}: {row.check} (e.g. {row.failure_case!r})")
        raise PipelineError(
            f"{spec.name} ({len(frame)} rows) does not match its declaration in pipeline/result_tables.py:\n"
            + "\n".join(lines) + "\nFix the step that writes it, or declare the column (with its kind) there."
        ) from None
