"""Real extracts as they come (issue 17): CSV separators and encodings detected, SAS/French dates,
decimal commas, lower-case, extra and reordered columns, tables split by year, month or into a
directory of parts — and a comma-separated latin-1 decimal-comma extract split by year cleans to
exactly what the Parquet extract gives."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from pathlib import Path

import golden
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from data_samples import SAMPLE_DIR
from data_samples.writers import sas_datetime_strings
from pipeline import runner
from pipeline.config import load_config
from pipeline.contract import validate_extract
from pipeline.contract_spec import TABLES
from pipeline.input_checks import DuplicateKeyError
from pipeline.paths import BuildPaths
from pipeline.privacy import extract_identifiers
from pipeline.readers import (
    ContractTypeError,
    MissingTableError,
    UnreadableFileError,
    find_tables,
    locate_tables,
    read_table,
    source_dialect,
)

SAMPLE_FILES = sorted(p.name for p in SAMPLE_DIR.glob("*.parquet"))
DATE_TEXT = {"sas": r"\d{2}[A-Z]{3}\d{4}:00:00:00", "dmy": r"\d{2}/\d{2}/\d{4}", "iso": r"\d{4}-\d{2}-\d{2}"}


@pytest.fixture(scope="module")
def config():
    return load_config()


def write_csv(table: pa.Table, path: Path, *, sep: str = ";", encoding: str = "utf-8", decimal_comma: bool = False,
              dates: str = "sas") -> Path:
    """``table`` as an export tool would write it: dates as SAS datetimes ('sas'), DD/MM/YYYY ('dmy') or
    ISO ('iso'); floats with a decimal comma if asked (quoted when the separator is ','); text quoted."""
    cols = []
    for field, col in zip(table.schema, table.columns, strict=True):
        if pa.types.is_date(field.type):
            if dates == "sas":
                col = sas_datetime_strings(col)
            elif dates == "dmy":
                col = pc.strftime(pc.cast(col, pa.timestamp("s")), format="%d/%m/%Y")
            else:
                col = pc.cast(col, pa.string())
        elif pa.types.is_floating(field.type):
            col = pc.cast(col, pa.string())  # shortest repr: parses back to the same double
            if decimal_comma:
                col = pc.replace_substring(col, ".", ",")
        cols.append(col)
    text = pa.Table.from_arrays(cols, names=table.column_names)
    utf8 = path.with_name(path.name + ".utf8")
    pacsv.write_csv(text, utf8, write_options=pacsv.WriteOptions(delimiter=sep, quoting_style="needed"))
    if encoding == "utf-8":
        os.replace(utf8, path)
    else:
        with open(utf8, encoding="utf-8", newline="") as src, open(path, "w", encoding=encoding, newline="") as out:
            while chunk := src.read(1 << 22):
                out.write(chunk)
        utf8.unlink()
    return path


def roster_with_team(name: str) -> pa.Table:
    roster = pq.read_table(SAMPLE_DIR / "EQUILIBRES_ROSTER.parquet")
    teams = roster.column("EQL_EQP_ID").to_pylist()
    teams[0] = name
    return roster.set_column(roster.column_names.index("EQL_EQP_ID"), "EQL_EQP_ID", pa.array(teams))


def frame(table: pa.Table, key: str, tmp: Path, config) -> pd.DataFrame:
    pq.write_table(table, tmp / f"ref_{key}.parquet")
    return read_table(tmp / f"ref_{key}.parquet", key, config)


def link_sample(dest: Path, skip: tuple[str, ...] = ()) -> Path:
    """A directory holding the sample's files (symbolic links) except the tables ``skip``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in SAMPLE_FILES:
        if not name.startswith(skip):
            os.symlink(SAMPLE_DIR / name, dest / name)
    return dest


def flux_years(prs: pa.Table) -> list[int]:
    return sorted(set(pc.year(prs.column("FLX_DIS_DTD")).to_pylist()))


