"""End of life: decedents of each arm, in the ``eol_window_days`` days before death (death day
included), from care dates (DCIR) and stays prorated by day.

Decedents are units who die during follow-up. Control decedents are the matched control rows that die
during their own follow-up, weighted by their matching weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from indicators.analysis import MatchedAnalysis, difference, quotient, ratio, relative_difference
from indicators.outcomes import category_labels_fr, perimeter_categories, spend_categories
from indicators.results import Indicator

EOL_POPULATION = "decedents during follow-up: matched ÉQUILIBRES patients vs matched controls (weighted)"
EOL_POPULATION_FR = ("personnes décédées pendant le suivi : patients ÉQUILIBRES appariés et leurs témoins appariés "
                 "(pondérés)")


@dataclass(frozen=True)
class EndOfLifeResult:
    indicators: list[Indicator]
    table: pd.DataFrame

    def summary_frame(self) -> pd.DataFrame:
        return self.table


def end_of_life(an: MatchedAnalysis) -> EndOfLifeResult:
    cfg = an.config
    d = cfg.indicators.eol_window_days
    window = f"the end-of-life window (the {d} days before death, death day included)"
    window_fr = f"la fenêtre de fin de vie (les {d} jours précédant le décès, jour du décès inclus)"
    perim = perimeter_categories(cfg)
    nursing = [c for c in cfg.cohort.nursing_categories if c in spend_categories(cfg)]
    n_t, n_c = an.n_decedents("t"), an.n_decedents("c")
    counts = {"n_treated": n_t, "n_control": n_c}

    def per_dec(arm: str, col: str) -> object:
        return ratio(arm, col, "died")

    rows = [
        {"measure": "decedents", "treated": n_t, "control": n_c,
         "control_weighted": float(an.boot.totals()["c.died"]), **counts},
        an.effect_rows("share_any_stay", per_dec("t", "eol_any_stay"), per_dec("c", "eol_any_stay"),
                       unit="share", **counts),
        an.effect_rows("hospital_days", per_dec("t", "eol_hosp_days"), per_dec("c", "eol_hosp_days"),
                       unit="days_per_patient", **counts),
        an.effect_rows("death_in_hospital", per_dec("t", "eol_death_in_hosp"),
                       per_dec("c", "eol_death_in_hosp"), unit="share", **counts),
        an.effect_rows("spending_total", per_dec("t", "eol_s_perimeter"), per_dec("c", "eol_s_perimeter"),
                       unit="eur_per_patient", **counts),
    ]
    for cat in spend_categories(cfg):
        rows.append(an.effect_rows(f"spending_{cat}", per_dec("t", f"eol_s_{cat}"),
                                   per_dec("c", f"eol_s_{cat}"), unit="eur_per_patient",
                                   in_perimeter=cat in perim, **counts))
    for col, unit in (("eol_nursing_spend", "eur_per_patient"), ("eol_nursing_acts", "acts_per_patient"),
                      ("eol_experiment_hours", "hours_per_patient")):
        rows.append(an.effect_rows(col.removeprefix("eol_"), per_dec("t", col), per_dec("c", col),
                                   unit=unit, **counts))
    table = pd.DataFrame(rows)

    hosp_t, hosp_c = per_dec("t", "eol_any_stay"), per_dec("c", "eol_any_stay")
    spend_t, spend_c = per_dec("t", "eol_s_perimeter"), per_dec("c", "eol_s_perimeter")
    nurse_t, nurse_c = per_dec("t", "eol_nursing_spend"), per_dec("c", "eol_nursing_spend")
    perim_txt = (f"spending perimeter {perim}; outpatient (DCIR) care by its care date (EXE_SOI_DTD), "
                 f"hospital stays prorated by their days in the window")
    perim_fr = (f"périmètre de dépenses : {category_labels_fr(cfg, perim)} ; soins de ville (DCIR) selon leur "
                f"date de soins (EXE_SOI_DTD), séjours hospitaliers proratisés selon leurs jours dans la "
                f"fenêtre")
    inds = [
        Indicator(id="eol_decedents", label_fr="Patients décédés pendant le suivi",
                  label_en="Decedents during follow-up", unit="count", value=float(n_t), ci_low=None,
                  ci_high=None, n=n_t, method="count", ci_level=None, population=EOL_POPULATION,
                  definition="Units whose death date (IR_BEN_R or PMSI, not flagged as an error) falls "
                             "in their follow-up; control decedents are distinct matched control rows.",
                  arm_values={"treated": float(n_t), "control": float(n_c),
                              "control_weighted": float(an.boot.totals()["c.died"])},
                  n_control=n_c, method_fr="dénombrement", population_fr=EOL_POPULATION_FR,
                  definition_fr="Unités dont la date de décès (IR_BEN_R ou PMSI, non signalée comme erronée) "
                                "tombe pendant leur suivi ; les témoins décédés sont des lignes distinctes de "
                                "témoins appariés."),
        an.indicator(
            "eol_hosp_rate", "Hospitalisation en fin de vie (différence relative)",
            "End-of-life hospitalisation (relative difference)", "relative_difference",
            relative_difference(hosp_t, hosp_c), n=n_t, population=EOL_POPULATION,
            definition=f"Share of decedents with at least one full MCO stay overlapping {window}; value = "
                       f"treated share / control share − 1.",
            population_fr=EOL_POPULATION_FR,
            definition_fr=f"Part des personnes décédées ayant au moins un séjour MCO complet chevauchant "
                          f"{window_fr} ; valeur = part des traités / part des témoins − 1.",
            arms={"treated": hosp_t, "control": hosp_c}),
        an.indicator(
            "eol_hosp_days", "Journées d'hospitalisation en fin de vie (différence par patient)",
            "End-of-life hospital days (difference per decedent)", "days_per_patient",
            difference(per_dec("t", "eol_hosp_days"), per_dec("c", "eol_hosp_days")), n=n_t,
            population=EOL_POPULATION,
            definition=f"Nights of full MCO stays inside {window}, per decedent; treated − control.",
            population_fr=EOL_POPULATION_FR,
            definition_fr=f"Nuits de séjours MCO complets dans {window_fr}, par personne décédée ; "
                          f"traités − témoins.",
            arms={"treated": per_dec("t", "eol_hosp_days"), "control": per_dec("c", "eol_hosp_days")}),
        an.indicator(
            "eol_death_in_hospital", "Décès à l'hôpital (différence de part)",
            "Death in hospital (difference of shares)", "share",
            difference(per_dec("t", "eol_death_in_hosp"), per_dec("c", "eol_death_in_hosp")), n=n_t,
            population=EOL_POPULATION,
            definition="Share of decedents dying in hospital (an MCO stay with SOR_MOD 9 ending within a "
                       "day of death, or a death date taken from PMSI); the rest die elsewhere. "
                       "Treated − control.",
            population_fr=EOL_POPULATION_FR,
            definition_fr="Part des personnes décédées à l'hôpital (séjour MCO avec SOR_MOD 9 se terminant à un jour "
                          "près du décès, ou date de décès issue du PMSI) ; les autres décèdent "
                          "ailleurs. Traités − témoins.",
            arms={"treated": per_dec("t", "eol_death_in_hosp"), "control": per_dec("c", "eol_death_in_hosp")}),
        an.indicator(
            "eol_spending_treated", "Dépenses en fin de vie, patients ÉQUILIBRES (€ par décédé)",
            "End-of-life spending, ÉQUILIBRES patients (€ per decedent)", "eur_per_patient", spend_t,
            n=n_t, population="ÉQUILIBRES decedents during follow-up",
            definition=f"Total Assurance Maladie spending in {window}, per decedent; {perim_txt}.",
            population_fr="patients ÉQUILIBRES décédés pendant le suivi",
            definition_fr=f"Dépense totale de l'Assurance Maladie dans {window_fr}, par personne décédée ; "
                          f"{perim_fr}."),
        an.indicator(
            "eol_spending_control", "Dépenses en fin de vie, témoins appariés (€ par décédé)",
            "End-of-life spending, matched controls (€ per decedent)", "eur_per_patient", spend_c,
            n=n_c, population="matched control decedents during follow-up (weighted)",
            definition=f"Total Assurance Maladie spending in {window}, per decedent, matching weights "
                       f"applied; {perim_txt}.",
            population_fr="témoins appariés décédés pendant le suivi (pondérés)",
            definition_fr=f"Dépense totale de l'Assurance Maladie dans {window_fr}, par personne décédée, "
                          f"poids d'appariement appliqués ; {perim_fr}."),
        an.indicator(
            "eol_spending_difference", "Écart de dépenses en fin de vie (€ par décédé)",
            "End-of-life spending difference (€ per decedent)", "eur_per_patient",
            difference(spend_t, spend_c), n=n_t, population=EOL_POPULATION,
            definition=f"Treated − control spending per decedent in {window}; {perim_txt}.",
            population_fr=EOL_POPULATION_FR,
            definition_fr=f"Dépense des traités − dépense des témoins, par personne décédée, dans {window_fr} ; "
                          f"{perim_fr}."),
        an.indicator(
            "eol_nursing_presence", "Présence infirmière en fin de vie (rapport des dépenses infirmières)",
            "End-of-life nursing presence (ratio of nursing spending)", "ratio", quotient(nurse_t, nurse_c),
            n=n_t, population=EOL_POPULATION,
            definition=f"Nursing spending per decedent in {window}, from care dates (categories {nursing}, "
                       f"experiment payments included), treated / control; nursing acts and experiment "
                       f"hours per decedent beside.",
            population_fr=EOL_POPULATION_FR,
            definition_fr=f"Dépense infirmière par personne décédée dans {window_fr}, selon les dates de soins "
                          f"(catégories : "
                          f"{category_labels_fr(cfg, nursing)}, forfaits de l'expérimentation inclus), traités / "
                          f"témoins ; actes infirmiers et heures de l'expérimentation par personne décédée "
                          f"à côté.",
            arms={"nursing_spend_treated": nurse_t, "nursing_spend_control": nurse_c,
                  "nursing_acts_treated": per_dec("t", "eol_nursing_acts"),
                  "nursing_acts_control": per_dec("c", "eol_nursing_acts"),
                  "experiment_hours_treated": per_dec("t", "eol_experiment_hours"),
                  "experiment_hours_control": per_dec("c", "eol_experiment_hours")}),
    ]
    return EndOfLifeResult(inds, table)
