"""Negative-control outcomes of the synthetic extract: ER_PRS_F claims and MCO stays the programme never
changes.

Dental care, dental prostheses, spectacles, contact lenses and hearing aids (codes:
``catalog.NEGATIVE_CONTROL_KINDS``; rates: the truth file's ``[negative_controls]``) are drawn for every
person, treated or not, from age, sex, ALD and the unobserved frailty only: their true effect is zero.
Under ``selection.confounding`` C the treated's frailty is N(C, 1), so a matched comparison that cannot
see frailty is biased by ``frailty × C`` on the log scale — what the negative-control analysis
(``indicators/sensitivity/negative_controls.py``) must detect.

The lines are drawn from their own random stream (a child of the generator's seed spawned after all the
others) and written after every other ER_PRS_F row, so the rest of the extract does not change.

Elective cataract surgery (truth ``[negative_controls.cataract]``, GHM root 02C05: ``catalog.CATARACT_GHM``)
is planted the same way in PMSI MCO: stays per alive person-month from the same model (age, sex, ALD,
frailty; never the treatment), drawn from a second stream of their own (spawned after the claims' one)
and appended after every other row of the T_MCOaaB/C/VALO tables with RSA_NUM numbers after theirs, so
every other row of those tables, and every other table, is the same with or without them. They carry no
data-quality defect (no CMD 90 copy, no bad return code).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from data_samples.catalog import (
    CATARACT_CATEGORY,
    CATARACT_COST_EUR,
    CATARACT_GHM,
    CATARACT_GHM_PROBS,
    CATARACT_NIGHTS,
    NEGATIVE_CONTROL_KINDS,
    LineKind,
)
from data_samples.chunks import (
    DCT_BLOCK,
    DCT_FIRST,
    PERSONS_PER_CHUNK,
    ChunkContext,
    chunk_count,
    er_prs_f_arrow,
)
from data_samples.claims import flux_months, hospital_finess
from data_samples.population import DAY, TREATED, Population, pick_identity, to_date
from data_samples.truth import TruthParams

_FEMALE = 2  # BEN_SEX_COD


def planted_kinds(tp: TruthParams) -> list[LineKind]:
    """The catalogue's negative-control line kinds that the truth file gives a rate."""
    return [k for k in NEGATIVE_CONTROL_KINDS if k.category in tp.negative_controls]


def monthly_claims(pop: Population, persons: np.ndarray, tp: TruthParams, category: str) -> np.ndarray:
    """(n,) expected claims per alive person-month of one negative control: never the treatment."""
    nc = tp.negative_controls[category]
    age = np.clip(pop.age_ref[persons], 18, 100)
    return (nc.monthly_claims * np.exp(nc.age_slope * (age - 80) / 10)
            * np.where(pop.sex_code[persons] == _FEMALE, nc.female, 1.0)
            * np.where(pop.any_ald[persons], nc.ald, 1.0)
            * np.exp(nc.frailty * pop.frailty[persons]))