# ------------------------------------------------------------------------------------------------
# CSV dialects
@pytest.mark.parametrize("sep", [",", "|", "\t"])
def test_separator_detected(sep, tmp_path, config):
    roster = roster_with_team("EQL-048-002")
    path = write_csv(roster, tmp_path / "EQUILIBRES_ROSTER.csv", sep=sep)
    dialect = source_dialect(path, config, TABLES["ROSTER"])
    assert (dialect.separator, dialect.separator_detected, dialect.encoding_detected) == (sep, True, False)
    pd.testing.assert_frame_equal(read_table(path, "ROSTER", config), frame(roster, "ROSTER", tmp_path, config))


def test_configured_separator_kept_when_it_fits(tmp_path, config):
    path = write_csv(roster_with_team("EQL"), tmp_path / "EQUILIBRES_ROSTER.csv", sep=";")
    dialect = source_dialect(path, config, TABLES["ROSTER"])
    assert (dialect.separator, dialect.separator_detected) == (";", False)


@pytest.mark.parametrize(("encoding", "team", "configured", "detected"), [
    ("latin-1", "ÉQUIPE-Sèvres", ["utf-8", "latin-1"], False),
    ("cp1252", "Équipe Cœur – 54 €/h", ["utf-8", "latin-1"], True),   # latin-1 would corrupt œ, – and €
    ("cp1252", "Équipe Cœur – 54 €/h", ["latin-1"], True),
    ("latin-1", "ÉQUIPE-Sèvres", ["utf-8"], True),
    ("utf-8", "Équipe Cœur – 54 €/h", ["latin-1"], True),             # UTF-8's € holds a 0x80–0x9F byte
])
def test_encoding_detected_without_corruption(encoding, team, configured, detected, tmp_path, config):
    cfg = config.model_copy(update={"extract": config.extract.model_copy(update={"csv_encodings": configured})})
    roster = roster_with_team(team)
    path = write_csv(roster, tmp_path / "EQUILIBRES_ROSTER.csv", encoding=encoding)
    dialect = source_dialect(path, cfg, TABLES["ROSTER"])
    assert (dialect.encoding, dialect.encoding_detected) == (encoding, detected)
    read = read_table(path, "ROSTER", cfg)
    assert read["EQL_EQP_ID"].iloc[0] == team
    pd.testing.assert_frame_equal(read, frame(roster, "ROSTER", tmp_path, cfg))


def test_cp1252_is_transcoded_by_streaming(tmp_path, config, monkeypatch):
    """A cp1252 file larger than the transcoding chunk is read in pieces, and staged intact."""
    import pipeline.csv_dialect as csv_dialect
    from pipeline.readers import stage_as_parquet

    monkeypatch.setattr(csv_dialect, "TRANSCODE_CHUNK_CHARS", 1000)
    roster = roster_with_team("Cœur-€")
    path = write_csv(roster, tmp_path / "EQUILIBRES_ROSTER.csv", sep=",", encoding="cp1252")
    assert path.stat().st_size > 3000
    staged = stage_as_parquet(path, "ROSTER", tmp_path / "staged", config)
    assert pq.read_table(staged).column("EQL_EQP_ID")[0].as_py() == "Cœur-€"


def test_header_that_matches_nothing_says_how_it_was_read(tmp_path, config):
    path = tmp_path / "EQUILIBRES_ROSTER.csv"
    path.write_text("BEN_AMA_COD,BEN_CDI_NIR,BEN_DTE_INS\n1,2,3\n", encoding="utf-8")
    with pytest.raises(UnreadableFileError) as err:
        read_table(path, "ROSTER", config)
    msg = str(err.value)
    for part in (str(path), "1 column(s) named 'BEN_AMA_COD,BEN_CDI_NIR,BEN_DTE_INS'",
                 "the separator seems to be ','", "[extract] csv_separator", "EQUILIBRES_ROSTER"):
        assert part in msg, (part, msg)
    report = validate_extract(tmp_path, config)
    [v] = [v for v in report.violations if v.file == "EQUILIBRES_ROSTER.csv"]
    assert v.rule == "readable" and "the separator seems to be ','" in v.hint


