"""Benchmark of `equilibres indicators`: wall time and peak memory at a given scale.

    python -m benchmarks.bench_indicators [--scale 1] [--seed S] [--quick] [--build DIR] [--data DIR]

Generates an extract (unless --data/--build is given), runs `equilibres clean` and `equilibres match`
(not timed here: they have their own benchmarks), then times `equilibres indicators` in a subprocess
so its peak RSS is measured on its own. Also times the vectorised bootstrap core alone on a
full-size problem (25 800 matched sets × 999 replicates). Results go to
benchmarks/results/indicators.json. ``--quick`` runs scale 0.01 with 199 replicates (seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "indicators.json"


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("equilibres")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "study.cli"]


_CHILD = """
import json, resource, sys
from study.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    print("PEAK_RSS_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _run(args: list[str]) -> tuple[float, float]:
    """Run a CLI command in its own Python process; return (seconds, peak RSS of that process in MiB)."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _CHILD, *args], check=True, cwd=ROOT, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - t0
    peak = next(int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("PEAK_RSS_KIB"))
    return seconds, peak / 1024.0


def bootstrap_core(n_sets: int, replicates: int, k: int = 80) -> dict:
    from indicators.bootstrap import cluster_bootstrap

    per_set = np.random.default_rng(0).gamma(2.0, 100.0, size=(n_sets, k))
    names = [f"t.s{i}" for i in range(k // 2)] + [f"c.s{i}" for i in range(k // 2)]
    t0 = time.perf_counter()
    bt = cluster_bootstrap(per_set, names, replicates, seed=1, ci_level=0.95)
    bt.estimate(lambda T: T["c.s0"] / T["c.s1"] - T["t.s0"] / T["t.s1"])
    return {"n_sets": n_sets, "replicates": replicates, "statistics": k, "seconds": round(time.perf_counter() - t0, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=20240101)
    ap.add_argument("--replicates", type=int, default=None)
    ap.add_argument("--data", type=Path, default=None, help="existing extract (skip generation)")
    ap.add_argument("--build", type=Path, default=None, help="existing build with clean + match outputs")
    ap.add_argument("--quick", action="store_true", help="scale 0.01, 199 replicates")
    args = ap.parse_args(argv)
    scale = 0.01 if args.quick else args.scale
    replicates = args.replicates or (199 if args.quick else 999)
    result: dict = {"scale": scale, "seed": args.seed, "replicates": replicates, "quick": args.quick,
                    "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                "platform": platform.platform()}}
    with tempfile.TemporaryDirectory(prefix="bench_ind_") as tmp:
        build = args.build or Path(tmp) / "build"
        if args.build is None:
            data = args.data or Path(tmp) / "extract"
            if args.data is None:
                subprocess.run([*_cli(), "generate", "--out", str(data), "--scale", str(scale), "--seed",
                                str(args.seed)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
            subprocess.run([*_cli(), "clean", "--data", str(data), "--out", str(build)], check=True, cwd=ROOT,
                           stdout=subprocess.DEVNULL)
            subprocess.run([*_cli(), "match", "--out", str(build)], check=True, cwd=ROOT,
                           stdout=subprocess.DEVNULL)
        seconds, peak = _run(["indicators", "--out", str(build), "--replicates", str(replicates)])
        params = json.loads((build / "indicators" / "params.json").read_text())
        result["indicators"] = {"seconds": round(seconds, 3), "peak_rss_mib": round(peak, 1),
                                "sizes": params.get("sizes"), "internal_seconds": params.get("seconds")}
    result["bootstrap_core"] = bootstrap_core(25_800 if not args.quick else 2_000, replicates)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