def negative_control_tables(ctx: ChunkContext, rng: np.random.Generator) -> Iterator[pa.Table]:
    """ER_PRS_F rows of the negative-control claims, chunk by chunk of persons (one line per claim,
    care day uniform over the alive days of the month; lines paid after the extraction horizon are
    not extracted, as for every other line)."""
    pop, grid, config = ctx.pop, ctx.grid, ctx.config
    kinds = planted_kinds(ctx.tp)
    if not kinds:
        return
    horizon_m = int(grid.index_of(np.datetime64(config.study.claims_end, "D"))) + config.study.flux_lag_months
    # décompte numbers after every chunk's block
    next_dct = DCT_FIRST + chunk_count(pop.n) * DCT_BLOCK
    for k in range(chunk_count(pop.n)):
        persons = np.arange(k * PERSONS_PER_CHUNK, min((k + 1) * PERSONS_PER_CHUNK, pop.n))
        death = pop.death[persons]
        has_death = ~np.isnat(death)
        present = np.where(has_death[:, None], grid.starts[None, :] <= death[:, None], True)
        alive_end = np.where(has_death[:, None], np.minimum(grid.ends[None, :], death[:, None]), grid.ends[None, :])
        alive_days = ((alive_end - grid.starts[None, :]).astype("timedelta64[D]").astype(np.int64) + 1) * present
        month_days = (grid.ends - grid.starts).astype("timedelta64[D]").astype(np.float64) + 1
        parts = []
        for kind in kinds:
            rate = monthly_claims(pop, persons, ctx.tp, kind.category)[:, None] * alive_days / month_days
            units = rng.poisson(rate)
            row, month = np.nonzero(units)
            n_claims = units[row, month]
            row, month = np.repeat(row, n_claims), np.repeat(month, n_claims)
            pick = rng.choice(len(kind.codes), size=row.size, p=np.asarray(kind.probs))
            days = alive_days[row, month]
            dtd = grid.starts[month] + np.minimum((rng.random(row.size) * days).astype(np.int64), days - 1) * DAY
            parts.append((row, month, np.asarray(kind.codes)[pick], np.asarray(kind.unit_eur)[pick],
                          np.full(row.size, kind.pse_act_nat[0]), kind.reimbursement_rate_no_ald, dtd))
        row = np.concatenate([p[0] for p in parts])
        if row.size == 0:
            continue
        month = np.concatenate([p[1] for p in parts])
        code = np.concatenate([p[2] for p in parts]).astype(np.int64)
        amount = np.concatenate([p[3] for p in parts]).astype(np.float64)
        act = np.concatenate([p[4] for p in parts]).astype(np.int64)
        rate_no_ald = np.concatenate([np.full(p[0].size, p[5]) for p in parts])
        dtd = np.concatenate([p[6] for p in parts]).astype("datetime64[D]").astype(np.int64)
        person = persons[row]
        flux_m = flux_months(rng, month)
        keep = flux_m <= horizon_m
        n = int(keep.sum())
        person, month, code, amount, act, dtd, flux_m = (a[keep] for a in (person, month, code, amount, act, dtd,
                                                                               flux_m))
        bse = np.round(amount / rate_no_ald[keep], 2)
        flux_day = ctx.month_days[flux_m]
        cols = {
            "DCT_ORD_NUM": next_dct + np.arange(n), "FLX_DIS_DTD": flux_day, "FLX_EMT_NUM": rng.integers(1, 40, n),
            "FLX_EMT_ORD": rng.integers(0, 5, n), "FLX_TRT_DTD": flux_day - rng.integers(2, 20, n),
            "PRS_ORD_NUM": np.ones(n, dtype=np.int64), "identity": pick_identity(rng, ctx.ids, person),
            "person": person, "EXE_SOI_DTD": dtd, "EXE_SOI_DTF": dtd, "PRS_NAT_REF": code,
            "PRS_ACT_QTE": np.ones(n), "PRS_PAI_MNT": bse, "BSE_REM_BSE": bse, "BSE_REM_MNT": amount,
            "BSE_PRS_NAT": code, "DPN_QLF": np.zeros(n, dtype=np.int64), "CPL_MAJ_TOP": np.zeros(n, dtype=np.int64),
            "PSE_ACT_NAT": act, "PSE_SPE_COD": np.zeros(n, dtype=np.int64),
        }
        next_dct += n
        yield er_prs_f_arrow(cols, ctx)


