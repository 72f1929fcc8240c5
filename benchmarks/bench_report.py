"""CPU cost of rendering the report (issue 18's loop ends with it): HTML sections, charts, PDF layout.

    python -m benchmarks.bench_report --build BUILD [--data EXTRACT] [--lang fr] [--repeat 2] [--profile N]

BUILD must hold a complete run (``equilibres run``); its ``report/`` is rewritten, nothing else. Each
repeat renders the report in-process through :func:`reports.build.run` and records, per phase, the
wall and CPU seconds of the process (``getrusage``: the machine may be shared, CPU is the comparable
figure): loading the results, building the sections (charts included), WeasyPrint's layout and the
PDF writing. ``--profile N`` prints the N most expensive functions (cumulative) of one more render.
Prints one JSON object; recording it is left to the caller (benchmarks/results/rematch.json,
key ``report_render``).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import time
from pathlib import Path
from typing import Any


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Clock:
    """Wall and CPU seconds of named phases."""

    def __init__(self) -> None:
        self.phases: dict[str, dict[str, float]] = {}

    def __call__(self, name: str, fn, *args, **kwargs):
        w, c = time.perf_counter(), _cpu()
        out = fn(*args, **kwargs)
        self.phases[name] = {"wall_s": round(time.perf_counter() - w, 2), "cpu_s": round(_cpu() - c, 2)}
        return out


def render_once(paths, config) -> dict[str, Any]:
    from weasyprint import HTML

    from reports import build as report_build
    from reports.loaders import load_build

    clock = Clock()
    w0, c0 = time.perf_counter(), _cpu()
    results = clock("load", load_build, paths)
    html, ctx, _sections = clock("html_sections_and_charts", report_build.render_html, results, config)
    document = clock("pdf_layout", lambda: HTML(string=html, base_url=str(paths.root)).render())
    pdf = clock("pdf_write", lambda: document.write_pdf(pdf_tags=True))
    total = {"wall_s": round(time.perf_counter() - w0, 2), "cpu_s": round(_cpu() - c0, 2)}
    # The step as `equilibres report` runs it (chain check, privacy scan, atomic writes) on top.
    clock("report_step_run", report_build.run, paths, config)
    return {"phases": clock.phases, "render_total": total, "pages": len(document.pages),
            "pdf_bytes": len(pdf), "html_bytes": len(html.encode()), "figures": ctx.n_figures, "tables": ctx.n_tables}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--lang", default="fr")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--profile", type=int, default=0)
    args = parser.parse_args(argv)

    c_import, w_import = _cpu(), time.perf_counter()
    import matplotlib  # noqa: F401
    import weasyprint  # noqa: F401

    from pipeline.config import load_config
    from pipeline.paths import BuildPaths
    from reports import build  # noqa: F401
    imports = {"wall_s": round(time.perf_counter() - w_import, 2), "cpu_s": round(_cpu() - c_import, 2)}

    config = load_config().with_overrides({"report": {"lang": args.lang}})
    paths = BuildPaths(args.build, args.data)
    runs = [render_once(paths, config) for _ in range(args.repeat)]
    out = {"build": str(args.build), "lang": args.lang, "load_average": [round(x, 2) for x in os.getloadavg()],
           "imports": imports, "runs": runs}
    print(json.dumps(out, indent=2))
    if args.profile:
        from reports.build import run

        prof = cProfile.Profile()
        prof.enable()
        run(paths, config)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(args.profile)


if __name__ == "__main__":
    main()
