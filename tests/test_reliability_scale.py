"""Scale without surprises: an extract larger than the engine's memory limit is cleaned by spilling
to disk, with the same outputs as an unconstrained run; running out of memory is a clear error."""

from __future__ import annotations

import hashlib
from pathlib import Path

import bad_inputs as bi
import pyarrow.parquet as pq
import pytest

LIMIT = "256MB"
LIMIT_BYTES = 256 * 2**20
SCALE = "0.02"  # about 3 M ER_PRS_F lines (a few départements at full density)


@pytest.fixture(scope="module")
def extract(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scale") / "extract"
    result = bi.cli("generate", "--out", out, "--scale", SCALE, "--seed", "7")
    assert result.exit_code == 0, result.text
    return out


@pytest.fixture(scope="module")
def unconstrained(extract: Path, tmp_path_factory) -> Path:
    build = tmp_path_factory.mktemp("scale_free") / "build"
    out = bi.cli("clean", "--data", extract, "--out", build)
    assert out.exit_code == 0, out.text
    return build


def _limited_config(where: Path, spill: Path) -> Path:
    cfg = where / "limited.toml"
    cfg.write_text(f'[engine]\nduckdb_memory_limit = "{LIMIT}"\nduckdb_threads = 1\n'
                   f'duckdb_temp_directory = "{spill}"\n', encoding="utf-8")
    return cfg


def _hashes(build: Path) -> dict[str, str]:
    files = sorted((build / "clean").glob("*.parquet")) + [build / "audit" / "attrition.csv"]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_extract_larger_than_the_memory_limit_is_cleaned_by_spilling(extract, unconstrained, tmp_path):
    # The claims table alone, decoded, is larger than the limit given to the engine.
    assert pq.read_table(extract / "ER_PRS_F.parquet").nbytes > LIMIT_BYTES
    spill = tmp_path / "spill"
    build = tmp_path / "build"
    out = bi.cli("clean", "--data", extract, "--out", build, "--config", _limited_config(tmp_path, spill))
    assert out.exception is None and out.exit_code == 0, out.text
    assert spill.is_dir()
    assert _hashes(build) == _hashes(unconstrained)


def test_the_limit_really_binds_and_running_out_of_memory_is_a_clear_error(extract, tmp_path, monkeypatch):
    """With spilling forbidden, the same run cannot fit in the limit: so the run above did spill."""
    import pipeline.engine as engine

    connect = engine._duckdb_backend

    def no_spill(settings, build):
        con = connect(settings, build)
        con.raw_sql("SET max_temp_directory_size = '0KB'")
        return con

    monkeypatch.setattr(engine, "_duckdb_backend", no_spill)
    build = tmp_path / "build"
    out = bi.cli("clean", "--data", extract, "--out", build,
                 "--config", _limited_config(tmp_path, tmp_path / "spill"))
    assert out.exception is None and out.exit_code == 2, out.text
    for fragment in (f"ran out of memory under [engine] duckdb_memory_limit = '{LIMIT}' with 1 thread(s)",
                     "Raise the memory limit", "outputs of the previous run were left as they were"):
        assert fragment in out.text, out.text
    assert not (build / "clean" / "manifest.json").exists()
