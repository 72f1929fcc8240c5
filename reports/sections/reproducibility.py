"""Section 10: how to reproduce the report (input hashes, software versions, the settings each step
saved)."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
from dataclasses import dataclass
from pathlib import Path

from markupsafe import Markup, escape

from pipeline.facts import CleanFacts
from pipeline.paths import BuildPaths
from pipeline.provenance import build_chain
from reports.context import Block, ReportContext, Section
from reports.format import MISSING, flatten

SOFTWARE = ("pandas", "numpy", "scipy", "statsmodels", "scikit-learn", "duckdb", "ibis-framework",
            "pyarrow", "pandera", "pydantic", "matplotlib", "jinja2", "weasyprint", "pyspark")

# Each settings section as the step that used it saved it (None: the report's own configuration).
SECTION_SOURCES = (("study", None), ("cohort", "clean"), ("matching", "match"), ("indicators", "indicators"),
                   ("economics", "indicators"), ("surveys", "surveys"), ("report", None))


def build(ctx: ReportContext) -> Section:
    s = Section("reproducibility", ctx.t("sec_reproducibility"))
    s.blocks.append(ctx.p(ctx.html("repro_intro")))
    man = ctx.results.manifest
    s.blocks.append({"kind": "dl", "pairs": [
        (ctx.t("generated_on"), ctx.fmt.date(dt.date.today())),
        (ctx.t("config_fingerprint"), ctx.config.fingerprint()),
    ]})
    rows = [[Markup(f"<code>{escape(f.file)}</code>"), f.table, ctx.fmt.integer(f.rows),
             ctx.fmt.size(f.size), Markup(f'<code title="{escape(f.sha256)}">{escape(f.sha256[:12])}</code>')]
            for f in (input_files(man) if man is not None else [])]
    if rows:
        s.blocks.append(ctx.table(
            ctx.t("tab_inputs"),
            [ctx.t("col_file"), ctx.t("col_table"), ctx.t("col_rows"), ctx.t("col_size"), ctx.t("col_hash")],
            rows, align=["l", "l", "r", "r", "l"], cls="small hashes", annex=True,
            note=ctx.t("repro_hash_note")))
    s.blocks.append(provenance_table(ctx))
    versions = software_versions()
    s.blocks.append(ctx.table(ctx.t("tab_versions"), [ctx.t("col_software"), ctx.t("col_version")],
                              [[k, v] for k, v in versions.items()], align=["l", "l"], annex=True))
    rows = []
    for section, step in SECTION_SOURCES:
        # The study section is the live one: the saved copies lose the order of the regions.
        if step is None:
            settings = ctx.config.section(section)
        else:
            params = ctx.params(step)
            if params is None or section not in params.sections:
                continue
            settings = params.config.section(section)
        for k, v in flatten(settings).items():
            if k in ("regions", "title_fr", "title_en"):
                continue
            rows.append([ctx.t(f"settings_{section}"), Markup(f"<code>{escape(k)}</code>"), ctx.parameter(v)])
    s.blocks.append(ctx.table(ctx.t("tab_params"), [ctx.t("col_section"), ctx.t("param"), ctx.t("value")],
                              rows, align=["l", "l", "l"], cls="small wrap", annex=True))
    return s


def input_label(key: str) -> str:
    """An input as the reader needs it: a file outside the build by its name only (no local path)."""
    kind, sep, name = key.partition(":")
    return f"{kind}:{Path(name).name}" if sep and kind == "file" else key


def provenance_table(ctx: ReportContext) -> Block:
    """One row per step of the chain the report was rendered from (pipeline/provenance.py): when it
    finished, the hash of its settings and code, and the hash of every input it read. The report
    renders only a consistent chain (``check_chain`` at the start of ``reports.build.run``)."""
    rows = []
    for rec in build_chain(BuildPaths(ctx.results.root)):
        inputs = Markup("<br>").join(Markup(f"{escape(input_label(k))} <code>{escape(v[:12])}</code>")
                                     for k, v in sorted(rec.inputs.items())) or MISSING
        rows.append([ctx.t(f"step_{rec.step}"), rec.finished_at[:19].replace("T", " "),
                     Markup(f"<code>{escape(rec.settings_hash[:12])}</code>"),
                     Markup(f"<code>{escape(rec.code[:12])}</code>"), inputs])
    return ctx.table(ctx.t("tab_provenance"),
                     [ctx.t("col_step"), ctx.t("col_finished"), ctx.t("col_settings_hash"),
                      ctx.t("col_code_hash"), ctx.t("col_inputs")],
                     rows, align=["l", "l", "l", "l", "l"], cls="small hashes", annex=True,
                     note=ctx.t("provenance_note"))


@dataclass(frozen=True)
class InputFile:
    """One file of the extract as `equilibres clean` recorded it (hash from ``inputs``, rows from
    ``input_checks``)."""

    file: str
    table: str
    rows: int | None
    size: int | None
    sha256: str


def input_files(manifest: CleanFacts) -> list[InputFile]:
    """Every input file of clean/manifest.json, one per file (a table may span several files)."""
    out = [InputFile(Path(f.file).name, f.table, manifest.rows_of(f.file), f.size, f.sha256)
           for f in manifest.input_files()]
    return sorted(out, key=lambda f: f.file)


def software_versions() -> dict[str, str]:
    """The versions of the software rendering the report (the cleaning code's own version and hash are
    in the provenance table)."""
    versions = {"python": platform.python_version()}
    for name in (*SOFTWARE, "equilibres-eval"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
