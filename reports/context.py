"""What every section of the report shares: the loaded results, the language, the small-cell
threshold, the numbering of tables and figures, and the blocks a section is made of.

A section module (:mod:`reports.sections`) is a function ``build(ctx) -> Section``; the templates
render each block by its ``kind`` (p, h3, list, dl, notice, table, figure).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from pipeline.config import StudyConfig
from pipeline.facts import IndicatorsFacts
from pipeline.privacy import is_small
from pipeline.results import IndicatorRecord, StepParams
from reports import figures
from reports.format import MISSING, Formatter
from reports.i18n import published_label, text, value_label
from reports.layout import print_widths
from reports.loaders import BuildResults

# Units of the published figures (keys of the configuration's [published] table), for a figure that
# has no indicator record (its record, when there is one, carries its unit).
PUBLISHED_UNITS = {
    "unmatched_share_complex": "share", "eol_hosp_rate": "relative_difference",
    "eol_spending_treated": "eur_per_patient", "eol_spending_control": "eur_per_patient",
    "avoided_spending_share": "share", "avoided_spending_per_patient_year": "eur_per_patient_year",
    "programme_investment": "eur_per_year", "net_savings_year": "eur_per_year",
    "patients_mean_score": "score_0_10", "nurses_qvt_before": "score_0_10", "nurses_qvt_after": "score_0_10",
    "nurses_conditions_before": "score_0_10", "nurses_conditions_after": "score_0_10",
    **{k: "share" for k in ("patients_qol_improved", "patients_home_support", "caregivers_supported",
                            "patients_needs_met", "nurses_caseload_same", "nurses_caseload_up",
                            "nurses_caseload_down", "nurses_more_solicited", "nurses_accept_more",
                            "nurses_coordination", "nurses_coordination_gp_aide")},
}

Block = dict[str, Any]

# Tables with this many columns are set in a smaller type with tighter cells, to fit the page width.
WIDE_COLUMNS = 11

# Tables longer than this are collapsed in the HTML (a <details> the reader opens); always open in print.
COLLAPSE_ROWS = 15


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)


class ReportContext:
    """The results of one build, rendered in one language; counts the tables, figures and masked
    cells as the sections are built."""

    def __init__(self, results: BuildResults, config: StudyConfig):
        self.results = results
        self.config = config  # the report's own settings (config.report) and, see docs/report.md, a few others
        self.lang = config.report.lang
        self.fmt = Formatter(self.lang)
        self.k = config.report.min_cell_count
        self.records: dict[str, IndicatorRecord] = results.records
        self.n_tables = 0
        self.n_figures = 0
        self.n_masked = 0
        self.not_run: list[str] = []
        self.agreement_counts: dict[str, int] = {}
        self.cleaning_table_number: int | str = ""
        # Full reference tables of the evidence chapters, drawn (and numbered) in the annex's
        # "Detailed tables" section: (id of the chapter they belong to, a function drawing the table).
        self.annex_tables: list[tuple[str, Callable[[], Block | None]]] = []

    # -- saved parameters ------------------------------------------------------------------------
    def params(self, step: str) -> StepParams | None:
        return self.results.step_params(step)

    def extract_scale(self) -> float:
        """Size of the extract relative to the study, as `equilibres indicators` saved it (1 for a real
        extract, or when the indicators did not run)."""
        params = self.results.step_params("indicators")
        return params.facts.extract_scale if params is not None and isinstance(params.facts, IndicatorsFacts) else 1.0

    def saved(self, step: str) -> StudyConfig:
        """The settings ``step`` saved (the defaults when the step has not run)."""
        params = self.results.step_params(step)
        return params.config if params is not None else StudyConfig()

    def saved_threshold(self, step: str) -> int:
        """The small-cell threshold ``step`` applied, as it saved it (``min_cell_count`` among its
        facts, else its saved report settings)."""
        params = self.results.step_params(step)
        saved = getattr(params.facts, "min_cell_count", None) if params is not None else None
        if saved is not None:
            return int(saved)
        return self.saved(step).report.min_cell_count

    # -- texts -----------------------------------------------------------------------------------
    def t(self, key: str, **kw: Any) -> Any:
        return text(key, self.lang, **kw)

    def plural(self, key: str, n: int, **kw: Any) -> str:
        """``key_one`` or ``key_other`` by the count ``n`` (French: 0 and 1 take the singular)."""
        one = n in (0, 1) if self.lang == "fr" else n == 1
        return text(f"{key}_{'one' if one else 'other'}", self.lang, n=self.fmt.integer(n), **kw)

    def html(self, key: str, **kw: Any) -> Markup:
        """A trusted text with data values escaped into its placeholders."""
        return Markup(text(key, self.lang)).format(**kw)

    def value(self, v: Any) -> str:
        return value_label(v, self.lang)

    def yes_no(self) -> tuple[str, str]:
        return self.t("yes"), self.t("no")

    def parameter(self, v: Any) -> Markup:
        """A saved setting's value. A word is a literal of the study file, shown as code; one the texts
        table labels (a method, a caliper scale, a covariate) is shown by its label in the report
        language, followed by the literal: "au plus proche voisin (nearest)"."""
        if isinstance(v, str):
            label = self.value(v)
            literal = Markup("<code>{}</code>").format(v)
            if label == v:
                return literal
            return escape(label) if v in label else Markup("{} ({})").format(label, literal)
        if isinstance(v, list | tuple):
            return Markup(", ").join(self.parameter(x) for x in v) if v else escape(MISSING)
        if isinstance(v, dict):
            return Markup("; ").join(Markup("{} = {}").format(k, self.parameter(x)) for k, x in v.items()) \
                if v else escape(MISSING)
        return escape(self.fmt.parameter(v, self.yes_no()))

    # -- blocks ----------------------------------------------------------------------------------
    def p(self, content: Any) -> Block:
        return {"kind": "p", "html": content if isinstance(content, Markup) else escape(content)}

    def table(self, caption: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
              align: Sequence[str] | None = None, note: Any = None, cls: str = "",
              annex: bool = False) -> Block:
        """A numbered table; ``annex``: a long reference table, collapsed (``<details>``) in the HTML."""
        self.n_tables += 1
        align = list(align) if align else ["l"] + ["r"] * (len(columns) - 1)
        if len(columns) >= 7 and "small" not in cls:
            cls = (cls + " small").strip()
        if len(columns) >= WIDE_COLUMNS:
            cls = (cls + " wide").strip()
        rows = [[("" if c is None else c) for c in row] for row in rows]
        return {"kind": "table", "number": self.n_tables, "caption": caption, "columns": list(columns),
                "rows": rows, "align": align, "note": note, "cls": cls,
                # print only (fixed layout, see reports/layout.py); the screen lays the table out itself
                "print_widths": print_widths(columns, rows, cls, align),
                "collapsed": annex or len(rows) > COLLAPSE_ROWS}

    def figure(self, caption: str, png: bytes, cls: str = "", alt: str | None = None) -> Block:
        """A numbered chart; ``alt`` says what it shows in words (the caption when not given)."""
        self.n_figures += 1
        return {"kind": "figure", "number": self.n_figures, "caption": caption,
                "src": figures.to_data_uri(png), "alt": alt or caption, "cls": cls,
                "width": figures.css_width(png)}

    def to_annex(self, section_id: str, make: Callable[[], Block | None]) -> None:
        """Draw a long reference table in the annex ("Detailed tables", in document order) instead of
        the chapter ``section_id``, which shows its chart or a short table and points there."""
        self.annex_tables.append((section_id, make))

    def annex_pointer(self, key: str = "annex_pointer", **kw: Any) -> Block:
        """A sentence of a chapter saying where its full table is (a link to the annex section)."""
        return self.p(self.html(key, **kw))

    def notice_missing(self, key: str) -> Block:
        missing = self.results.missing.get(key)
        path = missing.path if missing else key
        command = missing.command if missing else "equilibres run"
        if key not in self.not_run:
            self.not_run.append(key)
        return {"kind": "notice", "title": self.t("not_run"),
                "html": self.html("not_run_text", file=path, command=f"{command} --out <build>")}

    def masked_note(self) -> Markup:
        return self.html("masked_note", k=self.k, mask=self.fmt.masked(self.k), sec=self.fmt.secondary())

    # -- indicator records -----------------------------------------------------------------------
    def label_of(self, key: str) -> str:
        rec = self.records.get(key)
        if rec is not None and rec.label(self.lang):
            return rec.label(self.lang)
        return published_label(key, self.lang) or value_label(key, self.lang)

    def unit_of(self, key: str) -> str:
        rec = self.records.get(key)
        if rec is not None and rec.unit:
            return rec.unit
        return PUBLISHED_UNITS.get(key, "")

    def published_of(self, key: str) -> float | None:
        """The published figure ``key``: from its record; from the configuration's [published] table
        only for a figure with no record (e.g. a survey indicator when the surveys did not run)."""
        rec = self.records.get(key)
        if rec is not None:
            return rec.published
        return self.config.published.get(key)

    def rec_masked(self, rec: IndicatorRecord) -> bool:
        """Values resting on fewer than k people are masked with their n."""
        if rec.n_suppressed:
            return True
        return rec.n is not None and is_small(float(rec.n), self.k)

    def rec_text(self, rec: IndicatorRecord, name: str) -> str:
        """A record's ``definition`` / ``population`` / ``method`` in the report language, else English."""
        return rec.text(name, self.lang) or MISSING
