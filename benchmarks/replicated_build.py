"""A benchmark fixture: a build whose cleaned tables are those of another build replicated K times.

    python -m benchmarks.replicated_build --from BUILD --to BUILD_X4 [--copies 4]

THIS IS A REPLICATED COHORT, NOT A CLEANED EXTRACT. Cleaning a scale-1 extract takes about 20 minutes
on the 2-core machine; to time the steps that read the cleaned tables (`equilibres match` first of
all, issue 13: "at scale 1 under 10 s") at the size of a scale-1 build, this script writes the cleaned
tables of BUILD (persons, panel, stays, eol_daily, cohort: e.g. of a scale-0.25 build) K times over
into BUILD_X4/clean/. Copy 0 is BUILD's rows unchanged; in copy k >= 1 every person gets a new id
(``person_id`` + ``~k``, so ``unit_id`` = ``<person_id>@<index_date>`` follows) and every département a
new code (``dpt`` + ``~k``): a scale-1 synthetic extract holds *more départements at the same
density* than a scale-0.25 one (data_samples/population.py, extract_departements), so the exact
strata of matching are K times as many, each as full as in BUILD, as they would be at scale 1. Every
other value is BUILD's: the matching and the effects of the copy are those of BUILD, K times over.

BUILD_X4 then holds the cleaned tables only, with a ``clean/params.json`` whose provenance hashes the
new files (BUILD's settings and extract hashes otherwise; ``replicated_from`` says where they come
from), so `equilibres match --out BUILD_X4` and the later steps run on it as on any build. The audit
trail and the manifest are BUILD's. Tables are written by DuckDB, as cleaning writes them.

So that `equilibres run --data EXTRACT --out BUILD_X4` (EXTRACT: the extract BUILD was cleaned from)
reuses the cleaning as it reuses it on any up-to-date build (issue 18: the re-match → run loop at
scale 1), BUILD's cleaning stage records (``clean/_stages/*.json``) are carried over
(:func:`carry_stage_records`): the final tables' entries describe the replicated files, the
intermediate tables of the stages are BUILD's, hard-linked. Cleaning then finds every stage up to
date as long as the code of cleaning, its settings and EXTRACT are those BUILD was cleaned with; if
one of them changed, cleaning re-runs from the stage that changed, on BUILD's intermediate tables:
the result is then a build of BUILD's size again (re-make the fixture). BUILD's record of the
validated extract (``tmp/validation.json``) is copied too. ``--records-only`` adds them to an
existing BUILD_X4 made without them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.paths import BuildPaths

#: The cleaned tables replicated, and their text columns that are made distinct per copy.
TABLES = ("persons", "panel", "stays", "eol_daily", "cohort")
COPY_SEPARATOR = "~"


def _copy_sql(src: Path, dst: Path, copies: int, columns: list[str]) -> str:
    """One COPY statement writing ``copies`` copies of ``src`` (copy-major, rows in file order)."""
    def renamed(name: str) -> str:
        if name in ("person_id", "dpt"):
            return f"CASE WHEN r.k = 0 THEN t.{name} ELSE t.{name} || '{COPY_SEPARATOR}' || r.k END AS {name}"
        if name == "unit_id":  # <person_id>@<index_date>: the person part takes the copy's suffix
            return (f"CASE WHEN r.k = 0 THEN t.unit_id ELSE split_part(t.unit_id, '@', 1) || '{COPY_SEPARATOR}' "
                    f"|| r.k || '@' || split_part(t.unit_id, '@', 2) END AS unit_id")
        return f"t.{name}"

    select = ", ".join(renamed(c) for c in columns)
    return (f"COPY (SELECT {select} FROM read_parquet('{src.as_posix()}', file_row_number = true) t, "
            f"(SELECT range AS k FROM range({copies})) r ORDER BY r.k, t.file_row_number) "
            f"TO '{dst.as_posix()}' (FORMAT parquet)")


def replicate(source: Path, target: Path, copies: int, threads: int = 2) -> dict[str, int]:
    """Write ``copies`` copies of the cleaned tables of build ``source`` into build ``target``; the
    number of rows written per table."""
    import duckdb

    from pipeline.config import load_config
    from pipeline.io import atomic_write_json
    from pipeline.paths import BuildPaths
    from pipeline.provenance import make_record

    src, dst = BuildPaths(source), BuildPaths(target)
    if not src.cohort.exists():
        raise SystemExit(f"{src.cohort} is missing: --from must be a cleaned build (`equilibres clean`).")
    if dst.root.exists():
        shutil.rmtree(dst.root)
    dst.clean.mkdir(parents=True)
    rows = {}
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    try:
        for key in TABLES:
            path_in, path_out = src.output(key), dst.output(key)
            columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{path_in.as_posix()}')").fetchall()]
            con.execute(_copy_sql(path_in, path_out, copies, columns))
            rows[key] = con.execute(f"SELECT count(*) FROM read_parquet('{path_out.as_posix()}')").fetchone()[0]
    finally:
        con.close()
    # BUILD's audit trail and manifest, as they were (they describe BUILD's cleaning run).
    for key in ("manifest", "attrition"):
        if src.output(key).exists():
            dst.output(key).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src.output(key), dst.output(key))
    saved = json.loads(src.params("clean").read_text(encoding="utf-8"))
    config = load_config(None)
    extract_inputs = {k: v for k, v in (saved.get("provenance") or {}).get("inputs", {}).items()}
    record = make_record(dst, config, "clean", [*TABLES, "manifest", "attrition"], extra_inputs=extract_inputs)
    # BUILD's cleaning settings as it saved them; the provenance of the replicated files.
    params = {k: v for k, v in saved.items() if k != "provenance"}
    params["replicated_from"] = {"build": str(src.root.resolve()), "copies": copies,
                                 "note": "benchmark fixture (benchmarks/replicated_build.py): BUILD's cleaned "
                                         "tables replicated with new person ids and département codes"}
    atomic_write_json(dst.params("clean"), {**params, "provenance": record.to_dict()})
    carry_stage_records(src, dst)
    return rows


def carry_stage_records(src: BuildPaths, dst: BuildPaths) -> int:
    """Copy BUILD's cleaning stage records (and its validation record) into BUILD_X4 (module doc);
    the number of stage records written."""
    import os

    from pipeline.io import atomic_write_json
    from pipeline.runner import describe_output

    stages = src.clean / "_stages"
    if not stages.is_dir():
        return 0
    written = 0
    for record_path in sorted(stages.glob("*.json")):
        record = json.loads(record_path.read_text(encoding="utf-8"))
        stage = record_path.stem
        outputs = {}
        for name, info in record.get("outputs", {}).items():
            file_name = Path(info["path"]).name
            if Path(info["path"]).parent.name == "clean":  # a final table: the replicated file
                target = dst.clean / file_name
            else:  # an intermediate table of the stage: BUILD's, hard-linked
                source, target = stages / stage / file_name, dst.clean / "_stages" / stage / file_name
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():
                    target.unlink()
                try:
                    os.link(source, target)
                except OSError:
                    shutil.copy2(source, target)
            outputs[name] = describe_output(target)
        atomic_write_json(dst.clean / "_stages" / record_path.name, {**record, "outputs": outputs})
        written += 1
    validation = src.tmp / "validation.json"
    if validation.exists():
        dst.tmp.mkdir(parents=True, exist_ok=True)
        shutil.copy2(validation, dst.tmp / "validation.json")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", type=Path, required=True, help="a cleaned build")
    parser.add_argument("--to", dest="target", type=Path, required=True, help="the build to write (replaced)")
    parser.add_argument("--copies", type=int, default=4, help="how many copies of the cleaned tables (4)")
    parser.add_argument("--records-only", action="store_true",
                        help="only carry BUILD's cleaning stage records over to an existing BUILD_X4")
    args = parser.parse_args(argv)
    if args.copies < 1:
        parser.error("--copies must be >= 1")
    if args.records_only:
        from pipeline.paths import BuildPaths

        n = carry_stage_records(BuildPaths(args.source), BuildPaths(args.target))
        print(f"{args.target}: {n} cleaning stage record(s) of {args.source} carried over")
        return 0
    t0 = time.perf_counter()
    rows = replicate(args.source, args.target, args.copies)
    print(f"{args.target}: {args.copies} copies of {args.source}'s cleaned tables in "
          f"{time.perf_counter() - t0:.1f} s: " + ", ".join(f"{k} {n:,} rows" for k, n in rows.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
