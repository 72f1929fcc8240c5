"""Render the funders' report (HTML + PDF) from the results already computed by the other steps.

Nothing here computes a statistic: the report reads result files (:mod:`reports.loaders`), formats
numbers per language (:mod:`reports.i18n`), masks small counts of people
(:mod:`pipeline.privacy`), draws charts from the result tables (:mod:`reports.figures`) and
renders Jinja2 templates. The HTML is self-contained (CSS inline, figures as data URIs); the PDF is
the same HTML laid out by WeasyPrint (A4, page numbers, table of contents with page numbers).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import math
import platform
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from pipeline.config import StudyConfig
from pipeline.io import PipelineError, atomic_write_bytes, atomic_write_text, build_lock, restore_on_failure
from pipeline.privacy import extract_identifiers, identifiers_in, is_small, suppress_counts, suppress_flow
from reports import figures
from reports.i18n import (
    MEASURE_LABELS,
    MISSING,
    PUBLISHED_META,
    RULE_LABELS_FR,
    Formatter,
    column_label,
    text,
    value_label,
)
from reports.loaders import BuildResults, load_build

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

SECTION_IDS = ("summary", "intervention", "matching", "hospitalisation", "economics", "surveys",
               "sensitivity", "limitations", "methods", "reproducibility")

# Indicator ids are grouped into sections by prefix (first match wins).
SECTION_PREFIXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("matching", ("unmatched",)),
    ("economics", ("avoided", "programme", "net_savings", "investment", "econ", "cost_")),
    ("surveys", ("patients_", "caregivers_", "nurses_", "survey")),
    ("sensitivity", ("did_", "sweep", "regression")),
    ("hospitalisation", ("",)),
)

FLOW_RULES = ("extract", "cleaned", "eligible", "matched", "unmatched")

# Stages of the audit trail whose rows are claim lines, stays or ALD rows rather than people: their
# counts are not counts of people and are not masked.
LINE_STAGE_PATTERN = re.compile(r"dcir|prs|claim|line|mco|pmsi|stay|sejour|valo|imb|ald", re.I)


@dataclass
class ReportResult:
    """What `equilibres report` produced."""

    html_path: Path
    pdf_path: Path | None
    lang: str
    sections: list[str]
    not_run: list[str]
    n_pages: int | None
    n_masked_cells: int
    agreement: dict[str, int] = field(default_factory=dict)

    def render(self) -> str:
        lines = [f"Report ({self.lang}) written to {self.html_path}"]
        if self.pdf_path is not None:
            lines.append(f"PDF: {self.pdf_path} ({self.n_pages} pages)")
        lines.append(f"Sections: {', '.join(self.sections)}")
        if self.agreement:
            lines.append("Published figures: " + ", ".join(f"{k} {v}" for k, v in self.agreement.items()))
        lines.append(f"Cells masked for confidentiality: {self.n_masked_cells}")
        if self.not_run:
            lines.append("Shown as not run (inputs absent): " + ", ".join(self.not_run))
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Blocks: what a section is made of; the templates render each kind.


@dataclass
class Section:
    id: str
    title: str
    blocks: list[dict[str, Any]] = field(default_factory=list)


def _is_num(x: Any) -> bool:
    if x is None or isinstance(x, bool):
        return False
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _f(x: Any) -> float | None:
    return float(x) if _is_num(x) else None


class ReportBuilder:
    """Turns loaded results into sections of blocks for one language."""

    def __init__(self, results: BuildResults, config: StudyConfig, lang: str):
        self.r = results
        self.cfg = config
        self.lang = lang
        self.fmt = Formatter(lang)
        self.k = config.report.min_cell_count
        self.n_tables = 0
        self.n_figures = 0
        self.n_masked = 0
        self.not_run: list[str] = []
        self.records = {rec["id"]: rec for rec in results.indicator_records()}
        self.agreement_counts: dict[str, int] = {}
        # Size of the extract relative to the study (synthetic extracts; 1 for a real extract), as saved
        # by `equilibres indicators` in its params.json.
        ip = results["indicators_params"] if isinstance(results["indicators_params"], dict) else {}
        self.extract_scale = float(ip.get("extract_scale") or 1.0)

    # -- small helpers -------------------------------------------------------------------------
    def t(self, key: str, **kw: Any) -> Any:
        return text(key, self.lang, **kw)

    def html(self, key: str, **kw: Any) -> Markup:
        """A trusted text with data values escaped into its placeholders."""
        return Markup(text(key, self.lang)).format(**kw)

    def p(self, content: Any) -> dict[str, Any]:
        return {"kind": "p", "html": content if isinstance(content, Markup) else escape(content)}

    def table(self, caption: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
              align: Sequence[str] | None = None, note: Any = None, cls: str = "",
              widths: Sequence[int] | None = None) -> dict[str, Any]:
        self.n_tables += 1
        align = list(align) if align else ["l"] + ["r"] * (len(columns) - 1)
        if len(columns) >= 7 and "small" not in cls:
            cls = (cls + " small").strip()
        return {"kind": "table", "number": self.n_tables, "caption": caption, "columns": list(columns),
                "rows": [[("" if c is None else c) for c in row] for row in rows], "align": align,
                "note": note, "cls": cls, "widths": list(widths) if widths else None}

    def figure(self, caption: str, png: bytes, cls: str = "") -> dict[str, Any]:
        self.n_figures += 1
        return {"kind": "figure", "number": self.n_figures, "caption": caption,
                "src": figures.to_data_uri(png), "alt": caption, "cls": cls}

    def notice_missing(self, key: str) -> dict[str, Any]:
        missing = self.r.missing.get(key)
        path = missing.path if missing else key
        command = missing.command if missing else "equilibres run"
        if key not in self.not_run:
            self.not_run.append(key)
        return {"kind": "notice", "title": self.t("not_run"),
                "html": self.html("not_run_text", file=path, command=f"{command} --out <build>")}

    def masked_note(self) -> Markup:
        return self.html("masked_note", k=self.k, mask=self.fmt.masked(self.k), sec=self.fmt.secondary())

    def label_of(self, rec: dict[str, Any] | None, key: str) -> str:
        if rec is not None:
            label = rec.get(f"label_{self.lang}") or rec.get("label_en") or rec.get("label_fr")
            if label:
                return str(label)
        if key in PUBLISHED_META:
            meta = PUBLISHED_META[key]
            return meta[1] if self.lang == "fr" else meta[2]
        return value_label(key, self.lang)

    def rec_text(self, rec: dict[str, Any], key: str) -> str:
        """A record's ``definition`` / ``population`` / ``method`` in the report language, else English."""
        text = rec.get(f"{key}_{self.lang}") if self.lang != "en" else None
        text = text or rec.get(key)
        return str(text) if text else MISSING

    def unit_of(self, rec: dict[str, Any] | None, key: str) -> str:
        if rec is not None and rec.get("unit"):
            return str(rec["unit"])
        return PUBLISHED_META.get(key, ("",))[0]

    def rec_masked(self, rec: dict[str, Any]) -> bool:
        """Values resting on fewer than k people are masked with their n."""
        if rec.get("n_suppressed"):
            return True
        n = rec.get("n")
        return _is_num(n) and is_small(float(n), self.k)

    # -- generic result tables -------------------------------------------------------------------
    def frame_table(self, df: pd.DataFrame, caption: str, *, max_rows: int = 80,
                    rename: dict[str, str] | None = None, drop: Iterable[str] = (),
                    keep: Sequence[str] | None = None) -> dict[str, Any]:
        """Any result table: columns formatted by what their names say; people counts masked.

        Producers already blank their small counts (null + a ``suppressed`` column naming them); those
        cells are shown masked, and the report applies its own primary and secondary suppression on
        top, so a table is safe whichever step wrote it.
        """
        df, pre_masked = _prepare_frame(df, self.lang, drop=drop, keep=keep)
        row_units = None
        if "unit" in df.columns:
            # Tables with one measure per row (end of life, hospitalisation) state each row's unit.
            row_units = df["unit"].astype(object).where(df["unit"].notna(), None)
            if "measure" in df.columns:
                row_units = [u if u else ("count" if _COUNT_MEASURE.search(str(m)) else None)
                             for u, m in zip(row_units, df["measure"], strict=True)]
            df, pre_masked = df.drop(columns="unit"), pre_masked.drop(columns="unit")
        if "measure" in df.columns:
            df["measure"] = [self.measure_label(m) for m in df["measure"]]
        kinds = {c: self.column_kind(c, df[c]) for c in df.columns}
        if row_units is not None:
            for c in df.columns:
                if c.split("_ci_")[0] in ("treated", "control", "difference", "ratio"):
                    kinds[c] = "by_row"
        counts = [c for c, k in kinds.items() if k == "count"]
        total_row = _total_row(df)
        masked = pre_masked.copy()
        small = pre_masked.copy()  # cells shown as "< k" (small themselves); other masked cells get "×"
        if counts:
            numeric = df[counts].apply(pd.to_numeric, errors="coerce")
            sup = suppress_counts(numeric, counts, self.k, total_row=total_row)
            masked[counts] = masked[counts] | sup.mask[counts]
            small[counts] = small[counts] | sup.primary[counts]
        for c in df.columns:
            if c not in counts:
                small[c] = False
        if row_units is not None:
            for pos, i in enumerate(df.index):
                if row_units[pos] == "count":
                    for c in df.columns:
                        if kinds[c] == "by_row" and _is_num(df.at[i, c]) and is_small(float(df.at[i, c]), self.k):
                            masked.at[i, c] = small.at[i, c] = True
        small_rows = masked[counts].any(axis=1) if counts else pd.Series(False, index=df.index)
        for c, k in kinds.items():
            if k in ("share", "eur", "score", "number") and c not in counts:
                masked.loc[small_rows & df[c].isna(), c] = True
        self.n_masked += int(masked.to_numpy().sum())
        cis = {c: (f"{c}{_CI_LOW}", f"{c}{_CI_HIGH}") for c in df.columns if f"{c}{_CI_LOW}" in df.columns}
        if "ci_low" in df.columns and "ci_high" in df.columns:
            base = next((b for b in ("value", "estimate", "share", "mean") if b in df.columns), None) or next(
                (c for c in df.columns if kinds[c] in ("share", "eur", "score", "number") and not c.endswith(
                    ("ci_low", "ci_high"))), None)
            if base is not None and base not in cis:
                cis[base] = ("ci_low", "ci_high")
        ci_cols = {x for pair in cis.values() for x in pair if x in df.columns}
        shown = [c for c in df.columns if c not in ci_cols]
        rows = []
        for i in df.index[:max_rows]:
            row: list[Any] = []
            for c in shown:
                if masked.at[i, c]:
                    row.append(self.fmt.masked(self.k) if small.at[i, c] else self.fmt.secondary())
                    continue
                kind = kinds[c]
                if kind == "by_row":
                    unit = row_units[list(df.index).index(i)]
                    kind = ("ratio" if c.startswith("ratio") else
                            {"share": "share", "count": "count", "relative_difference": "share"}.get(
                                str(unit), "eur" if str(unit).startswith("eur") else "number1"))
                cell = self.format_cell(df.at[i, c], kind)
                if c in cis and cis[c][1] in df.columns:
                    lo, hi = df.at[i, cis[c][0]], df.at[i, cis[c][1]]
                    if _is_num(lo) and _is_num(hi) and not masked.at[i, cis[c][0]]:
                        sep = "\u00a0; " if self.lang == "fr" else ", "
                        ci = f"[{self.format_cell(lo, kind)}{sep}{self.format_cell(hi, kind)}]"
                        cell = Markup(f'{escape(cell)}<br><span class="ci">{escape(ci)}</span>')
                row.append(cell)
            rows.append(row)
        cols = [(rename or {}).get(c) or column_label(c, self.lang) for c in shown]
        align = ["l" if kinds[c] == "text" else "r" for c in shown]
        note = self.masked_note() if counts else None
        if len(df) > max_rows:
            rows.append([f"… (+{len(df) - max_rows})"] + [""] * (len(cols) - 1))
        return self.table(caption, cols, rows, align=align, note=note)

    def column_kind(self, name: str, values: pd.Series) -> str:
        """Kind of a column; a column named after an indicator takes that indicator's unit."""
        base = str(name).removesuffix(_CI_LOW).removesuffix(_CI_HIGH)
        rec = self.records.get(base)
        if rec is not None and rec.get("unit"):
            unit = str(rec["unit"])
            if unit in ("share", "relative_difference"):
                return "share"
            if unit.startswith("eur"):
                return "eur"
            if unit == "score_0_10":
                return "score"
        return _column_kind(name, values)

    def format_cell(self, v: Any, kind: str) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return MISSING
        if kind == "text":
            if isinstance(v, bool):
                return self.t("yes") if v else self.t("no")
            return value_label(v, self.lang)
        if not _is_num(v):
            return value_label(v, self.lang)
        x = float(v)
        if kind == "count":
            return self.fmt.integer(x)
        if kind == "share":
            return self.fmt.pct(x, 1)
        if kind == "eur":
            return self.fmt.eur(x)
        if kind == "score":
            return self.fmt.number(x, 1)
        if kind == "smd":
            return self.fmt.number(x, 3)
        if kind == "ratio":
            return self.fmt.number(x, 2)
        if kind == "number1":
            return self.fmt.number(x, 1)
        if float(x).is_integer():
            return self.fmt.integer(x)
        return self.fmt.number(x, 0 if abs(x) >= 100 else 2 if abs(x) >= 1 else 3)

    # -- sections --------------------------------------------------------------------------------
    def build(self) -> list[Section]:
        return [self.summary(), self.intervention(), self.matching(), self.hospitalisation(),
                self.economics(), self.surveys(), self.sensitivity(), self.limitations(),
                self.methods(), self.reproducibility()]

    def summary(self) -> Section:
        s = Section("summary", self.t("sec_summary"))
        tol = self.cfg.report.agreement_tolerance
        s.blocks.append(self.p(self.html("summary_intro", tol=self.fmt.pct(tol))))
        if self.extract_scale != 1.0:
            s.blocks.append(self.p(self.t("summary_scaled", scale=self.fmt.number(self.extract_scale, 2),
                                          ids=", ".join(self.label_of(self.records.get(k), k)
                                                        for k in sorted(SCALE_DEPENDENT)))))
        rows, labels, rel, rlo, rhi = [], [], [], [], []
        counts = {"agrees": 0, "close": 0, "differs": 0, "missing": 0, "input": 0, "masked": 0}
        scale = self.extract_scale
        for key, published in self.cfg.published.items():
            published = published_at_scale(key, published, scale, self.cfg.economics.programme_investment_eur)
            rec = self.records.get(key)
            unit = self.unit_of(rec, key)
            label = self.label_of(rec, key)
            status, value, lo, hi, n = _agreement(rec, published, tol)
            masked = rec is not None and self.rec_masked(rec)
            if masked:
                # The comparison itself would tell something about the hidden value.
                self.n_masked += 1
                status = "masked"
            counts[status] += 1
            mk = self.fmt.masked(self.k)
            rows.append([
                label,
                self.fmt.published(published, unit),
                self.fmt.secondary() if masked else self.fmt.value(value, unit),
                self.fmt.secondary() if masked else self.fmt.ci(lo, hi, unit),
                mk if (masked or (n is not None and is_small(n, self.k))) else self.fmt.integer(n),
                Markup(f'<span class="status {status}">{escape(self.t("status_" + status))}</span>'),
            ])
            if value is not None and published not in (0, None) and not masked and status != "input":
                labels.append(label)
                rel.append(value / published - 1)
                rlo.append(None if lo is None else lo / published - 1)
                rhi.append(None if hi is None else hi / published - 1)
        self.agreement_counts = {k: v for k, v in counts.items() if v}
        s.blocks.append(self.table(
            self.t("sec_summary"),
            [self.t("col_indicator"), self.t("col_published"), self.t("col_reproduced"), self.t("col_ci"),
             self.t("col_n"), self.t("col_status")],
            rows, align=["l", "r", "r", "r", "r", "c"], cls="summary", widths=[36, 13, 15, 20, 6, 10]))
        s.blocks.append(self.p(self.t(
            "summary_counts", total=len(self.cfg.published), agrees=counts["agrees"], close=counts["close"],
            differs=counts["differs"], missing=counts["missing"], inputs=counts["input"], masked=counts["masked"])))
        if labels:
            # Relative differences of signed published values (e.g. −21 %) are flipped so that
            # "reproduced larger in magnitude" reads the same way for every indicator.
            png = figures.agreement_plot(labels, rel, rlo, rhi, tol, self.t("fig_summary"),
                                         lambda v: self.fmt.pct(v, 0, signed=True))
            s.blocks.append(self.figure(self.t("fig_summary"), png, cls="pagebreak-before"))
        return s

    def intervention(self) -> Section:
        st = self.cfg.study
        s = Section("intervention", self.t("sec_intervention"))
        regions = ", ".join(st.regions.keys()) or MISSING
        s.blocks.append(self.p(self.html("intervention_text", label=st.article51_label or st.name,
                                         regions=regions)))
        s.blocks.append(self.p(self.t("data_sources_text")))
        period = lambda a, b: self.t("from_to", a=self.fmt.date(a), b=self.fmt.date(b))  # noqa: E731
        s.blocks.append({"kind": "dl", "pairs": [
            (self.t("period_inclusion"), period(st.inclusion_start, st.inclusion_end)),
            (self.t("period_claims"), period(st.claims_start, st.claims_end)),
            (self.t("regions"), "; ".join(f"{r} ({', '.join(d)})" for r, d in st.regions.items())),
        ]})
        flow = self.flow_rows()
        if flow is not None and not flow.empty:
            s.blocks.append(self.flow_figure(flow))
            s.blocks.append(self.flow_table(flow, self.t("fig_flow")))
        s.blocks.append(self.cleaning_table(with_source=True))
        self.cleaning_table_number = self.n_tables
        return s

    def flow_rows(self) -> pd.DataFrame | None:
        """The cohort-flow rows (stage 'cohort') of the cleaning and matching attrition tables."""
        frames = [self.r[k] for k in ("attrition", "attrition_matching") if self.r.has(k)]
        if not frames:
            return None
        rows = pd.concat(frames, ignore_index=True)
        if "stage" not in rows.columns or "rule" not in rows.columns:
            return None
        flow = rows[rows["stage"].astype(str) == "cohort"].drop_duplicates("rule", keep="last")
        order = {r: i for i, r in enumerate(FLOW_RULES)}
        flow = flow.assign(_o=flow["rule"].map(lambda r: order.get(r, len(order)))).sort_values("_o", kind="stable")
        return flow.drop(columns="_o").reset_index(drop=True)

    def flow_figure(self, flow: pd.DataFrame) -> dict[str, Any]:
        """Boxes extract → cleaned → eligible → matched (exclusions on the side), then the
        ÉQUILIBRES patients without a control (the `unmatched` rule counts treated patients only)."""
        sup = suppress_flow(flow, self.k)
        mk = self.fmt.masked(self.k)

        def cell(i: int, col: str) -> str:
            if not sup.mask.at[i, col]:
                return self.fmt.integer(flow.at[i, col])
            return mk if sup.is_primary(i, col) else self.fmt.secondary()

        boxes: list[tuple[str, str]] = []
        side: list[tuple[int, str, str] | None] = []
        sep = " : " if self.lang == "fr" else ": "
        for i, row in flow.iterrows():
            rule = str(row["rule"])
            key = f"flow_{rule}"
            label = self.t(key) if key in _texts() else value_label(rule, self.lang)
            if rule == "unmatched":
                boxes.append((self.t("flow_unmatched_box"), f"{cell(i, 'rows_dropped')} / {cell(i, 'rows_in')}"))
                continue
            if i > 0 and _is_num(row.get("rows_in")) and _is_num(flow.at[i - 1, "rows_out"]) and \
                    float(row["rows_in"]) != float(flow.at[i - 1, "rows_out"]):
                # The unit changes (persons → cohort rows, one per person and candidate index date).
                boxes.append((self.t("flow_cohort_rows"), cell(i, "rows_in")))
            side_label = (self.t(f"flow_side_{rule}") if f"flow_side_{rule}" in _texts()
                          else f"{label}{sep}{self.t('flow_excluded')}")
            if rule in ("eligible", "matched"):
                label = self.t(f"flow_{rule}_rows")
            boxes.append((label, cell(i, "rows_out")))
            dropped = row.get("rows_dropped")
            if len(boxes) > 1 and _is_num(dropped) and float(dropped) > 0:
                side.append((len(boxes) - 2, side_label, cell(i, "rows_dropped")))
        return self.figure(self.t("fig_flow"), figures.flow_diagram(boxes, side))

    def flow_table(self, flow: pd.DataFrame, caption: str, person_rows: Sequence[bool] | None = None,
                   with_source: bool = False) -> dict[str, Any]:
        sup = suppress_flow(flow, self.k, person_rows=person_rows)
        self.n_masked += sup.n_masked
        cols = [self.t("col_rule"), self.t("col_rows_in"), self.t("col_rows_dropped"), self.t("col_rows_out")]
        has_eur = "euros_dropped" in flow.columns and pd.to_numeric(flow["euros_dropped"], errors="coerce").fillna(0).abs().sum() > 0
        if has_eur:
            cols.append(self.t("col_euros_dropped"))
        cols.append(self.t("col_description"))
        if with_source:
            cols.append(self.t("col_source"))
        rows = []
        for i, row in flow.iterrows():
            cells = [Markup(f"<code>{escape(str(row.get('stage', '')))}.<wbr>{escape(str(row.get('rule', '')))}</code>")]
            for c in ("rows_in", "rows_dropped", "rows_out"):
                if not sup.mask.at[i, c]:
                    cells.append(self.fmt.integer(row.get(c)))
                else:
                    cells.append(self.fmt.masked(self.k) if sup.is_primary(i, c) else self.fmt.secondary())
            if has_eur:
                cells.append(self.fmt.eur(row.get("euros_dropped")) if _f(row.get("euros_dropped")) else MISSING)
            cells.append(self.rule_description(row))
            if with_source:
                src = str(row.get("source", "") or "")
                cells.append(Markup(f'<a href="{escape(src)}">{escape(_short_source(src))}</a>') if src.startswith("http")
                             else escape(src or MISSING))
            rows.append(cells)
        align = ["l", "r", "r", "r"] + (["r"] if has_eur else []) + ["l"] + (["l"] if with_source else [])
        widths = [24, 9, 9, 9] + ([10] if has_eur else []) + [0] + ([12] if with_source else [])
        widths[widths.index(0)] = 100 - sum(widths)
        note = Markup(escape(self.t("cleaning_note"))) + Markup(" ") + self.masked_note()
        return self.table(caption, cols, rows, align=align, note=note, cls="small wrap", widths=widths)

    def rule_description(self, row: pd.Series) -> str:
        rule = str(row.get("rule", ""))
        if self.lang != "en":
            # The producer's own translation first (attrition.csv description_fr), then the report's.
            own = row.get(f"description_{self.lang}")
            if isinstance(own, str) and own:
                return own
            if self.lang == "fr" and rule in RULE_LABELS_FR:
                return RULE_LABELS_FR[rule]
            key = f"flow_{rule}"
            if key in _texts():
                return self.t(key)
        desc = row.get("description")
        return str(desc) if isinstance(desc, str) and desc else value_label(rule, self.lang)

    def cleaning_table(self, with_source: bool) -> dict[str, Any]:
        att = self.r["attrition"]
        if att is None or att.empty or "rows_in" not in att.columns:
            return self.notice_missing("attrition")
        rules = att[att.get("stage", pd.Series("", index=att.index)).astype(str) != "cohort"].reset_index(drop=True)
        people = [not LINE_STAGE_PATTERN.search(str(st)) for st in rules.get("stage", [""] * len(rules))]
        return self.flow_table(rules, self.t("tab_cleaning"), person_rows=people, with_source=with_source)

    # -- matching
    def matching(self) -> Section:
        s = Section("matching", self.t("sec_matching"))
        s.blocks.append(self.p(self.t("matching_intro")))
        params = self.r["matching_params"] or {}
        if not isinstance(params, dict):
            params = {}
        flat = _flatten(params.get("matching", {}))
        if _is_num(params.get("caliper_width")):
            flat["caliper_width"] = float(params["caliper_width"])
        rows = [[Markup(f"<code>{escape(k)}</code>"), self.param_value(v)] for k, v in flat.items()]
        if rows:
            s.blocks.append(self.table(self.t("tab_matching_params"), [self.t("param"), self.t("value")], rows,
                                       align=["l", "l"], cls="params"))
        sizes = params.get("sizes")
        if isinstance(sizes, dict) and sizes:
            rows = []
            for k, v in sizes.items():
                is_count = not k.startswith("ess")
                shown = (self.fmt.masked(self.k) if v is None or (is_count and is_small(v, self.k))
                         else self.fmt.integer(v) if is_count else self.fmt.number(v, 1))
                rows.append([self.size_label(k), shown])
            s.blocks.append(self.table(self.t("tab_matching_sizes"), [self.t("col_group"), self.t("col_n")], rows,
                                       note=self.masked_note()))
        if self.r.has("attrition_matching"):
            am = self.r["attrition_matching"]
            am = am[am.get("stage", pd.Series("", index=am.index)).astype(str) != "cohort"] if "stage" in am.columns else am
            if not am.empty and {"rows_in", "rows_out", "rows_dropped"} <= set(am.columns):
                s.blocks.append(self.flow_table(am.reset_index(drop=True), self.t("tab_matching_flow")))
        s.blocks.extend(self.balance_blocks())
        s.blocks.extend(self.unmatched_blocks())
        extra = self.indicator_rows("matching", exclude={"unmatched_share_complex"})
        if extra:
            s.blocks.append(extra)
        return s

    def param_value(self, v: Any) -> str:
        if isinstance(v, bool):
            return self.t("yes") if v else self.t("no")
        if isinstance(v, list | tuple):
            return ", ".join(str(x) for x in v) or MISSING
        if v is None:
            return MISSING
        if _is_num(v) and not isinstance(v, int):
            return self.fmt.number(v, 3).rstrip("0").rstrip(",.") if not float(v).is_integer() else self.fmt.integer(v)
        return str(v)

    def balance_blocks(self) -> list[dict[str, Any]]:
        bal = self.r["balance"]
        if bal is None or bal.empty or "covariate" not in bal.columns or "smd" not in bal.columns:
            return [self.notice_missing("balance")]
        stage_col = "stage" if "stage" in bal.columns else None
        numeric_cols = [c for c in ("mean_treated", "mean_control", "smd", "variance_ratio") if c in bal.columns]
        empty = bal.groupby(bal["covariate"].astype(str))[numeric_cols].apply(lambda g: g.isna().all().all())
        hidden = [c for c, e in empty.items() if e]
        covs = [c for c in dict.fromkeys(bal["covariate"].astype(str)) if c not in hidden]

        def get(cov: str, stage: str, col: str) -> Any:
            if col not in bal.columns:
                return None
            sel = bal[(bal["covariate"].astype(str) == cov)]
            if stage_col:
                sel = sel[sel[stage_col].astype(str).str.lower() == stage]
            return sel[col].iloc[0] if len(sel) else None
        mean_cols = [c for c in ("mean_treated", "mean_control") if c in bal.columns]
        cols = [self.t("col_covariate")]
        for stage in ("before", "after"):
            cols += [f"{self.t(m.replace('mean_', 'col_mean_'))} ({self.t(stage).lower()})" for m in mean_cols]
        cols += [self.t("col_smd_before"), self.t("col_smd_after")]
        has_vr = "variance_ratio" in bal.columns
        if has_vr:
            cols += [self.t("col_vr_before"), self.t("col_vr_after")]
        rows, before, after = [], [], []
        for cov in covs:
            row = [self.cov_label(cov)]
            for stage in ("before", "after"):
                for m in mean_cols:
                    v = get(cov, stage, m)
                    row.append(self.fmt.eur(v) if _column_kind(cov, pd.Series([v])) == "eur" else self.fmt.number(v, 2))
            b, a = _f(get(cov, "before", "smd")), _f(get(cov, "after", "smd"))
            row += [self.fmt.number(b, 3), self.fmt.number(a, 3)]
            if has_vr:
                row += [self.fmt.number(get(cov, "before", "variance_ratio"), 2),
                        self.fmt.number(get(cov, "after", "variance_ratio"), 2)]
            rows.append(row)
            if b is not None and a is not None:
                before.append(b)
                after.append(a)
        denom = bal["smd_denominator"].dropna().astype(str).iloc[0] if "smd_denominator" in bal.columns and bal["smd_denominator"].notna().any() else MISSING
        note = self.html("balance_note", denom=value_label(denom, self.lang))
        if hidden:
            note = note + Markup(" ") + self.html("balance_hidden", n=len(hidden))
        blocks = [self.table(self.t("tab_balance"), cols, rows, note=note)]
        if before and len(before) == len(covs):
            png = figures.love_plot([self.cov_label(c) for c in covs], before, after,
                                    {"before": self.t("before"), "after": self.t("after")},
                                    xlabel="|SMD|" if self.lang == "en" else "|DMS|")
            blocks.append(self.figure(self.t("fig_love"), png))
        elif self.r["love_plot"]:
            blocks.append(self.figure(self.t("fig_love"), self.r["love_plot"]))
        return blocks

    def cov_label(self, cov: str) -> str:
        if "=" in cov:
            var, _, level = cov.partition("=")
            return f"{self.cov_label(var)} = {value_label(level, self.lang)}"
        return value_label(cov, self.lang)

    def measure_label(self, measure: Any) -> str:
        m = str(measure)
        if m.startswith("spending_") and m[len("spending_"):] in self.cfg.cleaning.categories:
            cat = self.cfg.cleaning.categories[m[len("spending_"):]]
            return f"{self.t('spending_of')} {cat.label_fr if self.lang == 'fr' else cat.label_en}"
        if m in MEASURE_LABELS:
            return MEASURE_LABELS[m][self.lang]
        if m.startswith("spending_"):
            return f"{self.t('spending_of')} {value_label(m[len('spending_'):], self.lang)}"
        return value_label(m, self.lang)

    def size_label(self, key: str) -> str:
        k = f"size_{key}"
        return self.t(k) if k in _texts() else key.replace("_", " ")

    def unmatched_blocks(self) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        rec = self.records.get("unmatched_share_complex")
        if rec is not None:
            masked = self.rec_masked(rec)
            value = self.fmt.masked(self.k) if masked else (
                self.fmt.value(rec.get("value"), "share") + " " + self.fmt.ci(rec.get("ci_low"), rec.get("ci_high"), "share")
                if rec.get("ci_low") is not None else self.fmt.value(rec.get("value"), "share"))
            pub = self.cfg.published.get("unmatched_share_complex")
            blocks.append(self.p(self.html("unmatched_text", value=value,
                                           published=self.fmt.published(pub, "share"))))
        up = self.r["unmatched_profiles"]
        if up is None or up.empty:
            blocks.append(self.notice_missing("unmatched_profiles"))
            return blocks
        up = up.copy()
        means = [c for c in up.columns if c.startswith(("mean_matched_", "mean_unmatched_"))]
        reasons = [c for c in up.columns if c.startswith("share_reason_")]
        blocks.append(self.frame_table(up, self.t("tab_unmatched"), drop=[*means, *reasons],
                                       rename={"profile": self.t("col_profile")}))
        covs = list(dict.fromkeys(c.split("_", 2)[2] for c in means))
        if covs and "profile" in up.columns:
            cols = [self.t("col_covariate")]
            picks = [p for p in ("overall", "complex") if p in set(up["profile"].astype(str))]
            for p in picks:
                cols += [f"{value_label(p, self.lang)} : {self.t('flow_matched').lower()}" if self.lang == "fr"
                         else f"{value_label(p, self.lang)}: {self.t('flow_matched').lower()}",
                         f"{value_label(p, self.lang)} : {self.t('flow_unmatched').lower()}" if self.lang == "fr"
                         else f"{value_label(p, self.lang)}: {self.t('flow_unmatched').lower()}"]
            rows = []
            for cov in covs:
                row = [self.cov_label(cov)]
                for p in picks:
                    r = up[up["profile"].astype(str) == p].iloc[0]
                    for side in ("matched", "unmatched"):
                        v = r.get(f"mean_{side}_{cov}")
                        kind = _column_kind(cov, pd.Series([v])) if _is_num(v) else "text"
                        row.append(self.fmt.secondary() if not _is_num(v) else
                                   self.fmt.eur(v) if kind == "eur" else self.fmt.number(v, 1))
                rows.append(row)
            if picks:
                blocks.append(self.table(self.t("tab_unmatched_means"), cols, rows, note=self.masked_note()))
        return blocks

    # -- indicator tables
    def indicator_rows(self, section: str, exclude: set[str] | None = None,
                       caption: str | None = None) -> dict[str, Any] | None:
        recs = [r for r in self.records.values()
                if _section_of(r["id"]) == section and r["id"] not in (exclude or set())]
        if not recs:
            return None
        rows = []
        for rec in recs:
            unit = self.unit_of(rec, rec["id"])
            masked = self.rec_masked(rec)
            mk = self.fmt.secondary()
            arms = rec.get("arm_values") or {}
            t_key = next((k for k in arms if str(k).lower().startswith("treated")), None)
            c_key = next((k for k in arms if str(k).lower().startswith("control")), None)
            arm_unit = _arm_unit(unit, [arms.get(t_key), arms.get(c_key)])
            pub = self.cfg.published.get(rec["id"])
            rows.append([
                self.label_of(rec, rec["id"]),
                mk if masked else self.fmt.value(arms.get(t_key), arm_unit) if t_key else MISSING,
                mk if masked else self.fmt.value(arms.get(c_key), arm_unit) if c_key else MISSING,
                mk if masked else self.fmt.value(rec.get("value"), unit),
                mk if masked else self.fmt.ci(rec.get("ci_low"), rec.get("ci_high"), unit),
                self.fmt.masked(self.k) if masked else self.fmt.integer(rec.get("n")),
                self.fmt.published(pub, unit) if pub is not None else MISSING,
            ])
            if masked:
                self.n_masked += 1
        cols = [self.t("col_indicator"), self.t("col_treated"), self.t("col_control"), self.t("value"),
                self.t("col_ci"), self.t("col_n"), self.t("col_published")]
        return self.table(caption or self.t("tab_indicators"), cols, rows, note=self.masked_note())

    def arm_chart(self, ids: Sequence[str], caption: str) -> dict[str, Any] | None:
        """Bars ÉQUILIBRES vs controls for the indicators of ``ids`` that carry both arm values."""
        panels = []
        for rid in ids:
            rec = self.records.get(rid)
            if rec is None or self.rec_masked(rec):
                continue
            arms = rec.get("arm_values") or {}
            t_key = next((k for k in arms if str(k).lower().startswith("treated")), None)
            c_key = next((k for k in arms if str(k).lower().startswith("control")), None)
            if t_key and c_key and _is_num(arms[t_key]) and _is_num(arms[c_key]):
                panels.append((self.label_of(rec, rid), float(arms[t_key]), float(arms[c_key]),
                               _arm_unit(self.unit_of(rec, rid), [arms[t_key], arms[c_key]])))
        if not panels:
            return None
        by_unit: dict[str, list[Any]] = {}
        for p in panels:
            by_unit.setdefault(p[3], []).append(p)
        # One chart for the unit with most panels keeps the scales comparable.
        unit, group = max(by_unit.items(), key=lambda kv: len(kv[1]))
        png = figures.grouped_bars([_wrap(g[0], 38) for g in group],
                                   {self.t("col_treated"): [g[1] for g in group],
                                    self.t("col_control"): [g[2] for g in group]},
                                   "", lambda v: self.fmt.value(v, unit, precise=False))
        return self.figure(caption, png)

    # -- hospitalisation / end of life
    def hospitalisation(self) -> Section:
        s = Section("hospitalisation", self.t("sec_hospitalisation"))
        s.blocks.append(self.p(self.t("hosp_intro", days=self.cfg.indicators.eol_window_days)))
        tab = self.indicator_rows("hospitalisation")
        if tab:
            s.blocks.append(tab)
        eol_ids = [r for r in self.records if r.startswith("eol_") and _section_of(r) == "hospitalisation"]
        chart = self.arm_chart(eol_ids, self.t("fig_eol"))
        if chart:
            s.blocks.append(chart)
        for key, cap in (("eol", "tab_eol"), ("hospitalisation", "tab_hosp"), ("followup", "tab_followup")):
            if self.r.has(key):
                s.blocks.append(self.frame_table(self.r[key], self.t(cap)))
            elif key in self.r.missing:
                s.blocks.append(self.notice_missing(key))
        s.blocks.extend(self.spending_blocks())
        return s

    def spending_blocks(self) -> list[dict[str, Any]]:
        df = self.r["spending_by_category"]
        if df is None or df.empty:
            return [self.notice_missing("spending_by_category")] if "spending_by_category" in self.r.missing else []
        blocks = []
        wide = _wide_by_arm(df)
        labels = {k: (v.label_fr if self.lang == "fr" else v.label_en) for k, v in self.cfg.cleaning.categories.items()}
        if wide is not None:
            cats, series = wide
            png = figures.grouped_bars([labels.get(c, value_label(c, self.lang)) for c in cats],
                                       {self.t("col_treated"): series["treated"],
                                        self.t("col_control"): series["control"]},
                                       "€" if self.lang == "fr" else "€", lambda v: self.fmt.eur(v))
            blocks.append(self.figure(self.t("fig_spending"), png))
        df = df.copy()
        if "category" in df.columns:
            df["category"] = df["category"].map(lambda c: labels.get(str(c), value_label(c, self.lang)))
        blocks.append(self.frame_table(df, self.t("tab_spending")))
        return blocks

    # -- economics
    def economics(self) -> Section:
        s = Section("economics", self.t("sec_economics"))
        s.blocks.append(self.p(self.t("econ_intro", investment=self.fmt.eur(self.cfg.economics.programme_investment_eur))))
        tab = self.indicator_rows("economics")
        if tab:
            s.blocks.append(tab)
        sc = self.r["economics_scenarios"]
        if sc is None or sc.empty:
            s.blocks.append(self.notice_missing("economics_scenarios"))
            return s
        s.blocks.append(self.frame_table(sc, self.t("tab_scenarios")))
        net = next((c for c in sc.columns if "net" in c.lower() and pd.api.types.is_numeric_dtype(sc[c])), None)
        if net is not None and len(sc) <= 40:
            params = [c for c in sc.columns if c != net and not pd.api.types.is_float_dtype(sc[c]) or
                      any(w in c.lower() for w in ("rate", "invest", "caseload", "factor"))]
            params = [c for c in params if c != net and sc[c].nunique() > 1][:3]
            names = [" · ".join(self.format_cell(r[c], _column_kind(c, sc[c])) for c in params) or str(i + 1)
                     for i, (_, r) in enumerate(sc.iterrows())]
            png = figures.grouped_bars(names, {self.t("col_treated"): list(pd.to_numeric(sc[net]).fillna(0))},
                                       column_label(net, self.lang), lambda v: self.fmt.eur(v))
            s.blocks.append(self.figure(self.t("fig_scenarios") + (
                f" ({', '.join(column_label(c, self.lang) for c in params)})" if params else ""), png))
        return s

    # -- surveys
    def surveys(self) -> Section:
        s = Section("surveys", self.t("sec_surveys"))
        if not any(self.r.has(k) for k in ("survey_indicators", "survey_items", "likert", "before_after",
                                           "response_rates")):
            s.blocks.append(self.notice_missing("survey_indicators"))
            return s
        sp = self.cfg.surveys
        s.blocks.append(self.p(self.t("surveys_intro", ci_method=sp.proportion_ci, small=sp.small_n_threshold)))
        if self.r.has("response_rates"):
            s.blocks.append(self.frame_table(self.r["response_rates"], self.t("tab_response_rates")))
        tab = self.indicator_rows("surveys", caption=self.t("tab_survey_items"))
        if tab:
            s.blocks.append(tab)
        s.blocks.extend(self.likert_blocks())
        s.blocks.extend(self.before_after_blocks())
        if self.r.has("survey_items") and not tab:
            s.blocks.append(self.frame_table(self.r["survey_items"], self.t("tab_survey_items")))
        return s

    def question_texts(self) -> dict[tuple[str, str], str]:
        """(survey_id, question_id) → question text in the report language, from items.csv."""
        items = self.r["survey_items"]
        col = f"text_{self.lang}"
        if items is None or items.empty or not {"survey_id", "question_id", col} <= set(items.columns):
            return {}
        sub = items.dropna(subset=[col]).drop_duplicates(["survey_id", "question_id"])
        return {(str(a), str(b)): str(t) for a, b, t in zip(sub["survey_id"], sub["question_id"], sub[col], strict=True)}

    def with_question_text(self, df: pd.DataFrame) -> pd.DataFrame:
        texts = self.question_texts()
        if not texts or f"text_{self.lang}" in df.columns or not {"survey_id", "question_id"} <= set(df.columns):
            return df
        df = df.copy()
        df.insert(2, f"text_{self.lang}", [texts.get((str(a), str(b)), str(b)) for a, b in
                                          zip(df["survey_id"], df["question_id"], strict=True)])
        return df

    def likert_blocks(self) -> list[dict[str, Any]]:
        df = self.r["likert"]
        if df is not None and not df.empty:
            df = self.with_question_text(df)
        if df is None or df.empty:
            return [self.survey_png("likert", self.t("fig_likert"))] if "likert" in self.r.survey_pngs else []
        lang = self.lang
        item = _pick(df, f"text_{lang}", "text", "label", "item", "question", "question_id")
        level = _pick(df, f"label_{lang}", "level", "answer", "response", "value_label")
        share = _pick(df, "share", "proportion", "pct", "percent")
        if not (item and level and share):
            if "likert" in self.r.survey_pngs:
                return [self.survey_png("likert", self.t("fig_likert"))]
            return [self.frame_table(df, self.t("fig_likert"))]
        blocks = []
        qkey = [c for c in ("survey_id", "question_id") if c in df.columns] or [item]
        scales: dict[tuple[str, ...], list[tuple[str, list[float]]]] = {}
        for _, q in df.groupby(qkey, sort=False):
            levels = tuple(q[level].astype(str))
            shares = [float(x) if _is_num(x) else 0.0 for x in q[share]]
            if max(shares, default=0) > 1.5:  # percentages rather than shares
                shares = [x / 100 for x in shares]
            label = str(q[item].iloc[0])
            if "survey_id" in q.columns:
                label = f"{label} ({value_label(q['survey_id'].iloc[0], lang)})" if len(
                    df["survey_id"].unique()) > 1 else label
            scales.setdefault(levels, []).append((label, shares))
        # One chart per answer scale: bars of different scales cannot share a legend.
        for levels, qs in sorted(scales.items(), key=lambda kv: -len(kv[1]))[:4]:
            if len(levels) < 2:
                continue
            png = figures.likert_stacked([_wrap(q[0], 45) for q in qs], list(levels), [q[1] for q in qs],
                                         lambda v: self.fmt.pct(v))
            blocks.append(self.figure(self.t("fig_likert"), png))
        return blocks

    def before_after_blocks(self) -> list[dict[str, Any]]:
        df = self.r["before_after"]
        if df is None or df.empty:
            return []
        df = self.with_question_text(df)
        blocks = [self.frame_table(df, self.t("tab_before_after"))]
        item = _pick(df, f"text_{self.lang}", "text", "label", "item", "dimension", "variable")
        b = _pick(df, "mean_before", "before")
        a = _pick(df, "mean_after", "after")
        if item and b and a:
            png = figures.before_after([_wrap(str(x), 25) for x in df[item]], list(pd.to_numeric(df[b])),
                                       list(pd.to_numeric(df[a])),
                                       {"before": self.t("before"), "after": self.t("after")}, "/10")
            blocks.append(self.figure(self.t("fig_before_after"), png))
        return blocks

    def survey_png(self, stem: str, caption: str) -> dict[str, Any]:
        return self.figure(caption, self.r.survey_pngs[stem])

    # -- sensitivity
    def sensitivity(self) -> Section:
        s = Section("sensitivity", self.t("sec_sensitivity"))
        s.blocks.append(self.p(self.t("sens_intro")))
        sw = self.r["sweep"]
        if sw is None or sw.empty:
            s.blocks.append(self.notice_missing("sweep"))
        else:
            sp = self.r["sweep_params"] if isinstance(self.r["sweep_params"], dict) else {}
            est = sp.get("curve_estimate") if sp.get("curve_estimate") in sw.columns else None
            est = est or _pick(sw, "estimate", "effect", "value", "avoided_spending_per_patient_year",
                               "unmatched_share_complex")
            lo = f"{est}_ci_low" if est and f"{est}_ci_low" in sw.columns else _pick(sw, "ci_low", "lower")
            hi = f"{est}_ci_high" if est and f"{est}_ci_high" in sw.columns else _pick(sw, "ci_high", "upper")
            if est:
                vals = pd.to_numeric(sw[est], errors="coerce")
                kind = self.column_kind(est, vals)
                s.blocks.append(self.p(self.t(
                    "sweep_summary", n=len(sw), what=self.label_of(self.records.get(est), est),
                    median=self.format_cell(vals.median(), kind), lo=self.format_cell(vals.min(), kind),
                    hi=self.format_cell(vals.max(), kind))))
            if est and vals.notna().all():
                main = _main_spec(sw, self.cfg)
                kind = self.column_kind(est, vals)
                png = figures.specification_curve(
                    list(vals), [_f(x) for x in sw[lo]] if lo else [None] * len(sw),
                    [_f(x) for x in sw[hi]] if hi else [None] * len(sw), main,
                    self.label_of(self.records.get(est), est), self.t("sweep_rank"),
                    (lambda v: self.fmt.pct(v, 0)) if kind == "share" else
                    (lambda v: self.fmt.eur(v)) if kind == "eur" else (lambda v: self.fmt.number(v, 2)))
                s.blocks.append(self.figure(self.t("fig_spec_curve"), png))
            elif self.r["spec_curve"]:
                s.blocks.append(self.figure(self.t("fig_spec_curve"), self.r["spec_curve"]))
            keep = [c for c in ("spec", "method", "caliper", "ratio", "age_band_width", "transform", "replace",
                                "n_treated_matched", "max_abs_smd_after", "unmatched_share_complex", est)
                    if c and c in sw.columns]
            s.blocks.append(self.frame_table(sw, self.t("tab_sweep"), max_rows=70, keep=list(dict.fromkeys(keep)),
                                             rename={c: self.label_of(self.records.get(c), c) for c in
                                                     ("unmatched_share_complex", est) if c}))
        for key, cap in (("did", "tab_did"), ("regression_crosscheck", "tab_regression")):
            if self.r.has(key):
                s.blocks.append(self.frame_table(self.r[key], self.t(cap)))
            else:
                s.blocks.append(self.notice_missing(key))
        tab = self.indicator_rows("sensitivity")
        if tab:
            s.blocks.append(tab)
        return s

    def limitations(self) -> Section:
        s = Section("limitations", self.t("sec_limitations"))
        s.blocks.append({"kind": "list", "items": list(self.t("limitations"))})
        return s

    # -- methods appendix
    def methods(self) -> Section:
        cfg = self.cfg
        s = Section("methods", self.t("sec_methods"))
        h = lambda key: {"kind": "h3", "text": self.t(key)}  # noqa: E731
        s.blocks += [h("m_design"), self.p(self.t("m_design_text"))]
        st = cfg.study
        s.blocks += [h("m_setting"), {"kind": "dl", "pairs": [
            (self.t("period_inclusion"), self.t("from_to", a=self.fmt.date(st.inclusion_start), b=self.fmt.date(st.inclusion_end))),
            (self.t("period_claims"), self.t("from_to", a=self.fmt.date(st.claims_start), b=self.fmt.date(st.claims_end))),
            (self.t("regions"), "; ".join(f"{r} ({', '.join(d)})" for r, d in st.regions.items())),
        ]}]
        s.blocks += [h("m_participants"), self.p(self.t(
            "m_participants_text", hist=cfg.cohort.history_months,
            mincost=self.fmt.eur(cfg.cohort.min_prior_nursing_cost)))]
        s.blocks += [h("m_sources"), self.p(self.t("m_sources_text"))]
        # Code lists
        rows = [[(v.label_fr if self.lang == "fr" else v.label_en) + f" ({k})",
                 ", ".join(map(str, v.prs_nat_ref)) or MISSING, ", ".join(map(str, v.pse_act_nat)) or MISSING,
                 ", ".join(map(str, v.pse_spe_cod)) or MISSING] for k, v in cfg.cleaning.categories.items()]
        s.blocks += [h("m_codes"), self.table(self.t("m_codes"), [self.t("col_category"), "PRS_NAT_REF", "PSE_ACT_NAT", "PSE_SPE_COD"],
                                              rows, align=["l", "l", "l", "l"], note=self.t("codes_note"))]
        if cfg.cleaning.ald_groups:
            rows = [[value_label(g, self.lang), ", ".join(map(str, nums))] for g, nums in cfg.cleaning.ald_groups.items()]
            s.blocks.append(self.table(self.t("col_ald_group"), [self.t("col_ald_group"), self.t("col_ald_numbers")],
                                       rows, align=["l", "l"]))
        s.blocks += [h("m_cleaning"), self.p(self.t("m_cleaning_text", table=getattr(self, "cleaning_table_number", "")))]
        # Variables: the definitions of the indicators.
        recs = list(self.records.values())
        if recs:
            rows = [[self.label_of(r, r["id"]), self.rec_text(r, "definition"), self.rec_text(r, "population"),
                     self.rec_text(r, "method")] for r in recs]
            s.blocks += [h("m_variables"), self.table(
                self.t("m_variables"), [self.t("col_indicator"), self.t("col_description"), "Population",
                                        self.t("col_method")], rows, align=["l", "l", "l", "l"], cls="small wrap")]
        s.blocks += [h("m_missing"), self.p(self.t("m_missing_text"))]
        m = cfg.matching
        s.blocks += [h("m_bias"), self.p(self.t(
            "m_bias_text", exact=", ".join(m.exact), on=m.on, transform=m.transform,
            caliper=f"{self.param_value(m.caliper)} ({value_label(m.caliper_scale, self.lang)})", reps=cfg.indicators.bootstrap_replicates,
            level=self.fmt.pct(cfg.indicators.ci_level), did=cfg.indicators.did_months))]
        e = cfg.economics
        cats = ", ".join(value_label(c, self.lang) if c not in cfg.cleaning.categories else
                         (cfg.cleaning.categories[c].label_fr if self.lang == "fr" else cfg.cleaning.categories[c].label_en)
                         for c in cfg.indicators.perimeter)
        s.blocks += [h("m_cheers"), {"kind": "dl", "pairs": [
            (self.t("cheers_perspective"), self.t("cheers_perspective_v")),
            (self.t("cheers_comparator"), self.t("cheers_comparator_v")),
            (self.t("cheers_horizon"), self.t("cheers_horizon_v", end=self.fmt.date(st.claims_end))),
            (self.t("cheers_costs"), self.t("cheers_costs_v", cats=cats, inv=self.fmt.eur(e.programme_investment_eur),
                                            rate=self.fmt.eur(e.hourly_rate_eur) + "/h")),
            (self.t("cheers_outcomes"), self.t("cheers_outcomes_v")),
            (self.t("cheers_uncertainty"), self.t("cheers_uncertainty_v")),
        ]}]
        return s

    # -- reproducibility
    def reproducibility(self) -> Section:
        s = Section("reproducibility", self.t("sec_reproducibility"))
        s.blocks.append(self.p(self.html("repro_intro")))
        man = self.r["manifest"] or {}
        s.blocks.append({"kind": "dl", "pairs": [
            (self.t("generated_on"), self.fmt.date(dt.date.today())),
            (self.t("config_fingerprint"), self.cfg.fingerprint()),
            *([("Code", str(man.get("code_version")))] if man.get("code_version") else []),
        ]})
        rows = [[Markup(f"<code>{escape(name)}</code>"), Markup(f"<code>{escape(h)}</code>")]
                for name, h in _input_hashes(man)]
        if rows:
            s.blocks.append(self.table(self.t("tab_inputs"), [self.t("col_file"), self.t("col_hash")], rows,
                                       align=["l", "l"], cls="small hashes"))
        versions = _software_versions(man)
        s.blocks.append(self.table(self.t("tab_versions"), [self.t("col_software"), self.t("col_version")],
                                   [[k, v] for k, v in versions.items()], align=["l", "l"]))
        rows = []
        for section in ("study", "cohort", "matching", "indicators", "economics", "surveys", "report"):
            for k, v in _flatten(self.cfg.section(section)).items():
                if k in ("regions", "title_fr", "title_en"):
                    continue
                rows.append([section, Markup(f"<code>{escape(k)}</code>"), self.param_value(v)])
        s.blocks.append(self.table(self.t("tab_params"), [self.t("col_section"), self.t("param"), self.t("value")],
                                   rows, align=["l", "l", "l"], cls="small wrap"))
        return s


