"""From coded answers and a codebook to one result per question (pure functions, no file access)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import SurveySettings
from pipeline.labels import SCORE_METHODS_FR
from pipeline.survey_codebook import UNITS_BY_STATISTIC, Codebook, IndicatorLink, Question
from surveys.response_rates import ResponseRateResult, response_rate
from surveys.responses import TYPE_COLUMN, applicable_mask
from surveys.scores import PairedResult, ScoreResult, paired_change, score_summary
from surveys.stats import FrequencyResult, ProportionResult, frequency_table, weighted_proportion


@dataclass(frozen=True)
class IndicatorEstimate:
    """One number taken from an item result, as an indicator record needs it."""

    value: float
    ci_low: float
    ci_high: float
    n: int
    unit: str
    method: str
    small_n_warning: bool
    display_en: str
    display_fr: str
    method_fr: str = ""


def _pct_fr(level: float) -> str:
    return f"{100 * level:g}\u00a0%"


@dataclass(frozen=True)
class ItemResult:
    """The result of one question, with the optional post-stratified shares."""

    survey_id: str
    question: Question
    result: FrequencyResult | ScoreResult | PairedResult
    applicable_types: tuple[str, ...]
    n_applicable: int
    weighted_favourable: ProportionResult | None = None
    weighted_levels: dict[int, ProportionResult] = field(default_factory=dict)

    @property
    def small_n_warning(self) -> bool:
        return self.result.small_n_warning

    def estimate(self, link: IndicatorLink) -> IndicatorEstimate:
        r = self.result
        unit = UNITS_BY_STATISTIC[link.statistic]
        if link.statistic in ("favourable", "level"):
            assert isinstance(r, FrequencyResult)
            p = r.favourable if link.statistic == "favourable" else r.level(int(link.level))
            assert p is not None
            return IndicatorEstimate(p.estimate, p.ci_low, p.ci_high, p.n, unit,
                            f"{p.method_label} ({100 * p.ci_level:g} %), unweighted", p.small_n_warning,
                            p.format("en"), p.format("fr"),
                            f"{p.method_label_fr} ({_pct_fr(p.ci_level)}), non pondéré")
        if link.statistic == "mean":
            assert isinstance(r, ScoreResult)
            return IndicatorEstimate(r.mean, r.ci_low, r.ci_high, r.n, unit, f"{r.method} ({100 * r.ci_level:g} %)",
                            r.small_n_warning, r.format("en"), r.format("fr"),
                            f"{SCORE_METHODS_FR.get(r.method, r.method)} ({_pct_fr(r.ci_level)})")
        assert isinstance(r, PairedResult)
        if link.statistic == "mean_change":
            return IndicatorEstimate(r.mean_change, r.change_ci_low, r.change_ci_high, r.n_pairs, unit, r.method,
                            r.small_n_warning, r.format("en"), r.format("fr"),
                            SCORE_METHODS_FR.get(r.method, r.method))
        s = r.before if link.statistic == "mean_before" else r.after
        return IndicatorEstimate(s.mean, s.ci_low, s.ci_high, s.n, unit,
                        f"{s.method} ({100 * s.ci_level:g} %), complete before/after pairs",
                        s.small_n_warning, s.format("en"), s.format("fr"),
                        f"{SCORE_METHODS_FR.get(s.method, s.method)} ({_pct_fr(s.ci_level)}), paires "
                        f"avant/après complètes")

    def rows(self) -> list[dict[str, Any]]:
        """Tidy rows of items.csv: one per headline statistic of the question."""
        q, r = self.question, self.result
        base = {"survey_id": self.survey_id, "question_id": q.id, "type": q.type,
                "respondent_types": "+".join(self.applicable_types), "n_applicable": self.n_applicable,
                "text_en": q.text_en, "text_fr": q.text_fr}
        links = {(lk.statistic, lk.level): lk.id for lk in q.indicators}
        out: list[dict[str, Any]] = []

        def row(statistic: str, level: int | None, value: float, lo: float, hi: float, n: int, k: Any,
                n_missing: int, method: str, small: bool, en: str, fr: str, unit: str,
                weighted: ProportionResult | None = None) -> None:
            out.append({**base, "statistic": statistic if level is None else f"level:{level}",
                        "indicator_id": links.get((statistic, level)), "n": n, "k": k, "n_missing": n_missing,
                        "value": value, "ci_low": lo, "ci_high": hi, "unit": unit, "method": method,
                        "ci_level": 1 - r.alpha if r.alpha is not None else None, "small_n_warning": small,
                        "weighted_value": weighted.estimate if weighted else None,
                        "weighted_ci_low": weighted.ci_low if weighted else None,
                        "weighted_ci_high": weighted.ci_high if weighted else None,
                        "n_eff": weighted.n_eff if weighted else None,
                        "display_en": en, "display_fr": fr})

        if isinstance(r, FrequencyResult):
            fav = r.favourable
            if fav is not None:
                row("favourable", None, fav.estimate, fav.ci_low, fav.ci_high, fav.n, fav.k, r.n_missing,
                    fav.method_label, fav.small_n_warning, fav.format("en"), fav.format("fr"), "share",
                    self.weighted_favourable)
            if fav is None or q.type == "categorical":
                for code in r.codes:
                    p = r.level(code)
                    row("level", code, p.estimate, p.ci_low, p.ci_high, p.n, p.k, r.n_missing, p.method_label,
                        p.small_n_warning, p.format("en"), p.format("fr"), "share", self.weighted_levels.get(code))
            else:
                for lk in q.indicators:
                    if lk.statistic == "level":
                        p = r.level(int(lk.level))
                        row("level", lk.level, p.estimate, p.ci_low, p.ci_high, p.n, p.k, r.n_missing,
                            p.method_label, p.small_n_warning, p.format("en"), p.format("fr"), "share",
                            self.weighted_levels.get(int(lk.level)))
        elif isinstance(r, ScoreResult):
            row("mean", None, r.mean, r.ci_low, r.ci_high, r.n, None, r.n_missing, r.method, r.small_n_warning,
                r.format("en"), r.format("fr"), "score_0_10")
        else:
            for stat, s in (("mean_before", r.before), ("mean_after", r.after)):
                row(stat, None, s.mean, s.ci_low, s.ci_high, s.n, None, r.n_incomplete,
                    s.method + ", complete pairs", s.small_n_warning, s.format("en"), s.format("fr"), "score_0_10")
            row("mean_change", None, r.mean_change, r.change_ci_low, r.change_ci_high, r.n_pairs, None,
                r.n_incomplete, r.method, r.small_n_warning, r.format("en"), r.format("fr"), "score_0_10")
        return out

    def render(self, lang: str = "en") -> str:
        """The result under the question text in the chosen language (no square-bracketed ids: the
        CLI prints through rich, which would read ``[name]`` as markup)."""
        text = self.question.text_fr if lang == "fr" else self.question.text_en
        return f"{self.question.id} — " + replace(self.result, label=text).render(lang)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SurveySummary:
    """Every item of one survey, its response rates, and what was read."""

    codebook: Codebook
    n_respondents: int
    n_by_type: dict[str, int]
    items: tuple[ItemResult, ...]
    response_rates: tuple[ResponseRateResult, ...]
    weighting_note: str = ""

    @property
    def survey_id(self) -> str:
        return self.codebook.id

    def item(self, question_id: str) -> ItemResult:
        for it in self.items:
            if it.question.id == question_id:
                return it
        raise KeyError(question_id)

    def render(self, lang: str = "en") -> str:
        b = self.codebook
        title = b.title_fr if lang == "fr" else b.title_en
        types = ", ".join(f"{k}: {v}" for k, v in self.n_by_type.items())
        lines = [f"{title} ({b.mode}, {b.fieldwork}) — {self.n_respondents} respondents ({types})"]
        lines += ["  " + rr.render(lang) for rr in self.response_rates]  # type: ignore[arg-type]
        if self.weighting_note:
            lines.append("  " + self.weighting_note)
        lines += ["  " + it.render(lang).replace("\n", "\n  ") for it in self.items]
        return "\n".join(lines)


def post_stratification_weights(coded: pd.DataFrame, codebook: Codebook) -> tuple[pd.Series | None, str]:
    """Weights N_h / n_h from the codebook margins (invited per stratum); NaN for an unknown stratum."""
    w = codebook.population.weighting
    if w is None:
        return None, ""
    q = codebook.question(w.question)
    stratum = coded[q.columns[0]]
    n_h = stratum.value_counts()
    empty = [c for c in w.margins if n_h.get(float(c), 0) == 0]
    if empty:
        return None, (f"weighting not applied: no respondent in strata {empty} of {q.id!r} "
                      f"(post-stratification needs at least one respondent per stratum)")
    weights = stratum.map({float(c): N / n_h[float(c)] for c, N in w.margins.items()})
    unknown = int(weights.isna().sum())
    note = f"post-stratified on {q.id!r} to the invited margins {dict(w.margins)}"
    if unknown:
        note += f"; {unknown} respondents without {q.id!r} are left out of the weighted shares"
    return weights, note


def _respondent_status(coded: pd.DataFrame, codebook: Codebook) -> pd.Series:
    """'complete' or 'partial' (AAPOR I/P), from the share of applicable questions answered."""
    answered = pd.Series(0.0, index=coded.index)
    applicable = pd.Series(0.0, index=coded.index)
    for q in codebook.questions:
        app = applicable_mask(coded, codebook, q)
        got = coded[list(q.columns)].notna().all(axis=1)
        applicable += app.astype(float)
        answered += (app & got).astype(float)
    share = (answered / applicable.replace(0, np.nan)).fillna(0.0)
    return pd.Series(np.where(share >= codebook.population.complete_threshold, "complete", "partial"),
                     index=coded.index)


def survey_response_rates(coded: pd.DataFrame, codebook: Codebook,
                          settings: SurveySettings) -> tuple[ResponseRateResult, ...]:
    status = _respondent_status(coded, codebook)
    pop = codebook.population
    out = [response_rate(int((status == "complete").sum()), int((status == "partial").sum()), invited=pop.invited,
                         refusals=pop.refusals, non_contacts=pop.non_contacts, other=pop.other,
                         unknown=pop.unknown, group="all", small_n_threshold=settings.small_n_threshold)]
    for key, invited in pop.invited_by_type.items():
        mask = coded[TYPE_COLUMN] == key
        out.append(response_rate(int((status[mask] == "complete").sum()), int((status[mask] == "partial").sum()),
                                 invited=invited, group=key, small_n_threshold=settings.small_n_threshold))
    return tuple(out)


def summarise_question(coded: pd.DataFrame, codebook: Codebook, q: Question, settings: SurveySettings,
                       weights: pd.Series | None = None) -> ItemResult:
    """The result of one question over the respondents it applies to."""
    alpha = 1 - settings.ci_level
    common = {"alpha": alpha, "small_n_threshold": settings.small_n_threshold, "label": q.text_en}
    app = applicable_mask(coded, codebook, q)
    sub = coded[app]
    weighted_fav = None
    weighted_levels: dict[int, ProportionResult] = {}
    if q.has_codes:
        result: FrequencyResult | ScoreResult | PairedResult = frequency_table(
            sub[q.columns[0]], [c.code for c in q.codes], labels_fr=tuple(c.label_fr for c in q.codes),
            labels_en=tuple(c.label_en for c in q.codes), favourable=q.favourable,
            ordered=q.type == "likert", method=settings.proportion_ci, **common)
        if weights is not None and (codebook.population.weighting is None
                                    or q.id != codebook.population.weighting.question):
            ans = sub[q.columns[0]]
            w = weights[app]
            keep = ans.notna() & w.notna()
            a, ww = ans[keep].to_numpy(), w[keep].to_numpy()
            kw = {"method": settings.proportion_ci, "alpha": alpha, "small_n_threshold": settings.small_n_threshold}
            if q.favourable:
                weighted_fav = weighted_proportion(np.isin(a, q.favourable), ww, label=q.text_en, **kw)
            for c in q.codes:
                weighted_levels[c.code] = weighted_proportion(a == c.code, ww, label=c.label_en, **kw)
    elif q.type == "score_0_10":
        result = score_summary(sub[q.columns[0]], **common)
    else:
        result = paired_change(sub[q.columns[0]], sub[q.columns[1]], **common)
    return ItemResult(survey_id=codebook.id, question=q, result=result,
                      applicable_types=codebook.applicable_types(q) or (codebook.respondent_label_en,),
                      n_applicable=int(app.sum()), weighted_favourable=weighted_fav,
                      weighted_levels=weighted_levels)


def summarise_survey(coded: pd.DataFrame, codebook: Codebook, settings: SurveySettings) -> SurveySummary:
    weights, note = post_stratification_weights(coded, codebook)
    items = tuple(summarise_question(coded, codebook, q, settings, weights) for q in codebook.questions)
    n_by_type = {str(k): int(v) for k, v in coded[TYPE_COLUMN].value_counts(sort=False).items()}
    return SurveySummary(codebook=codebook, n_respondents=len(coded), n_by_type=n_by_type, items=items,
                         response_rates=survey_response_rates(coded, codebook, settings), weighting_note=note)

