"""Runs that fail, are interrupted, are killed or overlap: previous outputs survive byte for byte,
the manifest only lists complete outputs, and the build lock keeps two runs apart."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import bad_inputs as bi
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import runner
from pipeline.config import load_config
from pipeline.io import build_lock, file_hash, restore_on_failure
from pipeline.paths import BuildPaths

ROOT = Path(__file__).parents[1]


def digest(root: Path, *subdirs: str) -> dict[str, str]:
    """sha256 of every file under the given sub-directories of ``root``."""
    out = {}
    for sub in subdirs:
        for p in sorted((root / sub).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_manifest_consistent(build: Path) -> None:
    """Every output the manifest lists exists with the hash it states."""
    manifest = json.loads((build / "clean" / "manifest.json").read_text(encoding="utf-8"))
    for name, info in manifest["outputs"].items():
        assert file_hash(build / info["path"])["sha256"] == info["sha256"], name


@pytest.fixture()
def cleaned(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    build = tmp_path / "build"
    assert bi.cli("clean", "--data", bi.SAMPLE_DIR, "--out", build).exit_code == 0
    return build, digest(build, "clean", "audit")


def test_failed_run_on_a_damaged_extract_leaves_previous_outputs_byte_for_byte(cleaned, tmp_path: Path):
    build, before = cleaned
    data = bi.sample_copy(tmp_path / "extract")
    # A valid change to IR_BEN_R (so the ingest stage re-runs and rewrites its outputs) and a
    # damaged ER_PRS_F column that only the dcir stage, later, decodes.
    ben = pq.read_table(data / "IR_BEN_R.parquet")
    sex = ben.column("BEN_SEX_COD").to_pylist()
    sex[0] = 2 if sex[0] == 1 else 1
    pq.write_table(ben.set_column(ben.column_names.index("BEN_SEX_COD"), "BEN_SEX_COD", pa.array(sex)),
                   data / "IR_BEN_R.parquet")
    bi.corrupt_column(data, "ER_PRS_F", "BSE_REM_MNT")
    out = bi.cli("clean", "--data", data, "--out", build)
    assert out.exception is None and out.exit_code == 2, out.text
    assert "ER_PRS_F.parquet: the Parquet file is damaged" in out.text, out.text
    assert "stage ingest: done" in (build / "logs" / "clean.log").read_text()  # ingest did rewrite
    assert digest(build, "clean", "audit") == before
    assert_manifest_consistent(build)
    # The cache is consistent too: the good extract again is up to date, nothing re-runs.
    again = runner.run(BuildPaths(build, bi.SAMPLE_DIR), load_config())
    assert again.up_to_date
    assert digest(build, "clean", "audit") == before


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_failure_after_outputs_were_rewritten_restores_every_file(cleaned, monkeypatch, failure):
    """outputs (persons, panel, stays) re-run and are rewritten, then cohort fails: without the
    rollback, persons.parquet would be new and the manifest old."""
    build, before = cleaned
    import pipeline.stages.cohort as cohort_mod

    def boom(*args, **kwargs):
        raise failure("simulated failure in the cohort stage")

    monkeypatch.setattr(cohort_mod, "cohort_table", boom)
    cfg = tmp_config(build.parent, "[cleaning]\ndeath_claim_tolerance_days = 30\n")
    out = bi.cli("clean", "--data", bi.SAMPLE_DIR, "--out", build, "--config", cfg)
    if failure is KeyboardInterrupt:
        assert out.exit_code == 130 and "Interrupted" in out.text, out.text
    else:
        assert isinstance(out.exception, RuntimeError)  # a real bug stays visible
    log = (build / "logs" / "clean.log").read_text()
    assert "stage outputs: done" in log and "clean failed" in log
    assert digest(build, "clean", "audit") == before
    assert_manifest_consistent(build)
    assert not (build / "tmp" / "rollback").exists() or not any((build / "tmp" / "rollback").rglob("*.parquet"))
    monkeypatch.undo()
    assert runner.run(BuildPaths(build, bi.SAMPLE_DIR), load_config()).up_to_date


def tmp_config(where: Path, text: str) -> Path:
    p = where / "override.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_killed_run_is_rolled_back_by_the_next_run(cleaned):
    """A run killed with SIGKILL cannot clean up: the next run puts the previous files back."""
    build, before = cleaned
    script = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from pipeline.io import build_lock, restore_on_failure
        from pipeline.io import atomic_write_bytes
        build = Path({str(build)!r})
        with build_lock(build, "clean"), restore_on_failure(build, build / "clean", build / "audit"):
            # Writers replace files by rename (never in place): so does this one.
            atomic_write_bytes(build / "clean" / "persons.parquet", b"new persons")
            (build / "clean" / "new_partial.parquet").write_bytes(b"x")
            os._exit(9)  # no cleanup, as with SIGKILL
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=60)
    assert proc.returncode == 9, proc.stderr
    assert (build / "clean" / "persons.parquet").read_bytes() == b"new persons"
    result = runner.run(BuildPaths(build, bi.SAMPLE_DIR), load_config())
    assert result.up_to_date
    assert digest(build, "clean", "audit") == before


def test_restore_on_failure_keeps_only_what_a_successful_block_wrote(tmp_path: Path):
    root = tmp_path / "b"
    (root / "d").mkdir(parents=True)
    (root / "d" / "a.txt").write_text("old")
    with restore_on_failure(root, root / "d"):
        (root / "d" / "a.txt").write_text("new")
        (root / "d" / "b.txt").write_text("added")
    assert (root / "d" / "a.txt").read_text() == "new" and (root / "d" / "b.txt").exists()
    with pytest.raises(ValueError), restore_on_failure(root, root / "d"):
        (root / "d" / "a.txt").unlink()
        (root / "d" / "c.txt").write_text("partial")
        raise ValueError("fail")
    assert sorted(p.name for p in (root / "d").iterdir()) == ["a.txt", "b.txt"]
    assert (root / "d" / "a.txt").read_text() == "new"


def test_a_locked_build_is_refused_with_a_clear_message(cleaned, tmp_path: Path):
    build, before = cleaned
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pipeline.io import build_lock
            with build_lock({str(build)!r}, "holder"):
                print("locked", flush=True)
                sys.stdin.read()  # hold the lock until the test closes stdin
        """)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        for args in (["clean", "--data", bi.SAMPLE_DIR], ["match"], ["surveys", "--data", bi.SAMPLE_DIR]):
            out = bi.cli(*args, "--out", build)
            assert out.exception is None and out.exit_code == 3, (args, out.text)
            assert f"is locked by 'equilibres holder' (pid {holder.pid})" in out.text, out.text
            assert "Wait for it to finish, or use another --out directory" in out.text
        assert digest(build, "clean", "audit") == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert runner.run(BuildPaths(build, bi.SAMPLE_DIR), load_config()).up_to_date