# ---------------------------------------------------------------------------------------------
# Pure helpers (tested through the report tests).


def _texts() -> dict[str, Any]:
    from reports.i18n import TEXTS

    return TEXTS


# Published figures that grow with the size of the population studied: on a synthetic extract of scale s
# they are compared with the published value at that scale (the investment is fixed, so net savings
# = (published net + investment) × s − investment).
SCALE_DEPENDENT = frozenset({"caseload_patient_years", "gross_savings_year", "net_savings_year"})


def published_at_scale(key: str, published: float, scale: float, investment: float) -> float:
    """The published figure ``key`` as it would be on an extract ``scale`` times the study's size."""
    if key not in SCALE_DEPENDENT or scale == 1.0:
        return published
    if key == "net_savings_year":
        return (published + investment) * scale - investment
    return published * scale


def _agreement(rec: dict[str, Any] | None, published: float, tol: float
               ) -> tuple[str, float | None, float | None, float | None, float | None]:
    """(status, value, ci_low, ci_high, n) for one published figure."""
    if rec is None or not _is_num(rec.get("value")):
        return "missing", None, None, None, None
    value, lo, hi, n = _f(rec["value"]), _f(rec.get("ci_low")), _f(rec.get("ci_high")), _f(rec.get("n"))
    if str(rec.get("method", "")).strip().lower() == "input":
        # A study parameter shown for completeness: it is an input, so "agreement" means nothing.
        return "input", value, lo, hi, n
    if lo is not None and hi is not None and min(lo, hi) <= published <= max(lo, hi):
        return "agrees", value, lo, hi, n
    if published != 0 and abs(value - published) / abs(published) <= tol:
        return "close", value, lo, hi, n
    if published == 0 and abs(value) <= tol:
        return "close", value, lo, hi, n
    return "differs", value, lo, hi, n


