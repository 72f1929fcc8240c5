"""The cleaning runner: caching by stage fingerprint, selective re-runs, atomic outputs, errors."""

from __future__ import annotations

import json
import shutil

import pytest

from data_samples import SAMPLE_DIR
from pipeline import runner
from pipeline.clean_stages import STAGE_NAMES
from pipeline.config import load_config
from pipeline.io import PipelineError, file_hash
from pipeline.paths import BuildPaths


@pytest.fixture()
def extract(tmp_path):
    """A private copy of the committed sample (tests modify it)."""
    dest = tmp_path / "extract"
    shutil.copytree(SAMPLE_DIR, dest)
    return dest


def _mtimes(paths: BuildPaths) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (paths.persons, paths.panel, paths.stays, paths.cohort)}


def test_second_run_does_no_work_and_cohort_parameter_reruns_only_cohort(extract, tmp_path):
    cfg = load_config()
    build = tmp_path / "build"
    paths = BuildPaths(build)
    first = runner.run(BuildPaths(build, extract), cfg)
    assert first.ran == STAGE_NAMES
    before = _mtimes(paths)
    manifest_before = paths.clean_manifest.read_text()

    again = runner.run(BuildPaths(build, extract), cfg)
    assert again.up_to_date and again.ran == []
    assert "up to date" in again.render()
    assert _mtimes(paths) == before
    assert paths.clean_manifest.read_text() == manifest_before

    # one cohort parameter: only the cohort stage runs; persons/panel/stays are untouched
    cfg2 = cfg.with_overrides({"cohort": {"min_prior_nursing_cost": 500.0}})
    third = runner.run(BuildPaths(build, extract), cfg2)
    assert third.ran == ["cohort"]
    after = _mtimes(paths)
    assert {k: v for k, v in after.items() if k != "cohort.parquet"} == {
        k: v for k, v in before.items() if k != "cohort.parquet"}
    assert after["cohort.parquet"] != before["cohort.parquet"]
    manifest = json.loads(paths.clean_manifest.read_text())
    assert manifest["parameters"]["cohort"]["min_prior_nursing_cost"] == 500.0
    assert manifest["stages"]["cohort"]["status"] == "ran" and manifest["stages"]["dcir"]["status"] == "cached"

    # a PMSI rule switch re-runs pmsi and what depends on it, not ingest or dcir
    cfg3 = cfg2.with_overrides({"cleaning": {"drop_ghm_90": False}})
    assert runner.run(BuildPaths(build, extract), cfg3).ran == ["pmsi", "outputs", "cohort"]

    # an input change re-runs the stages reading it; --force re-runs everything
    (extract / "EQUILIBRES_ROSTER.parquet").write_bytes((extract / "EQUILIBRES_ROSTER.parquet").read_bytes() + b"")
    assert runner.run(BuildPaths(build, extract), cfg3).ran == []  # same content, same hash
    assert runner.run(BuildPaths(build, extract), cfg3, force=True).ran == STAGE_NAMES
    log = (paths.logs / "clean.log").read_text()
    assert log.count("clean start") == 6 and "every stage up to date" in log


def test_changed_input_reruns_dependent_stages(extract, tmp_path):
    import pyarrow.parquet as pq

    cfg = load_config()
    build = tmp_path / "build"
    runner.run(BuildPaths(build, extract), cfg)
    t = pq.read_table(extract / "T_MCO21VALO.parquet")
    pq.write_table(t.slice(0, t.num_rows - 1), extract / "T_MCO21VALO.parquet")
    assert runner.run(BuildPaths(build, extract), cfg).ran == ["pmsi", "outputs", "cohort"]


def test_deleted_output_is_rebuilt(extract, tmp_path):
    cfg = load_config()
    build = tmp_path / "build"
    paths = BuildPaths(build)
    runner.run(BuildPaths(build, extract), cfg)
    paths.panel.unlink()
    assert runner.run(BuildPaths(build, extract), cfg).ran == ["outputs"]
    assert paths.panel.exists()


def test_failed_run_leaves_previous_outputs_and_manifest_consistent(extract, tmp_path, monkeypatch):
    cfg = load_config()
    build = tmp_path / "build"
    paths = BuildPaths(build)
    runner.run(BuildPaths(build, extract), cfg)
    manifest_before = paths.clean_manifest.read_text()

    import pipeline.stages.cohort as cohort_mod

    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure in the cohort stage")

    monkeypatch.setattr(cohort_mod, "cohort_table", boom)
    with pytest.raises(RuntimeError):
        runner.run(BuildPaths(build, extract), cfg.with_overrides({"cohort": {"history_months": 6}}))
    assert paths.clean_manifest.read_text() == manifest_before
    manifest = json.loads(manifest_before)
    for name, info in manifest["outputs"].items():
        assert file_hash(paths.root / info["path"])["sha256"] == info["sha256"], name
    assert "clean failed" in (paths.logs / "clean.log").read_text()