def test_two_concurrent_runs_do_not_corrupt_the_build(tmp_path: Path):
    build = tmp_path / "build"
    exe = ROOT / ".venv" / "bin" / "equilibres"
    cmd = [str(exe) if exe.exists() else sys.executable, *([] if exe.exists() else ["-m", "study.cli"]),
           "clean", "--data", str(bi.SAMPLE_DIR), "--out", str(build)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [(p.wait(timeout=300), p.stdout.read()) for p in procs]
    for p in procs:
        p.stdout.close()
    codes = sorted(code for code, _ in outs)
    assert codes in ([0, 0], [0, 3]), outs
    for code, text in outs:
        assert "Traceback" not in text
        if code == 3:
            assert "is locked by 'equilibres clean'" in " ".join(text.split())
    assert_manifest_consistent(build)
    assert runner.run(BuildPaths(build, bi.SAMPLE_DIR), load_config()).up_to_date


def test_failed_matching_leaves_previous_matching_outputs(cleaned, monkeypatch):
    build, _ = cleaned
    assert bi.cli("match", "--out", build).exit_code == 0
    before = digest(build, "matching")
    import matching.study

    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure after pairs and matched were written")

    monkeypatch.setattr(matching.study, "suppress_balance", boom)
    out = bi.cli("match", "--out", build, "--caliper", "0.5")  # pairs.parquet is rewritten, then boom
    assert isinstance(out.exception, RuntimeError)
    assert digest(build, "matching") == before
    params = json.loads((build / "matching" / "params.json").read_text())
    assert params["matching"]["caliper"] == 0.2
    assert params["seconds"] >= 0 and params["peak_rss_mb"] > 0


def test_failed_indicators_leave_previous_indicator_outputs(cleaned, monkeypatch):
    build, _ = cleaned
    assert bi.cli("match", "--out", build).exit_code == 0
    assert bi.cli("indicators", "--out", build, "--replicates", "99").exit_code == 0
    before = digest(build, "indicators")
    import indicators.study

    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure after indicators.json was written")

    monkeypatch.setattr(indicators.study, "records_frame", boom)
    out = bi.cli("indicators", "--out", build, "--replicates", "199")
    assert isinstance(out.exception, RuntimeError)
    assert digest(build, "indicators") == before
    params = json.loads((build / "indicators" / "params.json").read_text())
    assert params["sizes"]["replicates"] == 99
    assert params["seconds"] >= 0 and params["peak_rss_mb"] > 0


def test_manifest_reports_time_and_peak_memory_per_stage(cleaned):
    build, _ = cleaned
    manifest = json.loads((build / "clean" / "manifest.json").read_text())
    for name in ("ingest", "dcir", "pmsi", "outputs", "cohort"):
        stage = manifest["stages"][name]
        assert stage["seconds"] is not None and stage["seconds"] >= 0
        assert stage["peak_rss_mb"] > 0
    checks = manifest["input_checks"]
    assert checks["seconds"] >= 0
    er = [f for f in checks["files"] if f["table"] == "ER_PRS_F"]
    assert er and er[0]["rows"] == pq.ParquetFile(bi.SAMPLE_DIR / "ER_PRS_F.parquet").metadata.num_rows
    assert BuildPaths(build).clean_manifest.exists()
    with build_lock(build, "test"):  # the lock is free once a run has finished
        pass
