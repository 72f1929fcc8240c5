"""Follow-up: patient-years by arm, end reasons, and treated patient-years per calendar year (in
intention to treat and in the programme, the active file)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from indicators.analysis import MatchedAnalysis
from indicators.outcomes import DAYS_PER_YEAR, ClaimsData, followup_windows
from indicators.results import Indicator
from pipeline.config import StudyConfig


def followup_definition(config: StudyConfig) -> str:
    mode = config.indicators.followup
    exits = ("ÉQUILIBRES exits ignored (intention to treat)" if mode == "itt"
             else "treated patients censored at their ÉQUILIBRES exit (per protocol)")
    return (f"From the index date (treated: inclusion; controls: candidate index date) to the first of "
            f"death, end of study ({config.study.claims_end}) or end of data; {exits}. Days counted "
            f"inclusively, patient-years = days / {DAYS_PER_YEAR}.")


def followup_definition_fr(config: StudyConfig) -> str:
    exits = ("sorties d'ÉQUILIBRES ignorées (intention de traiter)" if config.indicators.followup == "itt"
             else "patients traités censurés à leur sortie d'ÉQUILIBRES (per protocole)")
    return (f"De la date index (traités : inclusion ; témoins : date index candidate) jusqu'au premier "
            f"événement entre le décès, la fin de l'étude ({config.study.claims_end:%d/%m/%Y}) et la fin "
            f"des données ; {exits}. Jours comptés bornes incluses, patients-années = jours / "
            f"{str(DAYS_PER_YEAR).replace('.', ',')}.")


@dataclass(frozen=True)
class FollowUpResult:
    indicators: list[Indicator]
    table: pd.DataFrame          # one row per arm

    def summary_frame(self) -> pd.DataFrame:
        return self.table


def followup(an: MatchedAnalysis) -> FollowUpResult:
    cfg = an.config
    mem, out = an.membership, an.outcomes
    rows = []
    for arm, flag in (("treated", 1), ("control", 0)):
        m = mem[mem["treated"] == flag]
        o = out.loc[m["unit_id"]]
        w = m["w"].to_numpy()
        distinct = out.loc[m["unit_id"].unique()]
        reasons = distinct["end_reason"].value_counts()
        rows.append({
            "arm": arm,
            "n_units": int(len(distinct)),
            "weighted_n": float(w.sum()),
            "patient_years": float((o["pyears"].to_numpy() * w).sum()),
            "mean_followup_years": float((o["pyears"].to_numpy() * w).sum() / w.sum()) if w.sum() else np.nan,
            "deaths": int(distinct["died"].sum()),
            "end_death": int(reasons.get("death", 0)),
            "end_study": int(reasons.get("study_end", 0)),
            "end_exit": int(reasons.get("exit", 0)),
            "weighting": "none" if flag else "matching weights",
        })
    table = pd.DataFrame(rows)
    t, c = table.iloc[0], table.iloc[1]
    ind = Indicator(
        id="followup_patient_years", label_fr="Suivi (patients-années)", label_en="Follow-up (patient-years)",
        unit="patient_years", value=float(t["patient_years"]), ci_low=None, ci_high=None,
        n=int(t["n_units"]), method="descriptive (sum of follow-up)", ci_level=None,
        population="matched ÉQUILIBRES patients; matched controls weighted",
        definition=followup_definition(cfg),
        method_fr="descriptif (somme du suivi)",
        population_fr="patients ÉQUILIBRES appariés ; témoins appariés pondérés",
        definition_fr=followup_definition_fr(cfg),
        arm_values={"treated": float(t["patient_years"]), "control_weighted": float(c["patient_years"]),
                    "treated_mean_years": float(t["mean_followup_years"]),
                    "control_mean_years": float(c["mean_followup_years"])},
        n_control=int(c["n_units"]),
    )
    return FollowUpResult([ind], table)


def years_by_calendar_year(start: pd.Series, end: pd.Series, years: list[int]) -> dict[int, float]:
    """Patient-years of [start, end] intervals (inclusive days) falling in each calendar year."""
    s = pd.to_datetime(start).to_numpy(dtype="datetime64[D]")
    e = pd.to_datetime(end).to_numpy(dtype="datetime64[D]")
    out = {}
    for y in years:
        y0, y1 = np.datetime64(f"{y}-01-01"), np.datetime64(f"{y}-12-31")
        days = (np.minimum(e, y1) - np.maximum(s, y0)).astype(int) + 1
        out[y] = float(np.clip(days, 0, None).sum() / DAYS_PER_YEAR)
    return out


def caseload_by_year(claims: ClaimsData, config: StudyConfig) -> pd.DataFrame:
    """Patients and patient-years per calendar year of every ÉQUILIBRES patient (matched or not).

    ``patients``/``patient_years`` follow the follow-up definition from the inclusion date (intention
    to treat: to death or end of study); ``active_patients``/``active_patient_years`` count the time
    *in the programme* — the active file: from the inclusion date (EQL_INC_DTE) to the first of the
    exit (EQL_SOR_DTE), death and end of study. Days are counted inclusively."""
    p = claims.persons
    treated = p[(p["treated"] == 1) & p["inclusion_date"].notna()]
    units = pd.DataFrame({"unit_id": treated.index.astype(str), "person_id": treated.index,
                          "treated": 1, "index_date": treated["inclusion_date"].to_numpy()})
    years = list(range(config.study.inclusion_start.year, config.study.claims_end.year + 1))
    if units.empty:
        return pd.DataFrame({"year": years, "patients": 0, "patient_years": 0.0, "active_patients": 0,
                             "active_patient_years": 0.0})
    fu = followup_windows(units, p, config, claims.data_end)
    active_end = in_programme_end(fu, p)
    py = years_by_calendar_year(fu["index_date"], fu["fu_end"], years)
    active_py = years_by_calendar_year(fu["index_date"], active_end, years)

    def present(end: pd.Series, y: int) -> int:
        return int(((fu["index_date"] <= f"{y}-12-31") & (end >= f"{y}-01-01") & (end >= fu["index_date"])).sum())

    return pd.DataFrame({"year": years, "patients": [present(fu["fu_end"], y) for y in years],
                         "patient_years": [py[y] for y in years],
                         "active_patients": [present(active_end, y) for y in years],
                         "active_patient_years": [active_py[y] for y in years]})


def in_programme_end(fu: pd.DataFrame, persons: pd.DataFrame) -> pd.Series:
    """Last day in the programme of each treated unit: its follow-up end (death or end of study), or
    its ÉQUILIBRES exit (``exit_date``, EQL_SOR_DTE) when that comes first."""
    exit_ = pd.to_datetime(persons["exit_date"].reindex(fu["person_id"])).dt.normalize()
    exit_.index = fu.index
    return fu["fu_end"].where(exit_.isna() | (exit_ >= fu["fu_end"]), exit_)
