"""Programme economics: investment, caseload, gross and net savings per year, return, scenarios.

Savings per year = avoided spending per patient-year (intention to treat, bootstrap, with its CI) ×
the *active file* of one calendar year (``economics.caseload_year``; 0 = the year of
``study.claims_end``): the patient-years every ÉQUILIBRES patient — matched or not — spends in the
programme (inclusion to exit, death or end of study). This is the published definition (9 M€ at
1 625 €/patient-year: the patients in care that year); it assumes the matched effect holds for the
whole caseload. Time after an exit alive is not counted, so when the programme's health effects
outlast the stay the figure is conservative. The intention-to-treat patient-years stay beside it in
``caseload.csv``. The caseload is treated as known (no sampling error); the investment is an input.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from indicators.analysis import MatchedAnalysis
from indicators.bootstrap import percentile_interval
from indicators.followup import caseload_by_year, years_by_calendar_year
from indicators.outcomes import perimeter_categories
from indicators.results import Indicator, number_fr
from indicators.spending import avoided_per_py, perimeter_text, perimeter_text_fr

POP = ("ÉQUILIBRES patients while in the programme (active file) × avoided spending estimated on the matched "
       "sample")
POP_FR = ("patients ÉQUILIBRES pendant leur prise en charge (file active) × dépenses évitées estimées sur "
          "l'échantillon apparié")


@dataclass(frozen=True)
class EconomicsResult:
    indicators: list[Indicator]
    # year, patients, patient_years (all treated, follow-up rule), active_patients, active_patient_years
    # (in the programme), matched_patient_years
    caseload: pd.DataFrame
    scenarios: pd.DataFrame

    def summary_frame(self) -> pd.DataFrame:
        return self.scenarios


def repriced_avoided(rate: float, include_experiment: bool):  # noqa: ANN201 - returns a statistic
    """Avoided €/PY with experiment payments re-priced at ``rate`` €/hour (hours × rate)."""
    def stat(T):  # noqa: ANN001
        t_spend = T["t.s_perimeter"]
        if include_experiment:
            t_spend = t_spend - T["t.s_experiment"] + rate * T["t.fu_experiment_hours"]
        return T["c.s_perimeter"] / T["c.pyears"] - t_spend / T["t.pyears"]
    return stat


def economics(an: MatchedAnalysis) -> EconomicsResult:
    cfg = an.config
    ec, level = cfg.economics, cfg.indicators.ci_level
    year = ec.caseload_year or cfg.study.claims_end.year
    caseload = caseload_by_year(an.claims, cfg)
    t_units = an.outcomes.loc[an.membership.loc[an.membership["treated"] == 1, "unit_id"].unique()]
    matched_py = years_by_calendar_year(t_units["index_date"], t_units["fu_end"], list(caseload["year"]))
    caseload["matched_patient_years"] = caseload["year"].map(matched_py)
    sel = caseload.loc[caseload["year"] == year]
    # The caseload of "savings per year" is the active file (patients in the programme), as published.
    py = float(sel["active_patient_years"].iloc[0]) if len(sel) else 0.0
    patients = int(sel["active_patients"].iloc[0]) if len(sel) else 0
    itt_py = float(sel["patient_years"].iloc[0]) if len(sel) else 0.0
    itt_patients = int(sel["patients"].iloc[0]) if len(sel) else 0
    inv = float(ec.programme_investment_eur)

    av_value = float(an.boot.estimate(avoided_per_py).value)
    av_reps = an.boot.replicate_values(avoided_per_py)

    def scaled(f) -> tuple:  # noqa: ANN001
        e = percentile_interval(float(f(av_value)), f(av_reps), level)
        return e.value, e.ci_low, e.ci_high

    ptxt, ptxt_fr = perimeter_text(cfg), perimeter_text_fr(cfg)
    method_ci = an.method + "; caseload taken as known (the active file: patient-years in the programme, as published)"
    method_ci_fr = (an.method_fr + " ; file active considérée comme connue (patients-années passés dans le programme, "
                    "comme dans la publication)")
    def ind(id_, fr, en, unit, vals, definition, definition_fr, method=method_ci, method_fr=method_ci_fr,  # noqa: ANN001, ANN202
            n=patients, extra=None):
        v, lo, hi = vals
        return Indicator(id=id_, label_fr=fr, label_en=en, unit=unit, value=v, ci_low=lo, ci_high=hi, n=n,
                         method=method, ci_level=None if lo is None else level, population=POP,
                         definition=definition, arm_values=extra or {}, replicates=an.boot.n_replicates,
                         method_fr=method_fr, population_fr=POP_FR, definition_fr=definition_fr)

    followup_fr = "intention de traiter" if cfg.indicators.followup == "itt" else "per protocole"

    inds = [
        ind("programme_investment", "Investissement du programme (par an)", "Programme investment (per year)",
            "eur_per_year", (inv, None, None),
            "Steering, team facilitation, training and organisation costs per year: an input "
            "(economics.programme_investment_eur), not computed.",
            "Coûts annuels de pilotage, d'animation des équipes, de formation et d'organisation : une donnée "
            "d'entrée (economics.programme_investment_eur), non calculée.",
            method="input", method_fr="donnée d'entrée", n=None),
        ind("caseload_patient_years", f"File active {year} (patients-années)",
            f"Caseload {year} (patient-years)", "patient_years", (py, None, None),
            f"Active file: patient-years spent in the programme in calendar year {year} by all ÉQUILIBRES "
            f"patients, from inclusion to the first of exit (EQL_SOR_DTE), death and end of study — the "
            f"caseload of the published savings. Beside it, the patient-years of the follow-up as defined "
            f"for the indicators ({cfg.indicators.followup}): {itt_py:,.0f}.",
            f"File active : patients-années passés dans le programme pendant l'année civile {year} par tous "
            f"les patients ÉQUILIBRES, de l'inclusion à la sortie (EQL_SOR_DTE), au décès ou à la fin de "
            f"l'étude — la file active des économies publiées. En regard, les patients-années du suivi tel "
            f"que défini pour les indicateurs ({followup_fr}) : {number_fr(itt_py)}.",
            method="descriptive", method_fr="descriptif",
            extra={"patients_active": float(patients), "patient_years_followup": itt_py,
                   "patients_followup": float(itt_patients)}),
        ind("gross_savings_year", "Économies brutes par an", "Gross savings per year", "eur_per_year",
            scaled(lambda a: a * py),
            f"Avoided spending per patient-year (follow-up as defined for the indicators, matched sample) × "
            f"patient-years in the programme in {year} (active file, as published); time after an exit "
            f"alive is not counted, so the figure is conservative when the programme's effects outlast "
            f"the stay; {ptxt}.",
            f"Dépenses évitées par patient-année (suivi tel que défini pour les indicateurs, échantillon "
            f"apparié) × patients-années passés dans le programme en {year} (file active, comme dans la "
            f"publication) ; le temps après une sortie vivant n'est pas compté, le chiffre est donc prudent "
            f"si les effets du programme durent au-delà de la prise en charge ; {ptxt_fr}."),
        ind("net_savings_year", "Économies nettes par an", "Net savings per year", "eur_per_year",
            scaled(lambda a: a * py - inv),
            f"Gross savings per year − programme investment ({inv:,.0f} €/year); CI propagated from the "
            f"avoided-spending bootstrap; {ptxt}.",
            f"Économies brutes par an − investissement du programme ({number_fr(inv)}\u00a0€/an) ; IC propagé "
            f"depuis le bootstrap des dépenses évitées ; {ptxt_fr}."),
        ind("return_per_euro_invested", "Retour par euro investi", "Return per euro invested", "ratio",
            scaled(lambda a: a * py / inv if inv > 0 else a * np.nan),
            "Gross savings per year / programme investment per year (€ saved per € invested).",
            "Économies brutes par an / investissement du programme par an (€ économisés par € investi)."),
    ]

    include_exp = "experiment" in perimeter_categories(cfg)
    rows = []
    for rate, invest, factor in itertools.product(ec.scenario_hourly_rates, ec.scenario_investment,
                                                  ec.scenario_caseload_factor):
        stat = repriced_avoided(rate, include_exp)
        a_val = float(an.boot.estimate(stat).value)
        a_reps = an.boot.replicate_values(stat)
        cl = py * factor
        row = {"hourly_rate_eur": rate, "investment_eur": invest, "caseload_factor": factor,
               "caseload_patient_years": cl}
        for name, f in (("avoided_eur_per_patient_year", lambda a: a),
                        ("gross_savings_year", lambda a, cl=cl: a * cl),
                        ("net_savings_year", lambda a, cl=cl, inv=invest: a * cl - inv),
                        ("return_per_euro_invested",
                         lambda a, cl=cl, inv=invest: a * cl / inv if inv > 0 else a * np.nan)):
            e = percentile_interval(float(f(a_val)), f(a_reps), level)
            row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"] = e.value, e.ci_low, e.ci_high
        row["experiment_repriced"] = include_exp
        rows.append(row)
    return EconomicsResult(inds, caseload, pd.DataFrame(rows))
