"""Vocabulary shared by the steps that write French texts and by the report (declared once).

Keys are the language-neutral values the steps write (a matching method, a caliper scale, a method
text of a survey estimator); values are their French labels.
"""

from __future__ import annotations

MATCHING_METHOD_FR = {"nearest": "au plus proche voisin", "optimal": "optimal",
                      "propensity": "sur score de propension", "cem": "exact grossier (CEM)"}
CALIPER_SCALE_FR = {"sd": "écart-type", "absolute": "valeur absolue", "relative": "relatif"}

# French versions of the default method texts of ScoreResult and PairedResult (surveys/stats.py);
# a method text not listed here is shown in English.
SCORE_METHODS_FR = {
    "Student t interval for the mean": "intervalle de Student pour la moyenne",
    "Student t interval for the mean change; Wilcoxon signed-rank test, Pratt handling of zero differences "
    "(scipy.stats.wilcoxon)": "intervalle de Student pour la variation moyenne ; test des rangs signés de "
    "Wilcoxon, différences nulles traitées selon Pratt (scipy.stats.wilcoxon)",
}


def vocabulary(lang: str) -> dict[str, str]:
    """The shared values above labelled in ``lang`` (in English a value is its own label, except the
    standard-deviation scale, "SD")."""
    if lang == "fr":
        return {**SCORE_METHODS_FR, **MATCHING_METHOD_FR, **CALIPER_SCALE_FR}
    return {**{en: en for en in SCORE_METHODS_FR}, **{m: m for m in MATCHING_METHOD_FR},
            **{c: {"sd": "SD"}.get(c, c) for c in CALIPER_SCALE_FR}}
