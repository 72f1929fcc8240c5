"""Every fixed text of the report in French and English, and number formatting per language.

French: "11 400 €", "−21 %", "0,83"; English: "€11,400", "−21%", "0.83". A missing value is shown
as an em dash, never as "nan" or "None".
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any

from pipeline.labels import CALIPER_SCALE_FR, MATCHING_METHOD_FR, SCORE_METHODS_FR

NBSP = "\u00a0"
NNBSP = "\u202f"  # narrow no-break space: French thousands separator
MINUS = "\u2212"
MISSING = "—"

LANGS = ("fr", "en")


def _is_missing(x: Any) -> bool:
    if x is None:
        return True
    try:
        return isinstance(x, float | int) and math.isnan(float(x))
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class Formatter:
    """Locale-aware number formatting for one report language."""

    lang: str = "fr"

    def number(self, x: Any, decimals: int = 0, signed: bool = False) -> str:
        if _is_missing(x):
            return MISSING
        x = float(x)
        if round(x, decimals) == 0:
            x = 0.0  # avoids "−0"
        body = f"{abs(x):,.{decimals}f}"
        if self.lang == "fr":
            body = body.replace(",", NNBSP).replace(".", ",")
        sign = MINUS if x < 0 else ("+" if signed and x > 0 else "")
        return sign + body

    def integer(self, x: Any) -> str:
        return self.number(x, 0)

    def eur(self, x: Any, decimals: int = 0, signed: bool = False) -> str:
        if _is_missing(x):
            return MISSING
        if abs(float(x)) >= 1e6:
            return self.meur(x, signed=signed)
        n = self.number(x, decimals, signed)
        if self.lang == "fr":
            return f"{n}{NBSP}€"
        sign = n[0] if n[0] in (MINUS, "+") else ""
        return f"{sign}€{n[len(sign):]}"

    def meur(self, x: Any, signed: bool = False) -> str:
        n = self.number(float(x) / 1e6, 1, signed)
        if self.lang == "fr":
            return f"{n}{NBSP}M€"
        sign = n[0] if n[0] in (MINUS, "+") else ""
        return f"{sign}€{n[len(sign):]}M"

    def pct(self, x: Any, decimals: int = 0, signed: bool = False) -> str:
        """``x`` is a share (0.21 → 21 %)."""
        if _is_missing(x):
            return MISSING
        n = self.number(float(x) * 100, decimals, signed)
        return f"{n}{NBSP}%" if self.lang == "fr" else f"{n}%"

    def value(self, x: Any, unit: str | None, precise: bool = True) -> str:
        """A value in its indicator unit (see docs/CONTRACTS.md, section 4)."""
        if _is_missing(x):
            return MISSING
        d = 1 if precise else 0
        u = (unit or "").lower()
        if u == "share":
            return self.pct(x, d)
        if u == "relative_difference":
            return self.pct(x, d, signed=True)
        if u == "eur_per_patient":
            return self.eur(x)
        if u == "eur_per_patient_year":
            return self.eur(x) + ("/patient/an" if self.lang == "fr" else "/patient/year")
        if u == "eur_per_year":
            return self.eur(x) + ("/an" if self.lang == "fr" else "/year")
        if u.startswith("eur"):
            return self.eur(x)
        if u == "score_0_10":
            return self.number(x, 1) + "/10"
        if u in ("count", "patient_years"):
            return self.integer(x)
        if u == "ratio":
            return self.number(x, 2)
        return self.number(x, 2)

    def published(self, x: Any, unit: str | None) -> str:
        """A published figure, with no more precision than it was published with."""
        if _is_missing(x):
            return MISSING
        u = (unit or "").lower()
        if u in ("share", "relative_difference"):
            d = 0 if abs(float(x) * 100 - round(float(x) * 100)) < 1e-9 else 1
            return self.pct(x, d, signed=u == "relative_difference")
        return self.value(x, unit, precise=True)

    def ci(self, lo: Any, hi: Any, unit: str | None) -> str:
        if _is_missing(lo) or _is_missing(hi):
            return MISSING
        sep = f"{NBSP}; " if self.lang == "fr" else ", "
        # Bounds carry the unit's number format but not its "/patient/year" suffix (read from the value).
        u = "eur" if (unit or "").startswith("eur") else unit
        return f"[{self.value(lo, u)}{sep}{self.value(hi, u)}]"

    def date(self, d: Any) -> str:
        if _is_missing(d) or d == "":
            return MISSING
        if isinstance(d, str):
            try:
                d = dt.date.fromisoformat(d[:10])
            except ValueError:
                return d
        if isinstance(d, dt.datetime):
            d = d.date()
        if self.lang == "fr":
            months = ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
                      "septembre", "octobre", "novembre", "décembre"]
            return f"{d.day} {months[d.month - 1]} {d.year}"
        return d.strftime("%-d %B %Y")

    def masked(self, threshold: int) -> str:
        return f"<{NBSP}{threshold}"

    def secondary(self) -> str:
        from pipeline.privacy import SECONDARY_MARK

        return SECONDARY_MARK


# --------------------------------------------------------------------------------------------
# Fixed texts. Keys are stable; each value maps a language to its text. Texts may contain simple
# HTML (they are written by us, never from data).
TEXTS: dict[str, dict[str, str]] = {
    "toc": {"fr": "Sommaire", "en": "Contents"},
    "subtitle": {
        "fr": "Reproduction, à partir des données, des résultats publiés de l'évaluation finale "
              "(synthèse du 27 décembre 2023)",
        "en": "A data-driven reproduction of the published results of the final evaluation "
              "(synthesis of 27 December 2023)",
    },
    "generated_on": {"fr": "Rapport produit le", "en": "Report produced on"},
    "not_run": {"fr": "Étape non exécutée", "en": "Step not run"},
    "not_run_text": {
        "fr": "Les résultats de cette section n'ont pas été produits : le fichier {file} est absent. "
              "Lancez <code>{command}</code> puis régénérez le rapport.",
        "en": "The results of this section were not produced: the file {file} is missing. "
              "Run <code>{command}</code>, then render the report again.",
    },
    "masked_note": {
        "fr": "Secret statistique : les effectifs de personnes inférieurs à {k} sont masqués (« {mask} ») ; "
              "« {sec} » masque une case qui permettrait de les recalculer à partir d'un total, ou une valeur "
              "calculée sur un tel effectif.",
        "en": "Statistical confidentiality: counts of people below {k} are masked (“{mask}”); “{sec}” hides a "
              "cell from which they could be recomputed through a total, or a value computed on such a count.",
    },
    "figure": {"fr": "Figure", "en": "Figure"},
    "table": {"fr": "Tableau", "en": "Table"},
    # -- sections
    "sec_summary": {"fr": "Synthèse : chiffres publiés et reproduits", "en": "Summary: published and reproduced figures"},
    "sec_intervention": {"fr": "L'intervention, les données et la population", "en": "The intervention, data and population"},
    "sec_matching": {"fr": "Appariement", "en": "Matching"},
    "sec_hospitalisation": {"fr": "Hospitalisation et fin de vie", "en": "Hospitalisation and end of life"},
    "sec_economics": {"fr": "Évaluation économique", "en": "Economic evaluation"},
    "sec_surveys": {"fr": "Enquêtes auprès des patients, aidants et infirmiers", "en": "Patient, caregiver and nurse surveys"},
    "sec_sensitivity": {"fr": "Analyses de sensibilité", "en": "Sensitivity analyses"},
    "sec_limitations": {"fr": "Limites", "en": "Limitations"},
    "sec_methods": {"fr": "Annexe méthodologique (STROBE, RECORD, CHEERS)", "en": "Methods appendix (STROBE, RECORD, CHEERS)"},
    "sec_reproducibility": {"fr": "Reproductibilité", "en": "Reproducibility"},
    # -- summary
    "summary_scaled": {
        "fr": "Extrait synthétique à l'échelle {scale} de l'étude : les chiffres publiés qui croissent avec "
              "la taille de la population ({ids}) sont ramenés à cette échelle (× {scale} ; pour les "
              "économies nettes, l'investissement reste fixe).",
        "en": "Synthetic extract at scale {scale} of the study: the published figures that grow with the "
              "size of the population ({ids}) are brought to that scale (× {scale}; for net savings, the "
              "investment stays fixed).",
    },
    "summary_intro": {
        "fr": "Chaque chiffre publié dans la synthèse de l'évaluation finale est placé à côté de la valeur "
              "recalculée par ce pipeline à partir des données, avec son intervalle de confiance à 95 %. "
              "<b>Concorde</b> : la valeur publiée est dans l'intervalle ; <b>proche</b> : hors de "
              "l'intervalle mais à moins de {tol} de la valeur publiée (écart relatif) ; <b>diffère</b> "
              "sinon. Les chiffres publiés proviennent de la configuration de l'étude (table "
              "<code>[published]</code>) et ne servent à aucun calcul.",
        "en": "Each figure published in the synthesis of the final evaluation is shown beside the value "
              "recomputed by this pipeline from the data, with its 95% confidence interval. "
              "<b>Agrees</b>: the published value lies inside the interval; <b>close</b>: outside the "
              "interval but within {tol} of the published value (relative difference); <b>differs</b> "
              "otherwise. Published figures come from the study configuration (<code>[published]</code> "
              "table) and are used in no computation.",
    },
    "col_indicator": {"fr": "Indicateur", "en": "Indicator"},
    "col_published": {"fr": "Publié", "en": "Published"},
    "col_reproduced": {"fr": "Reproduit", "en": "Reproduced"},
    "col_ci": {"fr": "IC à 95 %", "en": "95% CI"},
    "col_n": {"fr": "n", "en": "n"},
    "col_status": {"fr": "Accord", "en": "Agreement"},
    "status_agrees": {"fr": "concorde", "en": "agrees"},
    "status_close": {"fr": "proche", "en": "close"},
    "status_differs": {"fr": "diffère", "en": "differs"},
    "status_missing": {"fr": "non calculé", "en": "not computed"},
    "status_input": {"fr": "paramètre", "en": "input"},
    "status_masked": {"fr": "secret stat.", "en": "suppressed"},
    "flow_cohort_rows": {"fr": "Lignes de cohorte candidates (personne × date index)", "en": "Candidate cohort rows (person × index date)"},
    "flow_eligible_rows": {"fr": "Lignes de cohorte éligibles", "en": "Eligible cohort rows"},
    "flow_matched_rows": {"fr": "Retenues par l'appariement (traités + témoins)", "en": "Kept by matching (treated + controls)"},
    "balance_hidden": {"fr": "{n} modalités de covariables, trop peu fréquentes, ne sont pas montrées (secret statistique).", "en": "{n} covariate levels with too few patients are not shown (statistical confidentiality)."},
    "summary_counts": {
        "fr": "Sur {total} chiffres publiés : {agrees} concordent, {close} sont proches, {differs} diffèrent, "
              "{missing} ne sont pas calculés, {masked} sont masqués (effectif trop faible) et {inputs} sont des "
              "paramètres d'entrée.",
        "en": "Of {total} published figures: {agrees} agree, {close} are close, {differs} differ, "
              "{missing} are not computed, {masked} are suppressed (too few people) and {inputs} are input "
              "parameters.",
    },
    "fig_summary": {
        "fr": "Écart relatif entre valeur reproduite et valeur publiée (barres : IC à 95 %)",
        "en": "Relative difference between reproduced and published values (bars: 95% CI)",
    },
    # -- intervention
    "intervention_text": {
        "fr": "ÉQUILIBRES ({label}) est un modèle de soins infirmiers à domicile en équipes autonomes d'au "
              "moins trois infirmiers, inspiré de Buurtzorg (Pays-Bas), rémunéré au temps passé auprès du "
              "patient (forfait horaire) plutôt qu'à l'acte (NGAP). Il a été expérimenté dans le cadre de "
              "l'article 51 de la LFSS 2018 dans les régions {regions}.",
        "en": "ÉQUILIBRES ({label}) is a home-nursing model run by self-organised teams of at least three "
              "nurses, inspired by Buurtzorg (Netherlands), paid for the time spent with the patient "
              "(hourly flat rate) rather than per act (NGAP). It was run as an Article 51 experiment "
              "(LFSS 2018) in the regions {regions}.",
    },
    "data_sources_text": {
        "fr": "Données : extraction du SNDS (DCIR : ER_PRS_F ; référentiels IR_BEN_R et IR_IMB_R ; PMSI MCO : "
              "tables B, C et VALO par année), registre des patients de l'expérimentation "
              "(EQUILIBRES_ROSTER), chaînés par l'identifiant pseudonymisé, et trois enquêtes (patients et "
              "aidants, infirmiers par téléphone, infirmiers en ligne).",
        "en": "Data: an SNDS extract (DCIR: ER_PRS_F; IR_BEN_R and IR_IMB_R reference tables; PMSI MCO "
              "tables B, C and VALO per year), the experiment's patient roster (EQUILIBRES_ROSTER), linked "
              "by the pseudonymised identifier, and three surveys (patients and caregivers, nurses by "
              "phone, nurses online).",
    },
    "period_inclusion": {"fr": "Période d'inclusion", "en": "Inclusion period"},
    "period_claims": {"fr": "Fenêtre de consommation de soins", "en": "Claims window"},
    "regions": {"fr": "Régions et départements", "en": "Regions and départements"},
    "from_to": {"fr": "du {a} au {b}", "en": "from {a} to {b}"},
    "fig_flow": {"fr": "Diagramme de flux de la cohorte", "en": "Cohort flow diagram"},
    "flow_extract": {"fr": "Personnes de l'extraction", "en": "Persons in the extract"},
    "flow_cleaned": {"fr": "Après nettoyage", "en": "After cleaning"},
    "flow_eligible": {"fr": "Éligibles", "en": "Eligible"},
    "flow_matched": {"fr": "Appariés", "en": "Matched"},
    "flow_unmatched": {"fr": "Non appariés", "en": "Unmatched"},
    "flow_unmatched_box": {"fr": "Patients ÉQUILIBRES éligibles sans témoin comparable", "en": "Eligible ÉQUILIBRES patients without a comparable control"},
    "sweep_rank": {"fr": "Spécifications, classées par estimation", "en": "Specifications, ranked by estimate"},
    "flow_side_cleaned": {"fr": "Fusionnées ou retirées au nettoyage", "en": "Merged or removed by cleaning"},
    "flow_side_eligible": {"fr": "Non éligibles", "en": "Not eligible"},
    "flow_side_matched": {"fr": "Non retenues par l'appariement", "en": "Not kept by matching"},
    "flow_excluded": {"fr": "exclus", "en": "excluded"},
    "tab_cleaning": {"fr": "Règles de nettoyage, dans l'ordre d'application", "en": "Cleaning rules, in order of application"},
    "col_stage": {"fr": "Étape", "en": "Stage"},
    "col_rule": {"fr": "Règle", "en": "Rule"},
    "col_rows_in": {"fr": "Entrée", "en": "In"},
    "col_rows_dropped": {"fr": "Retirées", "en": "Removed"},
    "col_rows_out": {"fr": "Sortie", "en": "Out"},
    "col_euros_dropped": {"fr": "Montant retiré", "en": "Amount removed"},
    "col_description": {"fr": "Description", "en": "Description"},
    "cleaning_note": {
        "fr": "Comptes en lignes de la table concernée (lignes de prestations, séjours, personnes). Chaque "
              "règle cite sa source dans la documentation du SNDS (annexe).",
        "en": "Counts are rows of the table concerned (claim lines, stays, persons). Each rule cites its "
              "source in the SNDS documentation (appendix).",
    },
    # -- matching
    "matching_intro": {
        "fr": "Chaque patient ÉQUILIBRES est apparié à des patients « témoins » suivis dans le système "
              "classique, de caractéristiques comparables à la date d'inclusion (sexe, âge, ALD, département, "
              "coût des soins infirmiers de l'année précédente). Paramètres utilisés :",
        "en": "Each ÉQUILIBRES patient is matched to “control” patients followed in the usual system, with "
              "comparable characteristics at inclusion (sex, age, long-term illness (ALD), département, "
              "nursing cost in the previous year). Parameters used:",
    },
    "param": {"fr": "Paramètre", "en": "Parameter"},
    "value": {"fr": "Valeur", "en": "Value"},
    "tab_balance": {"fr": "Caractéristiques à l'inclusion et équilibre des covariables, avant et après appariement", "en": "Characteristics at inclusion and covariate balance, before and after matching"},
    "col_covariate": {"fr": "Covariable", "en": "Covariate"},
    "col_smd_before": {"fr": "DMS avant", "en": "SMD before"},
    "col_smd_after": {"fr": "DMS après", "en": "SMD after"},
    "col_vr_before": {"fr": "Rapport de variances avant", "en": "Variance ratio before"},
    "col_vr_after": {"fr": "Rapport de variances après", "en": "Variance ratio after"},
    "col_mean_treated": {"fr": "Moyenne ÉQUILIBRES", "en": "Mean ÉQUILIBRES"},
    "col_mean_control": {"fr": "Moyenne témoins", "en": "Mean controls"},
    "balance_note": {
        "fr": "DMS : différence moyenne standardisée (dénominateur : {denom}). Un |DMS| &lt; 0,1 est "
              "habituellement jugé satisfaisant.",
        "en": "SMD: standardised mean difference (denominator: {denom}). |SMD| &lt; 0.1 is usually "
              "considered adequate balance.",
    },
    "fig_love": {"fr": "Diagramme de Love : |DMS| avant et après appariement", "en": "Love plot: |SMD| before and after matching"},
    "before": {"fr": "Avant", "en": "Before"},
    "after": {"fr": "Après", "en": "After"},
    "tab_unmatched": {"fr": "Patients ÉQUILIBRES sans témoin comparable, par profil", "en": "ÉQUILIBRES patients without a comparable control, by profile"},
    "unmatched_text": {
        "fr": "Part des patients ÉQUILIBRES à soins complexes sans témoin comparable : <b>{value}</b> "
              "(publié : {published}).",
        "en": "Share of complex-care ÉQUILIBRES patients without a comparable control: <b>{value}</b> "
              "(published: {published}).",
    },
    "col_profile": {"fr": "Profil", "en": "Profile"},
    "col_n_treated": {"fr": "Patients ÉQUILIBRES", "en": "ÉQUILIBRES patients"},
    "col_n_unmatched": {"fr": "Non appariés", "en": "Unmatched"},
    "col_share_unmatched": {"fr": "Part non appariée", "en": "Share unmatched"},
    "tab_matching_params": {"fr": "Paramètres de l'appariement", "en": "Matching parameters"},
    "tab_matching_sizes": {"fr": "Effectifs de l'appariement", "en": "Matching sizes"},
    "tab_unmatched_means": {"fr": "Caractéristiques moyennes des patients appariés et non appariés", "en": "Mean characteristics of matched and unmatched patients"},
    "col_group": {"fr": "Groupe", "en": "Group"},
    "size_treated": {"fr": "Patients ÉQUILIBRES éligibles", "en": "Eligible ÉQUILIBRES patients"},
    "size_treated_matched": {"fr": "Patients ÉQUILIBRES appariés", "en": "Matched ÉQUILIBRES patients"},
    "size_unmatched_treated": {"fr": "Patients ÉQUILIBRES sans témoin", "en": "ÉQUILIBRES patients without a control"},
    "size_controls": {"fr": "Témoins candidats (lignes)", "en": "Candidate controls (rows)"},
    "size_controls_matched": {"fr": "Témoins retenus", "en": "Controls used"},
    "size_strata_with_treated": {"fr": "Strates exactes contenant des patients ÉQUILIBRES", "en": "Exact strata with ÉQUILIBRES patients"},
    "size_strata_matched": {"fr": "Strates appariées", "en": "Matched strata"},
    "size_ess_controls": {"fr": "Taille effective de l'échantillon témoin", "en": "Effective sample size of controls"},
    "size_eligible_rows": {"fr": "Lignes éligibles de la cohorte", "en": "Eligible cohort rows"},
    "tab_matching_flow": {"fr": "Flux de l'appariement", "en": "Matching flow"},
    # -- hospitalisation
    "hosp_intro": {
        "fr": "Les indicateurs comparent les patients ÉQUILIBRES à leurs témoins appariés (pondération ATT). "
              "La fin de vie est étudiée sur les {days} jours précédant le décès (jour du décès inclus), chez "
              "les patients décédés.",
        "en": "Indicators compare ÉQUILIBRES patients with their matched controls (ATT weights). End of "
              "life is studied over the {days} days before death (death day included), among patients who died.",
    },
    "tab_indicators": {"fr": "Indicateurs", "en": "Indicators"},
    "col_treated": {"fr": "ÉQUILIBRES", "en": "ÉQUILIBRES"},
    "col_control": {"fr": "Témoins", "en": "Controls"},
    "col_method": {"fr": "Méthode", "en": "Method"},
    "tab_eol": {"fr": "Fin de vie : comparaison des deux groupes", "en": "End of life: both groups compared"},
    "tab_hosp": {"fr": "Hospitalisations pendant le suivi", "en": "Hospitalisations during follow-up"},
    "tab_followup": {"fr": "Suivi", "en": "Follow-up"},
    "tab_spending": {"fr": "Dépenses par catégorie (par patient)", "en": "Spending by category (per patient)"},
    "fig_spending": {"fr": "Dépenses par catégorie et par groupe", "en": "Spending by category and group"},
    "fig_eol": {"fr": "Fin de vie : indicateurs par groupe", "en": "End of life: indicators by group"},
    "spending_of": {"fr": "Dépense :", "en": "Spending:"},
    "nursing_presence": {"fr": "Présence infirmière en fin de vie", "en": "Nursing presence at the end of life"},
    # -- economics
    "econ_intro": {
        "fr": "Perspective de l'Assurance Maladie (dépenses remboursées, forfaits de l'expérimentation "
              "inclus). Les dépenses évitées sont la différence de dépense par patient-année entre patients "
              "ÉQUILIBRES et témoins appariés ; l'économie nette rapporte ces dépenses évitées à la file "
              "active et retranche l'investissement du projet ({investment}/an, paramètre d'entrée).",
        "en": "Perspective of the Assurance Maladie (reimbursed spending, experiment payments included). "
              "Avoided spending is the difference in spending per patient-year between ÉQUILIBRES patients "
              "and matched controls; net savings scale it to the active caseload and subtract the project "
              "investment ({investment}/year, an input parameter).",
    },
    "tab_scenarios": {"fr": "Scénarios économiques", "en": "Economic scenarios"},
    "fig_scenarios": {"fr": "Économie nette annuelle selon les scénarios", "en": "Annual net savings by scenario"},
    # -- surveys
    "surveys_intro": {
        "fr": "Proportions avec intervalle de confiance ({ci_method}) ; les petits effectifs (moins de "
              "{small} répondants) sont signalés. Les enquêtes sont déclaratives et ne comportent pas de "
              "groupe témoin.",
        "en": "Proportions with confidence intervals ({ci_method}); small samples (fewer than {small} "
              "respondents) are flagged. Surveys are self-reported and have no control group.",
    },
    "tab_response_rates": {"fr": "Taux de réponse", "en": "Response rates"},
    "tab_survey_items": {"fr": "Résultats des enquêtes", "en": "Survey results"},
    "tab_before_after": {"fr": "Infirmiers : avant / après ÉQUILIBRES (note sur 10)", "en": "Nurses: before / after ÉQUILIBRES (score out of 10)"},
    "fig_likert": {"fr": "Réponses aux échelles de Likert", "en": "Likert-scale answers"},
    "fig_before_after": {"fr": "Infirmiers : ancien exercice et ÉQUILIBRES", "en": "Nurses: former practice and ÉQUILIBRES"},
    "survey_patients": {"fr": "Patients et aidants", "en": "Patients and caregivers"},
    "survey_nurses": {"fr": "Infirmiers", "en": "Nurses"},
    # -- sensitivity
    "sens_intro": {
        "fr": "La courbe de spécification montre l'estimation principale pour chaque combinaison de "
              "paramètres d'appariement de la grille [sweep] ; la différence de différences compare "
              "l'évolution des dépenses avant et après l'inclusion.",
        "en": "The specification curve shows the main estimate for every combination of matching "
              "parameters of the [sweep] grid; the difference-in-differences compares the change in spending "
              "before and after inclusion.",
    },
    "fig_spec_curve": {"fr": "Courbe de spécification", "en": "Specification curve"},
    "tab_sweep": {"fr": "Spécifications d'appariement", "en": "Matching specifications"},
    "tab_did": {"fr": "Différence de différences", "en": "Difference-in-differences"},
    "tab_regression": {"fr": "Contrôle par régression", "en": "Regression cross-check"},
    "sweep_summary": {
        "fr": "{n} spécifications ; {what} : médiane {median} (de {lo} à {hi}).",
        "en": "{n} specifications; {what}: median {median} (from {lo} to {hi}).",
    },
    # -- limitations
    "limitations": {
        "fr": [
            "Étude observationnelle : l'appariement n'équilibre que les caractéristiques observées (sexe, "
            "âge, ALD, département, coût infirmier antérieur) ; une confusion résiduelle par des facteurs "
            "non mesurés (entourage, préférences, gravité) ne peut être exclue. La différence de différences "
            "et la courbe de spécification en donnent une mesure partielle.",
            "Les patients sans témoin comparable (notamment à soins complexes) sont exclus des comparaisons : "
            "les effets estimés portent sur les patients appariés (ATT des appariés), pas sur toute la file active.",
            "Le périmètre de dépense (catégories DCIR et séjours MCO) ne couvre ni l'HAD, ni le SSR, ni la "
            "psychiatrie, ni les dépenses médico-sociales ; les dépenses évitées peuvent être sur- ou "
            "sous-estimées.",
            "Les données PMSI sont valorisées par VALO ; les séjours non valorisés comptent pour zéro.",
            "Les enquêtes reposent sur de petits effectifs de répondants volontaires, sans groupe témoin ; les "
            "scores avant/après sont rétrospectifs (biais de mémoire et de désirabilité).",
            "L'économie nette extrapole un effet moyen à la file active d'une année : elle dépend du nombre de "
            "patients-années et de l'investissement retenu (voir scénarios).",
            "Ce rapport est produit sur une extraction ; s'il s'agit de l'extraction synthétique du projet, les "
            "valeurs reproduites illustrent la méthode et ne constituent pas un résultat sur données réelles.",
        ],
        "en": [
            "Observational study: matching only balances observed characteristics (sex, age, ALD, département, "
            "prior nursing cost); residual confounding by unmeasured factors (family support, preferences, "
            "severity) cannot be excluded. The difference-in-differences and the specification curve give a "
            "partial measure of it.",
            "Patients without a comparable control (notably complex-care patients) are excluded from the "
            "comparisons: the estimated effects concern matched patients, not the whole caseload.",
            "The spending perimeter (DCIR categories and MCO stays) excludes home hospitalisation, "
            "rehabilitation, psychiatry and social-care spending; avoided spending may be over- or "
            "under-estimated.",
            "PMSI stays are costed from VALO; unvalued stays count as zero.",
            "Surveys rest on small numbers of volunteer respondents, with no control group; before/after "
            "scores are retrospective (recall and desirability bias).",
            "Net savings extrapolate a mean effect to one year's caseload: they depend on the number of "
            "patient-years and on the investment assumed (see scenarios).",
            "This report is produced from one extract; if it is the project's synthetic extract, reproduced "
            "values illustrate the method and are not a result on real data.",
        ],
    },
    # -- methods appendix
    "m_design": {"fr": "Plan d'étude (STROBE 4)", "en": "Study design (STROBE 4)"},
    "m_design_text": {
        "fr": "Cohorte rétrospective appariée sur données de l'Assurance Maladie (SNDS), patients exposés "
              "(ÉQUILIBRES) et témoins non exposés du système classique ; estimand : effet moyen chez les "
              "traités appariés (ATT).",
        "en": "Retrospective matched cohort on Assurance Maladie claims (SNDS), exposed patients "
              "(ÉQUILIBRES) and unexposed controls in the usual system; estimand: average treatment effect "
              "on the matched treated (ATT).",
    },
    "m_setting": {"fr": "Cadre et période (STROBE 5)", "en": "Setting and period (STROBE 5)"},
    "m_participants": {"fr": "Participants et éligibilité (STROBE 6, RECORD 6.1)", "en": "Participants and eligibility (STROBE 6, RECORD 6.1)"},
    "m_participants_text": {
        "fr": "Essai cible émulé. Traités : patients du registre, à leur date d'inclusion (temps zéro). Témoins : "
              "patients recevant des soins infirmiers à domicile hors expérimentation (jamais inclus pendant "
              "l'étude), avec au moins {hist} mois d'historique et au moins {mincost} de soins infirmiers dans "
              "l'année précédant le trimestre d'inclusion. Appariement séquentiel par trimestre d'inclusion : "
              "chaque témoin commence son suivi à la date d'inclusion du patient auquel il est apparié et "
              "doit être vivant ce jour-là ; une personne ne sert de témoin qu'une fois. Les caractéristiques "
              "des deux bras sont mesurées sur les mêmes 12 mois civils. Éligibilité : sexe et âge connus, "
              "résidant dans un département de l'étude. Les personnes incluses plus tard ne servent pas de "
              "témoins avant leur inclusion.",
        "en": "Emulated target trial. Treated: roster patients, at their inclusion date (time zero). Controls: "
              "patients receiving home nursing outside the experiment (never included during the study), with "
              "at least {hist} months of history and at least {mincost} of nursing care in the year before the "
              "inclusion quarter. Sequential matching by inclusion quarter: each control starts follow-up on "
              "the inclusion date of the patient it is matched to and must be alive on that day; a person "
              "serves as a control once. Both arms' characteristics are measured over the same 12 calendar "
              "months. Eligibility: known sex and age, living in a study département. People who join later "
              "do not serve as controls before joining.",
    },
    "m_sources": {"fr": "Sources de données et chaînage (STROBE 8, RECORD 12.2–12.3)", "en": "Data sources and linkage (STROBE 8, RECORD 12.2–12.3)"},
    "m_sources_text": {
        "fr": "Le registre de l'expérimentation est chaîné au SNDS par l'identifiant pseudonymisé "
              "(BEN_NIR_PSA) ; les identifiants multiples d'une même personne sont unifiés par BEN_IDT_ANO. "
              "Le PMSI MCO est chaîné par NIR_ANO_17 ; les séjours aux codes retour non nuls (chaînage "
              "invalide) sont exclus et comptés dans le tableau de nettoyage. Aucun identifiant ne figure "
              "dans ce rapport.",
        "en": "The experiment roster is linked to the SNDS through the pseudonymised identifier "
              "(BEN_NIR_PSA); a person's several identifiers are unified through BEN_IDT_ANO. PMSI MCO stays "
              "are linked through NIR_ANO_17; stays with non-zero return codes (invalid linkage) are excluded "
              "and counted in the cleaning table. No identifier appears in this report.",
    },
    "m_codes": {"fr": "Listes de codes (RECORD 7.1)", "en": "Code lists (RECORD 7.1)"},
    "col_category": {"fr": "Catégorie", "en": "Category"},
    "col_prs_nat_ref": {"fr": "PRS_NAT_REF", "en": "PRS_NAT_REF"},
    "col_pse_act_nat": {"fr": "PSE_ACT_NAT", "en": "PSE_ACT_NAT"},
    "col_pse_spe_cod": {"fr": "PSE_SPE_COD", "en": "PSE_SPE_COD"},
    "col_ald_group": {"fr": "Groupe d'ALD", "en": "ALD group"},
    "col_ald_numbers": {"fr": "Numéros d'ALD (IMB_ALD_NUM)", "en": "ALD numbers (IMB_ALD_NUM)"},
    "codes_note": {
        "fr": "Une ligne de prestation est affectée à la première catégorie dont tous les critères sont "
              "remplis ; les lignes sans catégorie sont classées « autres ».",
        "en": "A claim line is assigned to the first category whose criteria all hold; lines matching no "
              "category are classed as “other”.",
    },
    "m_cleaning": {"fr": "Nettoyage des données (RECORD 12.1)", "en": "Data cleaning (RECORD 12.1)"},
    "m_cleaning_text": {
        "fr": "Les règles appliquées, avec leurs effectifs, leurs montants et la page de documentation du SNDS "
              "dont chacune provient, sont au tableau {table} (section 2). Chaque règle est une fonction "
              "nommée du code (pipeline/stages) ; son nom est celui de la colonne « Règle ».",
        "en": "The rules applied, with their counts, amounts and the SNDS documentation page each comes from, "
              "are in Table {table} (section 2). Each rule is a named function of the code (pipeline/stages); "
              "its name is the one in the “Rule” column.",
    },
    "col_source": {"fr": "Source", "en": "Source"},
    "m_variables": {"fr": "Variables et critères de jugement (STROBE 7)", "en": "Variables and outcomes (STROBE 7)"},
    "m_missing": {"fr": "Données manquantes (STROBE 12c)", "en": "Missing data (STROBE 12c)"},
    "m_missing_text": {
        "fr": "Sexe inconnu (0/9) ou année de naissance inconnue (1600) : personne non éligible (comptée "
              "dans le flux). Date de décès sentinelle (1600-01-01) : vivant. Mois de naissance inconnu : "
              "1er juillet. Séjour non valorisé : coût nul. Mois-personnes sans consommation : dépense nulle. "
              "Enquêtes : les non-réponses sont exclues du dénominateur de chaque item.",
        "en": "Unknown sex (0/9) or birth year (1600): person not eligible (counted in the flow). Sentinel "
              "death date (1600-01-01): alive. Unknown birth month: 1 July. Unvalued stay: zero cost. "
              "Person-months with no claims: zero spending. Surveys: non-responses are excluded from each "
              "item's denominator.",
    },
    "m_bias": {"fr": "Biais et méthodes statistiques (STROBE 9, 12)", "en": "Bias and statistical methods (STROBE 9, 12)"},
    "m_bias_text": {
        "fr": "Appariement exact sur {exact}, puis plus proche voisin sur {on} (transformation {transform}, "
              "caliper {caliper}). Intervalles de confiance par bootstrap ({reps} réplications, niveau "
              "{level}), rééchantillonnant les ensembles appariés. Sensibilité : grille de spécifications, "
              "différence de différences ({did} mois), contrôle par régression.",
        "en": "Exact matching on {exact}, then nearest neighbour on {on} (transform {transform}, caliper "
              "{caliper}). Bootstrap confidence intervals ({reps} replicates, level {level}) resampling matched "
              "sets. Sensitivity: a grid of specifications, difference-in-differences ({did} months), "
              "regression cross-check.",
    },
    "m_cheers": {"fr": "Évaluation économique (CHEERS 2022)", "en": "Economic evaluation (CHEERS 2022)"},
    "cheers_perspective": {"fr": "Perspective", "en": "Perspective"},
    "cheers_perspective_v": {"fr": "Assurance Maladie (dépenses remboursées)", "en": "Assurance Maladie (reimbursed spending)"},
    "cheers_comparator": {"fr": "Comparateur", "en": "Comparator"},
    "cheers_comparator_v": {"fr": "Soins infirmiers à l'acte (système classique), témoins appariés", "en": "Fee-per-act home nursing (usual system), matched controls"},
    "cheers_horizon": {"fr": "Horizon temporel", "en": "Time horizon"},
    "cheers_horizon_v": {"fr": "Suivi de l'inclusion à la fin des données ({end}), exprimé par patient-année ; pas d'actualisation (horizon ≤ 4 ans)", "en": "Follow-up from inclusion to the end of data ({end}), expressed per patient-year; no discounting (horizon ≤ 4 years)"},
    "cheers_costs": {"fr": "Coûts", "en": "Costs"},
    "cheers_costs_v": {"fr": "Catégories : {cats} ; investissement du projet : {inv}/an ; forfait horaire : {rate}", "en": "Categories: {cats}; project investment: {inv}/year; hourly rate: {rate}"},
    "cheers_outcomes": {"fr": "Résultats de santé", "en": "Health outcomes"},
    "cheers_outcomes_v": {"fr": "Hospitalisations en fin de vie ; pas de QALY (non mesurés)", "en": "End-of-life hospitalisations; no QALYs (not measured)"},
    "cheers_uncertainty": {"fr": "Incertitude", "en": "Uncertainty"},
    "cheers_uncertainty_v": {"fr": "Bootstrap des dépenses évitées ; analyse de scénarios (forfait horaire, investissement, file active) ; grille de spécifications d'appariement", "en": "Bootstrap of avoided spending; scenario analysis (hourly rate, investment, caseload); grid of matching specifications"},
    # -- reproducibility
    "repro_intro": {
        "fr": "Ce rapport est entièrement produit par <code>equilibres report</code> à partir des résultats "
              "du pipeline ; aucun chiffre n'y est saisi à la main.",
        "en": "This report is produced entirely by <code>equilibres report</code> from the pipeline's "
              "results; no figure is typed in by hand.",
    },
    "tab_inputs": {"fr": "Fichiers d'entrée (empreintes SHA-256)", "en": "Input files (SHA-256 hashes)"},
    "col_file": {"fr": "Fichier", "en": "File"},
    "col_hash": {"fr": "Empreinte", "en": "Hash"},
    "tab_versions": {"fr": "Versions des logiciels", "en": "Software versions"},
    "col_software": {"fr": "Logiciel", "en": "Software"},
    "col_version": {"fr": "Version", "en": "Version"},
    "tab_params": {"fr": "Paramètres de l'étude", "en": "Study parameters"},
    "col_section": {"fr": "Section", "en": "Section"},
    "config_fingerprint": {"fr": "Empreinte de la configuration", "en": "Configuration fingerprint"},
    "not_available": {"fr": "non disponible", "en": "not available"},
    "yes": {"fr": "oui", "en": "yes"},
    "no": {"fr": "non", "en": "no"},
    "page": {"fr": "page", "en": "page"},
}

# Labels of data values (covariates, groups, statuses) that appear in result tables.
VALUE_LABELS: dict[str, dict[str, str]] = {
    "treated": {"fr": "ÉQUILIBRES", "en": "ÉQUILIBRES"},
    "control": {"fr": "Témoins", "en": "Controls"},
    "before": {"fr": "Avant", "en": "Before"},
    "after": {"fr": "Après", "en": "After"},
    "overall": {"fr": "Ensemble", "en": "All"},
    "complex": {"fr": "Soins complexes (au moins un)", "en": "Complex care (any)"},
    "CPX_SOCIAL": {"fr": "Problèmes sociaux", "en": "Social problems"},
    "CPX_AIDANT": {"fr": "Soutien des aidants", "en": "Caregiver support"},
    "CPX_PALLIATIF": {"fr": "Soins palliatifs", "en": "Palliative care"},
    "CPX_PSY": {"fr": "Santé mentale", "en": "Mental health"},
    "CPX_HANDICAP": {"fr": "Handicap", "en": "Disability"},
    "CPX_PEDIATRIE": {"fr": "Pédiatrie", "en": "Paediatrics"},
    "age": {"fr": "Âge (années)", "en": "Age (years)"},
    "BEN_SEX_COD": {"fr": "Sexe (BEN_SEX_COD)", "en": "Sex (BEN_SEX_COD)"},
    "ald": {"fr": "ALD active", "en": "Active ALD"},
    "age_band": {"fr": "Classe d'âge", "en": "Age band"},
    "dpt": {"fr": "Département", "en": "Département"},
    "index_quarter": {"fr": "Trimestre index", "en": "Index quarter"},
    "ald_group": {"fr": "Groupe d'ALD", "en": "ALD group"},
    "prior_nursing_cost": {"fr": "Coût infirmier, 12 mois avant (€)", "en": "Nursing cost, prior 12 months (€)"},
    "prior_total_cost": {"fr": "Dépense totale, 12 mois avant (€)", "en": "Total spending, prior 12 months (€)"},
    "prior_hosp_stays": {"fr": "Séjours hospitaliers, 12 mois avant", "en": "Hospital stays, prior 12 months"},
    "hospital": {"fr": "Hospitalisation (MCO)", "en": "Hospital (MCO)"},
    "other": {"fr": "Autres", "en": "Other"},
    "total": {"fr": "Total", "en": "Total"},
    "pooled": {"fr": "écart-type groupé", "en": "pooled standard deviation"},
    "treated_sd": {"fr": "écart-type des traités", "en": "standard deviation of the treated"},
    "extract": {"fr": "Extraction", "en": "Extract"},
    "cleaned": {"fr": "Nettoyé", "en": "Cleaned"},
    "eligible": {"fr": "Éligibles", "en": "Eligible"},
    "matched": {"fr": "Appariés", "en": "Matched"},
    "unmatched": {"fr": "Non appariés", "en": "Unmatched"},
    "patients": {"fr": "Patients", "en": "Patients"},
    "caregivers": {"fr": "Aidants", "en": "Caregivers"},
    "nurses": {"fr": "Infirmiers", "en": "Nurses"},
    "patients_caregivers": {"fr": "Patients et aidants (téléphone)", "en": "Patients and caregivers (phone)"},
    "nurses_phone": {"fr": "Infirmiers (téléphone)", "en": "Nurses (phone)"},
    "nurses_online": {"fr": "Infirmiers (en ligne)", "en": "Nurses (online)"},
    "True": {"fr": "oui", "en": "yes"},
    "False": {"fr": "non", "en": "no"},
    # regression cross-check and difference-in-differences (indicators/inference.py)
    "spending_per_patient_year (treated − control)": {
        "fr": "Dépense par patient-année (ÉQUILIBRES − témoins)",
        "en": "Spending per patient-year (ÉQUILIBRES − controls)"},
    "share_any_stay (treated − control)": {
        "fr": "Part avec au moins un séjour MCO (ÉQUILIBRES − témoins)",
        "en": "Share with at least one MCO stay (ÉQUILIBRES − controls)"},
    "stays_per_100py (treated − control)": {
        "fr": "Séjours MCO pour 100 patients-années (ÉQUILIBRES − témoins)",
        "en": "MCO stays per 100 patient-years (ÉQUILIBRES − controls)"},
    "WLS, cluster-robust SE by matched set": {
        "fr": "moindres carrés pondérés, erreurs-types robustes par ensemble apparié",
        "en": "WLS, cluster-robust SE by matched set"},
    "linear probability WLS, cluster-robust SE by matched set": {
        "fr": "modèle de probabilité linéaire (moindres carrés pondérés), erreurs-types robustes par ensemble "
              "apparié",
        "en": "linear probability WLS, cluster-robust SE by matched set"},
    "did_wls_cluster": {"fr": "Différence de différences (moindres carrés pondérés)",
                        "en": "Difference-in-differences (WLS)"},
    "did_bootstrap": {"fr": "Différence de différences (bootstrap)", "en": "Difference-in-differences (bootstrap)"},
    "pre_eur_per_patient_year": {"fr": "Avant (€/patient-année)", "en": "Before (€/patient-year)"},
    "post_eur_per_patient_year": {"fr": "Après (€/patient-année)", "en": "After (€/patient-year)"},
    "mean_followup_years": {"fr": "Suivi moyen (années)", "en": "Mean follow-up (years)"},
    # survey method texts (surveys/stats.py defaults, French versions kept beside them)
    **{en: {"fr": fr, "en": en} for en, fr in SCORE_METHODS_FR.items()},
    # matching methods (sweep and specification tables)
    **{m: {"fr": fr, "en": m} for m, fr in MATCHING_METHOD_FR.items()},
    **{c: {"fr": fr, "en": {"sd": "SD"}.get(c, c)} for c, fr in CALIPER_SCALE_FR.items()},
}

# Producer notes carrying a number ("fewer than 10 treated", matching/profiles.py), in the report language.
VALUE_PATTERNS: list[tuple[re.Pattern[str], dict[str, str]]] = [
    (re.compile(r"fewer than (\d+) unmatched or matched"),
     {"fr": "moins de {0} non appariés ou appariés", "en": "fewer than {0} unmatched or matched"}),
    (re.compile(r"fewer than (\d+) treated"), {"fr": "moins de {0} traités", "en": "fewer than {0} treated"}),
    (re.compile(r"some reason shares hide small counts"),
     {"fr": "certaines parts par motif masquent de petits effectifs", "en": "some reason shares hide small counts"}),
]

# Column headers of result tables whose columns are not known in advance.
COLUMN_LABELS: dict[str, dict[str, str]] = {
    "arm": {"fr": "Groupe", "en": "Group"},
    "group": {"fr": "Groupe", "en": "Group"},
    "category": {"fr": "Catégorie", "en": "Category"},
    "indicator": {"fr": "Indicateur", "en": "Indicator"},
    "n": {"fr": "n", "en": "n"},
    "n_patients": {"fr": "Patients", "en": "Patients"},
    "n_decedents": {"fr": "Décédés", "en": "Decedents"},
    "n_treated": {"fr": "n ÉQUILIBRES", "en": "n ÉQUILIBRES"},
    "n_control": {"fr": "n témoins", "en": "n controls"},
    "n_controls": {"fr": "n témoins", "en": "n controls"},
    "n_units": {"fr": "n", "en": "n"},
    "measure": {"fr": "Mesure", "en": "Measure"},
    "deaths": {"fr": "Décès", "en": "Deaths"},
    "end_exit": {"fr": "Sorties de l'expérimentation", "en": "Exits from the experiment"},
    "end_death": {"fr": "Fin par décès", "en": "Ended by death"},
    "end_study": {"fr": "Fin de l'étude", "en": "End of study"},
    "control_weighted": {"fr": "Témoins (pondéré)", "en": "Controls (weighted)"},
    "in_perimeter": {"fr": "Dans le périmètre", "en": "In perimeter"},
    "year": {"fr": "Année", "en": "Year"},
    "caseload_patient_years": {"fr": "File active (patients-années)", "en": "Caseload (patient-years)"},
    "avoided_eur_per_patient_year": {"fr": "Dépense évitée (€/patient/an)", "en": "Avoided spending (€/patient/year)"},
    "gross_savings_year": {"fr": "Économie brute (€/an)", "en": "Gross savings (€/year)"},
    "return_per_euro_invested": {"fr": "Retour par euro investi", "en": "Return per euro invested"},
    "experiment_repriced": {"fr": "Forfaits revalorisés", "en": "Payments repriced"},
    "n_pairs": {"fr": "Paires", "en": "Pairs"},
    "mean_change": {"fr": "Variation moyenne", "en": "Mean change"},
    "median_before": {"fr": "Médiane avant", "en": "Median before"},
    "median_after": {"fr": "Médiane après", "en": "Median after"},
    "median_change": {"fr": "Variation médiane", "en": "Median change"},
    "sd_change": {"fr": "Écart-type de la variation", "en": "SD of change"},
    "n_unchanged": {"fr": "Inchangés", "en": "Unchanged"},
    "n_increased": {"fr": "En hausse", "en": "Increased"},
    "n_decreased": {"fr": "En baisse", "en": "Decreased"},
    "wilcoxon_statistic": {"fr": "Statistique de Wilcoxon", "en": "Wilcoxon statistic"},
    "n_incomplete": {"fr": "Incomplets", "en": "Incomplete"},
    "survey_id": {"fr": "Enquête", "en": "Survey"},
    "text": {"fr": "Question", "en": "Question"},
    "invited": {"fr": "Invités", "en": "Invited"},
    "complete_I": {"fr": "Complets (I)", "en": "Complete (I)"},
    "partial_P": {"fr": "Partiels (P)", "en": "Partial (P)"},
    "rr1": {"fr": "Taux de réponse RR1", "en": "Response rate RR1"},
    "rr2": {"fr": "Taux de réponse RR2", "en": "Response rate RR2"},
    "statistic": {"fr": "Statistique", "en": "Statistic"},
    "display": {"fr": "Résultat", "en": "Result"},
    "k": {"fr": "k", "en": "k"},
    "n_missing": {"fr": "Non-réponses", "en": "Missing"},
    "n_applicable": {"fr": "Concernés", "en": "Applicable"},
    "spec": {"fr": "N°", "en": "No."},
    "n_treated_matched": {"fr": "ÉQUILIBRES appariés", "en": "ÉQUILIBRES matched"},
    "max_abs_smd_after": {"fr": "|DMS| max après", "en": "Max |SMD| after"},
    "profile": {"fr": "Profil", "en": "Profile"},
    "n_matched": {"fr": "Appariés", "en": "Matched"},
    "n_unmatched": {"fr": "Non appariés", "en": "Unmatched"},
    "n_respondents": {"fr": "Répondants", "en": "Respondents"},
    "n_invited": {"fr": "Invités", "en": "Invited"},
    "response_rate": {"fr": "Taux de réponse", "en": "Response rate"},
    "survey": {"fr": "Enquête", "en": "Survey"},
    "item": {"fr": "Question", "en": "Item"},
    "label": {"fr": "Libellé", "en": "Label"},
    "share": {"fr": "Part", "en": "Share"},
    "mean": {"fr": "Moyenne", "en": "Mean"},
    "value": {"fr": "Valeur", "en": "Value"},
    "estimate": {"fr": "Estimation", "en": "Estimate"},
    "ci_low": {"fr": "IC bas", "en": "CI low"},
    "ci_high": {"fr": "IC haut", "en": "CI high"},
    "p_value": {"fr": "p", "en": "p"},
    "se": {"fr": "Erreur type", "en": "Std. error"},
    "term": {"fr": "Terme", "en": "Term"},
    "model": {"fr": "Modèle", "en": "Model"},
    "method": {"fr": "Méthode", "en": "Method"},
    "period": {"fr": "Période", "en": "Period"},
    "scenario": {"fr": "Scénario", "en": "Scenario"},
    "hourly_rate": {"fr": "Forfait horaire (€)", "en": "Hourly rate (€)"},
    "hourly_rate_eur": {"fr": "Forfait horaire (€)", "en": "Hourly rate (€)"},
    "investment": {"fr": "Investissement (€/an)", "en": "Investment (€/year)"},
    "investment_eur": {"fr": "Investissement (€/an)", "en": "Investment (€/year)"},
    "caseload_factor": {"fr": "Facteur de file active", "en": "Caseload factor"},
    "patient_years": {"fr": "Patients-années", "en": "Patient-years"},
    "avoided_per_patient_year": {"fr": "Dépense évitée (€/patient/an)", "en": "Avoided spending (€/patient/year)"},
    "avoided_total": {"fr": "Dépenses évitées (€/an)", "en": "Avoided spending (€/year)"},
    "gross_savings": {"fr": "Économie brute (€/an)", "en": "Gross savings (€/year)"},
    "net_savings": {"fr": "Économie nette (€/an)", "en": "Net savings (€/year)"},
    "net_savings_year": {"fr": "Économie nette (€/an)", "en": "Net savings (€/year)"},
    "treated": {"fr": "ÉQUILIBRES", "en": "ÉQUILIBRES"},
    "control": {"fr": "Témoins", "en": "Controls"},
    "difference": {"fr": "Différence", "en": "Difference"},
    "relative_difference": {"fr": "Différence relative", "en": "Relative difference"},
    "mean_treated": {"fr": "Moyenne ÉQUILIBRES", "en": "Mean ÉQUILIBRES"},
    "mean_control": {"fr": "Moyenne témoins", "en": "Mean controls"},
    "spend_treated": {"fr": "ÉQUILIBRES (€)", "en": "ÉQUILIBRES (€)"},
    "spend_control": {"fr": "Témoins (€)", "en": "Controls (€)"},
    "before": {"fr": "Avant", "en": "Before"},
    "after": {"fr": "Après", "en": "After"},
    "mean_before": {"fr": "Moyenne avant", "en": "Mean before"},
    "mean_after": {"fr": "Moyenne après", "en": "Mean after"},
    "spec_id": {"fr": "Spécification", "en": "Specification"},
    "caliper": {"fr": "Caliper", "en": "Caliper"},
    "ratio": {"fr": "Ratio", "en": "Ratio"},
    "transform": {"fr": "Transformation", "en": "Transform"},
    "age_band_width": {"fr": "Largeur des classes d'âge", "en": "Age band width"},
    "replace": {"fr": "Avec remise", "en": "With replacement"},
    "max_abs_smd": {"fr": "|DMS| max", "en": "Max |SMD|"},
    "share_matched": {"fr": "Part appariée", "en": "Share matched"},
    "share_unmatched": {"fr": "Part non appariée", "en": "Share unmatched"},
}


MEASURE_LABELS: dict[str, dict[str, str]] = {
    "decedents": {"fr": "Patients décédés", "en": "Decedents"},
    "share_any_stay": {"fr": "Au moins un séjour hospitalier", "en": "At least one hospital stay"},
    "hospital_days": {"fr": "Journées d'hospitalisation par patient", "en": "Hospital days per patient"},
    "death_in_hospital": {"fr": "Décès à l'hôpital", "en": "Death in hospital"},
    "spending_total": {"fr": "Dépense totale (périmètre)", "en": "Total spending (perimeter)"},
    "nursing_spend": {"fr": "Dépense de soins infirmiers", "en": "Nursing spending"},
    "nursing_acts": {"fr": "Actes infirmiers par patient", "en": "Nursing acts per patient"},
    "experiment_hours": {"fr": "Heures de l'expérimentation par patient", "en": "Experiment hours per patient"},
    "stays_per_patient_year": {"fr": "Séjours par patient-année", "en": "Stays per patient-year"},
}


def text(key: str, lang: str, **fmt: Any) -> Any:
    """The fixed text ``key`` in ``lang``; ``fmt`` fills its ``{placeholders}``."""
    try:
        entry = TEXTS[key]
    except KeyError:
        raise KeyError(f"report text {key!r} is not defined in reports/i18n.py TEXTS") from None
    value = entry[lang]
    if fmt and isinstance(value, str):
        return value.format(**fmt)
    return value


def value_label(value: Any, lang: str) -> str:
    """A translated label for a data value, or the value itself.

    Notes made of several '; '-separated parts are translated part by part (VALUE_PATTERNS)."""
    key = str(value)
    if key in VALUE_LABELS:
        return VALUE_LABELS[key][lang]
    parts = key.split("; ")
    out = []
    for part in parts:
        for pattern, texts in VALUE_PATTERNS:
            m = pattern.fullmatch(part)
            if m:
                part = texts[lang].format(*m.groups())
                break
        out.append(part)
    return "; ".join(out)


def column_label(column: str, lang: str) -> str:
    if column in COLUMN_LABELS:
        return COLUMN_LABELS[column][lang]
    if column in VALUE_LABELS:
        return VALUE_LABELS[column][lang]
    return column.replace("_", " ")


# Labels and units of the published figures of BILAN.md (keys of the config's [published] table), so
# the summary can list a published figure even when no indicator record was produced for it.
PUBLISHED_META: dict[str, tuple[str, str, str]] = {
    # key: (unit, label_fr, label_en)
    "unmatched_share_complex": ("share", "Patients à soins complexes sans témoin comparable", "Complex-care patients without a comparable control"),
    "eol_hosp_rate": ("relative_difference", "Hospitalisation dans les 3 mois avant le décès (écart relatif)", "Hospitalisation in the 3 months before death (relative difference)"),
    "eol_spending_treated": ("eur_per_patient", "Dépense des 3 mois avant le décès, ÉQUILIBRES", "Spending in the 3 months before death, ÉQUILIBRES"),
    "eol_spending_control": ("eur_per_patient", "Dépense des 3 mois avant le décès, témoins", "Spending in the 3 months before death, controls"),
    "avoided_spending_share": ("share", "Part de dépenses évitées", "Share of spending avoided"),
    "avoided_spending_per_patient_year": ("eur_per_patient_year", "Dépenses évitées par patient et par an", "Avoided spending per patient-year"),
    "programme_investment": ("eur_per_year", "Investissement du projet", "Project investment"),
    "net_savings_year": ("eur_per_year", "Économie nette sur un an", "Net savings over one year"),
    "patients_qol_improved": ("share", "Patients : qualité de vie améliorée", "Patients: quality of life improved"),
    "patients_home_support": ("share", "Patients : maintien à domicile favorisé", "Patients: staying at home favoured"),
    "caregivers_supported": ("share", "Aidants soutenus", "Caregivers feeling supported"),
    "patients_needs_met": ("share", "Patients : réponse réelle à leurs besoins", "Patients: a real answer to their needs"),
    "patients_mean_score": ("score_0_10", "Patients : note moyenne du service", "Patients: mean rating of the service"),
    "nurses_qvt_before": ("score_0_10", "Infirmiers : qualité de vie au travail, avant", "Nurses: quality of working life, before"),
    "nurses_qvt_after": ("score_0_10", "Infirmiers : qualité de vie au travail, ÉQUILIBRES", "Nurses: quality of working life, ÉQUILIBRES"),
    "nurses_conditions_before": ("score_0_10", "Infirmiers : conditions de travail, avant", "Nurses: working conditions, before"),
    "nurses_conditions_after": ("score_0_10", "Infirmiers : conditions de travail, ÉQUILIBRES", "Nurses: working conditions, ÉQUILIBRES"),
    "nurses_caseload_same": ("share", "Infirmiers : file active inchangée", "Nurses: caseload unchanged"),
    "nurses_caseload_up": ("share", "Infirmiers : file active en hausse", "Nurses: caseload up"),
    "nurses_caseload_down": ("share", "Infirmiers : file active en baisse", "Nurses: caseload down"),
    "nurses_more_solicited": ("share", "Infirmiers : plus sollicités pour de nouveaux patients", "Nurses: more often asked to take new patients"),
    "nurses_accept_more": ("share", "Infirmiers : acceptent plus souvent de nouveaux patients", "Nurses: accept new patients more often"),
    "nurses_coordination": ("share", "Coordination accrue entre professionnels", "Coordination between professionals increased"),
    "nurses_coordination_gp_aide": ("share", "Coordination accrue avec médecin et auxiliaire de vie", "Coordination with GP and home aide increased"),
}

# French labels of the cleaning rules (their English description comes from the audit trail).
RULE_LABELS_FR: dict[str, str] = {
    "death_date_sentinel": "BEN_DCD_DTE = 1600-01-01 signifie vivant ou inconnu : date ignorée",
    "birth_year_unknown": "Année de naissance 1600 ou absente : date de naissance inconnue",
    "sex_unknown": "BEN_SEX_COD autre que 1 ou 2 : sexe inconnu",
    "corsica_departement_variant": "Corse codée 201/202 normalisée en 02A/02B",
    "ald_open_ended": "IMB_ALD_DTF = 1600-01-01 : ALD sans fin (active depuis son début)",
    "ald_lifetime_2099": "IMB_ALD_DTF = 2099-12-31 : ALD à vie (conservée)",
    "ald_overlapping_renewal": "Renouvellements d'ALD chevauchants : périodes fusionnées",
    "ald_link_to_beneficiary": "Lignes d'ALD sans bénéficiaire dans IR_BEN_R : retirées",
    "ald_start_unknown": "Lignes d'ALD sans date de début : retirées",
    "dpn_qlf_71": "Lignes DPN_QLF = 71 (activité hospitalière publique pour information) : retirées",
    "bse_prs_nat_0": "Lignes BSE_PRS_NAT = 0 (sans prestation remboursée) : retirées",
    "care_window": "Date de soins absente ou hors fenêtre d'étude : retirées",
    "flux_window": "Lignes payées après la fin de la fenêtre des flux : retirées",
    "regularisation_netting": "Régularisations : lignes identiques sommées, groupes de quantité nulle retirés",
    "link_to_beneficiary": "Prestations sans bénéficiaire dans IR_BEN_R : retirées",
    "cpl_maj_top_not_an_act": "CPL_MAJ_TOP ≥ 2 (majorations) : comptées en euros, pas comme actes",
}
