"""Section 10: how to reproduce the report (input hashes, software versions, the settings each step
saved)."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from reports.context import ReportContext, Section
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
        *([("Code", str(man.get("code_version")))] if man.get("code_version") else []),
    ]})
    rows = [[Markup(f"<code>{escape(name)}</code>"), Markup(f"<code>{escape(h)}</code>")]
            for name, h in input_hashes(man)]
    if rows:
        s.blocks.append(ctx.table(ctx.t("tab_inputs"), [ctx.t("col_file"), ctx.t("col_hash")], rows,
                                  align=["l", "l"], cls="small hashes"))
    versions = software_versions(man)
    s.blocks.append(ctx.table(ctx.t("tab_versions"), [ctx.t("col_software"), ctx.t("col_version")],
                              [[k, v] for k, v in versions.items()], align=["l", "l"]))
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
            rows.append([section, Markup(f"<code>{escape(k)}</code>"), ctx.parameter(v)])
    s.blocks.append(ctx.table(ctx.t("tab_params"), [ctx.t("col_section"), ctx.t("param"), ctx.t("value")],
                              rows, align=["l", "l", "l"], cls="small wrap"))
    return s


def input_hashes(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(file name, hash) of the extract's inputs from clean/manifest.json ``inputs``."""
    inputs = manifest.get("inputs") or {}
    out: list[tuple[str, str]] = []
    for name, v in inputs.items():
        h = v.get("sha256") if isinstance(v, dict) else v
        out.append((Path(str(name)).name, str(h or MISSING)))
    return sorted(out)


def software_versions(manifest: dict[str, Any]) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in (*SOFTWARE, "equilibres-eval"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    recorded = manifest.get("versions") or {}
    for k, v in recorded.items():
        if str(v) != versions.get(k):
            versions[f"{k} (clean)"] = str(v)
    return versions
