"""Benchmark of `equilibres match` as a command (issue 13: "at scale 1 under 10 s"; issue 18: the
analyst's re-match takes seconds).

    python -m benchmarks.bench_match_step --build BUILD --label scale_0.25 [--repeat 3] [--caliper 0.1]
    python -m benchmarks.bench_match_step --build BUILD_X4 --label "scale_1 (replicated cohort)"
    python -m benchmarks.bench_match_step --build BUILD --source /path/to/other/checkout --label before

BUILD must hold a cleaned cohort (``equilibres clean``) and a first matching (so that the 'before'
balance rows, which do not depend on the matching settings, are in ``matching/cache``, as they are
after `equilibres run`): the loop timed is the analyst's re-match with another caliper. A scale-1
build is made from a scale-0.25 one by benchmarks/replicated_build.py (a REPLICATED cohort: cleaning
a scale-1 extract takes about 20 minutes on 2 cores). BUILD is copied first (hard links for the
parquet files), so it is left as it is.

Each run is one process, ``python -m study.cli match --out COPY --caliper C`` (process start and
imports included), run from ``--source`` (default: this checkout; another checkout of the project
times its code on the same data, e.g. the code before a change). Wall seconds, user and system CPU
seconds and the peak RSS of the process are recorded (``os.wait4``), with the load average: on a
shared machine, user CPU seconds are the comparable figure, system seconds (page faults of fresh
memory) and wall seconds move with the load. The command applies its process settings
(study/process.py: Arrow's system pool, no NumPy huge pages, glibc's malloc keeping freed memory);
``--allocator default`` times it with the libraries' own (``EQUILIBRES_ALLOCATOR=default``); the
variables those settings set are removed from the environment the benchmark passes on, so that
both are what a user gets. Results: benchmarks/results/match_step.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "match_step.json"


#: Set by study/process.py for the command and its children: not passed on from this process.
PROCESS_VARIABLES = ("ARROW_DEFAULT_MEMORY_POOL", "NUMPY_MADVISE_HUGEPAGE", "MALLOC_MMAP_MAX_",
                     "MALLOC_TRIM_THRESHOLD_", "EQUILIBRES_ALLOCATOR")


def match_once(source: Path, build: Path, caliper: float, allocator: str = "tuned") -> dict[str, Any]:
    """One `equilibres match` process on ``build``: its wall, user, system seconds and peak RSS."""
    command = [sys.executable, "-m", "study.cli", "match", "--out", str(build), "--caliper", str(caliper)]
    env = {k: v for k, v in os.environ.items() if k not in PROCESS_VARIABLES} | {"EQUILIBRES_ALLOCATOR": allocator}
    load = os.getloadavg()
    t0 = time.perf_counter()
    process = subprocess.Popen(command, cwd=source, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - t0
    out, err = process.communicate()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed:\n{err.decode()[-2000:]}")
    params = json.loads((build / "matching" / "params.json").read_text(encoding="utf-8"))
    return {"seconds": round(wall, 2), "user_seconds": round(usage.ru_utime, 2),
            "system_seconds": round(usage.ru_stime, 2), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "seconds_in_step": params.get("seconds"),
            "eligible_rows": params.get("sizes", {}).get("eligible_rows"),
            "treated": params.get("sizes", {}).get("treated"),
            "load_average_before": [round(x, 2) for x in load]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", type=Path, required=True, help="a build with a cohort and a first matching")
    parser.add_argument("--label", required=True, help="recorded with the results (e.g. the scale)")
    parser.add_argument("--source", type=Path, default=ROOT, help="the checkout whose code is timed (this one)")
    parser.add_argument("--caliper", type=float, default=0.1, help="the caliper of the re-match (0.1)")
    parser.add_argument("--repeat", type=int, default=3, help="runs (3); the median is reported")
    parser.add_argument("--note", default="", help="recorded with the results")
    parser.add_argument("--allocator", choices=("tuned", "default"), default="tuned",
                        help="the command's process settings (tuned, study/process.py) or the libraries' own")
    args = parser.parse_args(argv)
    if not (args.build / "clean" / "cohort.parquet").exists():
        parser.error(f"{args.build} holds no cleaned cohort: run `equilibres clean`, or benchmarks/replicated_build.py")
    from benchmarks.bench_rematch import _copy

    work = Path(tempfile.mkdtemp(prefix="bench_match_"))
    try:
        build = _copy(args.build, work / "build")
        runs = [match_once(args.source.resolve(), build, args.caliper, args.allocator) for _ in range(args.repeat)]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def median(key: str) -> float:
        values = sorted(r[key] for r in runs)
        return values[len(values) // 2]

    result = {"label": args.label, "source": str(args.source.resolve()), "build": str(args.build.resolve()),
              "caliper": args.caliper, "allocator": args.allocator, "note": args.note,
              "python": platform.python_version(),
              "machine": platform.machine(), "cpus": os.cpu_count(),
              "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              **{f"median_{k}": median(k) for k in ("seconds", "user_seconds", "system_seconds", "cpu_seconds")},
              "runs": runs}
    previous = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
    results = [r for r in previous.get("results", []) if r.get("label") != args.label] + [result]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    # Other top-level keys (notes written by hand, with how they were taken) are kept.
    RESULTS.write_text(json.dumps({**previous, "results": results}, indent=2, ensure_ascii=False), encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
