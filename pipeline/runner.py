"""`equilibres clean`: run the cleaning stages with caching, the audit trail and a manifest.

The runner is the only part of cleaning that touches files. Each stage has a fingerprint: a hash of
its code, the parameters it reads, the hashes of the extract files it reads and the fingerprints of
the stages it depends on. A stage whose fingerprint matches its last successful run (and whose
outputs are still in place) is skipped; otherwise it runs and writes its outputs atomically, then a
small record (``clean/_stages/<stage>.json``) with the fingerprint, output hashes, audit rows, time
and memory. The stages themselves are declared in :mod:`pipeline.clean_stages`.

Everything is written under one :class:`pipeline.writer.StepWriter` (build lock, all or nothing).
The five tables later steps read are checked against their schemas (:func:`pipeline.tables.clean_tables`)
before ``audit/attrition.csv`` and ``clean/manifest.json`` are written last, the manifest only after
every output it lists is complete (it also records the parameters used: the cleaning's params).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import logging
import os
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.clean_stages import STAGE_NAMES, STAGES, StageContext
from pipeline.config import StudyConfig
from pipeline.engine import duckdb_spill_dir, engine_name, make_backend, stop_spark
from pipeline.facts import CleanFacts
from pipeline.input_checks import (
    check_inputs,
    diagnose_read_failure,
    duplicate_key_error,
    out_of_memory_error,
)
from pipeline.io import HASH_METHOD, PipelineError, atomic_write_json, file_hash, peak_rss_mb
from pipeline.paths import BuildPaths
from pipeline.plausibility import check_null_shares
from pipeline.provenance import EXTRACT, code_hash, inconsistencies, read_provenance, settings_hash
from pipeline.readers import (
    TABLE_KEYS,
    describe_source,
    display_name,
    locate_tables,
    read_in_place,
    stage_as_parquet,
)
from pipeline.stages.rules import AUDIT_COLUMNS
from pipeline.tables import clean_tables
from pipeline.writer import StepWriter

log = logging.getLogger("equilibres.clean")

PACKAGE = "equilibres-eval"


def code_version() -> dict[str, str]:
    """Package version and a hash of the cleaning code (stages, their wiring, engine, readers)."""
    here = Path(__file__).parent
    files = sorted((here / "stages").glob("*.py")) + [here / name for name in
                                                      ("engine.py", "readers.py", "clean_stages.py", "tables.py")]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    try:
        version = metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        version = "0+unknown"
    return {"package_version": version, "stages_sha256": h.hexdigest()}


def _fingerprint(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:20]




# -- result --------------------------------------------------------------------------------------


@dataclass
class StageRun:
    name: str
    status: str  # "ran" or "cached"
    seconds: float
    peak_rss_mb: float
    fingerprint: str
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class CleanResult:
    """What a cleaning run did: stages run or reused, outputs and where the audit trail is."""

    build: Path
    engine: str
    stages: list[StageRun]
    outputs: dict[str, dict[str, Any]]
    attrition: Path
    manifest: Path
    seconds: float

    @property
    def up_to_date(self) -> bool:
        return all(s.status == "cached" for s in self.stages)

    @property
    def ran(self) -> list[str]:
        return [s.name for s in self.stages if s.status == "ran"]

    def render(self) -> str:
        if self.up_to_date:
            head = f"Cleaning outputs in {self.build / 'clean'} are up to date (nothing to do)."
        else:
            head = (f"Cleaning ({self.engine}) ran {', '.join(self.ran)} in {self.seconds:.1f} s; "
                    f"reused {', '.join(s.name for s in self.stages if s.status == 'cached') or 'nothing'}.")
        lines = [head]
        for s in self.stages:
            lines.append(f"  {s.name:<8} {s.status:<6} {s.seconds:7.1f} s  peak {s.peak_rss_mb:8.0f} MiB")
        for name, info in self.outputs.items():
            lines.append(f"  {name:<8} {info['rows']:>10,} rows  {info['path']}")
        lines.append(f"  audit    {self.attrition}")
        lines.append(f"  manifest {self.manifest}")
        return "\n".join(lines)


# -- the runner ----------------------------------------------------------------------------------


def _setup_log(paths: BuildPaths) -> logging.Handler:
    paths.logs.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(paths.logs / "clean.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def locate_extract(data_dir: Path, config: StudyConfig) -> dict[str, list[Path]]:
    """The files of every input table of the extract, by table key; PipelineError if one is missing."""
    if not Path(data_dir).is_dir():
        raise PipelineError(f"Extract directory {data_dir} does not exist: give the extract to --data.")
    tables = locate_tables(Path(data_dir), config)
    missing = [k for k in TABLE_KEYS if not tables.get(k)]
    if missing:
        raise PipelineError(
            f"Extract {data_dir} lacks table(s) {', '.join(missing)}: every table of docs/CONTRACTS.md "
            "section 1 is needed (run `equilibres validate` on the directory)."
        )
    return {k: [Path(p) for p in v] for k, v in tables.items()}


def _stage_record_path(paths: BuildPaths, name: str) -> Path:
    return paths.clean / "_stages" / f"{name}.json"


def _load_record(paths: BuildPaths, name: str) -> dict[str, Any] | None:
    p = _stage_record_path(paths, name)
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _outputs_intact(record: dict[str, Any]) -> bool:
    for info in record.get("outputs", {}).values():
        p = Path(info["path"])
        if not p.exists() or p.stat().st_size != info["size"] or p.stat().st_mtime_ns != info["mtime_ns"]:
            return False
    return True


def describe_output(path: Path) -> dict[str, Any]:
    """What a stage record keeps of an output: path, size, mtime, content hash and rows."""
    import pyarrow.parquet as pq

    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sha256": file_hash(path)["sha256"], "rows": pq.ParquetFile(path).metadata.num_rows}


def run(paths: BuildPaths, config: StudyConfig, *, force: bool = False) -> CleanResult:
    """Clean the extract ``paths.data`` into ``paths.root`` (cached stage by stage); see the module doc.

    ``force`` re-runs every stage even when its outputs are up to date.
    """
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    t0 = time.perf_counter()
    if paths.data is None:
        raise PipelineError("Cleaning reads an extract: give its directory to --data.")
    # The writer restores every file of clean/ and audit/ if the run fails after some stages wrote
    # their outputs, so outputs, stage records and manifest always agree.
    with StepWriter(paths, "clean") as writer:
        handler = _setup_log(paths)
        try:
            tables = locate_extract(paths.data, config)
            input_hashes = {k: [{"file": display_name(p, paths.data), **file_hash(p)} for p in tables[k]]
                            for k in TABLE_KEYS}
            code = code_version()
            fingerprints: dict[str, str] = {}
            for s in STAGES:
                fingerprints[s.name] = _fingerprint({
                    "stage": s.name, "code": code["stages_sha256"], "params": s.params(config),
                    "inputs": {k: [h["sha256"] for h in input_hashes[k]] for k in s.inputs},
                    "upstream": {u: fingerprints[u] for u in s.upstream},
                })
            records = {s.name: _load_record(paths, s.name) for s in STAGES}
            todo = [
                s.name for s in STAGES
                if force or records[s.name] is None or records[s.name].get("fingerprint") != fingerprints[s.name]
                or not _outputs_intact(records[s.name])
            ]
            manifest_ok = paths.clean_manifest.exists() and paths.attrition.exists()
            engine = config.engine.name
            log.info("clean start: engine=%s force=%s stages to run=%s", engine, force, ",".join(todo) or "none")
            extract_inputs = {f"{EXTRACT}{os.path.relpath(p, paths.data)}": h["sha256"]
                              for k in TABLE_KEYS for p, h in zip(tables[k], input_hashes[k], strict=True)}
            if not todo and manifest_ok:
                log.info("clean: every stage up to date, nothing to do")
                runs = [StageRun(s.name, "cached", 0.0, 0.0, fingerprints[s.name], records[s.name]["outputs"])
                        for s in STAGES]
                if _record_outdated(paths, config, extract_inputs):
                    writer.params(config, CLEAN_SECTIONS, extract_inputs=extract_inputs)
                return _result(paths, engine, runs, time.perf_counter() - t0)

            runs: list[StageRun] = []
            con = make_backend(config.engine, paths.root) if todo else None
            staged_cache: dict[str, list[Path]] = {}
            read_as: dict[str, dict[str, Any]] = {}  # file -> how it was read (CSV separator, encoding)

            def staged(key: str) -> list[Path]:
                if key not in staged_cache:
                    staged_cache[key] = stage_inputs(tables[key], input_hashes[key], key, paths, config, read_as)
                return staged_cache[key]

            def key_checked(key: str, repeated: int) -> None:
                # A stage's query found lines whose key repeats another's: recount exactly, name the
                # files and stop; nothing found exactly means two keys shared a 64-bit hash.
                if repeated <= 0:
                    return
                err = duplicate_key_error(key, staged(key), tables[key], config,
                                          duckdb_spill_dir(config.engine, paths.root), data_dir=paths.data)
                if err is not None:
                    raise err
                log.info("line-key check of %s: %d hash collision(s), no repeated key", key, repeated)

            ctx = StageContext(config=config, paths=paths, con=con, staged=staged,
                               stage_dir=paths.clean / "_stages", key_checked=key_checked,
                               sources=tables.__getitem__)
            # Inputs of the stages to run: staged (typed) and their rows counted (Parquet footers) before
            # any stage; their line keys are checked inside the first query of the stage reading them.
            needed = list(dict.fromkeys(k for s in STAGES if s.name in todo for k in s.inputs))
            key_checks = {k for s in STAGES if s.name in todo for k in s.key_checks}
            checks = check_inputs({k: staged(k) for k in needed}, {k: tables[k] for k in needed}, key_checks,
                                  data_dir=paths.data)
            log.info("input checks: %d file(s) in %.1f s", len(checks["files"]), checks["seconds"])
            # Columns entirely or mostly null stop the run here, not as an empty matching much later.
            checks["null_shares"] = check_null_shares({k: staged(k) for k in needed}, {k: tables[k] for k in needed},
                                                      config)
            console = Console(stderr=True)
            try:
                with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), TimeElapsedColumn(),
                              console=console, transient=True, disable=not console.is_terminal) as progress:
                    for s in STAGES:
                        rec = records[s.name]
                        if s.name not in todo:
                            runs.append(StageRun(s.name, "cached", 0.0, 0.0, fingerprints[s.name], rec["outputs"]))
                            log.info("stage %s: up to date (fingerprint %s)", s.name, fingerprints[s.name])
                            continue
                        task = progress.add_task(f"{s.name}: {s.description}", total=None)
                        log.info("stage %s: running (fingerprint %s)", s.name, fingerprints[s.name])
                        ts = time.perf_counter()
                        (paths.clean / "_stages" / s.name).mkdir(parents=True, exist_ok=True)
                        try:
                            outs, audit = s.run(ctx)
                        except Exception as err:
                            if isinstance(err, PipelineError):
                                raise
                            oom = out_of_memory_error(err, s.name, config, paths.root)
                            if oom is not None:
                                raise oom from None
                            # A corrupt data page only shows when the engine decodes it: name the file.
                            files = [p for k in s.inputs for p in staged(k)]
                            diagnosed = diagnose_read_failure(files, dict(zip(files, [f for k in s.inputs for f in
                                                                                      tables[k]], strict=False)))
                            if diagnosed is None:
                                raise
                            raise diagnosed from None
                        seconds = time.perf_counter() - ts
                        peak = peak_rss_mb(children=True)
                        described = {name: describe_output(p) for name, p in outs.items()}
                        record = {
                            "stage": s.name, "fingerprint": fingerprints[s.name], "outputs": described,
                            "audit": [a.as_record() for a in audit], "seconds": round(seconds, 3),
                            "peak_rss_mb": peak, "engine": engine,
                            "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                        }
                        atomic_write_json(_stage_record_path(paths, s.name), record)
                        records[s.name] = record
                        runs.append(StageRun(s.name, "ran", seconds, peak, fingerprints[s.name], described))
                        log.info("stage %s: done in %.1f s, peak memory %.0f MiB, outputs %s", s.name, seconds,
                                 peak, ", ".join(f"{k}={v['rows']} rows" for k, v in described.items()))
                        progress.remove_task(task)
            finally:
                if con is not None and engine_name(con) == "spark":
                    stop_spark()
                elif con is not None:
                    con.disconnect()

            fix = f"This is a bug of the cleaning stages: report it with {paths.logs / 'clean.log'}."
            for key, table in clean_tables(config).items():
                table.check(paths.output(key), fix)
            writer.text("attrition", attrition_csv(records))
            writer.json("manifest", manifest(paths, config, input_hashes, code, runs, records, input_checks=checks,
                                             read_as=_read_as(tables, input_hashes, paths, read_as)))
            writer.params(config, CLEAN_SECTIONS, extract_inputs=extract_inputs)
            result = _result(paths, engine, runs, time.perf_counter() - t0)
            log.info("clean done in %.1f s: ran %s", result.seconds, ",".join(result.ran))
            return result
        except BaseException as err:  # interrupted runs (KeyboardInterrupt) are logged too
            log.error("clean failed: %s", type(err).__name__)
            raise
        finally:
            log.removeHandler(handler)
            handler.close()


# The settings saved in clean/params.json beside the provenance (the manifest holds them too).
CLEAN_SECTIONS = ("study", "extract", "cleaning", "cohort", "engine")


def _record_outdated(paths: BuildPaths, config: StudyConfig, extract_inputs: dict[str, str]) -> bool:
    """Whether clean/params.json must be rewritten although no stage ran (absent, or written for other
    settings, code or extract files)."""
    record = read_provenance(paths, "clean")
    return (record is None or record.settings_hash != settings_hash(config, "clean")
            or record.code != code_hash("clean") or dict(record.inputs) != extract_inputs
            or bool(inconsistencies(paths, "clean")))


def _result(paths: BuildPaths, engine: str, runs: list[StageRun], seconds: float) -> CleanResult:
    finals = {}
    for r in runs:
        for name, info in r.outputs.items():
            if Path(info["path"]).parent == paths.clean:
                finals[name] = info
    return CleanResult(build=paths.root, engine=engine, stages=runs, outputs=finals, attrition=paths.attrition,
                       manifest=paths.clean_manifest, seconds=seconds)


def _staged_target(paths: BuildPaths, f: Path, h: dict[str, Any]) -> Path:
    return paths.tmp / "staged" / f"{f.stem}.{h['sha256'][:16]}.parquet"


def stage_inputs(files: list[Path], hashes: list[dict[str, Any]], key: str, paths: BuildPaths,
                 config: StudyConfig, read_as: dict[str, dict[str, Any]] | None = None) -> list[Path]:
    """Parquet files for one input table: Parquet inputs as they are; CSV/SAS converted once into
    ``<build>/tmp/staged`` under a name carrying the source hash, and reused while it is unchanged.

    A table in several files is stacked by the stages, which needs one schema: unless every file is a
    Parquet read in place with the same schema, every file goes through the typed conversion. How each
    CSV was read (separator, encoding) is kept beside its staged copy and added to ``read_as``."""
    in_place = read_in_place(files, key)
    out = []
    for f, h, keep in zip(files, hashes, in_place, strict=True):
        if keep:
            out.append(f)
            continue
        target = _staged_target(paths, f, h)
        how = target.with_suffix(".read_as.json")
        if not target.exists():
            log.info("staging %s (%s) as Parquet", h["file"], key)
            stage_as_parquet(f, key, target, config, convert_parquet=f.suffix.lower() == ".parquet")
            atomic_write_json(how, describe_source(f, key, config))
        if read_as is not None and how.exists():
            read_as[h["file"]] = json.loads(how.read_text(encoding="utf-8"))
        out.append(target)
    return out


def _read_as(tables: dict[str, list[Path]], hashes: dict[str, list[dict[str, Any]]], paths: BuildPaths,
             known: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """How every input file was read: the format, and for CSV the separator and encoding (from the record
    beside its staged copy when it was staged by an earlier run)."""
    out = {}
    for key, files in tables.items():
        for f, h in zip(files, hashes[key], strict=True):
            how = _staged_target(paths, f, h).with_suffix(".read_as.json")
            if h["file"] in known:
                out[h["file"]] = known[h["file"]]
            elif how.exists():
                out[h["file"]] = json.loads(how.read_text(encoding="utf-8"))
            else:
                out[h["file"]] = {"format": f.suffix.lower().lstrip(".")}
    return out


def attrition_csv(records: dict[str, dict[str, Any] | None]) -> str:
    """``audit/attrition.csv``: the audit rows of every stage, in stage order."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=AUDIT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for name in STAGE_NAMES:
        for row in (records[name] or {}).get("audit", []):
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in AUDIT_COLUMNS})
    return buf.getvalue()


