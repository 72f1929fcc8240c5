"""Render the funders' report (HTML + PDF) from the results already computed by the other steps.

Nothing here computes a statistic: the report reads saved results (:mod:`reports.loaders`), builds
one section per module of :mod:`reports.sections` (texts from :mod:`reports.i18n`, numbers from
:mod:`reports.format`, tables from :mod:`reports.tables`, charts from :mod:`reports.figures`) and
renders Jinja2 templates. The HTML is self-contained (CSS inline, figures as data URIs); the PDF is
the same HTML laid out by WeasyPrint (A4, page numbers, table of contents with page numbers).

Entry point: :func:`run`.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from pipeline.config import StudyConfig
from pipeline.io import PipelineError, atomic_write_bytes, atomic_write_text, build_lock, restore_on_failure
from pipeline.paths import BuildPaths
from pipeline.privacy import extract_identifiers, identifiers_in
from pipeline.provenance import check_chain
from reports.context import ReportContext, Section
from reports.format import Formatter
from reports.i18n import text
from reports.loaders import BuildResults, load_build
from reports.sections import (
    detailed,
    economics,
    hospitalisation,
    intervention,
    limitations,
    matching,
    methods,
    reproducibility,
    sensitivity,
    summary,
    surveys,
    synthesis,
)

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

# The report in three parts: the synthesis a funder reads first, the evidence behind it, and the
# technical annex (the full tables of the evidence chapters, checklists, the full comparison with the
# published figures, reproducibility). The detailed tables come first in the annex: the evidence
# chapters hand them over (ReportContext.to_annex), and the checklists refer to their numbers.
PARTS = (("synthesis", (synthesis,)),
         ("evidence", (intervention, matching, hospitalisation, economics, surveys, sensitivity, limitations)),
         ("annex", (detailed, methods, summary, reproducibility)))
SECTIONS = tuple(m for _part, modules in PARTS for m in modules)
PART_OF = {m.__name__.rsplit(".", 1)[-1]: part for part, modules in PARTS for m in modules}
SECTION_IDS = tuple(m.__name__.rsplit(".", 1)[-1] for m in SECTIONS)


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


def render_html(results: BuildResults, config: StudyConfig) -> tuple[str, ReportContext, list[Section]]:
    """The report as HTML in ``config.report.lang``, with the context that counted its cells."""
    ctx = ReportContext(results, config)
    sections = [module.build(ctx) for module in SECTIONS]
    lang = ctx.lang
    css = (STATIC / "report.css").read_text(encoding="utf-8")
    title = config.report.title_fr if lang == "fr" else config.report.title_en
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    parts = [{"id": part, "title": text(f"part_{part}", lang),
               "sections": [s for s in sections if PART_OF[s.id] == part]} for part, _m in PARTS]
    html = env.get_template("report.html.j2").render(
        lang=lang, title=title, parts=parts, subtitle=text("subtitle", lang), css=Markup(css), sections=sections,
        toc_title=text("toc", lang), generated=text("generated_on", lang) + " " + Formatter(lang).date(dt.date.today()),
        study=config.study.name, t=lambda key, **kw: text(key, lang, **kw),
        table_label=text("table", lang), figure_label=text("figure", lang), page_label=text("page", lang),
        show_label=text("show_table", lang),
    )
    return html, ctx, sections


def run(paths: BuildPaths, config: StudyConfig, *, pdf: bool = True) -> ReportResult:
    """Render ``report/report.html`` (and ``report.pdf``) from the results under ``paths.root``.

    ``config.report`` holds the report's own settings (language, title, small-cell threshold...);
    ``paths.data``, when given, is the extract whose identifiers must not appear in the report.
    """
    build = paths.root
    if not build.exists():
        raise PipelineError(
            f"Build directory {build} does not exist. Run `equilibres run --data <extract> --out {build}` first."
        )
    check_chain(paths)  # results of different runs are never mixed (pipeline/provenance.py)
    results = load_build(paths)
    html, ctx, sections = render_html(results, config)
    leftovers = re.findall(r"\{\{|\{%|\}\}|%\}", html)
    if leftovers:
        raise PipelineError(f"The rendered report still contains {len(leftovers)} template marker(s); "
                            f"this is a bug in reports/templates.")
    if paths.data is not None and paths.data.is_dir():
        found = identifiers_in(html, extract_identifiers(paths.data, config))
        if found:
            raise PipelineError(
                f"Privacy check failed: {found} identifier(s) of the extract in {paths.data} appear in the "
                f"rendered report; nothing was written. Find which result file carries identifiers and fix "
                f"the step that writes it."
            )
    html_path, pdf_path = paths.report / "report.html", paths.report / "report.pdf"
    n_pages = None
    # restore_on_failure: a failed PDF must not leave the new HTML beside the old PDF.
    with build_lock(build, "report"), restore_on_failure(build, paths.report):
        atomic_write_text(html_path, html)
        if pdf:
            pdf_bytes, n_pages = html_to_pdf(html, base_url=str(build))
            atomic_write_bytes(pdf_path, pdf_bytes)
    return ReportResult(html_path=html_path, pdf_path=pdf_path if pdf else None, lang=ctx.lang,
                        sections=[s.id for s in sections], not_run=ctx.not_run, n_pages=n_pages,
                        n_masked_cells=ctx.n_masked, agreement=ctx.agreement_counts)




def html_to_pdf(html: str, base_url: str | None = None) -> tuple[bytes, int]:
    """Lay the HTML out with WeasyPrint (A4, CSS @page rules of report.css); (pdf bytes, pages)."""
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as err:  # OSError: pango/cairo libraries missing
        raise PipelineError(
            f"WeasyPrint cannot be loaded ({err}). Install the system libraries (`make sysdeps`, needs "
            f"libpango) or render without the PDF: `equilibres report --no-pdf`."
        ) from None
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    document = HTML(string=html, base_url=base_url).render()
    # Tagged PDF (structure for screen readers); the title, author and language come from the <head>.
    return document.write_pdf(pdf_tags=True), len(document.pages)
