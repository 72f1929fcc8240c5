"""Chunks of persons of the synthetic extract: their ER_PRS_F claim lines, hospital stays and truth sums.

Each chunk is drawn independently (one seed each from the generator's ``SeedSequence``), in this process
or in forked worker processes, and always handed to the writer in chunk order, so the files do not
depend on the number of workers. Worker processes pass their tables through shared memory slots
(:class:`Handover`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import mmap
import multiprocessing as mp
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from data_samples.catalog import DCIR_KINDS
from data_samples.claims import (
    FLUX_LAG_MONTHS,
    Lines,
    Stays,
    add_surcharges,
    draw_lines,
    draw_stays,
    flux_months,
)
from data_samples.outcomes import DCIR_CATEGORIES, MonthGrid, StayWindowModel, TruthAccumulator, chunk_means
from data_samples.population import DAY, TREATED, Identities, Population, pick_identity, to_date
from data_samples.truth import TruthParams
from data_samples.writers import GenerationError, arrow_schema
from pipeline.config import StudyConfig
from pipeline.contract_spec import TABLES

PERSONS_PER_CHUNK = 4000
# DCT_ORD_NUM: chunk k numbers its décomptes from DCT_FIRST + k x DCT_BLOCK (a chunk of 4 000 persons
# has at most 4 000 x 60 months x 12 lines, x 6 with every defect copy: always below the block).
DCT_FIRST, DCT_BLOCK = 10_000_000, 100_000_000
# Below this many chunks, starting workers (and warming their memory) costs more than it saves.
MIN_CHUNKS_FOR_WORKERS = 4
# Shared memory per hand-over slot (a chunk's ER_PRS_F table is ~0.2 GB; only touched pages count).
HANDOVER_SLOT_BYTES = 768 * 2**20
# glibc's malloc serves every block above 128 KiB with a fresh mmap and unmaps it when freed, so each of
# a chunk's hundred ~10 MB arrays faults in new zeroed pages: about half of a chunk's CPU time. Blocks up
# to this size are served from the heap instead, and the heap keeps what is freed for the next arrays.
HEAP_BLOCK_MAX_BYTES = 32 * 2**20   # glibc's upper bound for M_MMAP_THRESHOLD on 64-bit
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_GLIBC_DEFAULT_THRESHOLD = 128 * 2**10


def _libc() -> ctypes.CDLL | None:
    """glibc, where this process runs on it (mallopt and malloc_trim); None elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Let this process reuse freed arrays instead of returning them to the system (glibc only: False
    and nothing changed elsewhere). The worker processes call it when they start."""
    libc = _libc()
    return libc is not None and bool(libc.mallopt(_M_MMAP_THRESHOLD, HEAP_BLOCK_MAX_BYTES)
                                     and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


@contextmanager
def freed_memory_kept() -> Iterator[None]:
    """keep_freed_memory() while the block runs (the writer's process); then glibc's default thresholds
    (128 KiB, no longer adjusted dynamically) and the heap trimmed, so a caller that goes on (tests,
    a run chain) does not keep the generator's peak memory."""
    kept = keep_freed_memory()
    try:
        yield
    finally:
        libc = _libc() if kept else None
        if libc is not None:
            libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
            libc.malloc_trim(0)


def chunk_count(n_persons: int) -> int:
    """The number of chunks of ``PERSONS_PER_CHUNK`` persons (the last one may be smaller)."""
    return -(-n_persons // PERSONS_PER_CHUNK)


def count_into(d: dict[str, int], key: str, n: int) -> None:
    """Add ``n`` to the count ``d[key]`` (a defect count of the truth file)."""
    d[key] = d.get(key, 0) + int(n)


@dataclass
class ChunkContext:
    """Everything a chunk needs, shared by the worker processes (inherited at fork)."""

    pop: Population
    ids: Identities
    tp: TruthParams
    config: StudyConfig
    grid: MonthGrid
    kinds: list
    stay_model: StayWindowModel
    acc: TruthAccumulator        # template: each chunk fills an empty copy
    seeds: list
    spool: Path                  # hand-over files of tables too big for a shared-memory slot
    nir: pa.Array                # BEN_NIR_PSA of each identity
    org: pa.Array                # ORG_CLE_NUM of each person
    month_days: np.ndarray       # first day (days since 1970) of grid months 0 .. M + 13 (flux months)
    rate_no_ald: np.ndarray      # reimbursement rate without ALD, by DCIR_CATEGORIES index

    @classmethod
    def of(cls, pop: Population, ids: Identities, tp: TruthParams, config: StudyConfig, grid: MonthGrid,
           kinds: list, acc: TruthAccumulator, seeds: list, spool: Path) -> ChunkContext:
        first = grid.starts[0].astype("datetime64[M]")
        months = np.arange(first, first + grid.size + FLUX_LAG_MONTHS.size + 2)
        org = np.char.add(np.char.add("01", pop.dpt_code.astype("<U3")), "0000")
        rate = np.ones(len(DCIR_CATEGORIES))
        for kind in DCIR_KINDS:  # experiment payments: always 100 %
            rate[DCIR_CATEGORIES.index(kind.category)] = kind.reimbursement_rate_no_ald
        return cls(pop=pop, ids=ids, tp=tp, config=config, grid=grid, kinds=kinds,
                   stay_model=StayWindowModel.of(config.indicators.eol_window_days, tp), acc=acc, seeds=seeds,
                   spool=spool, nir=pa.array(ids.nir, type=pa.string()), org=pa.array(org, type=pa.string()),
                   month_days=months.astype("datetime64[D]").astype(np.int64), rate_no_ald=rate)

    def persons(self, k: int) -> np.ndarray:
        return np.arange(k * PERSONS_PER_CHUNK, min((k + 1) * PERSONS_PER_CHUNK, self.pop.n))


@dataclass
class ChunkOutput:
    table: pa.Table | None       # ER_PRS_F rows of the chunk (None while handed over by a worker)
    stay_persons: np.ndarray
    stays: Stays
    acc: TruthAccumulator
    defects: dict[str, int]
    slot: int = -1               # hand-over (see Handover)
    nbytes: int = 0
    path: Path | None = None


def chunk_output(ctx: ChunkContext, k: int) -> ChunkOutput:
    """Claim lines, stays and truth sums of chunk ``k`` (a pure function of the context and k)."""
    pop, tp, config, grid = ctx.pop, ctx.tp, ctx.config, ctx.grid
    rng = np.random.default_rng(ctx.seeds[k])
    cm = chunk_means(pop, ctx.persons(k), grid, tp, config)
    acc = ctx.acc.empty_like()
    # the untreated world of the truth: the same persons without the programme's mortality effect
    cm0 = (chunk_means(dataclasses.replace(pop, death=pop.death_untreated), ctx.persons(k), grid, tp, config)
           if tp.effects.mortality != 1.0 else None)
    acc.add_expected(cm, pop, grid, ctx.stay_model, config, cm0=cm0)
    lines = draw_lines(rng, cm, grid, ctx.kinds)
    lines, _ = add_surcharges(rng, lines, tp.defects.cpl_maj_top_2_share_nursing)
    defects: dict[str, int] = {}
    table, extracted = _dcir_table(rng, lines, cm.persons, ctx, DCT_FIRST + k * DCT_BLOCK, defects)
    stays = draw_stays(rng, cm, grid, pop, tp, config)
    _observe(acc, pop, cm.persons, lines, extracted, stays, config)
    return ChunkOutput(table=table, stay_persons=cm.persons[stays.row], stays=stays, acc=acc, defects=defects)


class Handover:
    """How worker processes pass their ER_PRS_F tables to the writer: a ring of shared anonymous memory
    slots, mapped before the fork and reused chunk after chunk (no page is allocated per chunk and the
    writer reads the table in place), or a spool file for a table larger than a slot."""

    def __init__(self, n_slots: int, slot_bytes: int, spool: Path):
        self.slots = [mmap.mmap(-1, slot_bytes) for _ in range(n_slots)]
        self.slot_bytes, self.spool = slot_bytes, spool

    def put(self, out: ChunkOutput, k: int, slot: int) -> None:
        """In a worker: move ``out.table`` into slot ``slot`` (or a file)."""
        table, out.table = out.table, None
        sink = pa.MockOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        out.nbytes = sink.size()
        if out.nbytes <= self.slot_bytes:
            out.slot = slot
            dest = pa.FixedSizeBufferWriter(pa.py_buffer(self.slots[slot]))
        else:
            self.spool.mkdir(exist_ok=True)
            out.path = self.spool / f"chunk-{k:06d}.arrow"
            dest = pa.OSFile(str(out.path), "wb")
        with dest, pa.ipc.new_stream(dest, table.schema) as w:
            w.write_table(table)

    def take(self, out: ChunkOutput) -> pa.Table:
        """In the writer: the table of ``out`` (in place for a slot; read and deleted for a file)."""
        if out.path is None:
            return pa.ipc.open_stream(pa.py_buffer(self.slots[out.slot]).slice(0, out.nbytes)).read_all()
        with pa.OSFile(str(out.path)) as src:
            table = pa.ipc.open_stream(src).read_all()
        out.path.unlink()
        return table

    def close(self) -> None:
        for m in self.slots:
            try:
                m.close()
            except BufferError:  # a table still viewing the slot: the mapping goes with the process
                pass


_WORKER_CONTEXT: tuple[ChunkContext, Handover] | None = None


def _chunk_in_worker(k: int, slot: int) -> ChunkOutput:
    """In a worker process: chunk ``k``, its table handed over through ``slot``."""
    assert _WORKER_CONTEXT is not None, "worker started without a chunk context"
    ctx, handover = _WORKER_CONTEXT
    out = chunk_output(ctx, k)
    handover.put(out, k, slot)
    return out


def chunk_outputs(ctx: ChunkContext, n_chunks: int, workers: int) -> Iterator[ChunkOutput]:
    """The chunks' outputs in chunk order, each with its table; with ``workers`` > 1 they are computed
    by forked worker processes, at most ``workers`` + 1 chunks ahead of the writer. A worker that dies
    (killed, out of memory) raises BrokenProcessPool instead of hanging."""
    global _WORKER_CONTEXT
    if workers <= 1 or n_chunks < MIN_CHUNKS_FOR_WORKERS or "fork" not in mp.get_all_start_methods():
        return (chunk_output(ctx, k) for k in range(n_chunks))
    workers = min(workers, n_chunks)
    # Task k is submitted once task k - workers - 1 is written, so workers + 1 slots are never reused early.
    handover = Handover(workers + 1, HANDOVER_SLOT_BYTES, ctx.spool)
    executor = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=keep_freed_memory)
    pending: deque = deque()
    submitted = 0

    def fill() -> None:
        nonlocal submitted
        while submitted < n_chunks and len(pending) <= workers:
            pending.append(executor.submit(_chunk_in_worker, submitted, submitted % (workers + 1)))
            submitted += 1

    _WORKER_CONTEXT = (ctx, handover)
    try:
        fill()  # the first submission forks every worker now, before the progress bar starts a thread
    finally:
        _WORKER_CONTEXT = None

    def ordered() -> Iterator[ChunkOutput]:
        done = False
        try:
            while pending:
                out = pending.popleft().result()
                out.table = handover.take(out)
                yield out
                out.table = None  # written: its slot may be reused
                fill()
            done = True
        finally:
            executor.shutdown(wait=done, cancel_futures=not done)
            handover.close()

    return ordered()


def _dcir_table(rng: np.random.Generator, lines: Lines, persons: np.ndarray, ctx: ChunkContext, dct_first: int,
                defects: dict[str, int]) -> tuple[pa.Table, np.ndarray]:
    """ER_PRS_F rows of a chunk: the clean lines (within the flux horizon) then the defect copies;
    and which of ``lines`` are in the extract.

    Columns are gathered once into the rows (the extracted lines by mask, then the defect copies by
    index); identifiers stay integer (identity, person) until the Arrow table, where the strings are
    taken from per-identity arrays.
    """
    pop, ids, tp, config = ctx.pop, ctx.ids, ctx.tp, ctx.config
    d = tp.defects
    n = lines.size
    base = lines.parent < 0
    par = lines.parent[~base]
    person = persons[lines.row]
    ident = pick_identity(rng, ids, person)
    flux_m = flux_months(rng, lines.month)
    nb = int(base.sum())
    dct = np.empty(n, dtype=np.int64)
    dct[base] = dct_first + np.arange(nb)
    emt_num, emt_ord, trt_lag = rng.integers(1, 40, n), rng.integers(0, 5, n), rng.integers(2, 20, n)
    for col in (ident, flux_m, dct, emt_num, emt_ord, trt_lag):  # a surcharge shares its line's décompte
        col[~base] = col[par]
    horizon_m = int(ctx.grid.index_of(np.datetime64(config.study.claims_end, "D"))) + config.study.flux_lag_months
    keep = flux_m <= horizon_m
    count_into(defects, "beyond_flux_horizon_lines_not_extracted", int((~keep).sum()))

    rate = np.where(pop.any_ald[person], 1.0, ctx.rate_no_ald[lines.cat])  # ALD: 100 % reimbursed
    bse = np.round(lines.amount / rate, 2)
    pai = bse.copy()
    spec_m = (lines.cat == DCIR_CATEGORIES.index("specialist")) & (rng.random(n) < 0.3)
    pai[spec_m] = np.round(pai[spec_m] + rng.uniform(5, 30, spec_m.sum()), 2)
    flux_day = ctx.month_days[flux_m]
    cols: dict[str, np.ndarray] = {
        "DCT_ORD_NUM": dct, "FLX_DIS_DTD": flux_day, "FLX_EMT_NUM": emt_num, "FLX_EMT_ORD": emt_ord,
        "FLX_TRT_DTD": flux_day - trt_lag, "PRS_ORD_NUM": lines.prs_ord, "identity": ident, "person": person,
        "EXE_SOI_DTD": _days(lines.dtd), "EXE_SOI_DTF": _days(lines.dtf),
        "PRS_NAT_REF": lines.code, "PRS_ACT_QTE": lines.qty, "PRS_PAI_MNT": pai, "BSE_REM_BSE": bse,
        "BSE_REM_MNT": lines.amount, "CPL_MAJ_TOP": lines.cpl, "PSE_ACT_NAT": lines.act, "PSE_SPE_COD": lines.spe,
    }
    count_into(defects, "cpl_maj_top_2_lines", int(((lines.cpl == 2) & keep).sum()))

    # Defects: copies of clean base lines (never experiment payments nor surcharges).
    is_exp = np.isin(lines.code, config.cleaning.experiment.prs_nat_ref)
    candidates = np.flatnonzero(keep & ~is_exp & (lines.cpl == 0))

    def pick(share: float) -> np.ndarray:
        return candidates[rng.random(candidates.size) < share]

    i71 = pick(d.dpn_qlf_71_share)              # hospital activity sent "for information": paid elsewhere
    i0 = pick(d.bse_prs_nat_0_share)            # lines without a base prestation
    reg = pick(d.regularisation_share)          # paid twice (or at a wrong amount), then cancelled
    corr = rng.random(reg.size) < d.regularisation_correction_share
    factor = np.where(corr, rng.uniform(1.1, 1.5, reg.size), 1.0)
    neg_lag, neg_trt = rng.integers(1, 4, reg.size), rng.integers(2, 20, reg.size)
    pre = pick(d.pre_window_lines_share)        # care before the claims window, paid in its first months
    pre_days, pre_flux = rng.integers(1, 92, pre.size), rng.integers(0, 3, pre.size)
    parts = [i71, i0, reg, reg, pre]
    n_kept = int(keep.sum())
    edges = n_kept + np.cumsum([0] + [p.size for p in parts])
    s71, s0, swrong, sneg, spre = (slice(edges[j], edges[j + 1]) for j in range(5))
    copied = np.concatenate(parts)
    out = {k: _rows(v, keep, n_kept, copied) for k, v in cols.items()}
    out["BSE_PRS_NAT"] = out["PRS_NAT_REF"].copy()
    out["DPN_QLF"] = np.zeros(n_kept + copied.size, dtype=np.int64)
    n_copies = copied.size
    if nb + n_copies >= DCT_BLOCK:  # pragma: no cover - impossible with PERSONS_PER_CHUNK persons
        raise GenerationError(f"A chunk needs {nb + n_copies:,} DCT_ORD_NUM numbers (> {DCT_BLOCK:,}).")
    out["DCT_ORD_NUM"][n_kept:] = dct_first + nb + np.arange(n_copies)
    out["PRS_ORD_NUM"][n_kept:] = 1
    out["DPN_QLF"][s71] = 71
    out["BSE_PRS_NAT"][s0] = 0
    for m in ("PRS_PAI_MNT", "BSE_REM_BSE", "BSE_REM_MNT"):
        out[m][swrong] = np.round(out[m][swrong] * factor, 2)
        out[m][sneg] = -out[m][swrong]
    out["PRS_ACT_QTE"][sneg] = -out["PRS_ACT_QTE"][sneg]
    later = np.maximum(np.minimum(flux_m[reg] + neg_lag, horizon_m), flux_m[reg])
    out["FLX_DIS_DTD"][sneg] = ctx.month_days[later]
    out["FLX_TRT_DTD"][sneg] = out["FLX_DIS_DTD"][sneg] - neg_trt
    start = int(ctx.month_days[0])
    out["EXE_SOI_DTD"][spre] = start - pre_days
    out["EXE_SOI_DTF"][spre] = out["EXE_SOI_DTD"][spre]
    out["FLX_DIS_DTD"][spre] = ctx.month_days[pre_flux]
    out["FLX_TRT_DTD"][spre] = out["FLX_DIS_DTD"][spre] - 5
    count_into(defects, "dpn_qlf_71_lines", i71.size)
    count_into(defects, "bse_prs_nat_0_lines", i0.size)
    count_into(defects, "regularisation_pairs", reg.size)
    count_into(defects, "regularisation_corrections", int(corr.sum()))
    count_into(defects, "care_before_window_lines", pre.size)
    return er_prs_f_arrow(out, ctx), keep


def _days(dates: np.ndarray) -> np.ndarray:
    """Day numbers (since 1970) of datetime64 dates, without a copy when they are already in days."""
    return dates.astype("datetime64[D]", copy=False).view(np.int64)


def _rows(v: np.ndarray, keep: np.ndarray, n_kept: int, copied: np.ndarray) -> np.ndarray:
    """``v`` of the extracted lines (``keep``, in order) followed by ``v`` of the copied lines."""
    rows = np.empty(n_kept + copied.size, dtype=v.dtype)
    np.compress(keep, v, out=rows[:n_kept])
    np.take(v, copied, out=rows[n_kept:])
    return rows


def er_prs_f_arrow(cols: dict[str, np.ndarray], ctx: ChunkContext) -> pa.Table:
    """The ER_PRS_F Arrow table of a chunk: dates from day numbers, strings taken by identity/person."""
    n = cols["DCT_ORD_NUM"].size
    ones = pa.array(np.ones(n, dtype=np.int64))
    identity = pa.array(cols["identity"])
    arrays = {
        "BEN_NIR_PSA": ctx.nir.take(identity),
        "BEN_RNG_GEM": pa.array(ctx.ids.rng_gem[cols["identity"]].astype(np.int64)),
        "ORG_CLE_NUM": ctx.org.take(pa.array(cols["person"])),
        "FLX_EMT_TYP": ones,
        "REM_TYP_AFF": ones,
    }
    schema = arrow_schema(TABLES["ER_PRS_F"])
    for f in schema:
        if f.name in arrays:
            continue
        v = cols[f.name]
        if pa.types.is_date32(f.type):
            arrays[f.name] = pa.array(v.astype(np.int32, copy=False), type=pa.int32()).view(pa.date32())
        else:
            arrays[f.name] = pa.array(v.astype(f.type.to_pandas_dtype(), copy=False), type=f.type)
    return pa.Table.from_arrays([arrays[f.name] for f in schema], schema=schema)


def _observe(acc: TruthAccumulator, pop: Population, persons: np.ndarray, lines: Lines, extracted: np.ndarray,
             stays: Stays, config: StudyConfig) -> None:
    """Realised clean amounts for the on-support treated patients (diagnostic 'observed' block), with
    the estimator's conventions: care dates in the window, stays prorated by their days in it.
    ``extracted`` flags the lines written to the extract (flux within the horizon)."""
    on = (pop.group[persons] == TREATED) & ~pop.off_support[persons]
    if not on.any():
        return
    claims_end = to_date(config.study.claims_end)
    death = pop.death[persons]
    end = np.where(np.isnat(death), claims_end, death)
    inc = pop.inclusion[persons]
    dec = np.zeros(persons.size, dtype=bool)
    dec[on] = acc.decedents(death[on], inc[on])
    d_day = np.where(dec, death, claims_end)  # dummy dates outside decedents (masked by dec)
    first = d_day - (acc.eol_window_days - 1) * DAY

    perimeter = set(acc.perimeter)
    cat_ok = np.isin(lines.cat, [DCIR_CATEGORIES.index(c) for c in DCIR_CATEGORIES if c in perimeter]) & extracted
    r = lines.row
    in_fu = on[r] & (lines.dtd >= inc[r]) & (lines.dtd <= end[r]) & cat_ok
    acc.obs_spend += float(lines.amount[in_fu].sum())
    in_w = dec[r] & (lines.dtd >= first[r]) & (lines.dtd <= d_day[r]) & cat_ok
    acc.obs_eol_spend += float(lines.amount[in_w].sum())
    if "hospital" in perimeter:
        sr = stays.row
        acc.obs_spend += float(stays.cost[on[sr] & (stays.entry >= inc[sr]) & (stays.entry <= end[sr])].sum())
        lo, hi = np.maximum(stays.entry, first[sr]), np.minimum(stays.exit, d_day[sr])
        days_in = np.clip((hi - lo).astype("timedelta64[D]").astype(np.float64) + 1, 0, None)
        stay_days = np.maximum((stays.exit - stays.entry).astype("timedelta64[D]").astype(np.float64) + 1, 1)
        s_dec = dec[sr] & (stays.entry <= d_day[sr])
        acc.obs_eol_spend += float((stays.cost * days_in / stay_days)[s_dec].sum())
        full_in = s_dec & (stays.kind != 2) & (stays.exit >= first[sr])
        acc.obs_eol_hosp += int(np.unique(sr[full_in]).size)

