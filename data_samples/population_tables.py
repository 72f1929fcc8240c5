"""The tables of the synthetic extract written once for the whole population, after the chunks of claim
lines: the PMSI MCO stays (one file per year, with their defect copies), IR_BEN_R, IR_IMB_R and the
ÉQUILIBRES roster."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_samples.claims import Stays, error_ghm, hospital_finess
from data_samples.population import (
    CONTROL,
    CPX_FLAGS,
    DAY,
    TREATED,
    Identities,
    Population,
    pick_identity,
    to_date,
)
from data_samples.truth import TruthParams
from data_samples.writers import SUFFIX, GenerationError, write_table
from pipeline.config import StudyConfig
from pipeline.contract_spec import SENTINEL_DATE, TABLES, UNKNOWN_BIRTH_YEAR, X_NIR

APHP_LEGAL_FINESS = "750712184"
IDF_DPTS = ("075", "077", "078", "091", "092", "093", "094", "095")
_SENTINEL_DAY = np.datetime64(SENTINEL_DATE, "D")  # the contract's sentinel date, as a numpy day


def write_pmsi(tmp: Path, rng: np.random.Generator, parts: list[tuple[np.ndarray, Stays]], pop: Population,
                ids: Identities, tp: TruthParams, config: StudyConfig, fmt: str, defects: dict[str, int],
                appended: dict[str, np.ndarray] | None = None) -> tuple[int, list[str], np.ndarray]:
    """Write the yearly T_MCOaaB/C/VALO tables. ``appended``: clean rows of the same columns (the
    negative-control cataract stays, negative_controls.cataract_stay_rows) written after every other
    row with RSA_NUM numbers after theirs, so that the other rows do not depend on them."""
    d = tp.defects
    person = np.concatenate([p for p, _ in parts])
    st = Stays(**{k: np.concatenate([getattr(s, k) for _, s in parts]) for k in Stays.__dataclass_fields__})
    n = person.size
    dpt = pop.dpt_code[person]
    eta = hospital_finess(dpt, rng)
    aphp = np.isin(pop.dpt[person], IDF_DPTS) & (pop.dpt[person] == "075") & (rng.random(n) < 0.4)
    eta[aphp] = APHP_LEGAL_FINESS
    if np.isin(eta, list(config.cleaning.duplicate_geographic_finess)).any():
        raise GenerationError("A synthetic hospital FINESS collides with cleaning.duplicate_geographic_finess; "
                              "change hospital_finess in data_samples/claims.py.")
    sor = np.where(st.kind == 1, "9", np.where(rng.random(n) < 0.85, "8", "7"))
    ent = np.where(rng.random(n) < 0.9, "8", "7")
    nbj = np.where(st.kind == 2, 0, (st.exit - st.entry).astype("timedelta64[D]").astype(np.int64))
    nir = ids.nir[pick_identity(rng, ids, person)]
    cols = {
        "ETA_NUM": eta.astype(object), "SEJ_NBJ": nbj, "ENT_MOD": ent, "SOR_MOD": sor, "GRG_GHM": st.ghm,
        "NIR_ANO_17": nir, "EXE_SOI_DTD": st.entry, "EXE_SOI_DTF": st.exit,
        **{r: np.full(n, "0", dtype=object) for r in ("NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET",
                                                       "PMS_RET", "DAT_RET")},
        "MNT_TOT_AM": st.cost, "VALO": np.ones(n, dtype=np.int64),
    }
    full = np.flatnonzero(st.kind != 2)
    extras = []

    def copies(idx: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[idx].copy() for k, v in cols.items()}

    g = copies(full[rng.random(full.size) < d.ghm_90_share])
    g["GRG_GHM"] = error_ghm(rng, g["GRG_GHM"].size)
    extras.append(g)
    defects["ghm_90_stays"] = int(g["GRG_GHM"].size)
    geo = list(config.cleaning.duplicate_geographic_finess)
    if geo:
        dup_idx = np.flatnonzero((cols["ETA_NUM"] == APHP_LEGAL_FINESS) & (rng.random(n) < d.duplicate_finess_share * 8))
        extra_idx = full[rng.random(full.size) < d.duplicate_finess_share]
        dup = copies(np.union1d(dup_idx, extra_idx))
        dup["ETA_NUM"] = np.asarray(geo, dtype=object)[rng.integers(0, len(geo), dup["ETA_NUM"].size)]
        extras.append(dup)
        defects["duplicate_finess_stays"] = int(dup["ETA_NUM"].size)
    else:
        defects["duplicate_finess_stays"] = 0
    bad = copies(full[rng.random(full.size) < d.bad_return_code_share])
    which = rng.integers(0, 7, bad["ETA_NUM"].size)
    for j, r in enumerate(("NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET", "PMS_RET", "DAT_RET")):
        bad[r] = np.where(which == j, np.where(rng.random(which.size) < 0.5, "1", "2"), bad[r]).astype(object)
    extras.append(bad)
    defects["bad_return_code_stays"] = int(bad["ETA_NUM"].size)
    xn = copies(full[rng.random(full.size) < d.x_nir_share])
    xn["NIR_ANO_17"] = np.full(xn["ETA_NUM"].size, X_NIR, dtype=object)
    extras.append(xn)
    defects["x_nir_stays"] = int(xn["ETA_NUM"].size)

    allc = {k: np.concatenate([np.asarray(cols[k])] + [np.asarray(e[k]) for e in extras]) for k in cols}
    total = allc["ETA_NUM"].size
    order = np.lexsort((allc["EXE_SOI_DTD"], allc["EXE_SOI_DTF"]))
    allc = {k: v[order] for k, v in allc.items()}
    allc["RSA_NUM"] = 1_000_000_001 + np.arange(total, dtype=np.int64)
    if appended is not None and appended["ETA_NUM"].size:
        last = np.lexsort((appended["EXE_SOI_DTD"], appended["EXE_SOI_DTF"]))
        extra = {k: np.asarray(appended[k])[last] for k in cols}
        extra["RSA_NUM"] = 1_000_000_001 + total + np.arange(last.size, dtype=np.int64)
        allc = {k: np.concatenate([allc[k], extra[k]]) for k in allc}
        total += last.size
    exit_y = allc["EXE_SOI_DTF"].astype("datetime64[Y]").astype(int) + 1970
    exit_m = allc["EXE_SOI_DTF"].astype("datetime64[M]").astype(int) % 12 + 1
    allc["SOR_ANN"] = exit_y.astype(str).astype(object)
    allc["SOR_MOI"] = np.char.zfill(exit_m.astype(str), 2).astype(object)
    files = []
    ext = SUFFIX[fmt]
    first_y, last_y = config.study.claims_start.year, config.study.claims_end.year
    for year in range(first_y, last_y + 1):
        m = exit_y == year
        aa = f"{year % 100:02d}"
        sub = {k: v[m] for k, v in allc.items()}
        for key, attr in (("MCO_B", "mco_b"), ("MCO_C", "mco_c"), ("MCO_VALO", "mco_valo")):
            name = getattr(config.extract, attr).format(aa=aa) + ext
            write_table(tmp / name, sub, TABLES[key], fmt)
            files.append(name)
    final_persons = person[st.kind == 1]
    return total, files, final_persons


def write_ir_ben_r(tmp: Path, rng: np.random.Generator, pop: Population, ids: Identities, tp: TruthParams,
                    config: StudyConfig, fmt: str, final_persons: np.ndarray, defects: dict[str, int]) -> str:
    d = tp.defects
    written = np.where(np.isnat(pop.death), _SENTINEL_DAY, pop.death)
    # in-hospital deaths not (yet) in the referential: only PMSI SOR_MOD = 9 tells
    miss = final_persons[rng.random(final_persons.size) < d.pmsi_only_death_share]
    written[miss] = _SENTINEL_DAY
    defects["pmsi_only_deaths"] = int(miss.size)
    alive_ctrl = np.flatnonzero((pop.group == CONTROL) & np.isnat(pop.death) & pop.birth_known)
    dbb = alive_ctrl[rng.random(alive_ctrl.size) < d.death_before_birth_share]
    written[dbb] = np.array([f"{max(y - k, 1601)}-06-15" for y, k in
                             zip(pop.birth_year[dbb], rng.integers(1, 30, dbb.size), strict=True)],
                            dtype="datetime64[D]")
    rest = np.setdiff1d(alive_ctrl, dbb)
    dbc = rest[rng.random(rest.size) < d.death_before_claim_share]
    lo = to_date(config.study.claims_start) + 60 * DAY
    span = (to_date(config.study.claims_end) - 400 * DAY - lo).astype(np.int64)
    written[dbc] = lo + rng.integers(0, max(span, 1), dbc.size) * DAY
    defects["death_before_birth"] = int(dbb.size)
    defects["death_before_claim"] = int(dbc.size)
    defects["sentinel_death_dates"] = int((written[ids.person] == _SENTINEL_DAY).sum())
    p = ids.person
    cols = {
        "BEN_NIR_PSA": ids.nir, "BEN_RNG_GEM": ids.rng_gem.astype(np.int64), "BEN_IDT_ANO": pop.idt_ano[p],
        "BEN_SEX_COD": pop.sex_code[p].astype(np.int64),
        "BEN_NAI_ANN": np.where(pop.birth_known[p], pop.birth_year[p].astype(str), UNKNOWN_BIRTH_YEAR).astype(object),
        "BEN_NAI_MOI": np.where(pop.birth_known[p], np.char.zfill(pop.birth_month[p].astype(str), 2), "00").astype(object),
        "BEN_RES_DPT": pop.dpt_code[p], "BEN_DCD_DTE": written[p],
    }
    name = config.extract.ir_ben_r + SUFFIX[fmt]
    write_table(tmp / name, cols, TABLES["IR_BEN_R"], fmt)
    return name


def write_ir_imb_r(tmp: Path, pop: Population, ids: Identities, ald: dict, config: StudyConfig, fmt: str) -> str:
    p = ald["person"]
    cols = {"BEN_NIR_PSA": ids.nir[ids.first[p]], "BEN_RNG_GEM": ids.rng_gem[ids.first[p]].astype(np.int64),
            **{k: ald[k] for k in ("IMB_ALD_NUM", "IMB_ALD_DTD", "IMB_ALD_DTF", "IMB_ETM_NAT", "MED_MTF_COD")}}
    name = config.extract.ir_imb_r + SUFFIX[fmt]
    write_table(tmp / name, cols, TABLES["IR_IMB_R"], fmt)
    return name


def write_roster(tmp: Path, pop: Population, config: StudyConfig, fmt: str) -> str:
    t = np.flatnonzero(pop.group == TREATED)
    exit_ = np.where(~np.isnat(pop.exit[t]), pop.exit[t], np.where(np.isnat(pop.death[t]), _SENTINEL_DAY, pop.death[t]))
    cols = {"BEN_NIR_PSA": pop.nir_primary[t], "EQL_EQP_ID": pop.team[t], "EQL_DPT": pop.dpt[t],
            "EQL_INC_DTE": pop.inclusion[t], "EQL_SOR_DTE": exit_,
            **{f: pop.cpx[f][t].astype(np.int64) for f in CPX_FLAGS}}
    name = config.extract.roster + SUFFIX[fmt]
    write_table(tmp / name, cols, TABLES["ROSTER"], fmt)
    return name

