"""Hospitalisation during follow-up: share with ≥1 full MCO stay, stays, days and séances per 100 PY."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from indicators.analysis import MatchedAnalysis, difference, ratio
from indicators.results import Indicator

# id, label_fr, label_en, numerator, denominator, scale, unit of the arm values
HOSP_MEASURES = [
    ("hosp_share_any_stay", "Part des patients avec au moins un séjour MCO complet",
     "Share of patients with at least one full MCO stay", "any_stay", "n", 1.0, "share"),
    ("hosp_stays_per_100py", "Séjours MCO complets pour 100 patients-années",
     "Full MCO stays per 100 patient-years", "stays", "pyears", 100.0, "per_100_patient_years"),
    ("hosp_days_per_100py", "Journées d'hospitalisation pour 100 patients-années",
     "Hospital days per 100 patient-years", "hosp_days", "pyears", 100.0, "per_100_patient_years"),
    ("seances_per_100py", "Séances (CMD 28) pour 100 patients-années",
     "Séances (CMD 28) per 100 patient-years", "seances", "pyears", 100.0, "per_100_patient_years"),
]


@dataclass(frozen=True)
class HospitalisationResult:
    indicators: list[Indicator]
    table: pd.DataFrame

    def summary_frame(self) -> pd.DataFrame:
        return self.table


def hospitalisation(an: MatchedAnalysis) -> HospitalisationResult:
    inds, rows = [], []
    for id_, fr, en, num, den, scale, unit in HOSP_MEASURES:
        t, c = ratio("t", num, den, scale), ratio("c", num, den, scale)
        row = an.effect_rows(id_, t, c, unit=unit, n_treated=an.n_treated, n_control=an.n_control)
        rows.append(row)
        what = ("full (non-séance) MCO stays" if num != "seances" else "séances (CMD 28)")
        definition = (
            f"{en}: {what} with entry date during follow-up"
            + (", hospital days = SEJ_NBJ" if num == "hosp_days" else "")
            + ("; share of patients" if den == "n" else "; total over total patient-years")
            + "; value = treated − matched controls (difference), arm values and ratio beside."
        )
        what_fr = ("séjours MCO complets (hors séances)" if num != "seances" else "séances (CMD 28)")
        definition_fr = (
            f"{fr} : {what_fr} dont la date d'entrée est pendant le suivi"
            + (", journées d'hospitalisation = SEJ_NBJ" if num == "hosp_days" else "")
            + (" ; part des patients" if den == "n" else " ; total rapporté au total des patients-années")
            + " ; valeur = traités − témoins appariés (différence), valeurs par groupe et rapport à côté."
        )
        inds.append(an.indicator(
            id_, fr, en, unit, difference(t, c), n=an.n_treated,
            population="matched ÉQUILIBRES patients vs matched controls (weighted)", definition=definition,
            population_fr="patients ÉQUILIBRES appariés et leurs témoins appariés (pondérés)",
            definition_fr=definition_fr,
            arms={"treated": t, "control": c, "ratio": lambda T, t=t, c=c: t(T) / c(T)},
        ))
    return HospitalisationResult(inds, pd.DataFrame(rows))