def test_unquoted_decimal_comma_in_comma_file_is_named(tmp_path, config):
    valo = pq.read_table(SAMPLE_DIR / "T_MCO20VALO.parquet")
    path = write_csv(valo, tmp_path / "T_MCO20VALO.csv", sep=",", decimal_comma=True)
    text = path.read_text(encoding="utf-8").replace('"', "")  # amounts no longer quoted
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UnreadableFileError, match="unquoted separator"):
        read_table(path, "MCO_VALO", config)


def test_missing_columns_say_how_the_csv_was_read(tmp_path, config):
    roster = roster_with_team("EQL").drop(["EQL_INC_DTE"])
    path = write_csv(roster, tmp_path / "EQUILIBRES_ROSTER.csv", sep="|")
    with pytest.raises(ContractTypeError, match=r"EQL_INC_DTE .*separator '\|' \(detected\)"):
        read_table(path, "ROSTER", config)


@pytest.mark.parametrize(("sep", "dates"), [(";", "dmy"), (";", "sas"), (",", "iso"), ("\t", "dmy")])
def test_decimal_comma_dates_and_quoted_fields(sep, dates, tmp_path, config):
    valo = pq.read_table(SAMPLE_DIR / "T_MCO20VALO.parquet")
    c = pq.read_table(SAMPLE_DIR / "T_MCO20C.parquet")
    for table, key in ((valo, "MCO_VALO"), (c, "MCO_C")):
        path = write_csv(table, tmp_path / f"{key}.csv", sep=sep, decimal_comma=True, dates=dates)
        text = path.read_text(encoding="utf-8")
        if key == "MCO_VALO":
            fields = next(csv.reader([text.splitlines()[1]], delimiter=sep))
            assert any(re.fullmatch(r"\d+,\d+", f) for f in fields), fields  # decimal commas really written
        else:
            assert re.search(DATE_TEXT[dates], text.splitlines()[1])
        pd.testing.assert_frame_equal(read_table(path, key, config), frame(table, key, tmp_path, config))


def test_lower_case_extra_and_reordered_columns(tmp_path, config):
    ben = pq.read_table(SAMPLE_DIR / "IR_BEN_R.parquet")
    shuffled = ben.select(list(reversed(ben.column_names)))
    shuffled = shuffled.append_column("BEN_LIB_COMMUNE", pa.array(["Mende"] * ben.num_rows))
    shuffled = shuffled.rename_columns([n.lower() for n in shuffled.column_names])
    ref = frame(ben, "IR_BEN_R", tmp_path, config)
    csv = write_csv(shuffled, tmp_path / "IR_BEN_R.csv", sep=",")
    pq.write_table(shuffled, tmp_path / "IR_BEN_R.parquet")
    for path in (csv, tmp_path / "IR_BEN_R.parquet"):
        pd.testing.assert_frame_equal(read_table(path, "IR_BEN_R", config), ref)


# ------------------------------------------------------------------------------------------------
# A table in several files
def test_locate_by_year_month_and_parts(tmp_path, config):
    d = link_sample(tmp_path / "x", skip=("ER_PRS_F",))
    for name in ("ER_PRS_F_2020.parquet", "er_prs_f_2019.csv", "ER_PRS_F_202101.csv", "ER_PRS_F_2021_02.parquet",
                 "ER_PRS_F_2021_old.csv", "notes.txt"):
        (d / name).write_bytes(b"")
    found = locate_tables(d, config)["ER_PRS_F"]
    assert [p.name for p in found] == ["er_prs_f_2019.csv", "ER_PRS_F_2020.parquet", "ER_PRS_F_202101.csv",
                                       "ER_PRS_F_2021_02.parquet"]
    parts = tmp_path / "y"
    link_sample(parts, skip=("ER_PRS_F",))
    (parts / "ER_PRS_F.parquet" / "year=2020").mkdir(parents=True)
    for rel in ("year=2020/part-0002.parquet", "year=2020/part-0001.parquet", "_SUCCESS", ".part-0001.crc"):
        (parts / "ER_PRS_F.parquet" / rel).write_bytes(b"")
    search = find_tables(parts, config)
    assert [search.name(p) for p in search.found["ER_PRS_F"]] == [
        "ER_PRS_F.parquet/year=2020/part-0001.parquet", "ER_PRS_F.parquet/year=2020/part-0002.parquet"]


