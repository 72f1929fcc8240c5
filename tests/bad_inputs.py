"""A corpus of bad inputs, built from the committed sample into temporary directories.

Each builder takes a fresh copy of ``data_samples.SAMPLE_DIR`` (made by :func:`sample_copy`), damages
it in one precise way, and returns what it did (counts the tests check against the error message or
the audit trail). The sample itself is never modified. The corpus and the handling of each case are
listed in docs/reliability.md.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from data_samples import SAMPLE_DIR

# Person identifiers of the contract: a run must never write them outside the person-level files.
IDENTIFIER_COLUMNS = {
    "IR_BEN_R": ["BEN_NIR_PSA", "BEN_IDT_ANO"],
    "IR_IMB_R": ["BEN_NIR_PSA"],
    "ER_PRS_F": ["BEN_NIR_PSA"],
    "EQUILIBRES_ROSTER": ["BEN_NIR_PSA", "EQL_EQP_ID"],
}


def sample_copy(dest: Path, source: Path = SAMPLE_DIR) -> Path:
    """A private copy of the extract (tables, surveys, truth.json) at ``dest``."""
    dest = Path(dest)
    shutil.copytree(source, dest)
    return dest


def _read(d: Path, table: str) -> pa.Table:
    return pq.read_table(d / f"{table}.parquet")


def _write(d: Path, table: str, t: pa.Table) -> None:
    pq.write_table(t, d / f"{table}.parquet")


def _to_csv(d: Path, table: str, t: pa.Table, delimiter: str = ";", encoding: str = "utf-8",
            date_format: str | None = "%d%b%Y:00:00:00") -> Path:
    """Replace ``table``.parquet by a SAS/Oracle-style CSV (dates like 01JAN2021:00:00:00)."""
    cols = []
    for col in t.columns:
        if pa.types.is_date(col.type) and date_format:
            col = pc.strftime(col.cast(pa.timestamp("s")), format=date_format)
            col = pc.utf8_upper(col)
        cols.append(col)
    t = pa.table(cols, names=t.column_names)
    (d / f"{table}.parquet").unlink()
    target = d / f"{table}.csv"
    buf = pa.BufferOutputStream()
    pacsv.write_csv(t, buf, pacsv.WriteOptions(delimiter=delimiter, quoting_style="needed"))
    target.write_bytes(buf.getvalue().to_pybytes().decode("utf-8").encode(encoding))
    return target


def _replace_column(t: pa.Table, name: str, values: pa.Array | list[Any]) -> pa.Table:
    i = t.column_names.index(name)
    arr = values if isinstance(values, pa.Array) else pa.array(values)
    return t.set_column(i, name, arr)


# -- the corpus ----------------------------------------------------------------------------------


def missing_table(d: Path) -> dict[str, Any]:
    (d / "IR_IMB_R.parquet").unlink()
    return {"table": "IR_IMB_R"}


def empty_table(d: Path) -> dict[str, Any]:
    t = _read(d, "ER_PRS_F")
    _write(d, "ER_PRS_F", t.slice(0, 0))
    return {"table": "ER_PRS_F", "file": "ER_PRS_F.parquet"}


def truncated_parquet(d: Path) -> dict[str, Any]:
    """An interrupted copy: the file stops half-way (no Parquet footer)."""
    p = d / "ER_PRS_F.parquet"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return {"table": "ER_PRS_F", "file": "ER_PRS_F.parquet"}


def corrupt_parquet(d: Path) -> dict[str, Any]:
    """Bytes overwritten inside the data pages; the footer (schema, row counts) is intact."""
    p = d / "ER_PRS_F.parquet"
    data = bytearray(p.read_bytes())
    footer_len = int.from_bytes(data[-8:-4], "little")
    footer_start = len(data) - 8 - footer_len
    # Garbage over the middle half of the column chunks: decoding fails, whatever the codec.
    lo, hi = footer_start // 4, 3 * footer_start // 4
    for i in range(lo, hi, 3):
        data[i] = (data[i] * 31 + 17) % 256
    p.write_bytes(bytes(data))
    return {"table": "ER_PRS_F", "file": "ER_PRS_F.parquet"}


def corrupt_column(d: Path, table: str = "ER_PRS_F", column: str = "BSE_REM_MNT") -> dict[str, Any]:
    """Garbage over the pages of one column only: the footer and every other column read fine, so
    nothing notices before a stage decodes that column."""
    p = d / f"{table}.parquet"
    meta = pq.ParquetFile(p).metadata
    j = [meta.schema.column(k).name for k in range(meta.num_columns)].index(column)
    data = bytearray(p.read_bytes())
    for g in range(meta.num_row_groups):
        c = meta.row_group(g).column(j)
        start = c.dictionary_page_offset or c.data_page_offset
        # Leave the page headers' first bytes; overwrite the compressed body.
        for i in range(start + 48, start + c.total_compressed_size - 8, 5):
            data[i] = (data[i] * 31 + 17) % 256
    p.write_bytes(bytes(data))
    return {"table": table, "column": column, "file": p.name}


def csv_comma_separated(d: Path) -> dict[str, Any]:
    """IR_BEN_R exported as a comma-separated CSV (the configured separator is ';'): detected and read."""
    t = _read(d, "IR_BEN_R")
    _to_csv(d, "IR_BEN_R", t, delimiter=",")
    return {"table": "IR_BEN_R", "file": "IR_BEN_R.csv", "separator": ",", "rows": t.num_rows}


def csv_header_unrecognised(d: Path) -> dict[str, Any]:
    """IR_BEN_R exported comma-separated with the column labels of the export tool instead of the SNDS
    names: no separator yields a contract column, so the message shows the header as read."""
    t = _read(d, "IR_BEN_R")
    t = t.rename_columns([f"Libellé {i + 1}" for i in range(t.num_columns)])
    _to_csv(d, "IR_BEN_R", t, delimiter=",")
    return {"table": "IR_BEN_R", "file": "IR_BEN_R.csv", "separator": ","}


def csv_wrong_encoding(d: Path) -> dict[str, Any]:
    """IR_IMB_R exported as UTF-16 ("Unicode" in Excel / SAS on Windows): neither UTF-8 nor latin-1."""
    _to_csv(d, "IR_IMB_R", _read(d, "IR_IMB_R"), encoding="utf-16")
    return {"table": "IR_IMB_R", "file": "IR_IMB_R.csv"}


def csv_latin1(d: Path) -> dict[str, Any]:
    """A latin-1 roster CSV with accented team ids: read with the second configured encoding."""
    t = _read(d, "EQUILIBRES_ROSTER")
    ids = [f"{v}-ÉQ" for v in t.column("EQL_EQP_ID").to_pylist()]
    _to_csv(d, "EQUILIBRES_ROSTER", _replace_column(t, "EQL_EQP_ID", ids), encoding="latin-1")
    return {"table": "EQUILIBRES_ROSTER", "file": "EQUILIBRES_ROSTER.csv", "rows": t.num_rows}


def missing_column(d: Path) -> dict[str, Any]:
    t = _read(d, "IR_BEN_R")
    _write(d, "IR_BEN_R", t.drop_columns(["BEN_DCD_DTE"]))
    return {"table": "IR_BEN_R", "column": "BEN_DCD_DTE", "file": "IR_BEN_R.parquet"}


def renamed_column(d: Path) -> dict[str, Any]:
    t = _read(d, "ER_PRS_F")
    _write(d, "ER_PRS_F", t.rename_columns(["BSE_REM_MT" if c == "BSE_REM_MNT" else c for c in t.column_names]))
    return {"table": "ER_PRS_F", "column": "BSE_REM_MNT", "found": "BSE_REM_MT", "file": "ER_PRS_F.parquet"}


def text_in_amounts(d: Path) -> dict[str, Any]:
    """BSE_REM_MNT stored as text; decimal commas are fine, but 3 values are not numbers."""
    t = _read(d, "ER_PRS_F")
    values = [None if v is None else f"{v:.2f}".replace(".", ",") for v in t.column("BSE_REM_MNT").to_pylist()]
    bad = {10: "N/A", 20: "douze", 30: "12 EUR"}
    for i, v in bad.items():
        values[i] = v
    _write(d, "ER_PRS_F", _replace_column(t, "BSE_REM_MNT", pa.array(values, pa.string())))
    return {"table": "ER_PRS_F", "column": "BSE_REM_MNT", "bad": len(bad), "file": "ER_PRS_F.parquet"}


def impossible_dates(d: Path) -> dict[str, Any]:
    """IR_IMB_R as CSV where 2 ALD start dates do not exist (31 February, month 13)."""
    t = _read(d, "IR_IMB_R")
    path = _to_csv(d, "IR_IMB_R", t)
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(";")
    j = header.index('"IMB_ALD_DTD"') if '"IMB_ALD_DTD"' in header else header.index("IMB_ALD_DTD")
    for row, value in ((1, "31FEB2021:00:00:00"), (2, "2021-13-01")):
        cells = lines[row].split(";")
        cells[j] = value
        lines[row] = ";".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"table": "IR_IMB_R", "column": "IMB_ALD_DTD", "bad": 2, "file": "IR_IMB_R.csv"}


def duplicated_line_keys(d: Path, n: int = 40) -> dict[str, Any]:
    """The first ``n`` ER_PRS_F lines appended again (an extract concatenated twice, in part)."""
    t = _read(d, "ER_PRS_F")
    _write(d, "ER_PRS_F", pa.concat_tables([t, t.slice(0, n)]))
    return {"table": "ER_PRS_F", "duplicates": n, "file": "ER_PRS_F.parquet"}


def negative_amounts(d: Path, n: int = 25) -> dict[str, Any]:
    """``n`` negative lines (quantity and amounts) with no original line to cancel: not regularisations.

    They are new lines (new DCT_ORD_NUM) on a care date when the person had no identical line, so
    each makes a netting group of its own whose summed quantity is negative.
    """
    t = _read(d, "ER_PRS_F")
    base = t.slice(0, n).to_pylist()
    rows = []
    for i, r in enumerate(base):
        r = dict(r)
        r["DCT_ORD_NUM"] = 9_000_000 + i
        r["EXE_SOI_DTD"] = dt.date(2021, 2, 1) + dt.timedelta(days=i)
        r["EXE_SOI_DTF"] = r["EXE_SOI_DTD"]
        r["PRS_NAT_REF"] = 3111
        r["PSE_ACT_NAT"] = 24
        r["PSE_SPE_COD"] = 98  # a code no sample line has: no real line nets with these
        r["CPL_MAJ_TOP"] = 0
        r["DPN_QLF"] = 0
        r["BSE_PRS_NAT"] = 3111
        r["PRS_ACT_QTE"] = -1.0
        r["BSE_REM_MNT"] = -10.0 - i
        r["BSE_REM_BSE"] = -10.0 - i
        r["PRS_PAI_MNT"] = -10.0 - i
        r["FLX_DIS_DTD"] = dt.date(2021, 4, 1)
        rows.append(r)
    extra = pa.Table.from_pylist(rows, schema=t.schema)
    _write(d, "ER_PRS_F", pa.concat_tables([t, extra]))
    return {"table": "ER_PRS_F", "lines": n, "euros": float(sum(-10.0 - i for i in range(n)))}


def dates_outside_window(d: Path, n_before: int = 30, n_future: int = 10) -> dict[str, Any]:
    """Care dates before claims_start (2018) and in the future (2031) on existing lines."""
    t = _read(d, "ER_PRS_F")
    dates = t.column("EXE_SOI_DTD").to_pylist()
    dpn, nat, flux = (t.column(c).to_pylist() for c in ("DPN_QLF", "BSE_PRS_NAT", "FLX_DIS_DTD"))
    # Lines no earlier rule drops (the audit counts a line under the first rule that drops it).
    kept = [i for i, x in enumerate(dates) if x is not None and dt.date(2019, 1, 1) <= x <= dt.date(2023, 12, 31)
            and dpn[i] != 71 and nat[i] != 0 and flux[i] <= dt.date(2024, 6, 30)]
    # Lines far apart, each on its own: the DCIR rules drop lines, not netting groups.
    chosen = kept[:: max(1, len(kept) // (n_before + n_future))][: n_before + n_future]
    for k, i in enumerate(chosen):
        dates[i] = dt.date(2018, 6, 1) if k < n_before else dt.date(2031, 5, 1)
    t = _replace_column(t, "EXE_SOI_DTD", pa.array(dates, pa.date32()))
    t = _replace_column(t, "EXE_SOI_DTF", pa.array(dates, pa.date32()))
    _write(d, "ER_PRS_F", t)
    return {"table": "ER_PRS_F", "before": n_before, "future": n_future}


def roster_absent_from_ir_ben_r(d: Path, n: int = 5) -> dict[str, Any]:
    """``n`` roster patients whose BEN_NIR_PSA is in no IR_BEN_R row."""
    t = _read(d, "EQUILIBRES_ROSTER")
    rows = [dict(r) for r in t.slice(0, n).to_pylist()]
    for i, r in enumerate(rows):
        r["BEN_NIR_PSA"] = f"ZZABSENT{i:09d}"
    _write(d, "EQUILIBRES_ROSTER", pa.concat_tables([t, pa.Table.from_pylist(rows, schema=t.schema)]))
    return {"table": "EQUILIBRES_ROSTER", "absent": n}


def departement_without_controls(d: Path) -> dict[str, Any]:
    """Every non-roster person of the département with the most roster patients moved elsewhere.

    Roster patients of that département then have no candidate control with the same département
    (an exact-matching variable): they must all be reported unmatched.
    """
    ben = _read(d, "IR_BEN_R")
    roster = _read(d, "EQUILIBRES_ROSTER")
    roster_nir = set(roster.column("BEN_NIR_PSA").to_pylist())
    idt = {r["BEN_IDT_ANO"] for r in ben.to_pylist() if r["BEN_NIR_PSA"] in roster_nir and r["BEN_IDT_ANO"]}
    rows = ben.to_pylist()
    is_treated = [r["BEN_NIR_PSA"] in roster_nir or (r["BEN_IDT_ANO"] in idt if r["BEN_IDT_ANO"] else False)
                  for r in rows]
    counts: dict[str, int] = {}
    for r, tr in zip(rows, is_treated, strict=True):
        if tr:
            counts[r["BEN_RES_DPT"]] = counts.get(r["BEN_RES_DPT"], 0) + 1
    target = max(sorted(counts), key=lambda k: counts[k])
    other = "075" if target != "075" else "092"
    new = [other if (r["BEN_RES_DPT"] == target and not tr) else r["BEN_RES_DPT"]
           for r, tr in zip(rows, is_treated, strict=True)]
    _write(d, "IR_BEN_R", _replace_column(ben, "BEN_RES_DPT", pa.array(new, pa.string())))
    return {"dpt": target, "moved_to": other}


def _new_claim_lines(t: pa.Table, amounts: list[float], spe: int) -> pa.Table:
    """New ER_PRS_F nursing-act lines (new DCT_ORD_NUM, a PSE_SPE_COD no sample line has, so they net
    with nothing) of quantity 1 and the given amounts, on persons of the first lines."""
    rows = []
    for i, (r, amount) in enumerate(zip(t.slice(0, len(amounts)).to_pylist(), amounts, strict=True)):
        r = dict(r)
        r.update(DCT_ORD_NUM=9_100_000 + 1000 * spe + i, EXE_SOI_DTD=dt.date(2021, 3, 1) + dt.timedelta(days=i),
                 PRS_NAT_REF=3111, PSE_ACT_NAT=24, PSE_SPE_COD=spe, CPL_MAJ_TOP=0, DPN_QLF=0, BSE_PRS_NAT=3111,
                 PRS_ACT_QTE=1.0, BSE_REM_MNT=amount, BSE_REM_BSE=amount, PRS_PAI_MNT=amount,
                 FLX_DIS_DTD=dt.date(2021, 5, 1))
        r["EXE_SOI_DTF"] = r["EXE_SOI_DTD"]
        rows.append(r)
    return pa.Table.from_pylist(rows, schema=t.schema)


def amount_corrupted(d: Path) -> dict[str, Any]:
    """One ER_PRS_F line of 1e15 € (a corrupted amount: bad SAS format, shifted column), beyond even the
    contract's range, and two of 500 000 € on nursing acts (within the contract's range)."""
    t = _read(d, "ER_PRS_F")
    amounts = [1e15, 500_000.0, 500_000.0]
    _write(d, "ER_PRS_F", pa.concat_tables([t, _new_claim_lines(t, amounts, spe=97)]))
    return {"table": "ER_PRS_F", "column": "BSE_REM_MNT", "lines": len(amounts), "euros": sum(amounts),
            "out_of_contract": 1}


def amount_above_maximum(d: Path) -> dict[str, Any]:
    """Three nursing-act lines of 50 000 € each: within the contract's range, above the plausible maximum
    of the nursing_acts category (20 000 €)."""
    t = _read(d, "ER_PRS_F")
    amounts = [50_000.0, 50_000.0, 60_000.0]
    _write(d, "ER_PRS_F", pa.concat_tables([t, _new_claim_lines(t, amounts, spe=96)]))
    return {"table": "ER_PRS_F", "column": "BSE_REM_MNT", "lines": len(amounts), "euros": sum(amounts)}


def column_entirely_null(d: Path) -> dict[str, Any]:
    """ER_PRS_F whose BSE_REM_MNT (the amount reimbursed, the spending measure) is null on every line."""
    t = _read(d, "ER_PRS_F")
    _write(d, "ER_PRS_F", _replace_column(t, "BSE_REM_MNT", pa.nulls(t.num_rows, pa.float64())))
    return {"table": "ER_PRS_F", "column": "BSE_REM_MNT", "file": "ER_PRS_F.parquet", "rows": t.num_rows}


def _kept_line_indices(t: pa.Table) -> list[int]:
    """Lines no standard DCIR rule drops (DPN_QLF, BSE_PRS_NAT, care and flux windows), positive quantity."""
    dates, dpn, nat, flux, qty = (t.column(c).to_pylist() for c in
                                  ("EXE_SOI_DTD", "DPN_QLF", "BSE_PRS_NAT", "FLX_DIS_DTD", "PRS_ACT_QTE"))
    return [i for i, x in enumerate(dates) if x is not None and dt.date(2019, 1, 1) <= x <= dt.date(2023, 12, 31)
            and dpn[i] != 71 and nat[i] != 0 and flux[i] <= dt.date(2023, 9, 30) and (qty[i] or 0) > 0]


def care_after_flux(d: Path, n: int = 20) -> dict[str, Any]:
    """``n`` lines whose care date is moved to 90 days after their flux date (still inside the claims
    window): no flux pays care that has not happened yet."""
    t = _read(d, "ER_PRS_F")
    kept = _kept_line_indices(t)
    chosen = kept[:: max(1, len(kept) // n)][:n]
    dates, flux = t.column("EXE_SOI_DTD").to_pylist(), t.column("FLX_DIS_DTD").to_pylist()
    euros = t.column("BSE_REM_MNT").to_pylist()
    for i in chosen:
        dates[i] = flux[i] + dt.timedelta(days=90)
    t = _replace_column(t, "EXE_SOI_DTD", pa.array(dates, pa.date32()))
    t = _replace_column(t, "EXE_SOI_DTF", pa.array(dates, pa.date32()))
    _write(d, "ER_PRS_F", t)
    return {"table": "ER_PRS_F", "column": "EXE_SOI_DTD", "lines": n, "euros": float(sum(euros[i] for i in chosen))}


def birth_year_in_future(d: Path, n: int = 4) -> dict[str, Any]:
    """``n`` IR_BEN_R rows born in 2031, after the end of the claims window (a typo for 1931?)."""
    t = _read(d, "IR_BEN_R")
    years = t.column("BEN_NAI_ANN").to_pylist()
    chosen = list(range(10, 10 + n))
    for i in chosen:
        years[i] = "2031"
    _write(d, "IR_BEN_R", _replace_column(t, "BEN_NAI_ANN", pa.array(years, pa.string())))
    ids = [t.column("BEN_IDT_ANO")[i].as_py() for i in chosen]
    return {"table": "IR_BEN_R", "column": "BEN_NAI_ANN", "rows": n, "person_ids": ids}


def inclusion_outside_study(d: Path) -> dict[str, Any]:
    """Three roster inclusion dates outside the study's inclusion period (2020-2023)."""
    t = _read(d, "EQUILIBRES_ROSTER")
    dates = t.column("EQL_INC_DTE").to_pylist()
    for i, value in zip((0, 1, 2), (dt.date(2019, 6, 1), dt.date(2024, 3, 1), dt.date(2031, 1, 15)), strict=True):
        dates[i] = value
    _write(d, "EQUILIBRES_ROSTER", _replace_column(t, "EQL_INC_DTE", pa.array(dates, pa.date32())))
    return {"table": "EQUILIBRES_ROSTER", "column": "EQL_INC_DTE", "rows": 3}