def _section_of(indicator_id: str) -> str:
    for section, prefixes in SECTION_PREFIXES:
        if any(indicator_id.startswith(p) for p in prefixes):
            return section
    return "hospitalisation"


def _arm_unit(unit: str, values: Sequence[Any]) -> str:
    nums = [float(v) for v in values if _is_num(v)]
    if unit == "relative_difference":
        return "share" if nums and all(0 <= v <= 1 for v in nums) else "number"
    return unit


def _column_kind(name: str, values: pd.Series) -> str:
    n = str(name).lower()
    nums = pd.to_numeric(values, errors="coerce") if not pd.api.types.is_bool_dtype(values) else None
    numeric = nums is not None and nums.notna().any() and nums.notna().sum() >= values.notna().sum()
    if not numeric:
        return "text"
    small = bool((nums.dropna().abs() <= 1.5).all())
    if n == "n" or n.startswith("n_") or n.endswith("_n") or n.startswith("count") or n.endswith("_count") \
            or n in ("patients", "decedents", "respondents", "invited", "persons", "treated_rows", "control_rows"):
        return "count"
    if any(w in n for w in ("share", "rate", "prop", "pct", "percent", "relative")) and small:
        return "share"
    if "smd" in n or "p_value" in n or n in ("p", "pvalue", "se", "variance_ratio", "ecdf_mean", "ecdf_max"):
        return "smd"
    if any(w in n for w in ("eur", "spend", "cost", "saving", "invest", "amount", "mnt", "avoided", "budget", "euros")):
        return "eur"
    if "score" in n or ("mean" in n and bool((nums.dropna().abs() <= 10).all())):
        return "score"
    return "number"


