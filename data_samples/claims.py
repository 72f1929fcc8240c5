"""Claim lines (ER_PRS_F) and hospital stays (PMSI MCO) drawn from the expected monthly amounts.

Amounts are drawn in *units* (acts, boxes, quarter-hours…): units ~ Poisson(mu / mean unit amount),
split over at most a few lines a month, each line taking a code at random. The expected reimbursed
amount of a person-month is therefore exactly ``mu``, and every line's care date is uniform over the
alive days of its month whatever its amount, so the amount expected on any set of days is ``mu`` x
(its alive days) / (alive days of the month) — what truth.json relies on (end-of-life window). The
defects the cleaning rules exist for are *added* lines/stays (copies, cancelled pairs, errors), so
the clean lines are exactly the planted ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_samples.catalog import (
    ERROR_GHM,
    EXPERIMENT_MAX_LINES_PER_MONTH,
    EXPERIMENT_UNITS_PER_HOUR,
    FULL_STAY_GHM,
    HOSPITALS_PER_DPT,
    OTHER_ACT_BY_CODE,
    SEANCE_GHM,
    LineKind,
)
from data_samples.outcomes import DCIR_CATEGORIES, FINAL_STAY_MAX_LOS, ChunkMeans, MonthGrid
from data_samples.population import DAY, Population, to_date
from data_samples.truth import TruthParams
from pipeline.config import StudyConfig

# Flux (payment) month = care month + 1 + lag: 99 % of lines arrive within 6 months of the care month.
FLUX_LAG_MONTHS = np.arange(0, 13)
_FLUX_LAG_WEIGHTS = np.array([0.12, 0.52, 0.20, 0.09, 0.04, 0.02, 0.004, 0.002, 0.0015, 0.001, 0.0008, 0.0004, 0.0003])
FLUX_LAG_PROBS = _FLUX_LAG_WEIGHTS / _FLUX_LAG_WEIGHTS.sum()


def experiment_kind(config: StudyConfig) -> LineKind:
    rate = config.cleaning.experiment.hourly_rate_eur
    code = config.cleaning.experiment.prs_nat_ref[0]
    return LineKind("experiment", (code,), (1.0,), (rate / EXPERIMENT_UNITS_PER_HOUR,), (24,), (0,),
                    max_lines_per_month=EXPERIMENT_MAX_LINES_PER_MONTH, span_days=14,
                    reimbursement_rate_no_ald=1.0)


@dataclass
class Lines:
    """Column arrays of claim lines (clean lines first; defects appended later)."""

    row: np.ndarray        # person row within the chunk
    month: np.ndarray      # care month (index into the MonthGrid)
    cat: np.ndarray        # index into DCIR_CATEGORIES
    code: np.ndarray
    qty: np.ndarray
    amount: np.ndarray     # BSE_REM_MNT
    act: np.ndarray
    spe: np.ndarray
    dtd: np.ndarray
    dtf: np.ndarray
    cpl: np.ndarray        # CPL_MAJ_TOP
    prs_ord: np.ndarray    # 1 = base line, 2 = its surcharge (same décompte)
    parent: np.ndarray     # surcharge lines: index of the base line; -1 otherwise

    def take(self, idx: np.ndarray) -> Lines:
        return Lines(**{k: getattr(self, k)[idx] for k in self.__dataclass_fields__})

    @staticmethod
    def concat(parts: list[Lines]) -> Lines:
        return Lines(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in Lines.__dataclass_fields__})

    @property
    def size(self) -> int:
        return int(self.row.size)


def _expand(units: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split the units of each person-month cell over min(units, cap) lines.

    Returns per line: its cell (flat index), its rank j in the cell, the cell's number of lines L, its
    units (the first ``units % L`` lines get one more), and the index of its cell among the non-empty
    cells (for per-cell draws)."""
    flat = np.flatnonzero(units)
    u = units.ravel()[flat]
    n_lines = np.minimum(u, cap)
    rep = np.repeat(np.arange(flat.size), n_lines)
    starts = np.cumsum(n_lines) - n_lines
    j = np.arange(rep.size) - starts[rep]
    L = n_lines[rep]
    qty = u[rep] // L + (j < u[rep] % L)
    return flat[rep], j, L, qty, rep


