"""Readers: locating tables, the three formats give identical tables, typed staging."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_samples import SAMPLE_DIR
from data_samples.generator import generate_extract
from data_samples.writers import write_table
from pipeline.config import load_config
from pipeline.contract_spec import TABLES
from pipeline.io import PipelineError
from pipeline.readers import (
    ContractTypeError,
    MissingTableError,
    locate_tables,
    read_table,
    stage_as_parquet,
)

KEYS = ["IR_BEN_R", "IR_IMB_R", "ER_PRS_F", "MCO_B", "MCO_C", "MCO_VALO", "ROSTER"]


@pytest.fixture(scope="module")
def config():
    return load_config()


@pytest.fixture(scope="module")
def three_formats(tmp_path_factory, config) -> dict[str, Path]:
    """The same extract (same seed) in Parquet, SAS-style CSV and SAS transport (XPT v8)."""
    root = tmp_path_factory.mktemp("formats")
    dirs = {}
    for fmt in ("parquet", "csv", "xpt"):
        dirs[fmt] = root / fmt
        generate_extract(dirs[fmt], scale=0.001, seed=11, truth_path=None, fmt=fmt, confounding=None, config=config)
    # A non-ASCII team id, written latin-1 in the CSV, exercises the encoding fallback.
    roster = pq.read_table(dirs["parquet"] / "EQUILIBRES_ROSTER.parquet")
    teams = roster.column("EQL_EQP_ID").to_pylist()
    teams[0] = "ÉQUIPE-Sèvres"
    roster = roster.set_column(roster.column_names.index("EQL_EQP_ID"), "EQL_EQP_ID", pa.array(teams))
    for fmt in ("parquet", "csv", "xpt"):
        write_table(dirs[fmt] / f"EQUILIBRES_ROSTER.{fmt}", roster, TABLES["ROSTER"], fmt)
    csv = dirs["csv"] / "EQUILIBRES_ROSTER.csv"
    csv.write_bytes(csv.read_text(encoding="utf-8").encode("latin-1"))
    return dirs


def test_locate_tables_on_sample(config):
    found = locate_tables(SAMPLE_DIR, config)
    assert sorted(found) == sorted(KEYS)
    assert [p.name for p in found["MCO_B"]] == [f"T_MCO{y}B.parquet" for y in range(19, 24)]
    assert all(len(found[k]) == 1 for k in ("IR_BEN_R", "ER_PRS_F", "ROSTER"))


def test_missing_table_raises_with_expected_name(tmp_path, config):
    d = tmp_path / "x"
    shutil.copytree(SAMPLE_DIR, d)
    (d / "ER_PRS_F.parquet").unlink()
    with pytest.raises(MissingTableError) as err:
        locate_tables(d, config)
    assert "ER_PRS_F.parquet" in str(err.value) and isinstance(err.value, PipelineError)
    with pytest.raises(MissingTableError):
        locate_tables(tmp_path / "nowhere", config)


def test_csv_is_sas_style(three_formats):
    head = (three_formats["csv"] / "IR_BEN_R.csv").read_text(encoding="latin-1").splitlines()[:3]
    assert ";" in head[0] and "BEN_DCD_DTE" in head[0]
    assert any(":00:00:00" in line and "JAN" in line.upper() for line in head[1:])
    assert (three_formats["csv"] / "EQUILIBRES_ROSTER.csv").read_bytes().count("É".encode("latin-1")) == 1


@pytest.mark.parametrize("key", KEYS)
def test_three_formats_give_identical_tables(three_formats, config, key):
    found = {fmt: locate_tables(d, config)[key] for fmt, d in three_formats.items()}
    assert len(found["parquet"]) == len(found["csv"]) == len(found["xpt"])
    for i, path in enumerate(found["parquet"]):
        ref = read_table(path, key, config)
        assert list(ref.columns) == TABLES[key].names
        for fmt in ("csv", "xpt"):
            other = read_table(found[fmt][i], key, config)
            pd.testing.assert_frame_equal(ref, other, check_exact=True)


def test_read_table_contract_types(config):
    ben = read_table(SAMPLE_DIR / "IR_BEN_R.parquet", "IR_BEN_R", config)
    assert str(ben["BEN_DCD_DTE"].dtype) == "datetime64[ms]"
    assert ben["BEN_RNG_GEM"].dtype == "int64"
    prs = read_table(SAMPLE_DIR / "T_MCO20VALO.parquet", "T_MCO20VALO", config)
    assert prs["MNT_TOT_AM"].dtype == "float64"


def test_decimal_comma_and_iso_dates_tolerated(tmp_path, config):
    f = tmp_path / "T_MCO21VALO.csv"
    f.write_text('ETA_NUM;RSA_NUM;MNT_TOT_AM;VALO\n"750712184";1000000001;1234,56;1\n750712184;1000000002;;0\n',
                 encoding="utf-8")
    df = read_table(f, "MCO_VALO", config)
    assert df["MNT_TOT_AM"].iloc[0] == pytest.approx(1234.56)
    assert pd.isna(df["MNT_TOT_AM"].iloc[1])
    g = tmp_path / "EQUILIBRES_ROSTER.csv"
    g.write_text("BEN_NIR_PSA;EQL_EQP_ID;EQL_DPT;EQL_INC_DTE;EQL_SOR_DTE;CPX_SOCIAL;CPX_AIDANT;CPX_PALLIATIF;"
                 "CPX_PSY;CPX_HANDICAP;CPX_PEDIATRIE\nABCDEFGHIJKLMNOPQ;T1;075;2021-03-04;01JAN1600:00:00:00;"
                 "0;1;0;0;0;0\n", encoding="utf-8")
    r = read_table(g, "ROSTER", config)
    assert r["EQL_INC_DTE"].iloc[0] == pd.Timestamp("2021-03-04")
    assert r["EQL_SOR_DTE"].iloc[0] == pd.Timestamp("1600-01-01")


def test_text_in_amounts_is_an_error_not_a_missing_value(tmp_path, config):
    f = tmp_path / "T_MCO21VALO.csv"
    f.write_text("ETA_NUM;RSA_NUM;MNT_TOT_AM;VALO\n750712184;1;abc;1\n750712184;2;12.5;1\n", encoding="utf-8")
    with pytest.raises(ContractTypeError) as err:
        read_table(f, "MCO_VALO", config)
    assert "MNT_TOT_AM" in str(err.value) and "1 value" in str(err.value)
    with pytest.raises(ContractTypeError):
        stage_as_parquet(f, "MCO_VALO", tmp_path / "staged", config)
    assert not list((tmp_path).glob("staged/*.parquet"))


def test_stage_as_parquet(three_formats, tmp_path, config):
    parquet = three_formats["parquet"] / "ER_PRS_F.parquet"
    assert stage_as_parquet(parquet, "ER_PRS_F", tmp_path, config) == parquet
    for fmt in ("csv", "xpt"):
        src = locate_tables(three_formats[fmt], config)["ER_PRS_F"][0]
        staged = stage_as_parquet(src, "ER_PRS_F", tmp_path / fmt, config)
        assert staged.suffix == ".parquet" and staged.parent == tmp_path / fmt
        schema = pq.read_schema(staged)
        assert str(schema.field("EXE_SOI_DTD").type) == "date32[day]"
        assert str(schema.field("BSE_REM_MNT").type) == "double"
        pd.testing.assert_frame_equal(read_table(staged, "ER_PRS_F", config), read_table(parquet, "ER_PRS_F", config))
