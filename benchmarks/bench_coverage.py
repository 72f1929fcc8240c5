"""Coverage of the headline 95 % intervals over many seeds, with the SHIPPED study configuration.

For each truth file (default, no effect, mortality effect) and each seed: generate a synthetic extract,
clean, match, compute the indicators, and check whether each headline interval contains its planted
truth (data_samples/truth_check.py). Writes benchmarks/results/coverage.json (``--quick``:
coverage_quick.json): per truth file and headline, the share of seeds covered, the mean estimate and the
mean truth (bias). Too slow for the test suite; the end-to-end test runs a few fixed seeds.

    python -m benchmarks.bench_coverage --seeds 20 --scale 0.03
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from data_samples import generator
from data_samples.truth_check import HEADLINE_TRUTH, compare
from pipeline import runner
from pipeline.config import load_config

RESULTS = Path(__file__).parent / "results"
TRUTHS = ("truth_default.toml", "truth_null.toml", "truth_mortality.toml")


def run_one(work: Path, seed: int, truth_file: str, scale: float) -> dict:
    from indicators import study as indicators_study
    from matching import study as matching_study
    from pipeline.paths import BuildPaths

    config = load_config()
    data, build = work / "extract", work / "build"
    generator.generate_extract(data, scale=scale, seed=seed, truth_path=Path(generator.__file__).parent / truth_file,
                               fmt="parquet", confounding=None, config=config)
    paths = BuildPaths(build, data)
    runner.run(paths, config)
    matching_study.run(paths, config)
    res = indicators_study.run(paths, config)
    truth = json.loads((data / "truth.json").read_text())["indicators"]
    return compare({r.id: r for r in res.records}, truth)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--scale", type=float, default=0.03)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="2 seeds of the default truth only")
    args = ap.parse_args(argv)
    truths = TRUTHS[:1] if args.quick else TRUTHS
    seeds = 2 if args.quick else args.seeds
    t0 = time.perf_counter()
    summary: dict[str, dict] = {}
    for truth_file in truths:
        per_id: dict[str, list[dict]] = {k: [] for k in HEADLINE_TRUTH}
        for k in range(seeds):
            work = Path(tempfile.mkdtemp(prefix="bench_cov_"))
            try:
                res = run_one(work, args.first_seed + k, truth_file, args.scale)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            for id_, r in res.items():
                per_id[id_].append(r)
            print(f"{truth_file} seed {args.first_seed + k}: "
                  + ", ".join(f"{i}={'ok' if r['covered'] else 'MISS'}" for i, r in res.items()), flush=True)
        summary[truth_file] = {}
        for id_, rs in per_id.items():
            ok = [r for r in rs if r["covered"] is not None]
            summary[truth_file][id_] = {
                "runs": len(ok),
                "coverage": round(float(np.mean([r["covered"] for r in ok])), 3) if ok else None,
                "mean_estimate": float(np.mean([r["value"] for r in ok])) if ok else None,
                "mean_truth": float(np.mean([r["truth"] for r in ok])) if ok else None,
            }
    doc = {"benchmark": "coverage", "scale": args.scale, "seeds": seeds, "first_seed": args.first_seed,
           "configuration": "shipped (pipeline/config/equilibres.toml)",
           "seconds": round(time.perf_counter() - t0, 1), "results": summary}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("coverage_quick.json" if args.quick else "coverage.json")
    out.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