def draw_lines(rng: np.random.Generator, cm: ChunkMeans, grid: MonthGrid, kinds: list[LineKind]) -> Lines:
    n, M = cm.present.shape
    alive_days = cm.alive_days.astype(np.int64)
    parts = []
    for kind in kinds:
        cat = DCIR_CATEGORIES.index(kind.category)
        mu = cm.observed(kind.category)
        units = rng.poisson(mu / kind.mean_unit_eur)
        cell, j, L, qty, cell_of = _expand(units, kind.max_lines_per_month)
        if cell.size == 0:
            continue
        row, month = cell // M, cell % M
        k = rng.choice(len(kind.codes), size=cell.size, p=np.asarray(kind.probs))
        code = np.asarray(kind.codes, dtype=np.int64)[k]
        amount = np.round(qty * np.asarray(kind.unit_eur)[k], 2)
        if kind.category == "other":
            act = np.array([OTHER_ACT_BY_CODE.get(int(c), 0) for c in kind.codes], dtype=np.int64)[k]
        else:
            act = np.full(cell.size, kind.pse_act_nat[0], dtype=np.int64)
        if kind.spe_probs is not None:
            spe = np.asarray(kind.pse_spe_cod, dtype=np.int64)[
                rng.choice(len(kind.pse_spe_cod), size=cell.size, p=np.asarray(kind.spe_probs) / sum(kind.spe_probs))]
        else:
            spe = np.full(cell.size, kind.pse_spe_cod[0], dtype=np.int64)
        # The L lines of a cell take the L equal slices of the month's alive days in an order rotated
        # by a uniform per-cell draw: lines stay spread over the month, and each line's date is uniform
        # over the alive days independently of its units (the first lines carry the extra units).
        rotation = np.floor(rng.random(cell_of[-1] + 1) * np.bincount(cell_of)).astype(np.int64)[cell_of]
        slot = (j + rotation) % L
        days = alive_days[row, month]
        offset = np.minimum(np.floor((slot + rng.random(cell.size)) * days / L).astype(np.int64), days - 1)
        dtd = grid.starts[month] + offset * DAY
        dtf = np.minimum(dtd + kind.span_days * DAY, cm.alive_end[row, month]) if kind.span_days else dtd
        parts.append(Lines(row=row, month=month, cat=np.full(cell.size, cat, dtype=np.int8), code=code,
                           qty=qty.astype(np.float64), amount=amount, act=act, spe=spe, dtd=dtd, dtf=dtf,
                           cpl=np.zeros(cell.size, dtype=np.int64), prs_ord=np.ones(cell.size, dtype=np.int64),
                           parent=np.full(cell.size, -1, dtype=np.int64)))
    lines = Lines.concat(parts)
    exp_cat = DCIR_CATEGORIES.index("experiment")
    is_exp = lines.cat == exp_cat
    lines.qty[is_exp] = lines.qty[is_exp] / EXPERIMENT_UNITS_PER_HOUR  # PRS_ACT_QTE = hours
    return lines


def add_surcharges(rng: np.random.Generator, lines: Lines, share: float) -> tuple[Lines, int]:
    """Carve a surcharge line (CPL_MAJ_TOP = 2) out of some nursing-act lines: spending, not an act."""
    nursing = DCIR_CATEGORIES.index("nursing_acts")
    pick = np.flatnonzero((lines.cat == nursing) & (lines.amount >= 4.0) & (rng.random(lines.size) < share))
    sur = lines.take(pick)
    sur.amount = np.round(np.clip(lines.amount[pick] * 0.12, 1.0, None), 2)
    lines.amount[pick] = np.round(lines.amount[pick] - sur.amount, 2)
    sur.qty = np.ones(pick.size)
    sur.cpl = np.full(pick.size, 2, dtype=np.int64)
    sur.prs_ord = np.full(pick.size, 2, dtype=np.int64)
    sur.parent = pick
    return Lines.concat([lines, sur]), int(pick.size)