_CI_LOW, _CI_HIGH = "_ci_low", "_ci_high"
_COUNT_MEASURE = re.compile(r"^(n_|decedents|deaths|patients|persons)")
# Technical columns of result tables that a reader does not need (run time, error text, CI level...).
TECHNICAL_COLUMNS = frozenset({
    "suppressed", "note", "notes", "seconds", "effects_error", "formula", "ci_level", "n_eff", "weighted",
    "weighted_value", "weighted_ci_low", "weighted_ci_high", "sd_denominator", "variable", "type", "code",
    "source", "small_n_warning", "test_method", "zero_method", "respondent_types", "is_median",
})


def _prepare_frame(df: pd.DataFrame, lang: str, drop: Iterable[str] = (), keep: Sequence[str] | None = None
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table to show, cells already suppressed by the producer).

    Keeps the columns of the report language (``text_fr``/``text_en`` → ``text``), drops technical
    and all-empty columns, and turns the producer's ``suppressed`` marker (True, or the names of the
    blanked columns separated by ';') into a mask.
    """
    df = df.reset_index(drop=True).copy()
    pre = pd.DataFrame(False, index=df.index, columns=df.columns)
    if "suppressed" in df.columns:
        for i, flag in df["suppressed"].items():
            if isinstance(flag, str) and flag.strip() and flag.strip().lower() not in ("false", "0"):
                names = [x.strip() for x in flag.split(";") if x.strip()]
                if flag.strip().lower() == "true":
                    names = [c for c in df.columns if df[c].isna().iat[i]]
                for c in names:
                    if c in pre.columns:
                        pre.at[i, c] = True
            elif flag is True or (not isinstance(flag, str) and _is_num(flag) and float(flag) == 1):
                for c in df.columns:
                    if pd.isna(df.at[i, c]) and c != "suppressed":
                        pre.at[i, c] = True
    other = "en" if lang == "fr" else "fr"
    renames = {}
    for c in list(df.columns):
        if c.endswith(f"_{other}") and c[: -len(other) - 1] + f"_{lang}" in df.columns:
            df = df.drop(columns=c)
            pre = pre.drop(columns=c)
        elif c.endswith(f"_{lang}"):
            base = c[: -len(lang) - 1]
            renames[c] = base
            if base in df.columns:
                df = df.drop(columns=base)
                pre = pre.drop(columns=base)
    df = df.rename(columns=renames)
    pre = pre.rename(columns=renames)
    if "text" in df.columns:
        # A translated question text makes the (English) label and the question code redundant.
        extra = [c for c in ("label", "question_id") if c in df.columns]
        df, pre = df.drop(columns=extra), pre.drop(columns=extra)
    technical = [c for c in df.columns if c in TECHNICAL_COLUMNS or c in set(drop)]
    if keep is not None:
        technical += [c for c in df.columns if c not in keep and not any(
            c == f"{k}{_CI_LOW}" or c == f"{k}{_CI_HIGH}" for k in keep)]
    df = df.drop(columns=list(dict.fromkeys(technical)))
    pre = pre.drop(columns=list(dict.fromkeys(technical)))
    empty = [c for c in df.columns if df[c].isna().all() and not pre[c].any()]
    return df.drop(columns=empty), pre.drop(columns=empty)


def _total_row(df: pd.DataFrame) -> Any:
    for c in df.columns:
        if df[c].dtype == object:
            hits = df.index[df[c].astype(str).str.lower().isin(["total", "all", "ensemble"])]
            if len(hits) == 1:
                return hits[0]
            return None
    return None


def _pick(df: pd.DataFrame, *names: str) -> str | None:
    lower = {c.lower(): c for c in df.columns}
    for n in names:
        if n in lower:
            return lower[n]
    return None


def _wide_by_arm(df: pd.DataFrame) -> tuple[list[str], dict[str, list[float]]] | None:
    """(categories, {"treated": [...], "control": [...]}) from a long or wide spending table."""
    cat = _pick(df, "category", "categorie")
    if cat is None:
        return None
    t = next((c for c in df.columns if c.lower() in ("treated", "mean_treated", "spend_treated", "eur_treated")), None)
    c = next((c for c in df.columns if c.lower() in ("control", "mean_control", "spend_control", "eur_control")), None)
    if t and c:
        sub = df[~df[cat].astype(str).str.lower().isin(["total", "all"])]
        return (list(sub[cat].astype(str)), {"treated": list(pd.to_numeric(sub[t]).fillna(0)),
                                              "control": list(pd.to_numeric(sub[c]).fillna(0))})
    arm = _pick(df, "arm", "group")
    val = _pick(df, "mean", "spend", "value", "eur_per_patient", "mean_eur", "eur")
    if arm and val:
        piv = df.pivot_table(index=cat, columns=arm, values=val, aggfunc="sum", sort=False)
        cols = {str(k).lower(): k for k in piv.columns}
        tk = next((cols[k] for k in cols if k.startswith("treated") or k in ("1", "equilibres")), None)
        ck = next((cols[k] for k in cols if k.startswith("control") or k == "0"), None)
        if tk is None or ck is None:
            return None
        piv = piv[~piv.index.astype(str).str.lower().isin(["total", "all"])]
        return list(piv.index.astype(str)), {"treated": list(piv[tk].fillna(0)), "control": list(piv[ck].fillna(0))}
    return None


def _main_spec(sw: pd.DataFrame, cfg: StudyConfig) -> int | None:
    """Index of the sweep row matching the main configuration, if one is flagged or matches."""
    flag = _pick(sw, "is_main", "main", "primary", "is_default")
    if flag:
        hits = sw.index[sw[flag].astype(str).str.lower().isin(["true", "1"])]
        return int(hits[0]) if len(hits) else None
    m = cfg.matching
    want = {"method": m.method, "ratio": m.ratio, "caliper": m.caliper, "transform": m.transform,
            "age_band_width": cfg.cohort.age_band_width}
    sel = pd.Series(True, index=sw.index)
    for k, v in want.items():
        if k in sw.columns:
            sel &= sw[k].astype(str) == str(v)
    hits = sw.index[sel]
    return int(hits[0]) if len(hits) == 1 else None


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(d, dict):
        return out
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and all(not isinstance(x, dict) for x in v.values()) and len(v) <= 6:
            out.update(_flatten(v, key + "."))
        elif isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _input_hashes(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(file name, hash) of the extract's inputs from clean/manifest.json, whatever its layout."""
    inputs = manifest.get("inputs") or manifest.get("input_hashes") or manifest.get("input_files") or {}
    out: list[tuple[str, str]] = []
    if isinstance(inputs, dict):
        for name, v in inputs.items():
            h = v.get("sha256") or v.get("hash") if isinstance(v, dict) else v
            out.append((Path(str(name)).name, str(h)))
    elif isinstance(inputs, list):
        for item in inputs:
            if isinstance(item, dict):
                name = item.get("path") or item.get("file") or item.get("name") or ""
                out.append((Path(str(name)).name, str(item.get("sha256") or item.get("hash") or MISSING)))
    return sorted(out)


