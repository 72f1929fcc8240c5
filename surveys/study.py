"""`equilibres surveys`: read, validate and summarise every survey of the study; write the outputs
(:func:`run`, through :class:`pipeline.writer.StepWriter`).

Outputs (all under ``<build>/surveys/``, written atomically under the build lock):

* ``items.csv`` — one row per headline statistic of each question (favourable share, level shares,
  mean, before/after means and change), with k, n, CI, method, small-n flag, optional weighted share,
  and the display strings in English and French;
* ``likert.csv`` — the frequency table of every coded question (Likert, yes/no, categorical);
* ``before_after.csv`` — paired before/after results (change, unchanged pairs, Wilcoxon–Pratt);
* ``response_rates.csv`` — AAPOR RR1/RR2 per survey (and per respondent type when invited counts by
  type are given);
* ``indicators.json`` — one record per indicator a codebook links to (docs/CONTRACTS.md §4), the
  published value beside it from the configuration's ``[published]`` table;
* ``params.json`` — the survey settings, codebook and input hashes.

No respondent id reaches any output: the id column is dropped right after validation. The report
draws the charts from ``likert.csv`` and ``before_after.csv``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.config import StudyConfig
from pipeline.facts import CodebookFile, SurveyInput, SurveysFacts
from pipeline.io import PipelineError, file_hash
from pipeline.paths import BuildPaths, step_outputs
from pipeline.provenance import EXTRACT, FILE
from pipeline.results import IndicatorRecord, json_number
from pipeline.survey_codebook import Codebook, load_codebooks
from pipeline.writer import StepWriter
from surveys.formatting import format_number
from surveys.responses import load_responses
from surveys.scores import PairedResult
from surveys.stats import FrequencyResult
from surveys.summary import SurveySummary, summarise_survey


@dataclass(frozen=True)
class SurveyRunResult:
    """What `equilibres surveys` computed and wrote."""

    surveys: tuple[SurveySummary, ...]
    indicators: tuple[IndicatorRecord, ...]
    out_dir: Path
    outputs: tuple[Path, ...]
    lang: str = "fr"

    def indicator(self, indicator_id: str) -> IndicatorRecord:
        for rec in self.indicators:
            if rec.id == indicator_id:
                return rec
        raise KeyError(indicator_id)

    def render(self, lang: str | None = None) -> str:
        lang = lang or self.lang
        lines = []
        for s in self.surveys:
            title = s.codebook.title_fr if lang == "fr" else s.codebook.title_en
            rr = s.response_rates[0]
            lines.append(f"{title}: {s.n_respondents} — {rr.format(lang)}")  # type: ignore[arg-type]
        head = "Indicateur" if lang == "fr" else "Indicator"
        pub = "publié" if lang == "fr" else "published"
        lines.append(f"{head} | {'calculé' if lang == 'fr' else 'computed'} | {pub}")
        for rec in self.indicators:
            shown = rec.display_fr if lang == "fr" else rec.display_en
            p = rec.published
            if p is None:
                p_s = "–"
            elif rec.unit == "share":
                p_s = format_number(100 * p, 0, lang) + " %"  # type: ignore[arg-type]
            else:
                p_s = format_number(p, 1, lang)  # type: ignore[arg-type]
            flag = " ⚠" if rec.small_n_warning else ""
            lines.append(f"{rec.id} | {shown}{flag} | {p_s}")
        lines.append(f"{'Sorties' if lang == 'fr' else 'Outputs'}: {self.out_dir}")
        return "\n".join(lines)


def indicator_records(summaries: list[SurveySummary], config: StudyConfig) -> list[IndicatorRecord]:
    """Records (docs/CONTRACTS.md §4) for every indicator linked in a codebook."""
    records = []
    for s in summaries:
        b = s.codebook
        for item in s.items:
            q = item.question
            for link in q.indicators:
                est = item.estimate(link)
                who = "+".join(item.applicable_types)
                records.append(IndicatorRecord(
                    id=link.id, label_fr=link.label_fr, label_en=link.label_en,
                    value=json_number(est.value), ci_low=json_number(est.ci_low), ci_high=json_number(est.ci_high),
                    n=int(est.n), unit=est.unit, method=est.method,
                    published=config.published.get(link.id),
                    population=(f"{b.title_en} ({b.mode}, {b.fieldwork}): {who} respondents to whom the "
                                f"question applies, item non-response excluded"),
                    definition=_definition(q, link, b),
                    method_fr=est.method_fr or est.method,
                    population_fr=(f"{b.title_fr} ({_MODES_FR.get(b.mode, b.mode)}, {b.fieldwork}) : "
                                   f"{_respondents_fr(b, item.applicable_types)} concernés par la question, "
                                   f"non-réponses partielles exclues"),
                    definition_fr=_definition_fr(q, link),
                    survey=b.id, question=q.id, ci_level=config.surveys.ci_level,
                    small_n_warning=bool(est.small_n_warning),
                    display_en=est.display_en, display_fr=est.display_fr,
                ))
    return records


_MODES_FR = {"phone": "téléphone", "online": "en ligne", "paper": "papier", "face_to_face": "face à face"}


def _respondents_fr(book: Codebook, types: tuple[str, ...]) -> str:
    """French names of the respondent types a question applies to ("répondants patient+aidant")."""
    codes = {c.name: c.label_fr for c in book.respondent_types.codes} if book.respondent_types else {}
    names = [codes.get(t, book.respondent_label_fr if t == book.respondent_label_en else t).lower() for t in types]
    return f"répondants {' + '.join(names)}"


def _definition_fr(q, link) -> str:  # noqa: ANN001
    def quoted(labels: list[str]) -> str:
        return " ou ".join(f"«\u00a0{x}\u00a0»" for x in labels)
    if link.statistic == "favourable":
        return f"Part répondant {quoted([q.code_of(c).label_fr for c in q.favourable])} à : {q.text_fr}"
    if link.statistic == "level":
        return f"Part répondant {quoted([q.code_of(int(link.level)).label_fr])} à : {q.text_fr}"
    if link.statistic == "mean":
        return f"Note moyenne ({q.min}–{q.max}) à : {q.text_fr}"
    side = {"mean_before": "avant (exercice antérieur)", "mean_after": "après (ÉQUILIBRES)",
            "mean_change": "variation après − avant"}[link.statistic]
    return f"Note moyenne ({q.min}–{q.max}), {side}, sur les paires complètes, à : {q.text_fr}"


def _definition(q, link, book: Codebook) -> str:
    if link.statistic == "favourable":
        labels = [q.code_of(c).label_en for c in q.favourable]
        return f"Share answering {' or '.join(repr(x) for x in labels)} to: {q.text_en}"
    if link.statistic == "level":
        return f"Share answering {q.code_of(int(link.level)).label_en!r} to: {q.text_en}"
    if link.statistic == "mean":
        return f"Mean score ({q.min}–{q.max}) to: {q.text_en}"
    side = {"mean_before": "before (former practice)", "mean_after": "after (ÉQUILIBRES)",
            "mean_change": "change after − before"}[link.statistic]
    return f"Mean score ({q.min}–{q.max}), {side}, over complete pairs, to: {q.text_en}"


def survey_tables(summaries: list[SurveySummary]) -> dict[str, pd.DataFrame]:
    """The result tables of the surveys, by output key (items, likert, before_after, response_rates)."""
    items, freq, pairs, rates = [], [], [], []
    for s in summaries:
        for it in s.items:
            items += it.rows()
            r = it.result
            if isinstance(r, FrequencyResult):
                f = r.summary_frame()
                f.insert(0, "question_id", it.question.id)
                f.insert(0, "survey_id", s.survey_id)
                f.insert(2, "type", it.question.type)
                freq.append(f)
            elif isinstance(r, PairedResult):
                f = r.summary_frame().drop(columns=["label"])
                f.insert(0, "question_id", it.question.id)
                f.insert(0, "survey_id", s.survey_id)
                pairs.append(f)
        for rr in s.response_rates:
            rates += [{"survey_id": s.survey_id, **row} for row in rr.summary_frame().to_dict("records")]
    items_frame = pd.DataFrame(items)
    if len(items_frame):
        items_frame["k"] = items_frame["k"].astype("Int64")
    rates_frame = pd.DataFrame(rates)
    for col in ("invited", "refusals_R", "non_contacts_NC", "other_O", "unknown_U"):
        if col in rates_frame:
            rates_frame[col] = rates_frame[col].astype("Int64")
    return {
        "survey_items": items_frame,
        "likert": pd.concat(freq, ignore_index=True) if freq else pd.DataFrame(),
        "before_after": pd.concat(pairs, ignore_index=True) if pairs else pd.DataFrame(),
        "response_rates": rates_frame,
    }


# Tables of surveys/ by output key.
SURVEY_TABLES = step_outputs("surveys", "csv")


def run(paths: BuildPaths, config: StudyConfig, *, force: bool = False) -> SurveyRunResult:
    """Validate every survey of ``config.surveys.codebooks`` under ``<paths.data>/surveys/`` and write
    its summaries under ``surveys/``. Raises SurveyValidationError listing every problem.

    The summaries always recompute; ``force`` is accepted for the common step signature.
    """
    if paths.data is None:
        raise PipelineError("The surveys are read from the extract: give its directory to --data.")
    codebooks = load_codebooks(config.codebook_paths())
    loaded = load_responses(paths.data, codebooks)  # raises with every problem of every file
    summaries = [summarise_survey(loaded[b.id][1], b, config.surveys) for b in codebooks]
    records = indicator_records(summaries, config)
    with StepWriter(paths, "surveys") as out:
        tables = survey_tables(summaries)
        for key in SURVEY_TABLES:
            out.table(key, tables[key])
        out.records("survey_indicators", records)
        out.params(
            config, ["surveys"],
            extract_inputs={**{f"{EXTRACT}{os.path.relpath(p, paths.data)}": file_hash(p)["sha256"]
                               for p, _ in loaded.values()},
                            **{f"{FILE}{path}": file_hash(path)["sha256"] for path in config.codebook_paths()}},
            **SurveysFacts(
                codebooks=tuple(CodebookFile(id=b.id, path=b.path, sha256=b.sha256) for b in codebooks),
                inputs=tuple(SurveyInput(survey=sid, file=p.name, sha256=file_hash(p)["sha256"], respondents=len(frame))
                             for sid, (p, frame) in loaded.items()),
            ).to_dict(),
            # The published figures of its indicators: saved as a settings section ([published]).
            published={r.id: r.published for r in records},
        )
    return SurveyRunResult(surveys=tuple(summaries), indicators=tuple(records), out_dir=paths.surveys,
                           outputs=tuple(out.written.values()), lang=config.report.lang)