def roster_unlinked(d: Path) -> dict[str, Any]:
    """No roster patient is in IR_BEN_R (a roster pseudonymised with another key): no treated patient."""
    t = _read(d, "EQUILIBRES_ROSTER")
    ids = [f"ZZUNLINKED{i:07d}" for i in range(t.num_rows)]
    _write(d, "EQUILIBRES_ROSTER", _replace_column(t, "BEN_NIR_PSA", pa.array(ids, pa.string())))
    return {"table": "EQUILIBRES_ROSTER", "column": "BEN_NIR_PSA", "rows": t.num_rows}


def claims_unlinked(d: Path) -> dict[str, Any]:
    """No ER_PRS_F line belongs to a person of IR_BEN_R (claims from another extract)."""
    t = _read(d, "ER_PRS_F")
    nirs = t.column("BEN_NIR_PSA").to_pylist()
    other = {v: f"ZZCLAIMS{i:09d}" for i, v in enumerate(dict.fromkeys(nirs))}
    ids = [other[v] for v in nirs]
    _write(d, "ER_PRS_F", _replace_column(t, "BEN_NIR_PSA", pa.array(ids, pa.string())))
    return {"table": "ER_PRS_F", "column": "BEN_NIR_PSA", "rows": t.num_rows}


def amounts_all_zero(d: Path) -> dict[str, Any]:
    """ER_PRS_F whose BSE_REM_MNT is 0 on every line (a column exported empty, filled with zeros)."""
    t = _read(d, "ER_PRS_F")
    _write(d, "ER_PRS_F", _replace_column(t, "BSE_REM_MNT", pa.array([0.0] * t.num_rows, pa.float64())))
    return {"table": "ER_PRS_F", "column": "BSE_REM_MNT", "rows": t.num_rows}