SOFTWARE = ("pandas", "numpy", "scipy", "statsmodels", "scikit-learn", "duckdb", "ibis-framework",
            "pyarrow", "pandera", "pydantic", "matplotlib", "jinja2", "weasyprint", "pyspark")


def _software_versions(manifest: dict[str, Any]) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        versions["equilibres-eval"] = importlib.metadata.version("equilibres-eval")
    except importlib.metadata.PackageNotFoundError:
        pass
    recorded = manifest.get("versions") or manifest.get("software") or {}
    if isinstance(recorded, dict):
        for k, v in recorded.items():
            if str(v) != versions.get(k):
                versions[f"{k} (clean)"] = str(v)
    return versions


def _short_source(url: str) -> str:
    tail = url.rstrip("/").rsplit("/", 1)[-1]
    return tail.removesuffix(".html") or url


def _wrap(label: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(label, width)) or label


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env


def render_html(results: BuildResults, config: StudyConfig, lang: str) -> tuple[str, ReportBuilder, list[Section]]:
    builder = ReportBuilder(results, config, lang)
    sections = builder.build()
    css = (STATIC / "report.css").read_text(encoding="utf-8")
    title = config.report.title_fr if lang == "fr" else config.report.title_en
    html = _environment().get_template("report.html.j2").render(
        lang=lang, title=title, subtitle=text("subtitle", lang), css=Markup(css), sections=sections,
        toc_title=text("toc", lang), generated=text("generated_on", lang) + " " + Formatter(lang).date(dt.date.today()),
        study=config.study.name, t=lambda key, **kw: text(key, lang, **kw),
        table_label=text("table", lang), figure_label=text("figure", lang), page_label=text("page", lang),
    )
    return html, builder, sections


