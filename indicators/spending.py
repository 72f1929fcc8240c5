"""Spending per patient-year by category and avoided spending, treated vs matched controls."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from indicators.analysis import MatchedAnalysis, ratio
from indicators.outcomes import category_labels_fr, perimeter_categories, spend_categories
from indicators.results import Indicator
from pipeline.config import StudyConfig

SPENDING_POPULATION = "matched ÉQUILIBRES patients vs matched controls (weighted), over follow-up"
SPENDING_POPULATION_FR = "patients ÉQUILIBRES appariés et leurs témoins appariés (pondérés), sur la durée du suivi"


def perimeter_text(config: StudyConfig) -> str:
    per = perimeter_categories(config)
    exp = "included" if "experiment" in per else "excluded"
    hosp = "included" if "hospital" in per else "excluded"
    return (f"spending perimeter: {', '.join(per)} (experiment payments {exp}, hospital stays {hosp}; "
            f"hospital = MNT_TOT_AM of full stays and séances)")


def perimeter_text_fr(config: StudyConfig) -> str:
    per = perimeter_categories(config)
    exp = "inclus" if "experiment" in per else "exclus"
    hosp = "inclus" if "hospital" in per else "exclus"
    return (f"périmètre de dépenses : {category_labels_fr(config, per)} (forfaits de l'expérimentation {exp}, "
            f"séjours hospitaliers {hosp} ; hospitalisation = MNT_TOT_AM des séjours complets et des séances)")


@dataclass(frozen=True)
class SpendingResult:
    indicators: list[Indicator]
    table: pd.DataFrame

    def summary_frame(self) -> pd.DataFrame:
        return self.table


def treated_rate(T) -> object:  # noqa: ANN001 - statistic over totals
    return T["t.s_perimeter"] / T["t.pyears"]


def control_rate(T) -> object:  # noqa: ANN001
    return T["c.s_perimeter"] / T["c.pyears"]


def avoided_per_py(T) -> object:  # noqa: ANN001
    return control_rate(T) - treated_rate(T)


def avoided_share(T) -> object:  # noqa: ANN001
    return 1.0 - treated_rate(T) / control_rate(T)


def spending(an: MatchedAnalysis) -> SpendingResult:
    cfg = an.config
    per = perimeter_categories(cfg)
    rows = []
    for cat in [*spend_categories(cfg), "perimeter"]:
        t, c = ratio("t", f"s_{cat}", "pyears"), ratio("c", f"s_{cat}", "pyears")
        row = an.effect_rows(cat, t, c, unit="eur_per_patient_year",
                             in_perimeter=(cat in per) if cat != "perimeter" else True,
                             n_treated=an.n_treated, n_control=an.n_control)
        row["avoided"] = -row["difference"]
        row["avoided_ci_low"] = None if row["difference_ci_high"] is None else -row["difference_ci_high"]
        row["avoided_ci_high"] = None if row["difference_ci_low"] is None else -row["difference_ci_low"]
        rows.append(row)
    table = pd.DataFrame(rows).rename(columns={"measure": "category"})
    ptxt, ptxt_fr = perimeter_text(cfg), perimeter_text_fr(cfg)
    arms = {"treated": treated_rate, "control": control_rate}
    inds = [
        an.indicator(
            "avoided_spending_per_patient_year", "Dépenses évitées par patient-année",
            "Avoided spending per patient-year", "eur_per_patient_year", avoided_per_py,
            n=an.n_treated, population=SPENDING_POPULATION,
            definition=f"Spending per patient-year of matched controls (weighted) minus that of ÉQUILIBRES "
                       f"patients, each = total spending over follow-up / total patient-years; {ptxt}.",
            population_fr=SPENDING_POPULATION_FR,
            definition_fr=f"Dépense par patient-année des témoins appariés (pondérés) moins celle des patients "
                          f"ÉQUILIBRES, chacune = dépense totale sur le suivi / total des patients-années ; "
                          f"{ptxt_fr}.",
            arms=arms),
        an.indicator(
            "avoided_spending_share", "Part des dépenses évitées", "Share of spending avoided", "share",
            avoided_share, n=an.n_treated, population=SPENDING_POPULATION,
            definition=f"1 − (treated spending per patient-year / control spending per patient-year); {ptxt}.",
            population_fr=SPENDING_POPULATION_FR,
            definition_fr=f"1 − (dépense par patient-année des traités / dépense par patient-année des "
                          f"témoins) ; {ptxt_fr}.",
            arms=arms),
    ]
    return SpendingResult(inds, table)