@pytest.mark.parametrize(("names", "expected"), [
    (("ER_PRS_F.parquet", "ER_PRS_F_2021.parquet"), "holds the whole table"),
    (("ER_PRS_F_2021.parquet", "ER_PRS_F_202103.csv"), "months of a year that also has a whole-year file"),
    (("ER_PRS_F.csv", "ER_PRS_F/part-0.parquet"), "both the file ER_PRS_F.csv and the directory ER_PRS_F/"),
    (("ER_PRS_F/readme.txt",), "holds no .parquet"),
])
def test_ambiguous_layouts_are_refused(names, expected, tmp_path, config):
    d = link_sample(tmp_path / "x", skip=("ER_PRS_F",))
    alone = tmp_path / "alone"  # the same files without the other tables: validate reads nothing else
    for root in (d, alone):
        for name in names:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(b"")
    with pytest.raises(MissingTableError, match=expected):
        locate_tables(d, config)
    report = validate_extract(alone, config)
    assert any(v.rule == "one set of files per table" and expected in v.hint for v in report.violations)
    assert "ER_PRS_F" not in find_tables(alone, config).missing


@pytest.fixture(scope="module")
def sample_built(tmp_path_factory, config):
    build = tmp_path_factory.mktemp("sample_build")
    runner.run(BuildPaths(build, SAMPLE_DIR), config)
    return golden.output_digest(build, ("clean", "audit"))


def clean_digest(data: Path, build: Path, config) -> dict[str, str]:
    runner.run(BuildPaths(build, data), config)
    return golden.output_digest(build, ("clean", "audit"))


@pytest.mark.slow
def test_split_by_month_and_parts_clean_like_one_file(tmp_path, config, sample_built):
    prs = pq.read_table(SAMPLE_DIR / "ER_PRS_F.parquet")
    month = pc.strftime(pc.cast(prs.column("FLX_DIS_DTD"), pa.timestamp("s")), format="%Y%m")
    by_month = link_sample(tmp_path / "by_month", skip=("ER_PRS_F",))
    for m in sorted(set(month.to_pylist())):
        pq.write_table(prs.filter(pc.equal(month, m)), by_month / f"ER_PRS_F_{m}.parquet")
    assert len(locate_tables(by_month, config)["ER_PRS_F"]) > 24
    assert clean_digest(by_month, tmp_path / "b_month", config) == sample_built

    # A directory of parts in mixed formats (Spark parts, one CSV part): every part is staged.
    parts = link_sample(tmp_path / "parts", skip=("ER_PRS_F",))
    (parts / "ER_PRS_F").mkdir()
    step = prs.num_rows // 3 + 1
    for i in range(3):
        chunk = prs.slice(i * step, step)
        if i == 1:
            write_csv(chunk, parts / "ER_PRS_F" / f"part-{i:04d}.csv", sep=",", decimal_comma=True)
        else:
            pq.write_table(chunk, parts / "ER_PRS_F" / f"part-{i:04d}.parquet")
    assert clean_digest(parts, tmp_path / "b_parts", config) == sample_built
    manifest = json.loads((tmp_path / "b_parts" / "clean" / "manifest.json").read_text())
    files = {i["file"]: i for i in manifest["inputs"]["ER_PRS_F"]}
    assert files["ER_PRS_F/part-0001.csv"]["read_as"]["separator"] == ","
    assert set(files) == {"ER_PRS_F/part-0000.parquet", "ER_PRS_F/part-0001.csv", "ER_PRS_F/part-0002.parquet"}
    checked = {c["file"]: c["rows"] for c in manifest["input_checks"]["files"] if c["table"] == "ER_PRS_F"}
    assert set(checked) == set(files) and sum(checked.values()) == prs.num_rows


