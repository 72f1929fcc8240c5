"""Benchmark: wall time and peak memory of `equilibres generate` (not a test).

Runs the generator in a subprocess (so its peak RSS is measured alone, with resource.getrusage on
the child) and writes benchmarks/results/generate.json. Default: scale 1 (the full study size);
``--quick``: scale 0.01, a few seconds.

    python -m benchmarks.bench_generate [--quick] [--scale S] [--seed N] [--format parquet|csv|xpt]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "generate.json"


def run(scale: float, seed: int, fmt: str, keep: Path | None = None) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench_generate_"))
    out = keep or workdir / "extract"
    cmd = [sys.executable, "-m", "pipeline.cli", "generate", "--scale", str(scale), "--seed", str(seed),
           "--format", fmt, "--out", str(out)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"generate failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    result = {
        "command": " ".join(["equilibres", *cmd[3:]]),
        "scale": scale, "seed": seed, "format": fmt,
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2),
        # ru_maxrss is the peak of the largest child so far, in KiB on Linux
        "peak_rss_mib": round(after.ru_maxrss / 1024, 1),
        "output_mib": round(size / 2**20, 1),
        "counts": truth["counts"],
        "er_prs_f_lines_per_second": round(truth["counts"]["er_prs_f_lines"] / wall),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": __import__("os").cpu_count()},
        "date": time.strftime("%Y-%m-%d"),
    }
    if keep is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="scale 0.01 (seconds)")
    ap.add_argument("--scale", type=float, default=None)
    ap.add_argument("--seed", type=int, default=20240101)
    ap.add_argument("--format", default="parquet")
    args = ap.parse_args(argv)
    scale = args.scale if args.scale is not None else (0.01 if args.quick else 1.0)
    result = run(scale, args.seed, args.format)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    runs = previous.get("runs", {}) if isinstance(previous, dict) else {}
    runs[f"scale_{scale:g}_{args.format}"] = result
    RESULTS.write_text(json.dumps({"benchmark": "equilibres generate", "runs": runs}, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    main()