def render_report(build: Path, config: StudyConfig, data_dir: Path | None = None, pdf: bool = True) -> ReportResult:
    """Render build/report/report.html (and report.pdf) from the results under ``build``."""
    build = Path(build)
    if not build.exists():
        raise PipelineError(
            f"Build directory {build} does not exist. Run `equilibres run --data <extract> --out {build}` first."
        )
    lang = config.report.lang
    results = load_build(build)
    html, builder, sections = render_html(results, config, lang)
    leftovers = re.findall(r"\{\{|\{%|\}\}|%\}", html)
    if leftovers:
        raise PipelineError(f"The rendered report still contains {len(leftovers)} template marker(s); "
                            f"this is a bug in reports/templates.")
    if data_dir is not None and Path(data_dir).is_dir():
        ids = extract_identifiers(Path(data_dir), config)
        found = identifiers_in(html, ids)
        if found:
            raise PipelineError(
                f"Privacy check failed: {found} identifier(s) of the extract in {data_dir} appear in the "
                f"rendered report; nothing was written. Find which result file carries identifiers and fix "
                f"the step that writes it."
            )
    paths = _paths(build)
    n_pages = None
    # restore_on_failure: a failed PDF must not leave the new HTML beside the old PDF.
    with build_lock(build, "report"), restore_on_failure(build, paths["html"].parent):
        atomic_write_text(paths["html"], html)
        pdf_path = None
        if pdf:
            pdf_bytes, n_pages = html_to_pdf(html, base_url=str(build))
            atomic_write_bytes(paths["pdf"], pdf_bytes)
            pdf_path = paths["pdf"]
    return ReportResult(html_path=paths["html"], pdf_path=pdf_path, lang=lang,
                        sections=[s.id for s in sections], not_run=builder.not_run, n_pages=n_pages,
                        n_masked_cells=builder.n_masked, agreement=builder.agreement_counts)


def _paths(build: Path) -> dict[str, Path]:
    from pipeline.paths import BuildPaths

    report_dir = BuildPaths(build).report
    return {"html": report_dir / "report.html", "pdf": report_dir / "report.pdf"}


def html_to_pdf(html: str, base_url: str | None = None) -> tuple[bytes, int]:
    """Lay the HTML out with WeasyPrint (A4, CSS @page rules of report.css); (pdf bytes, pages)."""
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as err:  # OSError: pango/cairo libraries missing
        raise PipelineError(
            f"WeasyPrint cannot be loaded ({err}). Install the system libraries (`make sysdeps`, needs "
            f"libpango) or render without the PDF: `equilibres report --no-pdf`."
        ) from None
    import logging

    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    document = HTML(string=html, base_url=base_url).render()
    return document.write_pdf(), len(document.pages)
