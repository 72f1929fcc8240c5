"""Small helpers for the cleaning tests: hand-built tables as Ibis memtables (DuckDB)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import ibis
import pandas as pd
import pyarrow as pa

D = dt.date
SENTINEL = D(1600, 1, 1)
CARE = D(2021, 3, 10)
NIR = {k: (k * 17)[:17] for k in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def table(rows: list[dict[str, Any]], schema: dict[str, str]) -> ibis.Table:
    """A memtable with an explicit Ibis schema (dates as dates, not timestamps)."""
    sch = ibis.schema(schema)
    cols = {name: [r.get(name) for r in rows] for name in sch.names}
    arrow = pa.table({name: pa.array(cols[name], type=sch[name].to_pyarrow()) for name in sch.names})
    return ibis.memtable(arrow)


def run(expr: ibis.Table) -> pd.DataFrame:
    return expr.execute()


BEN_SCHEMA = {
    "BEN_NIR_PSA": "string", "BEN_RNG_GEM": "int32", "BEN_IDT_ANO": "string", "BEN_SEX_COD": "int32",
    "BEN_NAI_ANN": "string", "BEN_NAI_MOI": "string", "BEN_RES_DPT": "string", "BEN_DCD_DTE": "date",
}


def ben_row(nir: str, idt: str | None = None, rng: int = 1, sex: int = 2, year: str = "1940", month: str = "06",
            dpt: str = "075", death: dt.date | None = SENTINEL) -> dict[str, Any]:
    return {"BEN_NIR_PSA": nir, "BEN_RNG_GEM": rng, "BEN_IDT_ANO": idt, "BEN_SEX_COD": sex, "BEN_NAI_ANN": year,
            "BEN_NAI_MOI": month, "BEN_RES_DPT": dpt, "BEN_DCD_DTE": death}


PRS_SCHEMA = {
    "BEN_NIR_PSA": "string", "BEN_RNG_GEM": "int32", "EXE_SOI_DTD": "date", "EXE_SOI_DTF": "date",
    "FLX_DIS_DTD": "date", "PRS_NAT_REF": "int32", "PRS_ACT_QTE": "float64", "BSE_REM_MNT": "float64",
    "BSE_PRS_NAT": "int32", "DPN_QLF": "int32", "CPL_MAJ_TOP": "int32", "PSE_ACT_NAT": "int32",
    "PSE_SPE_COD": "int32",
}


def prs_row(nir: str = NIR["A"], care: dt.date = CARE, flux: dt.date | None = None, code: int = 3111,
            qty: float = 1.0, euros: float = 10.0, dpn: int = 0, bse_nat: int = 1, cpl: int = 0, act_nat: int = 24,
            spe: int = 0, rng: int = 1) -> dict[str, Any]:
    return {"BEN_NIR_PSA": nir, "BEN_RNG_GEM": rng, "EXE_SOI_DTD": care, "EXE_SOI_DTF": care,
            "FLX_DIS_DTD": flux or D(care.year, care.month, 1), "PRS_NAT_REF": code, "PRS_ACT_QTE": qty,
            "BSE_REM_MNT": euros, "BSE_PRS_NAT": bse_nat, "DPN_QLF": dpn, "CPL_MAJ_TOP": cpl,
            "PSE_ACT_NAT": act_nat, "PSE_SPE_COD": spe}


def key_map(pairs: list[tuple[str, int, str]]) -> ibis.Table:
    return table([{"BEN_NIR_PSA": n, "BEN_RNG_GEM": r, "person_id": p} for n, r, p in pairs],
                 {"BEN_NIR_PSA": "string", "BEN_RNG_GEM": "int32", "person_id": "string"})


def kept_summary(rows: list[dict[str, Any]], cleaning: Any) -> ibis.Table:
    """Claim rows of a DCIR claims summary (fate 0, what ``dcir.kept_claims`` selects): ``person_id``,
    ``month`` and the amounts given in each row, every other amount column of the summary 0."""
    from pipeline.stages.dcir import summary_amount_columns

    amounts = summary_amount_columns(cleaning)
    return table([{"fate": 0, **{c: 0.0 for c in amounts}, **r} for r in rows],
                 {"person_id": "string", "month": "date", "fate": "int8", **{c: "float64" for c in amounts}})
