"""The input contract: the generator's output passes, broken variants fail with clear messages."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from data_samples import SAMPLE_DIR
from data_samples.generator import generate_extract
from pipeline.config import load_config
from pipeline.contract import ValidationReport, pandas_schema, validate_extract
from pipeline.readers import read_table
from study.cli import app


@pytest.fixture(scope="module")
def config():
    return load_config()


@pytest.fixture(scope="module")
def small_extract(tmp_path_factory, config) -> Path:
    out = tmp_path_factory.mktemp("contract") / "extract"
    generate_extract(out, scale=0.001, seed=3, truth_path=None, fmt="parquet", confounding=None, config=config)
    return out


def _set(table: pa.Table, name: str, values: list, type_=None) -> pa.Table:
    arr = pa.array(values, type=type_) if type_ is not None else pa.array(values)
    return table.set_column(table.column_names.index(name), name, arr)


@pytest.fixture(scope="module")
def broken(tmp_path_factory, small_extract) -> Path:
    """A copy of the small extract with one instance of every kind of violation."""
    d = tmp_path_factory.mktemp("broken") / "extract"
    shutil.copytree(small_extract, d)
    # IR_BEN_R: renamed sex column, unknown département code, duplicated (NIR, rank)
    t = pq.read_table(d / "IR_BEN_R.parquet")
    t = t.rename_columns(["BEN_SEX" if c == "BEN_SEX_COD" else c for c in t.column_names])
    dpt = t.column("BEN_RES_DPT").to_pylist()
    dpt[0] = "XYZ"
    t = _set(t, "BEN_RES_DPT", dpt)
    t = pa.concat_tables([t, t.slice(1, 2)])
    pq.write_table(t, d / "IR_BEN_R.parquet")
    # ER_PRS_F: text in amounts, impossible care date, unknown CPL_MAJ_TOP code
    t = pq.read_table(d / "ER_PRS_F.parquet")
    amounts = [str(x) for x in t.column("BSE_REM_MNT").to_pylist()]
    amounts[5], amounts[6], amounts[7] = "abc", "n/a", "12,50"  # decimal comma is tolerated
    t = _set(t, "BSE_REM_MNT", amounts)
    dates = t.column("EXE_SOI_DTD").to_pylist()
    dates[9] = dt.date(2931, 1, 1)
    t = _set(t, "EXE_SOI_DTD", dates, pa.date32())
    cpl = t.column("CPL_MAJ_TOP").to_pylist()
    cpl[11] = 7
    t = _set(t, "CPL_MAJ_TOP", cpl, pa.int64())
    pq.write_table(t, d / "ER_PRS_F.parquet")
    # PMSI: a stay duplicated (ETA_NUM + RSA_NUM) in one year
    t = pq.read_table(d / "T_MCO21B.parquet")
    pq.write_table(pa.concat_tables([t, t.slice(0, 1)]), d / "T_MCO21B.parquet")
    # roster: a missing column; IR_IMB_R: missing table
    t = pq.read_table(d / "EQUILIBRES_ROSTER.parquet").drop(["CPX_PSY"])
    pq.write_table(t, d / "EQUILIBRES_ROSTER.parquet")
    (d / "IR_IMB_R.parquet").unlink()
    return d


@pytest.fixture(scope="module")
def broken_report(broken, config) -> ValidationReport:
    return validate_extract(broken, config, max_examples=2)


def _find(report: ValidationReport, file: str, column: str | None, rule_part: str):
    hits = [v for v in report.violations if v.file.endswith(file) and v.column == column and rule_part in v.rule]
    assert hits, f"no violation {file}/{column}/{rule_part} in:\n{report.render()}"
    return hits[0]


def test_generated_extract_is_valid(small_extract, config):
    report = validate_extract(small_extract, config)
    assert report.ok, report.render()
    assert "no violation" in report.render().splitlines()[-1]


def test_every_violation_is_reported_at_once(broken_report):
    assert not broken_report.ok
    assert len(broken_report.violations) >= 8


@pytest.mark.parametrize(
    "file,column,rule,count",
    [
        ("IR_BEN_R.parquet", "BEN_SEX_COD", "column present", -1),
        ("IR_BEN_R.parquet", "BEN_RES_DPT", "code not in the contract list", 1),
        ("IR_BEN_R.parquet", "BEN_NIR_PSA+BEN_RNG_GEM", "unique line key", 4),
        ("ER_PRS_F.parquet", "BSE_REM_MNT", "type float", 2),
        ("ER_PRS_F.parquet", "EXE_SOI_DTD", "value out of range", 1),
        ("ER_PRS_F.parquet", "CPL_MAJ_TOP", "code not in the contract list", 1),
        ("T_MCO21B.parquet", "ETA_NUM+RSA_NUM", "unique line key", 2),
        ("EQUILIBRES_ROSTER.parquet", "CPX_PSY", "column present", -1),
    ],
)
def test_broken_variant_named_with_file_column_rule_count(broken_report, file, column, rule, count):
    v = _find(broken_report, file, column, rule)
    assert v.count == count
    if count > 0:
        assert v.examples


def test_renamed_column_gets_a_hint(broken_report):
    v = _find(broken_report, "IR_BEN_R.parquet", "BEN_SEX_COD", "column present")
    assert "BEN_SEX" in v.hint and "renamed" in v.hint


def test_missing_table_names_the_expected_file(broken_report):
    v = [x for x in broken_report.violations if x.table == "IR_IMB_R"]
    assert v and v[0].rule == "table present" and "IR_IMB_R.parquet" in v[0].hint


def test_render_masks_identifiers(broken, broken_report):
    text = broken_report.render()
    nirs = pq.read_table(broken / "IR_BEN_R.parquet").column("BEN_NIR_PSA").to_pylist()
    assert not any(n in text for n in nirs)
    assert "…" in text
    assert text.splitlines()[-1].startswith("FAILED")


def test_sentinels_are_valid_values(small_extract, config):
    ben = read_table(small_extract / "IR_BEN_R.parquet", "IR_BEN_R", config)
    assert (ben["BEN_DCD_DTE"] == "1600-01-01").any()
    imb = read_table(small_extract / "IR_IMB_R.parquet", "IR_IMB_R", config)
    assert (imb["IMB_ALD_DTF"] == "2099-12-31").any() and (imb["IMB_ALD_DTF"] == "1600-01-01").any()
    pandas_schema("IR_BEN_R", config).validate(ben, lazy=True)
    pandas_schema("IR_IMB_R", config).validate(imb, lazy=True)


def test_cli_validate_exit_codes(broken):
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(SAMPLE_DIR)])
    assert ok.exit_code == 0, ok.output
    assert "no violation" in ok.output
    bad = runner.invoke(app, ["validate", str(broken)])
    assert bad.exit_code == 1
    assert "BSE_REM_MNT" in bad.output and "FAILED" in bad.output
