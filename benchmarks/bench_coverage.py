"""Coverage and bias of the headline 95 % intervals over many seeds, with the SHIPPED study configuration.

For each truth file (default, no effect, mortality effect; any other ``data_samples/truth_*.toml`` with
``--truths``) and each seed: generate a synthetic extract, clean, match, compute the indicators, and
compare each headline with its planted truth (data_samples/truth_check.py). Per truth file and
headline, the result reports

- the mean bias (estimate − truth of the same seed) and its Monte-Carlo standard error
  (SD of the per-seed errors / √seeds), flagged ``biased`` when |bias| > 2 MC SE;
- the coverage of the interval and its Monte-Carlo SE (√(p(1−p)/seeds)), flagged ``undercovers`` when
  the coverage is more than 2 MC SE below the nominal 95 %;
- the empirical SD of the errors (``sd_error``) next to the mean CI width / (2 × 1.96), the SE the
  intervals imply (``mean_ci_implied_se``).

Every seed's raw comparison is kept under ``runs`` so the summary can be recomputed. Writes
benchmarks/results/coverage.json (``--quick``: coverage_quick.json; ``--out`` to choose). Too slow for
the test suite; the end-to-end test runs a few fixed seeds.

    python -m benchmarks.bench_coverage --seeds 40 --scale 0.03 [--budget-minutes 40] [--jobs 2]

Seeds run in rounds (one seed of every truth file per round); ``--budget-minutes`` starts no new round
after that time, so a run fills a time budget and every truth file has the same seeds. ``--jobs N``
runs N seeds at once in separate processes (each run is single-threaded for most of its time): use it
only on an otherwise idle machine; on a shared one it takes CPU from others without shortening much.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from data_samples import generator
from data_samples.truth_check import HEADLINE_TRUTH, compare
from pipeline import runner
from pipeline.config import load_config

RESULTS = Path(__file__).parent / "results"
TRUTHS = ("truth_default.toml", "truth_null.toml", "truth_mortality.toml")
NOMINAL = 0.95
FLAG_SE = 2.0  # a bias or under-coverage beyond this many Monte-Carlo SE is flagged
Z95 = 1.959964


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


def _run_seed(task: tuple[str, int, float]) -> tuple[str, int, dict, float]:
    """One (truth file, seed) in its own temporary directory; returns the comparison and CPU seconds."""
    truth_file, seed, scale = task
    cpu0 = _cpu_seconds()
    work = Path(tempfile.mkdtemp(prefix="bench_cov_"))
    try:
        res = run_one(work, seed, truth_file, scale)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return truth_file, seed, res, _cpu_seconds() - cpu0


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (the generator's worker processes)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def headline_summary(runs: list[dict]) -> dict:
    """Bias, coverage and their Monte-Carlo SEs for one headline from its per-seed comparisons."""
    ok = [r for r in runs if r.get("covered") is not None]
    n = len(ok)
    if n == 0:
        return {"runs": 0, "coverage": None, "bias": None}
    est = np.array([r["value"] for r in ok], dtype=float)
    tru = np.array([r["truth"] for r in ok], dtype=float)
    err = est - tru
    cov = np.array([r["covered"] for r in ok], dtype=float)
    width = np.array([r["ci_high"] - r["ci_low"] for r in ok], dtype=float)
    p = float(cov.mean())
    bias = float(err.mean())
    bias_se = float(err.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    cov_se = float(np.sqrt(NOMINAL * (1 - NOMINAL) / n))  # SE under the nominal rate (never 0)
    return {
        "runs": n,
        "mean_estimate": float(est.mean()),
        "mean_truth": float(tru.mean()),
        "bias": bias,
        "bias_mc_se": bias_se,
        "bias_z": bias / bias_se if bias_se and np.isfinite(bias_se) and bias_se > 0 else None,
        "biased": bool(abs(bias) > FLAG_SE * bias_se) if n > 1 and bias_se > 0 else None,
        "relative_bias": bias / float(abs(tru.mean())) if abs(tru.mean()) > 1e-12 else None,
        "coverage": round(p, 3),
        "coverage_mc_se": round(float(np.sqrt(p * (1 - p) / n)), 3),
        "coverage_mc_se_nominal": round(cov_se, 3),
        "undercovers": bool(p < NOMINAL - FLAG_SE * cov_se),
        "misses_below": int(((est < tru) & (cov == 0)).sum()),  # interval entirely below the truth
        "misses_above": int(((est > tru) & (cov == 0)).sum()),
        "sd_error": float(err.std(ddof=1)) if n > 1 else None,  # compare with mean_ci_implied_se
        "mean_ci_implied_se": float(width.mean() / (2 * Z95)),
    }


def summarise(raw: dict[str, dict[int, dict]]) -> dict[str, dict]:
    """Per truth file and headline: :func:`headline_summary` over the seeds."""
    out: dict[str, dict] = {}
    for truth_file, by_seed in raw.items():
        out[truth_file] = {id_: headline_summary([res[id_] for res in by_seed.values() if id_ in res])
                           for id_ in HEADLINE_TRUTH}
    return out


def flagged(summary: dict[str, dict]) -> list[str]:
    """Human-readable list of the headlines whose bias or coverage is flagged."""
    lines = []
    for truth_file, ids in summary.items():
        for id_, s in ids.items():
            if s.get("biased"):
                lines.append(f"{truth_file} {id_}: bias {s['bias']:+.4g} ± {s['bias_mc_se']:.2g} "
                             f"(z = {s['bias_z']:+.1f})")
            if s.get("undercovers"):
                lines.append(f"{truth_file} {id_}: coverage {s['coverage']:.3f} < {NOMINAL} − "
                             f"{FLAG_SE} × {s['coverage_mc_se_nominal']}")
    return lines


def _truth_files(names: list[str] | None) -> tuple[str, ...]:
    if not names:
        return TRUTHS
    here = Path(generator.__file__).parent
    files = tuple(n if n.endswith(".toml") else f"truth_{n}.toml" for n in names)
    missing = [f for f in files if not (here / f).exists()]
    if missing:
        raise SystemExit(f"--truths: {', '.join(missing)} not found in {here}; expected names such as "
                         f"default, null, mortality (files data_samples/truth_<name>.toml).")
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--scale", type=float, default=0.03)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--truths", nargs="*", help="truth files (default: default null mortality)")
    ap.add_argument("--jobs", type=int, default=1, help="seeds run at once (separate processes)")
    ap.add_argument("--budget-minutes", type=float, default=None,
                    help="start no new round of seeds after this many minutes (the seeds run are recorded)")
    ap.add_argument("--quick", action="store_true", help="2 seeds of the default truth only")
    ap.add_argument("--out", type=Path, help="result file (default benchmarks/results/coverage.json)")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be an integer >= 1. Got {args.jobs} instead.")
    truths = TRUTHS[:1] if args.quick else _truth_files(args.truths)
    seeds = 2 if args.quick else args.seeds
    out = args.out or RESULTS / ("coverage_quick.json" if args.quick else "coverage.json")
    # Seeds interleaved across truth files, so an interrupted run still covers every truth file.
    tasks = [(t, args.first_seed + k, args.scale) for k in range(seeds) for t in truths]
    raw: dict[str, dict[int, dict]] = {t: {} for t in truths}
    cpu: dict[str, float] = {t: 0.0 for t in truths}
    t0 = time.perf_counter()
    load_start = os.getloadavg()

    def record(result: tuple[str, int, dict, float]) -> None:
        truth_file, seed, res, cpu_s = result
        raw[truth_file][seed] = res
        cpu[truth_file] += cpu_s
        print(f"{truth_file} seed {seed} ({cpu_s:.0f} s CPU): "
              + ", ".join(f"{i}={'ok' if r['covered'] else 'MISS'}" for i, r in res.items()), flush=True)
        _write(out, args, raw, cpu, t0, load_start, complete=False)

    # One round = one seed of every truth file; the time budget is checked between rounds, so every
    # truth file always has the same seeds.
    rounds = [tasks[k:k + len(truths)] for k in range(0, len(tasks), len(truths))]
    pool = ProcessPoolExecutor(max_workers=args.jobs) if args.jobs > 1 else None
    try:
        for done, round_ in enumerate(rounds):
            if args.budget_minutes and time.perf_counter() - t0 > 60 * args.budget_minutes:
                print(f"time budget of {args.budget_minutes} min reached after {done} seed(s) per truth file")
                break
            for result in (pool.map(_run_seed, round_) if pool else map(_run_seed, round_)):
                record(result)
    finally:
        if pool:
            pool.shutdown()
    doc = _write(out, args, raw, cpu, t0, load_start, complete=True)
    for line in flagged(doc["results"]) or ["no headline flagged (bias or coverage beyond 2 MC SE)"]:
        print(line)
    print(f"written {out}")
    return 0


def _write(out: Path, args: argparse.Namespace, raw: dict, cpu: dict, t0: float,
           load_start: tuple[float, float, float], *, complete: bool) -> dict:
    """Write the summary so far (rewritten after every seed, so a long run can be stopped)."""
    doc = {
        "benchmark": "coverage",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "complete": complete,  # false while running or if the run was stopped: the seeds listed are those run
        "command": "python -m benchmarks.bench_coverage " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in (("seeds", args.seeds), ("scale", args.scale),
                                                         ("first_seed", args.first_seed), ("jobs", args.jobs),
                                                         ("budget_minutes", args.budget_minutes)) if v is not None),
        "method": ("per seed: generate (truth file), clean, match, indicators with the shipped configuration; "
                   "bias = mean(estimate − truth of the same seed), MC SE = SD/√n; coverage MC SE = "
                   f"√(p(1−p)/n); flagged beyond {FLAG_SE} MC SE (coverage: SE at the nominal {NOMINAL})"),
        "scale": args.scale,
        "first_seed": args.first_seed,
        "seeds_requested": args.seeds,
        "seeds": {t: sorted(by_seed) for t, by_seed in raw.items()},
        "configuration": "shipped (pipeline/config/equilibres.toml)",
        "jobs": args.jobs,
        "seconds": round(time.perf_counter() - t0, 1),
        "cpu_seconds": {t: round(s, 1) for t, s in cpu.items()},
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "results": summarise(raw),
        "runs": {t: {str(s): r for s, r in sorted(by_seed.items())} for t, by_seed in raw.items()},
    }
    doc["flagged"] = flagged(doc["results"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return doc


if __name__ == "__main__":
    raise SystemExit(main())
