"""Issue 18: after a re-match, the sweep computes only its new main specification.

Each row of ``sweep.csv`` is cached by what it follows from (study/sweep_cache.py: the
specification's effective settings, the cleaned tables, the code). These tests run on the committed
sample with a two-specification grid, and count what the sweep computed from the rows it reports
(``SweepResult.n_computed`` / ``n_cached``, printed by the command line), never from timings.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import bad_inputs as bi
import pandas as pd
import pytest

from pipeline import provenance
from pipeline.config import load_config
from pipeline.paths import BuildPaths
from pipeline.provenance import check_chain, read_provenance
from study import sweep as sweep_study
from study.sweep_cache import SpecCache, cleaned_input_hashes, spec_key

pytestmark = pytest.mark.slow

GRID = """[sweep]
caliper = [0.1, 0.2]
ratio = [1]
method = ["nearest"]
age_band_width = [5]
transform = ["log1p"]
replace = [false]
"""
STEPS = ("clean", "match", "indicators", "surveys", "sweep", "sensitivity", "report")


def _ok(*args: object) -> str:
    out = bi.cli(*map(str, args))
    assert out.exit_code == 0, out.text
    return out.text


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def study_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("study")
    return {"grid": _write(d / "grid.toml", GRID),
            "rematch": _write(d / "rematch.toml", GRID + "\n[matching]\ncaliper = 0.05\n")}


@pytest.fixture(scope="module")
def base(tmp_path_factory, study_files) -> Path:
    """A build of the sample with the two-specification sweep, report included."""
    if not (bi.SAMPLE_DIR / "IR_BEN_R.parquet").exists():
        pytest.skip(f"the committed sample extract is missing from {bi.SAMPLE_DIR}")
    out = tmp_path_factory.mktemp("sweepcache") / "build"
    _ok("run", "--data", bi.SAMPLE_DIR, "--out", out, "--no-pdf", "--config", study_files["grid"])
    return out


@pytest.fixture()
def build(base: Path, tmp_path: Path) -> Path:
    # copytree keeps modification times, so the recorded output hashes stay trusted without re-reading.
    return Path(shutil.copytree(base, tmp_path / "build"))


def _finished(build: Path) -> dict[str, str]:
    return {s: r.finished_at for s in STEPS if (r := read_provenance(BuildPaths(build), s)) is not None}


def _reran(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {s for s in after if before.get(s) != after[s]}


def _sweep_table(build: Path) -> pd.DataFrame:
    # Per-row timings are run records: a cached row keeps the time it took when it was computed.
    return pd.read_csv(build / "sweep" / "sweep.csv").drop(columns="seconds")


def _from_scratch(build: Path, config: Path, where: Path) -> pd.DataFrame:
    """The sweep of ``config`` computed without any cache entry, in a copy of ``build``."""
    fresh = Path(shutil.copytree(build, where))
    shutil.rmtree(BuildPaths(fresh).sweep_cache, ignore_errors=True)
    result = sweep_study.run(BuildPaths(fresh), load_config(config))
    assert result.n_cached == 0 and result.n_computed == len(result.frame)
    return _sweep_table(fresh)


def test_rematch_then_run_computes_only_the_new_main_specification(build, study_files, tmp_path):
    before = _finished(build)
    text = _ok("run", "--data", bi.SAMPLE_DIR, "--out", build, "--no-pdf", "--config", study_files["rematch"])
    # Cleaning (always called, cached stage by stage) and the surveys are reused.
    assert _reran(before, _finished(build)) == {"match", "indicators", "sweep", "sensitivity", "report"}
    assert "reused (up to date): clean, surveys." in text, text
    assert "3 specifications (of 2 distinct in the grid, then the main specification): 1 computed, " \
           "2 from the cache" in text, text
    table = _sweep_table(build)
    assert list(table["caliper"]) == [0.1, 0.2, 0.05]  # the main specification is part of the sweep
    pd.testing.assert_frame_equal(table, _from_scratch(build, study_files["rematch"], tmp_path / "fresh"),
                                  check_exact=True)
    assert check_chain(BuildPaths(build))


def test_rematch_then_report_refresh_recomputes_the_main_specification(build, study_files):
    _ok("match", "--out", build, "--caliper", "0.05", "--config", study_files["grid"])
    # The sweep's main specification no longer is the saved matching: the report refuses it too.
    out = bi.cli("report", "--data", bi.SAMPLE_DIR, "--out", build, "--no-pdf", "--config", study_files["grid"])
    assert out.exit_code == 2 and "sweep/ (`equilibres sweep`)" in out.text, out.text
    before = _finished(build)
    text = _ok("report", "--data", bi.SAMPLE_DIR, "--out", build, "--no-pdf", "--refresh",
               "--config", study_files["grid"])
    assert _reran(before, _finished(build)) == {"indicators", "sweep", "sensitivity", "report"}
    assert "1 computed, 2 from the cache" in text, text
    assert list(_sweep_table(build)["caliper"]) == [0.1, 0.2, 0.05]  # the matching the report shows
    assert check_chain(BuildPaths(build))


def test_rematch_on_the_command_line_then_run_recomputes_no_sweep_row(build, study_files):
    _ok("match", "--out", build, "--caliper", "0.05", "--config", study_files["grid"])
    before = _finished(build)
    text = _ok("run", "--data", bi.SAMPLE_DIR, "--out", build, "--no-pdf", "--config", study_files["grid"])
    # `run` follows the study file again: it re-matches with the file's caliper, which gives back the
    # matched table every later step was computed from (content hashes): nothing else is redone.
    assert _reran(before, _finished(build)) == {"match"}
    assert "reused (up to date): clean, indicators, surveys, sweep, sensitivity, report." in text, text
    assert check_chain(BuildPaths(build))


def test_a_code_change_invalidates_every_cached_row(build, study_files, monkeypatch):
    paths, config = BuildPaths(build), load_config(study_files["grid"])
    table = _sweep_table(build)
    assert sweep_study.run(paths, config).n_cached == 2  # nothing changed: both rows reused
    real = provenance.code_hash
    monkeypatch.setattr(provenance, "code_hash", lambda step: "edited" + real(step) if step == "sweep" else real(step))
    result = sweep_study.run(paths, config)
    assert (result.n_computed, result.n_cached) == (2, 0)
    pd.testing.assert_frame_equal(_sweep_table(build), table, check_exact=True)
    # The sweep's provenance follows the code it ran with; the chain stays consistent.
    assert read_provenance(paths, "sweep").code.startswith("edited")
    assert check_chain(paths)


def test_a_cleaning_change_invalidates_every_cached_row(build, study_files, monkeypatch):
    paths, config = BuildPaths(build), load_config(study_files["grid"])
    real = provenance.current_hash
    monkeypatch.setattr(provenance, "current_hash",
                        lambda p, key: "0" * 64 if key == "panel" else real(p, key))
    result = sweep_study.run(paths, config)
    assert (result.n_computed, result.n_cached) == (2, 0)


def test_a_hand_edited_cache_entry_is_ignored_and_recomputed(build, study_files):
    paths, config = BuildPaths(build), load_config(study_files["grid"])
    table = _sweep_table(build)
    entries = sorted(paths.sweep_cache.glob("*.json"))
    assert len(entries) == 2
    edited = json.loads(entries[0].read_text(encoding="utf-8"))
    edited["row"]["unmatched_share_complex"] = 0.0  # a "better" result, checksum left as it was
    entries[0].write_text(json.dumps(edited), encoding="utf-8")
    entries[1].write_text('{"key": "trunc', encoding="utf-8")  # a half-written file
    result = sweep_study.run(paths, config)
    assert (result.n_computed, result.n_cached) == (2, 0)
    assert len(result.cache_notes) == 2 and "modified" in result.render()
    pd.testing.assert_frame_equal(_sweep_table(build), table, check_exact=True)
    # An entry moved under another specification's name does not match its key either.
    a, b = sorted(paths.sweep_cache.glob("*.json"))
    a.write_bytes(b.read_bytes())
    assert sweep_study.run(paths, config).n_computed == 1
    pd.testing.assert_frame_equal(_sweep_table(build), table, check_exact=True)


def _cache_entries(paths: BuildPaths) -> dict[str, dict]:
    """Each cache entry by file name, without the time its row took (a record of the run)."""
    entries = {}
    for f in sorted(paths.sweep_cache.glob("*.json")):
        entry = json.loads(f.read_text(encoding="utf-8"))
        entries[f.name] = {"key": entry["key"], "computed_from": entry["computed_from"],
                           "row": {k: v for k, v in entry["row"].items() if k != "seconds"}}
    return entries


def test_the_sweep_in_worker_processes_equals_the_sequential_sweep(build, study_files, tmp_path):
    paths, config = BuildPaths(build), load_config(study_files["grid"])  # 2 rows, the main one among them
    shutil.rmtree(paths.sweep_cache)
    one = sweep_study.run(paths, config.with_overrides({"sweep": {"workers": 1}}))
    table, entries = _sweep_table(build), _cache_entries(paths)
    other = BuildPaths(Path(shutil.copytree(build, tmp_path / "workers")))
    shutil.rmtree(other.sweep_cache)
    two = sweep_study.run(other, config.with_overrides({"sweep": {"workers": 2}}))
    assert (one.workers, two.workers) == (1, 2) and one.n_computed == two.n_computed == 2
    assert "2 computed by 2 worker processes, 0 from the cache" in two.render()
    # Same rows in the same order, and the same cache entries: a sweep may be resumed by either.
    pd.testing.assert_frame_equal(_sweep_table(other.root), table, check_exact=True)
    assert _cache_entries(other) == entries and len(entries) == 2
    assert check_chain(other)


def test_workers_zero_means_the_cpus_at_most_two(monkeypatch):
    monkeypatch.setattr(sweep_study.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert [sweep_study.resolved_workers(0, n) for n in (1, 2, 33)] == [1, 2, 2]
    assert [sweep_study.resolved_workers(3, n) for n in (2, 33)] == [2, 3]
    monkeypatch.setattr(sweep_study.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert sweep_study.resolved_workers(0, 33) == 1
    assert load_config(None).sweep.workers == 0  # the shipped default


def test_the_key_follows_what_a_row_is_computed_from(build, study_files):
    paths, config = BuildPaths(build), load_config(study_files["grid"])
    inputs, code = cleaned_input_hashes(paths), "c0de"
    assert all(inputs.values())
    spec = sweep_study.sweep_specs(config)[0][0]  # caliper 0.1

    def key(cfg, inputs=inputs, code=code):
        return spec_key(sweep_study.spec_config(cfg, spec), spec, inputs, code)[0]

    k = key(config)
    # A [matching] value the specification overrides leaves its key alone; an inherited one does not.
    assert key(config.with_overrides({"matching": {"caliper": 0.05}})) == k
    assert key(config.with_overrides({"matching": {"caliper_scale": "absolute"}})) != k
    assert key(config.with_overrides({"indicators": {"sweep_replicates": 99}})) != k
    assert key(config.with_overrides({"cleaning": {"drop_dpn_qlf_71": False}})) != k
    assert key(config, inputs={**inputs, "cohort": "f" * 64}) != k
    assert key(config, code="other") != k
    assert SpecCache.of(paths).directory == build / "tmp" / "sweep_cache"


def test_the_main_specification_is_always_swept():
    config = load_config(None)
    specs, n_grid = sweep_study.sweep_specs(config)
    assert sweep_study.main_specification(config) in specs and len(specs) == n_grid  # in the default grid
    capped = config.with_overrides({"sweep": {"max_specs": 3}, "matching": {"caliper": 0.05}})
    specs, _ = sweep_study.sweep_specs(capped)
    assert len(specs) == 4 and specs[-1] == sweep_study.main_specification(capped)
    assert specs[-1]["caliper"] == 0.05


def test_run_validates_an_unchanged_extract_once(tmp_path):
    from study.chain import ValidationReused, validate_once

    if not (bi.SAMPLE_DIR / "IR_BEN_R.parquet").exists():
        pytest.skip(f"the committed sample extract is missing from {bi.SAMPLE_DIR}")
    data = Path(shutil.copytree(bi.SAMPLE_DIR, tmp_path / "extract"))
    paths, config = BuildPaths(tmp_path / "build", data), load_config(None)
    first = validate_once(paths, config)
    assert first.ok and not isinstance(first, ValidationReused)
    assert isinstance(validate_once(paths, config), ValidationReused)
    # Another setting the contract reads, or another content, and the extract is read again.
    assert not isinstance(validate_once(paths, config.with_overrides({"extract": {"csv_separator": ","}})),
                          ValidationReused)
    roster = data / "EQUILIBRES_ROSTER.parquet"
    pd.read_parquet(roster).iloc[:-1].to_parquet(roster, index=False)
    again = validate_once(paths, config)
    assert not isinstance(again, ValidationReused)
    assert isinstance(validate_once(paths, config), ValidationReused) == again.ok