def no_eligible_control(d: Path) -> dict[str, Any]:
    """Every person outside the roster moved to a département outside the study regions: ÉQUILIBRES
    patients remain, but no candidate control is eligible (outside_study_area)."""
    ben = _read(d, "IR_BEN_R")
    roster_nir = set(_read(d, "EQUILIBRES_ROSTER").column("BEN_NIR_PSA").to_pylist())
    idt = {r["BEN_IDT_ANO"] for r in ben.to_pylist() if r["BEN_NIR_PSA"] in roster_nir and r["BEN_IDT_ANO"]}
    new = [r["BEN_RES_DPT"] if (r["BEN_NIR_PSA"] in roster_nir or (r["BEN_IDT_ANO"] and r["BEN_IDT_ANO"] in idt))
           else "001" for r in ben.to_pylist()]
    _write(d, "IR_BEN_R", _replace_column(ben, "BEN_RES_DPT", pa.array(new, pa.string())))
    return {"table": "IR_BEN_R", "column": "BEN_RES_DPT", "dpt": "001"}


def claims_of_unknown_persons(d: Path, n: int = 40) -> dict[str, Any]:
    """``n`` new nursing-act lines (10 € and up) of persons IR_BEN_R does not hold: a small share of the
    claims, noted by validate (``claims_in_ir_ben_r``) and dropped by cleaning (``link_to_beneficiary``)."""
    t = _read(d, "ER_PRS_F")
    amounts = [10.0 + i for i in range(n)]
    extra = _new_claim_lines(t, amounts, spe=95)
    extra = _replace_column(extra, "BEN_NIR_PSA", pa.array([f"ZZNOBODY{i:09d}" for i in range(n)], pa.string()))
    _write(d, "ER_PRS_F", pa.concat_tables([t, extra.cast(t.schema)]))
    return {"table": "ER_PRS_F", "lines": n, "euros": float(sum(amounts))}