@pytest.mark.slow
def test_each_file_of_a_split_table_is_checked_and_named(tmp_path, config):
    prs = pq.read_table(SAMPLE_DIR / "ER_PRS_F.parquet")
    years = flux_years(prs)
    d = link_sample(tmp_path / "x", skip=("ER_PRS_F",))
    year = pc.year(prs.column("FLX_DIS_DTD"))
    for y in years:
        pq.write_table(prs.filter(pc.equal(year, y)), d / f"ER_PRS_F_{y}.parquet")
    # A line of 2021 extracted again in the 2022 file: each file alone is fine, together they overlap.
    dup = prs.filter(pc.equal(year, 2021)).slice(0, 1)
    pq.write_table(pa.concat_tables([prs.filter(pc.equal(year, 2022)), dup]), d / "ER_PRS_F_2022.parquet")
    with pytest.raises(DuplicateKeyError, match="ER_PRS_F_2021.parquet and ER_PRS_F_2022.parquet"):
        runner.run(BuildPaths(tmp_path / "b", d), config)

    # Text in an amount of one year's CSV: the message names that file.
    pq.write_table(prs.filter(pc.equal(year, 2022)), d / "ER_PRS_F_2022.parquet")
    bad = d / "ER_PRS_F_2020.csv"
    write_csv(prs.filter(pc.equal(year, 2020)), bad, sep=",", decimal_comma=True)
    (d / "ER_PRS_F_2020.parquet").unlink()
    with open(bad, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    rows[1][rows[0].index("BSE_REM_MNT")] = "12 euros"
    with open(bad, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(ContractTypeError, match=r"ER_PRS_F_2020\.csv: values that do not convert(.|\n)*BSE_REM_MNT"):
        runner.run(BuildPaths(tmp_path / "b2", d), config)


# ------------------------------------------------------------------------------------------------
# The whole extract as comma-separated, latin-1, decimal-comma CSV split by year
@pytest.fixture(scope="module")
def twin_extracts(tmp_path_factory) -> tuple[Path, Path]:
    """The sample with an accented team name, as Parquet and as CSV with ',' (not the configured ';'),
    latin-1, decimal commas, SAS datetimes, ER_PRS_F in one file per flux year."""
    root = tmp_path_factory.mktemp("twins")
    parquet = link_sample(root / "parquet", skip=("EQUILIBRES_ROSTER",))
    roster = roster_with_team("ÉQUIPE-Sèvres")
    pq.write_table(roster, parquet / "EQUILIBRES_ROSTER.parquet")
    d = root / "csv"
    d.mkdir()
    for name in SAMPLE_FILES:
        table = roster if name.startswith("EQUILIBRES") else pq.read_table(SAMPLE_DIR / name)
        stem = Path(name).stem
        if stem == "ER_PRS_F":
            year = pc.year(table.column("FLX_DIS_DTD"))
            for y in flux_years(table):
                write_csv(table.filter(pc.equal(year, y)), d / f"ER_PRS_F_{y}.csv", sep=",", encoding="latin-1",
                          decimal_comma=True)
        else:
            write_csv(table, d / f"{stem}.csv", sep=",", encoding="latin-1", decimal_comma=True)
    for extract in (parquet, d):
        shutil.copytree(SAMPLE_DIR / "surveys", extract / "surveys")
    return parquet, d


@pytest.mark.slow
def test_comma_latin1_decimal_comma_csv_by_year_cleans_like_parquet(twin_extracts, tmp_path, config):
    parquet, csv_extract = twin_extracts
    assert len(locate_tables(csv_extract, config)["ER_PRS_F"]) >= 5
    assert b"," in (csv_extract / "T_MCO21VALO.csv").read_bytes().splitlines()[1].replace(b'","', b"")
    assert "ÉQUIPE".encode("latin-1") in (csv_extract / "EQUILIBRES_ROSTER.csv").read_bytes()
    expected = clean_digest(parquet, tmp_path / "parquet", config)
    got = clean_digest(csv_extract, tmp_path / "csv", config)
    assert got == expected
    assert len(got) >= 6 and "audit/attrition.csv" in got
    manifest = json.loads((tmp_path / "csv" / "clean" / "manifest.json").read_text())
    assert manifest["inputs"]["ROSTER"][0]["read_as"] == {"format": "csv", "separator": ",", "encoding": "latin-1",
                                                          "detected": ["separator"]}
    assert [i["file"] for i in manifest["inputs"]["ER_PRS_F"]][:2] == ["ER_PRS_F_2019.csv", "ER_PRS_F_2020.csv"]
    # The report's identifier screen reads the same files the same way.
    ids = extract_identifiers(csv_extract, config)
    assert len(ids) > 1000 and ids == extract_identifiers(parquet, config)


@pytest.mark.slow
def test_validate_says_how_each_csv_was_read(tmp_path, config):
    """A tab-separated latin-1 roster and a '|'-separated ER_PRS_F in one file per year (DD/MM/YYYY
    dates, decimal commas): no violation, and the report says how every file was read."""
    d = tmp_path / "x"
    d.mkdir()
    write_csv(roster_with_team("ÉQUIPE-Sèvres"), d / "EQUILIBRES_ROSTER.csv", sep="\t", encoding="latin-1")
    prs = pq.read_table(SAMPLE_DIR / "ER_PRS_F.parquet").slice(0, 3000)
    year = pc.year(prs.column("FLX_DIS_DTD"))
    years = flux_years(prs)
    assert len(years) >= 2
    for y in years:
        write_csv(prs.filter(pc.equal(year, y)), d / f"ER_PRS_F_{y}.csv", sep="|", decimal_comma=True, dates="dmy")
    report = validate_extract(d, config)
    assert {v.rule for v in report.violations} == {"table present"}, report.render()  # the tables left out
    text = report.render()
    assert "EQUILIBRES_ROSTER.csv (86 rows; CSV, separator 'TAB' (detected), encoding latin-1)" in text
    name = f"ER_PRS_F_{years[0]}.csv"
    assert name in report.files_checked and report.read_as[name] == "CSV, separator '|' (detected), encoding utf-8"
    assert sum(report.rows_checked[f"ER_PRS_F_{y}.csv"] for y in years) == 3000


@pytest.mark.slow
def test_validate_finds_a_line_in_two_files(tmp_path, config):
    """Each file alone is valid; the line repeated in the month file of another format is reported."""
    prs = pq.read_table(SAMPLE_DIR / "ER_PRS_F.parquet").slice(0, 400)
    pq.write_table(prs.slice(0, 200), tmp_path / "ER_PRS_F_202101.parquet")
    write_csv(pa.concat_tables([prs.slice(200, 200), prs.slice(5, 1)]), tmp_path / "ER_PRS_F_202102.csv", sep=",")
    report = validate_extract(tmp_path, config)
    [v] = [v for v in report.violations if v.rule == "line key unique across the files of the table"]
    assert v.count == 1 and v.examples[0]["files"] == "ER_PRS_F_202101.parquet and ER_PRS_F_202102.csv"
    assert {x.rule for x in report.violations} == {"table present", v.rule}, report.render()


def _orphan_note_count(report) -> int:
    return sum(v.count for v in report.notes + report.violations if v.rule == "regularisation_netting")


@pytest.mark.slow
def test_regularisations_are_netted_across_the_files_of_a_split_table(tmp_path, config):
    """A regularisation paid in a later flux file than its original is not an orphan: the note counts
    the same lines whether ER_PRS_F is one file or one file per flux year, and still sees a real orphan."""
    prs = pq.read_table(SAMPLE_DIR / "ER_PRS_F.parquet")
    negative = pc.less(prs.column("PRS_ACT_QTE"), 0)
    year = pc.year(prs.column("FLX_DIS_DTD"))
    # The sample must hold regularisations paid in another flux year than their original for this to test
    # anything: some negative line's flux year differs from the year of the earliest line of its group.
    assert pc.sum(negative).as_py() > 0
    d = link_sample(tmp_path / "split", skip=("ER_PRS_F",))
    for y in flux_years(prs):
        pq.write_table(prs.filter(pc.equal(year, y)), d / f"ER_PRS_F_{y}.parquet")
    single = _orphan_note_count(validate_extract(SAMPLE_DIR, config))
    assert _orphan_note_count(validate_extract(d, config)) == single

    # One real orphan (a cancellation of care that was never paid) in the 2021 file is still seen.
    first = prs.filter(pc.equal(year, 2021)).slice(0, 1)
    orphan = first.set_column(first.column_names.index("PRS_ACT_QTE"), "PRS_ACT_QTE",
                              pc.negate(first.column("PRS_ACT_QTE")))
    orphan = orphan.set_column(orphan.column_names.index("BSE_REM_MNT"), "BSE_REM_MNT",
                               pc.negate(orphan.column("BSE_REM_MNT")))
    orphan = orphan.set_column(orphan.column_names.index("EXE_SOI_DTD"), "EXE_SOI_DTD",
                               pa.array([pa.scalar(pd.Timestamp("2021-06-15").date())], pa.date32()))
    orphan = orphan.set_column(orphan.column_names.index("EXE_SOI_DTF"), "EXE_SOI_DTF",
                               pa.array([pa.scalar(pd.Timestamp("2021-06-15").date())], pa.date32()))
    pq.write_table(pa.concat_tables([prs.filter(pc.equal(year, 2021)), orphan.cast(prs.schema)]),
                   d / "ER_PRS_F_2021.parquet")
    assert _orphan_note_count(validate_extract(d, config)) == single + 1


# ------------------------------------------------------------------------------------------------
# PMSI year tables in several files or a directory of parts
def test_locate_pmsi_years_in_numbered_files_and_parts(tmp_path, config):
    from pipeline.readers import pmsi_year, pmsi_year_groups

    d = link_sample(tmp_path / "x", skip=("T_MCO20B", "T_MCO21C"))
    for rel in ("T_MCO20B/part-0002.csv", "T_MCO20B/part-0001.parquet", "T_MCO20B/_SUCCESS",
                "t_mco21c_part2.csv", "T_MCO21C_1.parquet", "T_MCO21C_old.csv"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(b"")
    search = find_tables(d, config)
    assert not search.missing and not search.conflicts
    names = [search.name(p) for p in search.found["MCO_B"]]
    assert names == ["T_MCO19B.parquet", "T_MCO20B/part-0001.parquet", "T_MCO20B/part-0002.csv",
                     "T_MCO21B.parquet", "T_MCO22B.parquet", "T_MCO23B.parquet"]
    assert [search.name(p) for p in search.found["MCO_C"]][1:4] == ["T_MCO20C.parquet", "T_MCO21C_1.parquet",
                                                                     "t_mco21c_part2.csv"]
    assert [pmsi_year(p, "MCO_B", config) for p in search.found["MCO_B"]] == [2019, 2020, 2020, 2021, 2022, 2023]
    assert pmsi_year_groups(search.found["MCO_C"], "MCO_C", config)[2021] == [2, 3]
    # Spark's layout (a directory named like the file, nested folders): the year comes from the directory.
    assert pmsi_year(d / "T_MCO22VALO.parquet" / "year=2022" / "part-0.parquet", "MCO_VALO", config) == 2022
    # A year with parts in B but no file at all in C is still reported.
    (d / "T_MCO21C_1.parquet").unlink()
    (d / "t_mco21c_part2.csv").unlink()
    assert "year(s) 2021" in find_tables(d, config).missing["MCO_C"]


@pytest.mark.parametrize(("names", "expected"), [
    (("T_MCO21B.parquet", "T_MCO21B_1.parquet"), "T_MCO21B.parquet holds the whole year but T_MCO21B_1.parquet"),
    (("T_MCO21B.parquet", "T_MCO21B/part-0.parquet"), "both the file T_MCO21B.parquet and the directory T_MCO21B/"),
    (("T_MCO21B/notes.txt",), "holds no .parquet"),
])
def test_ambiguous_pmsi_layouts_are_refused(names, expected, tmp_path, config):
    d = link_sample(tmp_path / "x", skip=("T_MCO21B",))
    for name in names:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(b"")
    with pytest.raises(MissingTableError, match=re.escape(expected)):
        locate_tables(d, config)
    report = validate_extract(d, config)
    assert any(v.rule == "one set of files per table" and expected in v.hint for v in report.violations)


def split_pmsi(dest: Path) -> Path:
    """The sample with PMSI year tables split as platforms write them: T_MCO20B a directory of parts (two
    Parquet, one comma-separated decimal-comma CSV), T_MCO21C numbered files (Parquet and CSV), T_MCO19VALO
    as Spark writes it (T_MCO19VALO.parquet/year=2019/part-*.parquet), T_MCO22C a directory of one part."""
    split = {"T_MCO20B": 3, "T_MCO21C": 2, "T_MCO19VALO": 2, "T_MCO22C": 1}
    link_sample(dest, skip=tuple(split))
    for stem, n in split.items():
        table = pq.read_table(SAMPLE_DIR / f"{stem}.parquet")
        step = table.num_rows // n + 1
        for i in range(n):
            chunk = table.slice(i * step, step)
            if stem == "T_MCO20B":
                path = dest / stem / f"part-{i:04d}.{'csv' if i == 1 else 'parquet'}"
            elif stem == "T_MCO21C":
                path = dest / f"{stem}_{i + 1}.{'csv' if i == 1 else 'parquet'}"
            elif stem == "T_MCO19VALO":
                path = dest / f"{stem}.parquet" / "year=2019" / f"part-{i:05d}.parquet"
            else:
                path = dest / stem / "part-0.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".csv":
                write_csv(chunk, path, sep=",", decimal_comma=True)
            else:
                pq.write_table(chunk, path)
    return dest


@pytest.mark.slow
def test_pmsi_in_parts_validates_and_cleans_like_one_file(tmp_path, config, sample_built):
    d = split_pmsi(tmp_path / "parts")
    found = locate_tables(d, config)
    assert (len(found["MCO_B"]), len(found["MCO_C"]), len(found["MCO_VALO"])) == (7, 6, 6)
    # The same verdict as the single-file sample: valid, nothing noted; every part checked and named.
    whole, parts = validate_extract(SAMPLE_DIR, config), validate_extract(d, config)
    assert whole.ok and parts.ok and not parts.notes, parts.render()
    assert parts.read_as["T_MCO20B/part-0001.csv"].startswith("CSV, separator ','")
    assert sum(n for f, n in parts.rows_checked.items() if f.startswith("T_MCO20B/")) == \
        whole.rows_checked["T_MCO20B.parquet"]
    # The same clean outputs (persons, stays, cohort, panel euros) and audit trail, digest for digest.
    build = tmp_path / "b"
    got = clean_digest(d, build, config)
    assert got == sample_built
    assert {"clean/persons.parquet", "clean/stays.parquet", "clean/cohort.parquet", "clean/panel.parquet",
            "audit/attrition.csv"} <= set(got)
    manifest = json.loads((build / "clean" / "manifest.json").read_text())
    checked = {c["file"] for c in manifest["input_checks"]["files"]}
    assert {"T_MCO20B/part-0000.parquet", "T_MCO20B/part-0001.csv", "T_MCO21C_2.csv",
            "T_MCO19VALO.parquet/year=2019/part-00001.parquet"} <= checked


@pytest.mark.slow
def test_a_stay_in_two_parts_of_one_year_is_refused(tmp_path, config):
    """The line key of a PMSI table is unique within a year: a stay copied into a second part of that
    year is refused by validate and by cleaning, naming both parts."""
    d = split_pmsi(tmp_path / "parts")
    first = pq.read_table(d / "T_MCO20B" / "part-0000.parquet")
    last = pq.read_table(d / "T_MCO20B" / "part-0002.parquet")
    pq.write_table(pa.concat_tables([last, first.slice(0, 1)]), d / "T_MCO20B" / "part-0002.parquet")
    report = validate_extract(d, config)
    [v] = [v for v in report.violations if v.rule == "line key unique across the files of the table"]
    assert v.file == "3 files of T_MCOaaB 2020" and v.count == 1
    assert v.examples[0]["files"] == "T_MCO20B/part-0000.parquet and T_MCO20B/part-0002.parquet"
    with pytest.raises(DuplicateKeyError, match="T_MCO20B/part-0000.parquet and T_MCO20B/part-0002.parquet"):
        runner.run(BuildPaths(tmp_path / "b", d), config)
