"""The matching cohort: treated patients at inclusion and candidate controls at candidate index dates.

How controls get an index date is ``cohort.control_index``:

- ``quarterly`` (default): one candidate row per inclusion quarter (its first day) for every
  non-roster person with nursing spending in the 12 months before it. A treated patient's prior
  window is the 12 months before the first day of their inclusion quarter, so treated and controls
  of one quarter have prior costs measured over the same calendar months (matching is exact on
  ``index_quarter``).
- ``inclusion_date``: one candidate row per distinct treated inclusion date; prior windows are the
  12 calendar months before the month of the index date, for treated and controls alike. This
  multiplies candidate rows by the number of distinct inclusion dates: prefer ``quarterly`` on large
  extracts.

``at_risk_until`` is the last day a row can start follow-up: a control's death date (or the end of
the study), a treated row's own index date. Matching uses it to index each control at the inclusion
date of the treated patient it is matched to (risk-set matching, docs/target_trial.md).

Prior costs are computed from the monthly panel, so a window is a whole number of calendar months
ending the day before the first day of the index quarter (quarterly) or index month.
Rows that fail an eligibility criterion are kept with ``eligible = 0`` and the first failing reason.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import ibis
import ibis.expr.types as ir

from pipeline.config import StudyConfig
from pipeline.io import PipelineError
from pipeline.stages.ald import ald_active_at
from pipeline.stages.ingest import ROSTER_CPX
from pipeline.stages.outputs import HOSPITAL, spend_columns
from pipeline.stages.rules import AuditRow

COHORT_COLUMNS = [
    "unit_id", "person_id", "treated", "index_date", "index_quarter", "BEN_SEX_COD", "age", "ald", "ald_group",
    "dpt", "region", "prior_nursing_cost", "prior_total_cost", "prior_hosp_stays", *ROSTER_CPX, "complex",
    "at_risk_until", "eligible", "ineligible_reason",
]

# Eligibility criteria in the order they are checked; the first failing one is the reason given.
INELIGIBLE_REASONS = [
    "died_before_index", "unknown_sex", "unknown_age", "outside_study_area", "insufficient_history",
    "low_prior_nursing_cost",
]


def quarter_starts(start: dt.date, end: dt.date) -> list[dt.date]:
    """First days of the calendar quarters that overlap [start, end]."""
    q = dt.date(start.year, 3 * ((start.month - 1) // 3) + 1, 1)
    out = []
    while q <= end:
        out.append(q)
        y, m = (q.year + 1, 1) if q.month == 10 else (q.year, q.month + 3)
        q = dt.date(y, m, 1)
    return out


def shift_months(d: dt.date, months: int) -> dt.date:
    """First day of the month ``months`` away from the month of ``d``."""
    total = d.year * 12 + d.month - 1 + months
    return dt.date(total // 12, total % 12 + 1, 1)


def month_start_expr(d: ir.DateValue, shift: int = 0) -> ir.DateValue:
    """First day of the month of ``d`` shifted by ``shift`` months, in integer arithmetic (portable)."""
    total = d.year().cast("int32") * 12 + d.month().cast("int32") - 1 + shift
    return ibis.date(total // 12, total % 12 + 1, ibis.literal(1))


def quarter_start_expr(d: ir.DateValue) -> ir.DateValue:
    month = ((d.month().cast("int32") - 1) // 3) * 3 + 1
    return ibis.date(d.year().cast("int32"), month, ibis.literal(1))


def quarter_label(d: ir.DateValue) -> ir.StringValue:
    """'YYYYQn' of a date."""
    q = (d.month().cast("int32") - 1) // 3 + 1
    return d.year().cast("string") + ibis.literal("Q") + q.cast("string")


def age_at(birth: ir.DateValue, index: ir.DateValue) -> ir.IntegerValue:
    """Completed years between ``birth`` and ``index``."""
    before_birthday = (index.month() < birth.month()) | (
        (index.month() == birth.month()) & (index.day() < birth.day())
    )
    return (index.year() - birth.year() - before_birthday.cast("int32")).cast("int32")


def _monthly_costs(panel: ir.Table, config: StudyConfig) -> ir.Table:
    spend = spend_columns(config)
    nursing = [f"spend_{c}" for c in config.cohort.nursing_categories]
    unknown = [c for c in nursing if c not in spend]
    if unknown:
        raise PipelineError(
            f"cohort.nursing_categories names {', '.join(c[6:] for c in unknown)}, which are not cleaning "
            f"categories ({', '.join(config.cleaning.category_names)}, {HOSPITAL}). Fix the study configuration."
        )
    p = panel
    nursing_expr = sum((p[c] for c in nursing), ibis.literal(0.0))
    total_expr = sum((p[c] for c in spend), ibis.literal(0.0))
    return p.select("person_id", "month", nursing=nursing_expr, total=total_expr, stays=p.hosp_stays)


def _prior_costs(windows: ir.Table, monthly: ir.Table, keys: list[str]) -> ir.Table:
    """Sum the monthly costs of each window row over months in [window_start, window_end)."""
    w, m = windows, monthly
    cond = (m.month >= w.window_start) & (m.month < w.window_end)
    if "person_id" in keys:
        cond = cond & (m.person_id == w.person_id)
    j = w.join(m, cond).select(
        *[w[k] for k in keys if k != "person_id"],
        person_id=(w.person_id if "person_id" in keys else m.person_id),
        nursing=m.nursing, total=m.total, stays=m.stays,
    )
    group = ["person_id", *[k for k in keys if k != "person_id"]]
    return j.group_by(group).aggregate(
        prior_nursing_cost=j.nursing.sum(),
        prior_total_cost=j.total.sum(),
        prior_hosp_stays=j.stays.sum().cast("int32"),
        nursing_months=(j.nursing != 0).cast("int32").sum(),
    )


def treated_rows(persons: ir.Table, monthly: ir.Table, config: StudyConfig) -> ir.Table:
    """One row per ÉQUILIBRES patient at inclusion, with the prior window and its costs."""
    t = persons.filter(persons.treated == 1)
    quarterly = config.cohort.control_index == "quarterly"
    end = quarter_start_expr(t.inclusion_date) if quarterly else month_start_expr(t.inclusion_date)
    t = t.select("person_id", index_date=t.inclusion_date, window_end=end)
    t = t.mutate(window_start=month_start_expr(t.window_end, -config.cohort.history_months))
    costs = _prior_costs(t, monthly, ["person_id", "index_date"])
    out = t.left_join(costs, ["person_id", "index_date"]).select(
        t, costs.prior_nursing_cost, costs.prior_total_cost, costs.prior_hosp_stays,
    )
    return out.mutate(treated=ibis.literal(1, "int8"))


def control_windows(persons: ir.Table, config: StudyConfig) -> ir.Table:
    """Candidate index dates for controls and their prior windows (a small table)."""
    c = config.cohort
    if c.control_index == "quarterly":
        rows = [
            {"index_date": q, "window_end": q, "window_start": shift_months(q, -c.history_months)}
            for q in quarter_starts(config.study.inclusion_start, config.study.inclusion_end)
        ]
        return ibis.memtable(rows, schema={"index_date": "date", "window_end": "date", "window_start": "date"})
    t = persons.filter(persons.treated == 1)
    d = t.select(index_date=t.inclusion_date).distinct()
    d = d.mutate(window_end=month_start_expr(d.index_date))
    return d.mutate(window_start=month_start_expr(d.window_end, -c.history_months))


def control_rows(persons: ir.Table, monthly: ir.Table, config: StudyConfig) -> ir.Table:
    """Candidate control rows: non-roster persons with nursing spending in the window before an index."""
    others = persons.filter(persons.treated == 0).select("person_id")
    m = monthly.semi_join(others, "person_id")
    windows = control_windows(persons, config)
    costs = _prior_costs(windows, m, ["index_date", "window_start", "window_end"])
    costs = costs.filter(costs.nursing_months > 0)
    return costs.select(
        "person_id", "index_date", "window_end", "window_start", "prior_nursing_cost", "prior_total_cost",
        "prior_hosp_stays", treated=ibis.literal(0, "int8"),
    )


CANDIDATE_COLUMNS = ["person_id", "treated", "index_date", "window_start", "prior_nursing_cost", "prior_total_cost",
                     "prior_hosp_stays"]


def candidate_rows(persons: ir.Table, panel: ir.Table, config: StudyConfig) -> ir.Table:
    """Treated rows at inclusion and candidate control rows, with their prior windows and costs (the
    rows of the cohort before eligibility and person attributes)."""
    monthly = _monthly_costs(panel, config)
    return ibis.union(
        treated_rows(persons, monthly, config).select(*CANDIDATE_COLUMNS),
        control_rows(persons, monthly, config).select(*CANDIDATE_COLUMNS),
        distinct=False,
    )


def cohort_table(persons: ir.Table, panel: ir.Table, ald_periods: ir.Table, config: StudyConfig,
                 candidates: ir.Table | None = None) -> ir.Table:
    """The cohort table of docs/CONTRACTS.md section 2 (treated and candidate control rows).

    ``candidates``: the :func:`candidate_rows` already written, when the caller has them; the query
    reads them three times (person attributes, ALD status at the index date, the rows themselves),
    and without them each read recomputes the prior-window join of the whole panel."""
    rows = candidates.select(*CANDIDATE_COLUMNS) if candidates is not None else candidate_rows(persons, panel, config)
    p = persons.select("person_id", "BEN_SEX_COD", "birth_date", "dpt", "region", "death_date", "death_flag_error", *ROSTER_CPX,
                        "complex")
    r = rows.join(p, "person_id").select(rows, *[p[c] for c in p.columns if c != "person_id"])
    ald = ald_active_at(ald_periods, r, config.cleaning.ald_groups)
    r = r.left_join(ald, ["person_id", "index_date"]).select(r, ald.ald, ald.ald_group)
    age = age_at(r.birth_date, r.index_date)
    claims_start = dt.date(config.study.claims_start.year, config.study.claims_start.month, 1)
    is_control = r.treated == 0
    checks = [
        ("died_before_index", (r.death_date < r.index_date).fill_null(False)),
        ("unknown_sex", r.BEN_SEX_COD.isnull()),
        ("unknown_age", r.birth_date.isnull() | (age < 0).fill_null(False)),
        ("outside_study_area", ~r.dpt.isin(config.study.departements).fill_null(False)),
        ("insufficient_history", r.window_start < ibis.date(claims_start)),
        ("low_prior_nursing_cost",
         is_control & (r.prior_nursing_cost.fill_null(0.0) < config.cohort.min_prior_nursing_cost)),
    ]
    reason = ibis.cases(*[(cond, ibis.literal(name)) for name, cond in checks], else_=ibis.null("string"))
    return r.select(
        unit_id=r.person_id + ibis.literal("@") + r.index_date.cast("string"),
        person_id=r.person_id,
        treated=r.treated.cast("int8"),
        index_date=r.index_date,
        index_quarter=quarter_label(r.index_date),
        BEN_SEX_COD=r.BEN_SEX_COD.cast("int32"),
        age=age,
        ald=r.ald.fill_null(0).cast("int8"),
        ald_group=r.ald_group.fill_null("none"),
        dpt=r.dpt,
        region=r.region,
        prior_nursing_cost=r.prior_nursing_cost.fill_null(0.0).cast("float64"),
        prior_total_cost=r.prior_total_cost.fill_null(0.0).cast("float64"),
        prior_hosp_stays=r.prior_hosp_stays.fill_null(0).cast("int32"),
        **{c: r[c].cast("int8") for c in ROSTER_CPX},
        complex=r.complex.cast("int8"),
        # Last day a row can start follow-up (risk-set matching: a control is a candidate for a treated
        # patient only if still alive on that patient's index date). Treated rows: their index date.
        at_risk_until=ibis.cases(
            (r.treated == 1, r.index_date),
            (r.death_date.notnull() & (r.death_flag_error.fill_null(0) == 0), r.death_date),
            else_=ibis.date(config.study.claims_end),
        ),
        eligible=reason.isnull().cast("int8"),
        ineligible_reason=reason,
    )


# What each eligibility reason says about the extract or the settings, for check_cohort_usable.
_INELIGIBLE_ADVICE = {
    "died_before_index": "IR_BEN_R column BEN_DCD_DTE: death dates before the index date (1600-01-01 is the "
                         "'alive' sentinel; check the date format)",
    "unknown_sex": "IR_BEN_R column BEN_SEX_COD: sex unknown (0, 9 or missing)",
    "unknown_age": "IR_BEN_R column BEN_NAI_ANN: birth year unknown (1600), in the future or after the index",
    "outside_study_area": "IR_BEN_R column BEN_RES_DPT: residence outside the départements of [study.regions]",
    "insufficient_history": "the claims window starts less than [cohort] history_months before the index: set "
                            "[study] claims_start earlier or history_months lower",
    "low_prior_nursing_cost": "ER_PRS_F column BSE_REM_MNT: prior nursing spending below [cohort] "
                              "min_prior_nursing_cost (check the nursing categories' PRS_NAT_REF codes)",
}


def check_cohort_usable(audit: Sequence[AuditRow], where: str = "") -> None:
    """Stop the cohort stage when no ÉQUILIBRES patient, or no candidate control, is eligible: matching
    would only find an empty set later. The message gives each arm's counts by eligibility rule (the
    rules of ``INELIGIBLE_REASONS``), the column behind the main one and what to do."""
    eligible = next((a for a in audit if a.stage == "cohort" and a.rule == "eligible"), None)
    if eligible is None:
        return
    reasons = [a for a in audit if a.stage == "eligibility"]
    for arm, attr in (("ÉQUILIBRES patient", "treated_rows"), ("candidate control", "control_rows")):
        if getattr(eligible, attr):
            continue
        failing = sorted(((getattr(a, attr) or 0, a.rule) for a in reasons if getattr(a, attr)), reverse=True)
        rows = sum(n for n, _ in failing)
        suffix = f" (extract {where})" if where else ""
        if not failing:
            what = ("no person outside the roster has nursing claims (cohort.nursing_categories) in the 12 "
                    "months before an inclusion quarter: the extract must hold the ER_PRS_F claims of the "
                    "comparison population" if arm == "candidate control" else
                    "no roster patient reached the cohort: see the roster rules of audit/attrition.csv")
            raise PipelineError(f"Cleaning stage cohort: no {arm} row at all{suffix} — {what}. Fix the extract "
                                "and run again.")
        counts = ", ".join(f"{rule} {n:,}" for n, rule in failing)
        main = failing[0][1]
        raise PipelineError(
            f"Cleaning stage cohort: no eligible {arm}{suffix} — all {rows:,} {arm} row(s) fail an eligibility "
            f"rule ({counts}). Main cause, rule {main}: {_INELIGIBLE_ADVICE.get(main, main)}. Matching needs "
            "eligible patients and controls: fix the extract or the setting named, then run again.")