def cataract_stay_rows(ctx: ChunkContext, rng: np.random.Generator) -> dict[str, np.ndarray] | None:
    """MCO rows (T_MCOaaB, C and VALO columns, clean) of the planted cataract stays, or None when the
    truth file plants none. Per alive person-month, Poisson(rate × days alive before death / month
    days) stays enter on a uniform day alive before the death day; a stay lasts CATARACT_NIGHTS nights
    of its GHM and ends at the latest the day before death or on claims_end (as ordinary stays)."""
    tp, pop, grid, config = ctx.tp, ctx.pop, ctx.grid, ctx.config
    if CATARACT_CATEGORY not in tp.negative_controls:
        return None
    claims_end = to_date(config.study.claims_end)
    month_days = (grid.ends - grid.starts).astype("timedelta64[D]").astype(np.float64) + 1
    persons, entries, ghm_k = [], [], []
    for k in range(chunk_count(pop.n)):
        chunk = np.arange(k * PERSONS_PER_CHUNK, min((k + 1) * PERSONS_PER_CHUNK, pop.n))
        death = pop.death[chunk]
        limit = np.where(np.isnat(death), claims_end, death - DAY)  # last day a stay may end
        last = np.minimum(grid.ends[None, :], limit[:, None])
        days = np.clip((last - grid.starts[None, :]).astype("timedelta64[D]").astype(np.int64) + 1, 0, None)
        rate = monthly_claims(pop, chunk, tp, CATARACT_CATEGORY)[:, None] * days / month_days
        units = rng.poisson(rate)
        row, month = np.nonzero(units)
        n = units[row, month]
        row, month = np.repeat(row, n), np.repeat(month, n)
        d = days[row, month]
        entries.append(grid.starts[month] + np.minimum((rng.random(row.size) * d).astype(np.int64), d - 1) * DAY)
        ghm_k.append(rng.choice(len(CATARACT_GHM), size=row.size, p=np.asarray(CATARACT_GHM_PROBS)))
        persons.append(chunk[row])
    person, entry, g = np.concatenate(persons), np.concatenate(entries), np.concatenate(ghm_k)
    n = person.size
    exit_ = np.minimum(entry + np.asarray(CATARACT_NIGHTS)[g] * DAY, np.where(np.isnat(pop.death[person]), claims_end,
                                                                            pop.death[person] - DAY))
    cost = np.round(rng.gamma(25.0, np.asarray(CATARACT_COST_EUR)[g] / 25.0), 2)
    return {
        "ETA_NUM": hospital_finess(pop.dpt_code[person], rng).astype(object),
        "SEJ_NBJ": (exit_ - entry).astype("timedelta64[D]").astype(np.int64),
        "ENT_MOD": np.full(n, "8"), "SOR_MOD": np.full(n, "8"), "GRG_GHM": np.asarray(CATARACT_GHM)[g],
        "NIR_ANO_17": ctx.ids.nir[pick_identity(rng, ctx.ids, person)],
        "EXE_SOI_DTD": entry, "EXE_SOI_DTF": exit_,
        **{r: np.full(n, "0", dtype=object) for r in ("NIR_RET", "NAI_RET", "SEX_RET", "SEJ_RET", "FHO_RET",
                                                       "PMS_RET", "DAT_RET")},
        "MNT_TOT_AM": cost, "VALO": np.ones(n, dtype=np.int64),
    }


def negative_control_truth(pop: Population, tp: TruthParams) -> dict[str, dict[str, float]]:
    """truth.json["negative_controls"]: the true effect of each negative control (none), and the bias
    the unobserved frailty plants in a matched comparison (log scale: frailty effect × confounding)."""
    treated = pop.group == TREATED
    shift = float(pop.frailty[treated].mean() - pop.frailty[~treated].mean()) if treated.any() else 0.0
    c = tp.selection.confounding
    return {cat: {"true_ratio": 1.0, "true_log_ratio": 0.0,
                  "frailty_log_effect": nc.frailty,
                  "planted_confounding_bias_log_ratio": round(nc.frailty * c, 6),
                  "realised_frailty_gap_treated_vs_others": round(shift, 6)}
            for cat, nc in tp.negative_controls.items()}


__all__ = ["negative_control_tables", "negative_control_truth", "monthly_claims", "planted_kinds",
           "cataract_stay_rows"]