def manifest(paths: BuildPaths, config: StudyConfig, input_hashes: dict[str, Any], code: dict[str, str],
             runs: list[StageRun], records: dict[str, dict[str, Any] | None],
             input_checks: dict[str, Any] | None = None,
             read_as: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """``clean/manifest.json``: inputs and their hashes, the parameters and code used, every stage and
    output (the attrition file must be written first: its hash is recorded)."""
    outputs = {}
    for r in runs:
        for name, info in r.outputs.items():
            if Path(info["path"]).parent == paths.clean:
                outputs[name] = {"path": os.path.relpath(info["path"], paths.root), "sha256": info["sha256"],
                                 "rows": info["rows"], "size": info["size"]}
    att = file_hash(paths.attrition)
    outputs["attrition"] = {"path": os.path.relpath(paths.attrition, paths.root), "sha256": att["sha256"],
                            "size": att["size"]}
    data = {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "engine": config.engine.name,
        "inputs": {k: [{**h, "table": k, **({"read_as": read_as[h["file"]]} if h["file"] in (read_as or {}) else {})}
                       for h in v] for k, v in input_hashes.items()},
        "input_hash_method": HASH_METHOD,
        "parameters": {s: config.section(s) for s in ("study", "extract", "cleaning", "cohort", "engine")},
        "code": code,
        "stages": {
            r.name: {"status": r.status, "fingerprint": r.fingerprint,
                     "seconds": (records[r.name] or {}).get("seconds"),
                     "peak_rss_mb": (records[r.name] or {}).get("peak_rss_mb"),
                     "engine": (records[r.name] or {}).get("engine"),
                     "finished_at": (records[r.name] or {}).get("finished_at")}
            for r in runs
        },
        "outputs": outputs,
        "input_checks": input_checks,
    }
    # Written through its declaration (pipeline/facts.py), so what the report reads is what was written.
    return CleanFacts.from_dict(data, where="clean/manifest.json (before writing)").to_dict()