def test_missing_table_is_a_clear_error(extract, tmp_path):
    (extract / "IR_IMB_R.parquet").unlink()
    with pytest.raises(PipelineError, match="IR_IMB_R"):
        runner.run(BuildPaths(tmp_path / "build", extract), load_config())


def test_missing_column_is_a_clear_error(extract, tmp_path):
    import pyarrow.parquet as pq

    t = pq.read_table(extract / "IR_BEN_R.parquet")
    pq.write_table(t.drop_columns(["BEN_DCD_DTE"]), extract / "IR_BEN_R.parquet")
    with pytest.raises(PipelineError, match="BEN_DCD_DTE"):
        runner.run(BuildPaths(tmp_path / "build", extract), load_config())


def test_large_files_are_hashed_by_sample(tmp_path, monkeypatch):
    import pipeline.io

    f = tmp_path / "big.bin"
    f.write_bytes(bytes(range(256)) * 40_000)  # ~10 MB
    full = file_hash(f)
    assert full["method"] == "sha256"
    monkeypatch.setattr(pipeline.io, "FULL_HASH_MAX_BYTES", 1024)
    sampled = file_hash(f)
    assert sampled["method"].startswith("sampled") and sampled["sha256"] != full["sha256"]
    data = bytearray(f.read_bytes())
    data[0] ^= 1
    f.write_bytes(bytes(data))
    assert file_hash(f)["sha256"] != sampled["sha256"]


# -- input checks: rows from the footers before the stages, line keys inside the stages' queries ------


def _duplicate_rows(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    pq.write_table(pa.concat_tables([t, t.slice(0, rows)]), path)


@pytest.mark.parametrize(("table", "file", "fragments"), [
    ("IR_BEN_R", "IR_BEN_R.parquet", ["3 value(s) of the line key (BEN_NIR_PSA, BEN_RNG_GEM)", "on 6 rows",
                                      "a beneficiary would be counted twice", "(2 copies)"]),
    ("MCO_C", "T_MCO21C.parquet", ["2 value(s) of the line key (ETA_NUM, RSA_NUM)", "on 4 rows",
                                   "a stay would be counted twice", "remove the duplicate rows"]),
])
def test_repeated_line_key_stops_the_stage_reading_the_table(extract, tmp_path, table, file, fragments):
    from pipeline.input_checks import DuplicateKeyError

    _duplicate_rows(extract / file, 3 if table == "IR_BEN_R" else 2)
    build = tmp_path / "build"
    with pytest.raises(DuplicateKeyError) as err:
        runner.run(BuildPaths(build, extract), load_config())
    text = " ".join(str(err.value).split())
    assert text.startswith(str(extract / file))
    for fragment in fragments:
        assert fragment in text, text
    if table == "IR_BEN_R":  # identifiers are masked in the example
        assert "BEN_NIR_PSA=" in text and "…" in text
    # nothing of the failed run is left as a result
    assert not BuildPaths(build).clean_manifest.exists()
    assert not list((build / "clean").rglob("*.parquet"))


def test_line_keys_are_checked_in_the_stage_queries_not_before(extract, tmp_path, monkeypatch):
    """check_inputs reads footers only; a stage that does not run does not check its tables again, and a
    hash collision (the check counts a repeat the columns do not show) is recounted and let through."""
    import pipeline.input_checks as checks_mod

    cfg = load_config()
    build = tmp_path / "build"
    paths = BuildPaths(build, extract)
    runner.run(paths, cfg)
    manifest = json.loads(paths.clean_manifest.read_text())
    assert {f["table"]: f["cached"] for f in manifest["input_checks"]["files"]}["ER_PRS_F"] is False
    assert any("first query of the stage" in c for c in manifest["input_checks"]["checks"])

    # Only the DCIR stage runs: ER_PRS_F is checked again, T_MCOaaB/C (read by it, checked by pmsi) are not.
    cfg2 = cfg.with_overrides({"cleaning": {"max_care_after_flux_days": 40}})
    assert runner.run(paths, cfg2).ran == ["dcir", "outputs", "cohort"]
    files = json.loads(paths.clean_manifest.read_text())["input_checks"]["files"]
    cached = {f["table"]: f["cached"] for f in files}
    assert cached["ER_PRS_F"] is False and cached["T_MCOaaB"] is True and cached["T_MCOaaC"] is True
    er = [f for f in files if f["table"] == "ER_PRS_F"]
    import pyarrow.parquet as pq
    assert er[0]["rows"] == pq.ParquetFile(extract / "ER_PRS_F.parquet").metadata.num_rows

    # A false alarm of the hashed check: recounted exactly, nothing repeats, the run goes on.
    real = checks_mod.repeated_line_keys

    def alarm(table, keys, *, exact=False):
        r = real(table, keys, exact=exact)
        return r.select(repeated=r.repeated + 1)

    import pipeline.clean_stages as stages_mod
    monkeypatch.setattr(stages_mod, "repeated_line_keys", alarm)
    again = runner.run(paths, cfg, force=True)
    assert again.ran == STAGE_NAMES
    assert "hash collision(s), no repeated key" in (paths.logs / "clean.log").read_text()
