"""Run every benchmark (`make bench`); each writes its own JSON under benchmarks/results/.

`python -m benchmarks.run_all --quick` runs the tiny versions (seconds) to check they still work.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

BENCHMARKS = ["bench_generate", "bench_clean", "bench_matching", "bench_indicators", "bench_surveys",
              "bench_coverage", "bench_rematch", "bench_sweep"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny versions, to check they run")
    parser.add_argument("--only", nargs="*", default=None, help="subset of: " + " ".join(BENCHMARKS))
    args = parser.parse_args(argv)
    failed = []
    for name in args.only or BENCHMARKS:
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as err:
            print(f"   missing: {err}")
            failed.append(name)
            continue
        rc = module.main(["--quick"] if args.quick else [])
        print(f"   done in {time.perf_counter() - t0:.1f} s (exit {rc or 0})", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
