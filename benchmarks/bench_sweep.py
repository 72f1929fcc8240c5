"""Benchmark of the sweep stage (`equilibres sweep` on a fresh build: every specification computed).

    python -m benchmarks.bench_sweep --build BUILD [--workers 1 2] [--label scale_0.25]
    python -m benchmarks.bench_sweep --quick        # the committed sample, in a temporary build

BUILD must hold a complete run (``equilibres run``: cleaning and matching done). It is copied first
(hard links for the parquet files, which are never rewritten in place) and the copy's sweep cache is
emptied, so every specification is computed, as in `make report` from a fresh clone; the build given
is left as it is. For each value of ``--workers`` (the ``[sweep] workers`` setting; 1 = one process,
the sequential sweep) the sweep is run once on its own copy, and the tables are compared: they must be
identical (``identical_to_first``).

Wall seconds and CPU seconds are recorded; CPU seconds include the worker processes
(``getrusage(RUSAGE_CHILDREN)``, counted once the pool has shut down), so they are the comparable
figure on a shared machine. The load average is recorded before and after. Results:
benchmarks/results/sweep.json (sweep_quick.json for ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "sweep.json"
SAMPLE = ROOT / "data_samples" / "sample"


def _cpu() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"self": own.ru_utime + own.ru_stime, "children": children.ru_utime + children.ru_stime}


def _copy(build: Path, dest: Path) -> Path:
    from benchmarks.bench_rematch import _copy as copy_build

    copy_build(build, dest)
    shutil.rmtree(dest / "tmp" / "sweep_cache", ignore_errors=True)
    return dest


def sweep_once(build: Path, workers: int, config_path: Path | None) -> tuple[dict[str, Any], Any]:
    """One sweep of ``build`` (every specification computed) with ``[sweep] workers = workers``."""
    from pipeline.config import load_config
    from pipeline.paths import BuildPaths
    from study import sweep as sweep_study

    config = load_config(config_path).with_overrides({"sweep": {"workers": workers}})
    c0, t0 = _cpu(), time.perf_counter()
    result = sweep_study.run(BuildPaths(build), config)
    wall, c1 = time.perf_counter() - t0, _cpu()
    cpu_self, cpu_children = c1["self"] - c0["self"], c1["children"] - c0["children"]
    return {
        "workers_setting": workers,
        "workers_used": result.workers,
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu_self + cpu_children, 2),
        "cpu_seconds_parent": round(cpu_self, 2),
        "cpu_seconds_workers": round(cpu_children, 2),
        "n_computed": result.n_computed,
        "n_cached": result.n_cached,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }, result.frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the committed sample, built in a temporary directory")
    parser.add_argument("--build", type=Path, help="a complete build (left untouched; default build/)")
    parser.add_argument("--config", type=Path, default=None, help="the study file BUILD was run with")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="[sweep] workers values to time, in order (1 = sequential)")
    parser.add_argument("--label", default=None, help="recorded with the results (e.g. the scale)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    results: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                               "cpus": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
                               "label": args.label or ("sample" if args.quick else None), "runs": []}
    try:
        if args.quick:
            from pipeline.config import load_config
            from pipeline.paths import BuildPaths
            from study.chain import run_chain

            build = work / "base"
            run_chain(BuildPaths(build, SAMPLE), load_config(args.config), pdf=False, report_too=False,
                      sweep=False, sensitivity=False)
        else:
            build = args.build or ROOT / "build"
            if not (build / "matching" / "matched.parquet").exists():
                parser.error(f"{build} holds no matching: give --build a complete build (`equilibres run`)")
        results["build"] = str(build)
        first = None
        for i, workers in enumerate(args.workers):
            print(f"sweep with workers = {workers} ...", flush=True)
            run, frame = sweep_once(_copy(build, work / f"w{i}"), workers, args.config)
            frame = frame.drop(columns="seconds")  # per-row timings are run records
            run["identical_to_first"] = True if first is None else bool(frame.equals(first))
            first = frame if first is None else first
            results["runs"].append(run)
            print(json.dumps(run), flush=True)
            shutil.rmtree(work / f"w{i}", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    target = RESULTS.with_name("sweep_quick.json") if args.quick else RESULTS
    previous = json.loads(target.read_text(encoding="utf-8")) if target.exists() and not args.quick else {}
    history = [r for r in previous.get("results", []) if r.get("label") != results["label"]] + [results]
    target.parent.mkdir(parents=True, exist_ok=True)
    # Other top-level keys (notes written by hand, with how they were taken) are kept.
    target.write_text(json.dumps({**previous, "results": history}, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0 if all(r["identical_to_first"] for r in results["runs"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