def stay_links_without_stay(d: Path, n: int = 10) -> dict[str, Any]:
    """``n`` T_MCO19C rows (patient links) of stays T_MCO19B does not hold (new RSA_NUM): a T_MCOaaC
    exported from another selection of stays than T_MCOaaB."""
    t = _read(d, "T_MCO19C")
    top = max(t.column("RSA_NUM").to_pylist())
    extra = _replace_column(t.slice(0, n), "RSA_NUM", pa.array([top + 1000 + i for i in range(n)], t.schema.field(
        "RSA_NUM").type))
    _write(d, "T_MCO19C", pa.concat_tables([t, extra.cast(t.schema)]))
    return {"table": "T_MCO19C", "rows": n}


def nullable_column_null(d: Path) -> dict[str, Any]:
    """ER_PRS_F whose EXE_SOI_DTF (care end: the contract lets it be missing) is null on every line: an
    export that lost the column, though no single missing value breaks the contract."""
    t = _read(d, "ER_PRS_F")
    _write(d, "ER_PRS_F", _replace_column(t, "EXE_SOI_DTF", pa.nulls(t.num_rows, pa.date32())))
    return {"table": "ER_PRS_F", "column": "EXE_SOI_DTF", "rows": t.num_rows}


def survey_unknown_codes(d: Path) -> dict[str, Any]:
    """Three answers coded 7 in a 4-level Likert question of the patient survey."""
    p = d / "surveys" / "patients_caregivers.csv"
    lines = p.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    j = header.index("needs_met")
    changed = 0
    for i in range(1, len(lines)):
        cells = lines[i].split(",")
        if cells[j] not in ("", "99") and changed < 3:
            cells[j] = "7"
            lines[i] = ",".join(cells)
            changed += 1
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"survey": "patients_caregivers", "column": "needs_met", "bad": changed}


