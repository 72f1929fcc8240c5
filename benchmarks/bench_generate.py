"""Benchmark: wall time, CPU time and peak memory of `equilibres generate` (not a test).

Runs the generator in a subprocess and writes benchmarks/results/generate.json. The generator forks
worker processes (``--workers``), so the peak memory is the peak of the *sum* of the resident sizes of
the whole process tree, sampled every 0.1 s from /proc (an upper bound: pages shared after the fork
count once per process); the CPU time is that of the subprocess and all its descendants
(``getrusage(RUSAGE_CHILDREN)``). Default: scale 1 (the full study size); ``--quick``: scale 0.01.

Issue 20 sets the target at ``TARGET_LINES_PER_SECOND`` ER_PRS_F lines a second (wall clock) at scale 1
on 2 cores; the result says whether it was met. On a shared machine the wall clock also measures the
other processes: the CPU time per line and the load average before and after are recorded beside it.

    python -m benchmarks.bench_generate [--quick] [--scale S] [--seed N] [--workers W] [--format parquet|csv|xpt]
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
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "generate.json"
TARGET_LINES_PER_SECOND = 1_500_000  # issue 20: ER_PRS_F lines a second at scale 1 on 2 cores
METHOD = ("One `generate_extract` call in a fresh subprocess (the CLI's code path, parquet, default workers), "
          "timed from spawn to exit; wall and CPU time of the process tree; ER_PRS_F lines / wall seconds. "
          "Old-versus-new comparisons alternate the two versions (ABBA) on the same machine.")

# The subprocess: generate_extract with an explicit number of workers (the CLI uses the default).
_RUN = ("import sys; from pathlib import Path; from data_samples.generator import generate_extract; "
        "from pipeline.config import load_config; "
        "generate_extract(Path(sys.argv[1]), scale=float(sys.argv[2]), seed=int(sys.argv[3]), truth_path=None, "
        "fmt=sys.argv[4], confounding=None, config=load_config(), "
        "workers=None if sys.argv[5] == 'default' else int(sys.argv[5]))")


def _tree_rss_bytes(root: int) -> int:
    """Sum of VmRSS of ``root`` and its descendants (Linux /proc); 0 where /proc is unavailable."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    stat = f.read()
                parents[int(entry.name)] = int(stat[stat.rindex(b")") + 2:].split()[1])
            except (OSError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier += kids
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def _sample_peak(proc: subprocess.Popen, peak: list[int]) -> None:
    while proc.poll() is None:
        peak[0] = max(peak[0], _tree_rss_bytes(proc.pid))
        time.sleep(0.1)


def run(scale: float, seed: int, fmt: str, workers: str = "default", keep: Path | None = None) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench_generate_"))
    out = keep or workdir / "extract"
    cmd = [sys.executable, "-c", _RUN, str(out), str(scale), str(seed), fmt, workers]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    sampler = threading.Thread(target=_sample_peak, args=(proc, peak), daemon=True)
    sampler.start()
    _, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"generate failed ({proc.returncode}):\n{stderr[-2000:]}")
    truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    from data_samples.generator import DEFAULT_WORKERS

    lines = truth["counts"]["er_prs_f_lines"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result = {
        "command": f"equilibres generate --scale {scale} --seed {seed} --format {fmt} --out DIR",
        "scale": scale, "seed": seed, "format": fmt,
        "workers": DEFAULT_WORKERS if workers == "default" else int(workers),
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "peak_rss_tree_mib": round(peak[0] / 2**20, 1),
        # ru_maxrss: the largest single process (KiB on Linux), for comparison with older runs
        "peak_rss_largest_process_mib": round(after.ru_maxrss / 1024, 1),
        "output_mib": round(size / 2**20, 1),
        "counts": truth["counts"],
        "er_prs_f_lines_per_second": round(lines / wall),
        "target_lines_per_second": TARGET_LINES_PER_SECOND,
        "meets_target": lines / wall >= TARGET_LINES_PER_SECOND if scale == 1 else None,
        "cpu_microseconds_per_line": round(cpu / lines * 1e6, 3),
        "load_average_1min_before": round(load_before, 2),
        "load_average_1min_after": round(os.getloadavg()[0], 2),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        "versions": _versions(),
        "method": METHOD,
        "date": time.strftime("%Y-%m-%d"),
    }
    if keep is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("numpy", "pyarrow", "equilibres-eval")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="scale 0.01 (seconds)")
    ap.add_argument("--scale", type=float, default=None)
    ap.add_argument("--seed", type=int, default=20240101)
    ap.add_argument("--workers", default="default", help="worker processes (default: the generator's default)")
    ap.add_argument("--format", default="parquet")
    args = ap.parse_args(argv)
    scale = args.scale if args.scale is not None else (0.01 if args.quick else 1.0)
    result = run(scale, args.seed, args.format, args.workers)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    runs = previous.get("runs", {}) if isinstance(previous, dict) else {}
    runs[f"scale_{scale:g}_{args.format}_w{result['workers']}"] = result
    # other keys (a recorded old-versus-new comparison, earlier generators' runs) are kept as they are
    doc = {**(previous if isinstance(previous, dict) else {}), "benchmark": "equilibres generate", "runs": runs}
    RESULTS.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=2))
    verdict = "meets" if result["meets_target"] else "misses" if result["meets_target"] is False else "n/a for"
    print(f"{result['er_prs_f_lines_per_second'] / 1e6:.2f} M ER_PRS_F lines/s at scale {scale:g} ({verdict} the "
          f"target {TARGET_LINES_PER_SECOND / 1e6:.1f} M lines/s at scale 1); {result['cpu_microseconds_per_line']} "
          f"CPU µs a line; load average {result['load_average_1min_before']} before, "
          f"{result['load_average_1min_after']} after")
    return 0


if __name__ == "__main__":
    main()
