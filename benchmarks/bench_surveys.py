"""Benchmark of the survey step: synthetic survey files, then `surveys.study.run` (validation, statistics,
figures, outputs). Writes benchmarks/results/surveys.json.

`python -m benchmarks.bench_surveys --quick` runs one repetition; the default runs five and reports
the median. Survey files are small (hundreds of rows), so this guards against regressions in the
per-item statistics and charting rather than measuring scale.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from data_samples.surveys import write_synthetic_surveys
from pipeline.config import load_config
from pipeline.paths import BuildPaths
from surveys.study import run as summarise_surveys

RESULTS = Path(__file__).parent / "results" / "surveys.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one repetition")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20240101)
    args = parser.parse_args(argv)
    repeat = 1 if args.quick else args.repeat
    cfg = load_config()
    gen, run = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat):
            root = Path(tmp) / f"r{i}"
            t0 = time.perf_counter()
            write_synthetic_surveys(root / "data", args.seed, cfg)
            t1 = time.perf_counter()
            result = summarise_surveys(BuildPaths(root / "build", root / "data"), cfg)
            t2 = time.perf_counter()
            gen.append(t1 - t0)
            run.append(t2 - t1)
    out = {
        "benchmark": "surveys", "quick": args.quick, "repeat": repeat, "seed": args.seed,
        "respondents": {s.survey_id: s.n_respondents for s in result.surveys},
        "generate_seconds_median": statistics.median(gen), "run_seconds_median": statistics.median(run),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