@dataclass(frozen=True)
class CliOutcome:
    exit_code: int
    text: str  # stdout + stderr with whitespace collapsed (rich wraps long lines)
    exception: BaseException | None  # an exception that escaped the command (a crash), else None


def cli(*args: str) -> CliOutcome:
    """Run ``equilibres <args>`` in-process through typer's CliRunner."""
    from typer.testing import CliRunner

    from study.cli import app, console

    # Rich wraps messages at 80 columns, splitting long paths; the tests read them unwrapped.
    width = console.width
    console.width = 100_000
    try:
        result = CliRunner().invoke(app, [str(a) for a in args])
    finally:
        console.width = width
    exc = result.exception if result.exception and not isinstance(result.exception, SystemExit) else None
    text = " ".join((result.output or "").split())
    return CliOutcome(result.exit_code, text, exc)


@dataclass(frozen=True)
class Case:
    """One damaged extract and how the pipeline must treat it."""

    name: str
    build: Callable[[Path], dict[str, Any]]
    # "error": clean stops with a message; "audited": clean continues and counts it; "noted": clean
    # continues, validate notes it (a finding for the user to check, nothing for cleaning to count).
    handling: str
    validate_flags: bool  # `equilibres validate` reports it (exit 1)


CASES: dict[str, Case] = {c.name: c for c in [
    Case("missing_table", missing_table, "error", True),
    Case("empty_table", empty_table, "error", True),
    Case("truncated_parquet", truncated_parquet, "error", True),
    Case("corrupt_parquet", corrupt_parquet, "error", True),
    Case("csv_header_unrecognised", csv_header_unrecognised, "error", True),
    Case("csv_wrong_encoding", csv_wrong_encoding, "error", True),
    Case("missing_column", missing_column, "error", True),
    Case("renamed_column", renamed_column, "error", True),
    Case("text_in_amounts", text_in_amounts, "error", True),
    Case("impossible_dates", impossible_dates, "error", True),
    Case("duplicated_line_keys", duplicated_line_keys, "error", True),
    Case("negative_amounts", negative_amounts, "audited", False),
    Case("dates_outside_window", dates_outside_window, "audited", True),
    Case("roster_absent_from_ir_ben_r", roster_absent_from_ir_ben_r, "audited", False),
    Case("csv_latin1", csv_latin1, "audited", False),
    Case("csv_comma_separated", csv_comma_separated, "audited", False),
    # Plausibility (docs/cleaning.md, "Plausibility rules") and inputs that cannot give a cohort.
    Case("amount_corrupted", amount_corrupted, "audited", True),
    Case("amount_above_maximum", amount_above_maximum, "audited", False),
    Case("column_entirely_null", column_entirely_null, "error", True),
    Case("care_after_flux", care_after_flux, "audited", False),
    Case("birth_year_in_future", birth_year_in_future, "audited", False),
    Case("inclusion_outside_study", inclusion_outside_study, "audited", False),
    Case("roster_unlinked", roster_unlinked, "error", True),
    Case("claims_unlinked", claims_unlinked, "error", True),
    Case("no_eligible_control", no_eligible_control, "error", False),
    Case("amounts_all_zero", amounts_all_zero, "error", False),
    # Links between tables (pipeline/table_links.py) and columns the contract lets be missing.
    Case("claims_of_unknown_persons", claims_of_unknown_persons, "audited", False),
    Case("stay_links_without_stay", stay_links_without_stay, "noted", False),
    Case("nullable_column_null", nullable_column_null, "noted", False),
]}