def flux_months(rng: np.random.Generator, care_month: np.ndarray) -> np.ndarray:
    """Flux (payment) month of each line, as a MonthGrid index (may lie beyond the grid)."""
    lag = np.searchsorted(FLUX_LAG_CDF, rng.random(care_month.size), side="right")
    return care_month + 1 + lag


FLUX_LAG_CDF = np.cumsum(FLUX_LAG_PROBS)[:-1]


# --------------------------------------------------------------------------------------------------
@dataclass
class Stays:
    row: np.ndarray
    entry: np.ndarray
    exit: np.ndarray
    cost: np.ndarray
    kind: np.ndarray    # 0 full stay, 1 final stay (death in hospital), 2 séance
    ghm: np.ndarray

    @property
    def size(self) -> int:
        return int(self.row.size)


def _gamma_cost(rng: np.random.Generator, mean: np.ndarray, shape: float) -> np.ndarray:
    return np.round(rng.gamma(shape, np.asarray(mean, dtype=float) / shape), 2)


def draw_stays(rng: np.random.Generator, cm: ChunkMeans, grid: MonthGrid, pop: Population, tp: TruthParams,
               config: StudyConfig) -> Stays:
    b = tp.baseline
    n, M = cm.present.shape
    death = pop.death[cm.persons]
    claims_start, claims_end = to_date(config.study.claims_start), to_date(config.study.claims_end)
    limit = np.where(np.isnat(death), claims_end, death - DAY)  # ordinary stays end before death

    counts = rng.poisson(cm.observed_hosp_rate)
    cell = _expand(counts, 10**6)[0]  # one stay per unit (outcomes.StayWindowModel mirrors this model)
    row, month = cell // M, cell % M
    days = (cm.alive_end[row, month] - grid.starts[month]).astype("timedelta64[D]").astype(np.int64) + 1
    drawn = grid.starts[month] + np.floor(rng.random(cell.size) * days).astype(np.int64) * DAY
    full, ok = _full_stays(rng, cm, row, month, drawn, limit, grid, tp)

    dies_in = rng.random(n) < cm.observed_final_p
    f_row = np.flatnonzero(dies_in)
    f_los = np.minimum(1 + rng.poisson(b.final_stay_los_mean - 1, f_row.size), FINAL_STAY_MAX_LOS)
    f_exit = death[f_row]
    f_entry = np.maximum(f_exit - f_los * DAY, claims_start)
    final = Stays(row=f_row, entry=f_entry, exit=f_exit,
                  cost=_gamma_cost(rng, np.full(f_row.size, b.final_stay_cost_mean), 3.0),
                  kind=np.ones(f_row.size, dtype=np.int8),
                  ghm=np.asarray(FULL_STAY_GHM)[rng.integers(0, len(FULL_STAY_GHM), f_row.size)])

    s_counts = rng.poisson(cm.seance_rate)
    s_cell = _expand(s_counts, 10**6)[0]
    s_row, s_month = s_cell // M, s_cell % M
    s_days = (cm.alive_end[s_row, s_month] - grid.starts[s_month]).astype("timedelta64[D]").astype(np.int64) + 1
    s_date = grid.starts[s_month] + np.floor(rng.random(s_cell.size) * s_days).astype(np.int64) * DAY
    s_type = pop.seance[cm.persons][s_row]
    seances = Stays(row=s_row, entry=s_date, exit=s_date,
                    cost=_gamma_cost(rng, np.full(s_cell.size, b.seance_cost_mean), 4.0),
                    kind=np.full(s_cell.size, 2, dtype=np.int8),
                    ghm=np.where(s_type == 2, SEANCE_GHM["dialysis"], SEANCE_GHM["chemo"]))
    parts = [full, final, seances]
    if cm.early_share is not None:
        # drawn last, so that an extract without the early window draws exactly the same stays
        parts[0] = _early_window_stays(rng, cm, full, drawn[ok], limit, grid, tp)
    return Stays(**{k: np.concatenate([getattr(x, k) for x in parts]) for k in Stays.__dataclass_fields__})


