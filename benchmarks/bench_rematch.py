"""Benchmark of the analyst's loop of issue 18: re-match with another caliper, then the new report.

    python -m benchmarks.bench_rematch [--data EXTRACT --build BUILD] [--caliper 0.05] [--no-pdf]
    python -m benchmarks.bench_rematch --quick        # the committed sample, in a temporary build

BUILD (default build/, with the newest data/extract_* as EXTRACT: what `make report` leaves) must
already hold a complete run of EXTRACT (``equilibres run``); it is copied first (hard
links for the cleaned tables, which are never rewritten in place), so the build given is left as it
is. Three loops are timed on the copy, each from the same starting state:

* ``match_cli``: ``equilibres match --caliper C`` as a command (process start included: issue 13
  asks < 10 s at scale 1), with the in-step time it records in matching/params.json;
* ``rematch_then_report``: ``equilibres match --caliper C`` then ``equilibres report --refresh``
  (indicators and sensitivity recomputed on the new matching, then the report);
* ``run_with_new_caliper``: ``equilibres run --config`` a study file with ``[matching] caliper = C``:
  matching, indicators, the sweep (only its new main specification computed, study/sweep_cache.py),
  sensitivity and the report; cleaning and the surveys reused;
* ``match_then_run`` (issue 18 item 2, the analyst's loop as two commands): ``equilibres match
  --config S`` (S: the study file with ``caliper = C``; as a command) then ``equilibres run --config
  S``, which reuses that matching, cleaning and the surveys and recomputes the indicators, the
  sweep's main specification, the sensitivity analyses and the report.

Steps run in-process through :mod:`study.chain`, timed one by one (``seconds_by_step``), with the
process settings of the `equilibres` command (study/process.py; ``--allocator default`` for the
libraries' own); the CPU time of the process is recorded beside the wall time, since the machine may
be shared. Commands run from this checkout (``python -m study.cli``). A replicated scale-1 build
(benchmarks/replicated_build.py) reuses its cleaning when ``--data`` is the extract of the build it
was replicated from. Results: benchmarks/results/rematch.json (rematch_quick.json for ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "rematch.json"
SAMPLE = ROOT / "data_samples" / "sample"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _copy(build: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)

    def link_or_copy(src: str, dst: str) -> None:
        # Parquet outputs are replaced atomically, never written in place: a hard link is safe (and
        # keeps the modification time the provenance records). Logs are appended to: copied.
        if src.endswith(".parquet"):
            try:
                os.link(src, dst)
                return
            except OSError:
                pass
        shutil.copy2(src, dst)

    shutil.copytree(build, dest, copy_function=link_or_copy, ignore=shutil.ignore_patterns(".lock", "rollback", "duckdb_spill", "spark"))
    return dest


class Timer:
    """on_step / on_result callbacks of the chain: seconds (wall) and CPU seconds of every step."""

    def __init__(self) -> None:
        self.steps: dict[str, dict[str, float]] = {}
        self._t: tuple[str, float, float] | None = None

    def start(self, name: str) -> None:
        self._t = (name, time.perf_counter(), _cpu())

    def done(self, name: str, result: Any) -> None:
        if self._t is not None and self._t[0] == name:
            self.steps[name] = {"seconds": round(time.perf_counter() - self._t[1], 2),
                                "cpu_seconds": round(_cpu() - self._t[2], 2)}
            for attr in ("n_computed", "n_cached"):
                if hasattr(result, attr):
                    self.steps[name][attr] = getattr(result, attr)
        self._t = None


LOOPS = ("match_cli", "rematch_then_report", "run_with_new_caliper", "match_then_run")


def match_cli(build: Path, caliper: float | None, study: Path | None) -> dict[str, Any]:
    """`equilibres match` as a command of this checkout: wall, user and system seconds, peak RSS."""
    command = [sys.executable, "-m", "study.cli", "match", "--out", str(build)]
    command += ["--caliper", str(caliper)] if caliper is not None else []
    command += ["--config", str(study)] if study is not None else []
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - t0
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"`{' '.join(command)}` failed:\n{err.read().decode()[-2000:]}")
    params = json.loads((build / "matching" / "params.json").read_text(encoding="utf-8"))
    return {"seconds_command": round(wall, 2), "user_seconds": round(usage.ru_utime, 2),
            "system_seconds": round(usage.ru_stime, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "seconds_in_step": params.get("seconds")}


def match_then_run(build: Path, data: Path, caliper: float, pdf: bool, work: Path,
                   base: Path | None) -> dict[str, Any]:
    """The analyst's loop of issue 18 item 2: `equilibres match --config S` (the command), then
    `equilibres run --config S` (in-process, step by step), S with the new caliper."""
    from pipeline.config import load_config
    from pipeline.paths import BuildPaths
    from study.chain import run_chain

    study = study_file(base, caliper, work)
    matched = match_cli(build, None, study)
    timer = Timer()
    t0, c0 = time.perf_counter(), _cpu()
    chain = run_chain(BuildPaths(build, data), load_config(study), pdf=pdf, on_step=timer.start,
                      on_result=timer.done)
    run = {"seconds": round(time.perf_counter() - t0, 2), "cpu_seconds": round(_cpu() - c0, 2),
           "ran": chain.ran, "reused": chain.reused, "seconds_by_step": timer.steps}
    return {"seconds": round(matched["seconds_command"] + run["seconds"], 2), "match_command": matched,
            "run": run}


def study_file(base: Path | None, caliper: float, work: Path) -> Path:
    """The study file of the build (``base``; none: the default) with ``[matching] caliper = C``."""
    text = base.read_text(encoding="utf-8") if base is not None else ""
    study = work / "rematch.toml"
    study.write_text(text.replace("[matching]\n", f"[matching]\ncaliper = {caliper}\n") if "[matching]\n" in text
                     else text + f"\n[matching]\ncaliper = {caliper}\n", encoding="utf-8")
    return study


def rematch_then_report(build: Path, data: Path, caliper: float, pdf: bool, study: Path | None) -> dict[str, Any]:
    from pipeline.config import load_config
    from pipeline.paths import BuildPaths
    from study.chain import report, run_step

    config, paths, timer = load_config(study), BuildPaths(build, data), Timer()
    t0, c0 = time.perf_counter(), _cpu()
    timer.start("match")
    timer.done("match", run_step(paths, config.with_overrides({"matching": {"caliper": caliper}}), "match"))
    t1, c1 = time.perf_counter(), _cpu()
    report(paths, config, pdf=pdf, refresh=True, on_step=timer.start, on_result=timer.done)
    refreshed = [v for k, v in timer.steps.items() if k != "match"]
    timer.steps["report"] = {"seconds": round(time.perf_counter() - t1 - sum(v["seconds"] for v in refreshed), 2),
                             "cpu_seconds": round(_cpu() - c1 - sum(v["cpu_seconds"] for v in refreshed), 2)}
    return {"seconds": round(time.perf_counter() - t0, 2), "cpu_seconds": round(_cpu() - c0, 2),
            "refreshed": [k for k in timer.steps if k not in ("match", "report")], "seconds_by_step": timer.steps}


def run_with_new_caliper(build: Path, data: Path, caliper: float, pdf: bool, work: Path,
                         base: Path | None) -> dict[str, Any]:
    from pipeline.config import load_config
    from pipeline.paths import BuildPaths
    from study.chain import run_chain

    study = study_file(base, caliper, work)
    timer = Timer()
    t0, c0 = time.perf_counter(), _cpu()
    chain = run_chain(BuildPaths(build, data), load_config(study), pdf=pdf, on_step=timer.start,
                      on_result=timer.done)
    return {"seconds": round(time.perf_counter() - t0, 2), "cpu_seconds": round(_cpu() - c0, 2),
            "ran": chain.ran, "reused": chain.reused, "seconds_by_step": timer.steps}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the committed sample, built in a temporary directory")
    parser.add_argument("--data", type=Path, help="the extract BUILD was run on")
    parser.add_argument("--build", type=Path, help="a complete build of --data (left untouched)")
    parser.add_argument("--caliper", type=float, default=0.05)
    parser.add_argument("--pdf", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--label", default=None, help="recorded with the results (e.g. the scale)")
    parser.add_argument("--config", type=Path, default=None,
                        help="the study file BUILD was run with (the loops keep it, caliper aside)")
    parser.add_argument("--loops", nargs="*", default=list(LOOPS), choices=LOOPS, help="which loops to time")
    parser.add_argument("--allocator", choices=("tuned", "default"), default="tuned",
                        help="the process settings of study/process.py (tuned, as `equilibres`) or the libraries' own")
    args = parser.parse_args(argv)
    # As the `equilibres` command does, before numpy and pyarrow are imported (its children inherit it).
    os.environ["EQUILIBRES_ALLOCATOR"] = args.allocator
    from study.process import apply_process_settings

    settings = apply_process_settings()
    work = Path(tempfile.mkdtemp(prefix="bench_rematch_"))
    results: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                               "cpus": os.cpu_count(), "caliper": args.caliper, "pdf": args.pdf,
                               "config": None if args.config is None else args.config.read_text(encoding="utf-8"),
                               "allocator": settings.mode,
                               "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        if args.quick:
            data, build = SAMPLE, work / "base"
            from pipeline.config import load_config
            from pipeline.paths import BuildPaths
            from study.chain import run_chain
            run_chain(BuildPaths(build, data), load_config(args.config), pdf=False)
            args.pdf = results["pdf"] = False
        else:
            # `make bench`: the build and the extract `make report` left (build/, data/extract_*).
            build = args.build or ROOT / "build"
            extracts = sorted((ROOT / "data").glob("extract_*"), key=lambda p: p.stat().st_mtime)
            data = args.data or (extracts[-1] if extracts else None)
            if data is None or not (build / "clean" / "cohort.parquet").exists():
                parser.error("give --data EXTRACT and --build BUILD (a complete run of it), or --quick; "
                             "`make report` leaves both")
        results.update(data=str(data), label=args.label or ("sample" if args.quick else str(data.name)))
        if "match_cli" in args.loops:
            print("equilibres match (command) ...", flush=True)
            results["match_cli"] = match_cli(_copy(build, work / "a"), args.caliper, args.config)
        if "rematch_then_report" in args.loops:
            print("match, then report --refresh ...", flush=True)
            results["rematch_then_report"] = rematch_then_report(_copy(build, work / "b"), data, args.caliper,
                                                                 args.pdf, args.config)
        if "run_with_new_caliper" in args.loops:
            print("run with a new caliper in the study file ...", flush=True)
            results["run_with_new_caliper"] = run_with_new_caliper(_copy(build, work / "c"), data, args.caliper,
                                                                   args.pdf, work, args.config)
        if "match_then_run" in args.loops:
            print("match (command), then run, with a new caliper in the study file ...", flush=True)
            results["match_then_run"] = match_then_run(_copy(build, work / "d"), data, args.caliper, args.pdf,
                                                       work, args.config)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    target = RESULTS.with_name("rematch_quick.json") if args.quick else RESULTS
    previous = json.loads(target.read_text(encoding="utf-8")) if target.exists() and not args.quick else {}
    runs = [r for r in previous.get("runs", []) if r.get("label") != results["label"]] + [results]
    target.parent.mkdir(parents=True, exist_ok=True)
    # Other top-level keys (measurements noted by hand, with how they were taken) are kept.
    target.write_text(json.dumps({**previous, "runs": runs}, indent=2, ensure_ascii=False))
    print(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