def _full_stays(rng: np.random.Generator, cm: ChunkMeans, row: np.ndarray, month: np.ndarray, drawn: np.ndarray,
                limit: np.ndarray, grid: MonthGrid, tp: TruthParams) -> tuple[Stays, np.ndarray]:
    """Full stays entering on their drawn day (moved to the day before death at the latest; dropped
    when that leaves their month), with their LOS, cost and GHM; and which drawn stays were kept."""
    b = tp.baseline
    eol = cm.eol_k[row, month] >= 0
    los = 1 + rng.poisson(np.where(eol, b.hosp_los_mean * b.eol_hosp_los_factor, b.hosp_los_mean) - 1)
    entry = np.minimum(drawn, limit[row])
    ok = entry >= grid.starts[month]
    exit_ = np.minimum(entry + los * DAY, limit[row])
    cost = _gamma_cost(rng, cm.hosp_cost[row, month], 2.5)
    ghm = np.asarray(FULL_STAY_GHM)[rng.integers(0, len(FULL_STAY_GHM), row.size)]
    return Stays(row=row[ok], entry=entry[ok], exit=exit_[ok], cost=cost[ok],
                 kind=np.zeros(ok.sum(), dtype=np.int8), ghm=ghm[ok]), ok


def _early_window_stays(rng: np.random.Generator, cm: ChunkMeans, full: Stays, drawn: np.ndarray,
                        limit: np.ndarray, grid: MonthGrid, tp: TruthParams) -> Stays:
    """The treated's full stays with the early window's rate (effects.early_days): on its days the
    drawn stays are thinned to ``hosp_rate1_early`` where it is lower than the month's ``hosp_rate1``,
    and extra stays are drawn where it is higher (Poisson, entry uniform over the window's alive days
    of the month), so the stay rate of each early day is exactly ``hosp_rate1_early`` / alive days —
    what outcomes.StayWindowModel and the per-patient-year truth assume."""
    start = cm.early_start
    month = grid.index_of(full.entry)  # entry and drawn day share their month (kept stays)
    s = start[full.row]
    in_window = ~np.isnat(s) & (drawn >= s) & (drawn < s + cm.early_days * DAY)
    early_rate, base = cm.hosp_rate1_early[full.row, month], cm.hosp_rate1[full.row, month]
    keep_p = np.where(in_window, np.minimum(1.0, early_rate / np.maximum(base, 1e-300)), 1.0)
    kept = rng.random(full.size) < keep_p
    thinned = Stays(**{k: getattr(full, k)[kept] for k in Stays.__dataclass_fields__})

    extra_rate = np.clip(cm.hosp_rate1_early - cm.hosp_rate1, 0.0, None) * cm.early_share
    cell = _expand(rng.poisson(extra_rate), 10**6)[0]
    M = cm.present.shape[1]
    row, m = cell // M, cell % M
    lo = np.maximum(grid.starts[m], start[row])
    hi = np.minimum(start[row] + (cm.early_days - 1) * DAY, cm.alive_end[row, m])
    n_days = (hi - lo).astype("timedelta64[D]").astype(np.int64) + 1
    x_drawn = lo + np.floor(rng.random(cell.size) * n_days).astype(np.int64) * DAY
    extra, _ = _full_stays(rng, cm, row, m, x_drawn, limit, grid, tp)
    return Stays(**{k: np.concatenate([getattr(thinned, k), getattr(extra, k)])
                    for k in Stays.__dataclass_fields__})


def hospital_finess(dpt: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible 9-character FINESS of one of the hospitals of the patient's département."""
    def prefix(code: str) -> str:
        if code in ("201", "02A"):
            return "2A"
        if code in ("202", "02B", "020", "209"):
            return "2B"
        if code.startswith("0") and code[1:].isdigit() and code != "000" and int(code) <= 95:
            return code[1:]
        return "97" if code.startswith("97") else "99"

    uniq, inv = np.unique(dpt.astype(str), return_inverse=True)
    pre = np.array([prefix(u) for u in uniq])[inv]
    k = rng.integers(0, HOSPITALS_PER_DPT, dpt.size)
    # "07…" never collides with the geographical FINESS of cleaning.duplicate_geographic_finess
    return np.char.add(np.char.add(pre, "07"), np.char.zfill((10011 + 137 * k).astype(str), 5))


def error_ghm(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.asarray(ERROR_GHM)[rng.integers(0, len(ERROR_GHM), n)]
