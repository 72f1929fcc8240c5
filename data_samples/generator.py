"""`equilibres generate`: a synthetic SNDS-shaped extract with planted effects and defects.

Stages (each a function of its own module): population → identities/ALDs → per chunk of persons:
expected monthly amounts (both potential outcomes) → claim lines and stays → defects → files.
Everything derives from one ``numpy.random.SeedSequence`` (one child seed per chunk): the same seed,
scale, truth and configuration give byte-identical files, whether the chunks are drawn in this
process or by forked worker processes (their tables are written in chunk order). The extract is
written to a temporary directory beside ``out`` and renamed into place at the end, so a failed run
never leaves a half extract.
"""

from __future__ import annotations

import dataclasses
import json
import mmap
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    experiment_kind,
    flux_months,
    hospital_finess,
)
from data_samples.outcomes import DCIR_CATEGORIES, MonthGrid, StayWindowModel, TruthAccumulator, chunk_means
from data_samples.population import (
    CONTROL,
    CPX_FLAGS,
    DAY,
    DAYS_PER_MONTH,
    OUTSIDE,
    SENTINEL_1600,
    TREATED,
    Identities,
    Population,
    build_ald_rows,
    build_identities,
    build_population,
    death_probability,
    pick_identity,
    to_date,
)
from data_samples.truth import DEFAULT_TRUTH, TruthParams, load_truth
from data_samples.writers import FORMATS, SUFFIX, TableWriter, arrow_schema, write_table
from pipeline.config import StudyConfig
from pipeline.contract_spec import TABLES, X_NIR
from pipeline.io import PipelineError, atomic_write_text

PERSONS_PER_CHUNK = 4000
# DCT_ORD_NUM: chunk k numbers its décomptes from DCT_FIRST + k x DCT_BLOCK (a chunk of 4 000 persons
# has at most 4 000 x 60 months x 12 lines, x 6 with every defect copy: always below the block).
DCT_FIRST, DCT_BLOCK = 10_000_000, 100_000_000
# Chunks run in this many forked worker processes (1 = in process); the files do not depend on it.
DEFAULT_WORKERS = max(1, min(2, os.cpu_count() or 1))
# Below this many chunks, starting workers (and warming their memory) costs more than it saves.
MIN_CHUNKS_FOR_WORKERS = 4
# Shared memory per hand-over slot (a chunk's ER_PRS_F table is ~0.2 GB; only touched pages count).
HANDOVER_SLOT_BYTES = 768 * 2**20
APHP_LEGAL_FINESS = "750712184"
IDF_DPTS = ("075", "077", "078", "091", "092", "093", "094", "095")


class GenerationError(PipelineError):
    """The generator cannot run with these arguments."""


@dataclass
class GenerationResult:
    out: Path
    scale: float
    seed: int
    fmt: str
    truth_name: str
    counts: dict[str, int]
    indicators: dict[str, float | None]
    defects: dict[str, int]
    files: list[str]
    seconds: float
    surveys: dict[str, Any] | None = None

    def render(self) -> str:
        lines = [
            f"Synthetic extract written to {self.out} ({self.fmt}, scale {self.scale}, seed {self.seed}, "
            f"truth '{self.truth_name}') in {self.seconds:.1f} s",
            f"  persons {self.counts['persons']:,} (ÉQUILIBRES {self.counts['treated']:,}, control pool "
            f"{self.counts['control_pool']:,}, outside study {self.counts['outside']:,})",
            f"  ER_PRS_F lines {self.counts['er_prs_f_lines']:,}; MCO stays {self.counts['stays']:,}; "
            f"{len(self.files)} files",
            "  planted truth (truth.json, on-support treated):",
        ]
        for k, v in self.indicators.items():
            lines.append(f"    {k:<36} {'n/a' if v is None else f'{v:,.4f}'}")
        if self.surveys is None:
            lines.append("  surveys: not written (surveys.synthetic not available)")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
def generate_extract(out: Path, scale: float, seed: int, truth_path: Path | None, fmt: str,
                     confounding: float | None, config: StudyConfig, workers: int | None = None) -> GenerationResult:
    """Generate the extract into ``out`` (replaced atomically) and return what was written.

    ``workers``: processes drawing the chunks of persons (default ``DEFAULT_WORKERS``); the files are
    byte-identical whatever the number.
    """
    fmt = fmt.lower()
    workers = DEFAULT_WORKERS if workers is None else int(workers)
    if workers < 1:
        raise GenerationError(f"workers must be an integer >= 1; got {workers}.")
    if fmt not in FORMATS:
        raise GenerationError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}.")
    if not (0 < scale <= 20):
        raise GenerationError(f"--scale must be > 0 and <= 20 (1 = full study size); got {scale}.")
    tp = load_truth(truth_path, confounding)
    out = Path(out)
    _check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    t0 = time.perf_counter()
    try:
        result = _generate_into(tmp, scale, seed, tp, truth_path, fmt, config, workers)
        _normal_permissions(tmp)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.out = out
    result.seconds = time.perf_counter() - t0
    return result


def _check_replaceable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise GenerationError(f"--out {out} is a file; give a directory for the extract.")
    if out.is_dir() and any(out.iterdir()):
        looks_like_extract = (out / "truth.json").exists() or any(out.glob("IR_BEN_R.*"))
        if not looks_like_extract:
            raise GenerationError(
                f"--out {out} is a non-empty directory that is not a synthetic extract; refusing to replace "
                "it. Give a new or empty directory.")


def _normal_permissions(root: Path) -> None:
    """mkdtemp/mkstemp create private (0700/0600) entries; an extract gets the usual umask modes."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [root, *root.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, old / "x")
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _progress():
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=True)


def _generate_into(tmp: Path, scale: float, seed: int, tp: TruthParams, truth_path: Path | None, fmt: str,
                   config: StudyConfig, workers: int) -> GenerationResult:
    ss = np.random.SeedSequence(seed)
    s_pop, s_ids, s_ald, s_chunks, s_pmsi, s_ben = ss.spawn(6)
    pop = build_population(np.random.default_rng(s_pop), scale, tp, config)
    ids = build_identities(np.random.default_rng(s_ids), pop, tp)
    ald = build_ald_rows(np.random.default_rng(s_ald), pop, tp, config)
    grid = MonthGrid.of(config)
    ext = SUFFIX[fmt]
    files: list[str] = []
    defects: dict[str, int] = {}

    acc = TruthAccumulator(perimeter=list(config.indicators.perimeter),
                           eol_window_days=config.indicators.eol_window_days,
                           claims_start=to_date(config.study.claims_start))
    kinds = [*DCIR_KINDS, experiment_kind(config)]
    _check_categories(kinds, config)
    n_chunks = -(-pop.n // PERSONS_PER_CHUNK)
    ctx = _ChunkContext.of(pop, ids, tp, config, grid, kinds, acc, s_chunks.spawn(n_chunks), tmp / ".chunks")

    prs_path = tmp / f"{config.extract.er_prs_f}{ext}"
    writer = TableWriter(prs_path, TABLES["ER_PRS_F"], fmt)
    stays_parts: list[tuple[np.ndarray, Stays]] = []
    # Worker processes are forked before the progress bar starts its thread; closing the outputs stops
    # them if writing fails.
    outputs = _chunk_outputs(ctx, n_chunks, workers)
    with closing(outputs), _progress() as progress:
        task = progress.add_task("ER_PRS_F lines", total=n_chunks)
        for out in outputs:  # in chunk order, whatever the number of workers
            writer.write(out.table)
            stays_parts.append((out.stay_persons, out.stays))
            acc.merge(out.acc)
            for key, v in out.defects.items():
                _count(defects, key, v)
            progress.advance(task)
    writer.close()
    shutil.rmtree(ctx.spool, ignore_errors=True)
    files.append(prs_path.name)

    pmsi_rng = np.random.default_rng(s_pmsi)
    n_stays, pmsi_files, final_persons = _write_pmsi(tmp, pmsi_rng, stays_parts, pop, ids, tp, config, fmt, defects)
    files += pmsi_files
    ben_rng = np.random.default_rng(s_ben)
    files.append(_write_ir_ben_r(tmp, ben_rng, pop, ids, tp, config, fmt, final_persons, defects))
    files.append(_write_ir_imb_r(tmp, pop, ids, ald, config, fmt))
    defects.update(ald["defects"])
    files.append(_write_roster(tmp, pop, config, fmt))
    defects["multi_nir_persons"] = int((ids.count > 1).sum())
    defects["corsica_variant_persons"] = int(np.isin(pop.dpt_code, ["201", "202", "020", "209"]).sum())
    defects["corsica_persons"] = int(np.isin(pop.dpt_code, ["02A", "02B", "201", "202", "020", "209"]).sum())
    defects["outside_study_persons"] = int((pop.group == OUTSIDE).sum())
    defects["unknown_sex_persons"] = int(np.isin(pop.sex_code, [0, 9]).sum())
    defects["unknown_birth_persons"] = int((~pop.birth_known).sum())

    counts = {
        "treated": int((pop.group == TREATED).sum()),
        "control_pool": int((pop.group == CONTROL).sum()),
        "outside": int((pop.group == OUTSIDE).sum()),
        "persons": pop.n,
        "identities": int(ids.nir.size),
        "er_prs_f_lines": writer.rows,
        "stays": n_stays,
        "treated_on_support": acc.n_on_support,
        "treated_complex": acc.n_complex,
        "treated_off_support_complex": acc.n_off_support_complex,
        "treated_decedents_eol": acc.n_decedents,
        "treated_deaths": int((~np.isnat(pop.death) & (pop.group == TREATED)).sum()),
        "deaths": int((~np.isnat(pop.death)).sum()),
    }
    indicators = acc.indicators()
    truth_doc = {
        "seed": seed,
        # the share of the study's population the extract holds: its départements at full density
        "scale": round(pop.scale_realised, 6),
        "scale_requested": scale,
        "departements": list(pop.departements),
        "format": fmt,
        "truth_file": tp.name if truth_path is None else str(truth_path),
        "truth_name": tp.name,
        "params": tp.to_dict(),
        "indicators": indicators,
        "mortality": _mortality_summary(pop, tp, config),
        "eol_same_death_date_reference": acc.same_death_reference(),
        "observed": _observed_summary(acc),
        "breakdown_per_patient_year": {
            "treated": {k: round(v / acc.patient_years, 2) for k, v in acc.by_cat1.items()} if acc.patient_years else {},
            "counterfactual": {k: round(v / acc.patient_years0, 2) for k, v in acc.by_cat0.items()} if acc.patient_years0 else {},
            "patient_years": round(acc.patient_years, 2),
        },
        "breakdown_eol_per_decedent": {
            "treated": {k: round(v / acc.n_decedents, 2) for k, v in acc.eol_by_cat1.items()} if acc.n_decedents else {},
            "counterfactual": {k: round(v / acc.n_decedents0, 2) for k, v in acc.eol_by_cat0.items()} if acc.n_decedents0 else {},
        },
        "definitions": TRUTH_DEFINITIONS,
        "defects": dict(sorted(defects.items())),
        "counts": counts,
        "study": {"claims_start": str(config.study.claims_start), "claims_end": str(config.study.claims_end),
                  "eol_window_days": config.indicators.eol_window_days,
                  "perimeter": list(config.indicators.perimeter)},
    }
    atomic_write_text(tmp / "truth.json", json.dumps(truth_doc, indent=2, sort_keys=False, ensure_ascii=False))

    surveys = None
    try:
        from surveys.synthetic import write_synthetic_surveys
    except ImportError:
        write_synthetic_surveys = None
    if write_synthetic_surveys is not None:
        surveys = write_synthetic_surveys(tmp, seed, config)
    return GenerationResult(out=tmp, scale=scale, seed=seed, fmt=fmt, truth_name=tp.name, counts=counts,
                            indicators=indicators, defects=defects, files=sorted(files), seconds=0.0,
                            surveys=surveys)


# --------------------------------------------------------------------------------------------------
# Chunks of persons: drawn independently (one seed each from the SeedSequence), in this process or in
# forked worker processes, and always written in chunk order, so the files do not depend on `workers`.
@dataclass
class _ChunkContext:
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
           kinds: list, acc: TruthAccumulator, seeds: list, spool: Path) -> _ChunkContext:
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
class _ChunkOutput:
    table: pa.Table | None       # ER_PRS_F rows of the chunk (None while handed over by a worker)
    stay_persons: np.ndarray
    stays: Stays
    acc: TruthAccumulator
    defects: dict[str, int]
    slot: int = -1               # hand-over (see _Handover)
    nbytes: int = 0
    path: Path | None = None


def _chunk_output(ctx: _ChunkContext, k: int) -> _ChunkOutput:
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
    return _ChunkOutput(table=table, stay_persons=cm.persons[stays.row], stays=stays, acc=acc, defects=defects)


class _Handover:
    """How worker processes pass their ER_PRS_F tables to the writer: a ring of shared anonymous memory
    slots, mapped before the fork and reused chunk after chunk (no page is allocated per chunk and the
    writer reads the table in place), or a spool file for a table larger than a slot."""

    def __init__(self, n_slots: int, slot_bytes: int, spool: Path):
        self.slots = [mmap.mmap(-1, slot_bytes) for _ in range(n_slots)]
        self.slot_bytes, self.spool = slot_bytes, spool

    def put(self, out: _ChunkOutput, k: int, slot: int) -> None:
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

    def take(self, out: _ChunkOutput) -> pa.Table:
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


_WORKER_CONTEXT: tuple[_ChunkContext, _Handover] | None = None


def _chunk_in_worker(k: int, slot: int) -> _ChunkOutput:
    """In a worker process: chunk ``k``, its table handed over through ``slot``."""
    assert _WORKER_CONTEXT is not None, "worker started without a chunk context"
    ctx, handover = _WORKER_CONTEXT
    out = _chunk_output(ctx, k)
    handover.put(out, k, slot)
    return out


def _chunk_outputs(ctx: _ChunkContext, n_chunks: int, workers: int) -> Iterator[_ChunkOutput]:
    """The chunks' outputs in chunk order, each with its table; with ``workers`` > 1 they are computed
    by forked worker processes, at most ``workers`` + 1 chunks ahead of the writer. A worker that dies
    (killed, out of memory) raises BrokenProcessPool instead of hanging."""
    global _WORKER_CONTEXT
    if workers <= 1 or n_chunks < MIN_CHUNKS_FOR_WORKERS or "fork" not in mp.get_all_start_methods():
        return (_chunk_output(ctx, k) for k in range(n_chunks))
    workers = min(workers, n_chunks)
    # Task k is submitted once task k - workers - 1 is written, so workers + 1 slots are never reused early.
    handover = _Handover(workers + 1, HANDOVER_SLOT_BYTES, ctx.spool)
    executor = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"))
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

    def ordered() -> Iterator[_ChunkOutput]:
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


def _mortality_summary(pop: Population, tp: TruthParams, config: StudyConfig) -> dict[str, Any]:
    """Deaths of the on-support treated patients with and without the mortality effect (same draws)."""
    t = np.flatnonzero((pop.group == TREATED) & ~pop.off_support)
    claims_end = to_date(config.study.claims_end)
    inc = pop.inclusion[t]
    months = (claims_end - inc).astype("timedelta64[D]").astype(np.float64) / DAYS_PER_MONTH
    plan = pop.exit_planned[t]
    included = np.full(t.size, np.inf)
    has_plan = ~np.isnat(plan)
    included[has_plan] = (plan[has_plan] - inc[has_plan]).astype("timedelta64[D]").astype(np.float64) / DAYS_PER_MONTH
    theta = tp.effects.mortality
    haz = pop.death_hazard[t]
    p1 = death_probability(haz, np.full(t.size, theta), included, months)
    p0 = death_probability(haz, np.ones(t.size), included, months)
    e1, e0 = float(p1.sum()), float(p0.sum())
    return {
        "hazard_ratio_while_included": theta,
        "population": "on-support treated patients, from inclusion to claims_end",
        "patients": int(t.size),
        "deaths_treated": int((~np.isnat(pop.death[t])).sum()),
        "deaths_untreated_same_draws": int((~np.isnat(pop.death_untreated[t])).sum()),
        "expected_deaths_treated": round(e1, 2),
        "expected_deaths_untreated": round(e0, 2),
        "expected_death_risk_ratio": round(e1 / e0, 6) if e0 else None,
    }


TRUTH_DEFINITIONS = {
    "population": "ÉQUILIBRES patients planted on support (every complex patient planted off support excluded).",
    "estimand": "Expected values under both potential outcomes for the same patients (same deaths and "
                "follow-up): E[Y1] with the planted effects while included, E[Y0] without; ITT (effects stop "
                "at exit from the experiment).",
    "follow_up": "From the inclusion date (EQL_INC_DTE) to death or claims_end; patient-years = days/365.25.",
    "perimeter": "indicators.perimeter: DCIR categories (BSE_REM_MNT, experiment payments included) + "
                 "hospital (MNT_TOT_AM of full stays and séances, counted in the month of entry).",
    "eol_window": "The eol_window_days days before death, death day included: [death - (eol_window_days - 1), "
                  "death]. DCIR amounts by care date (EXE_SOI_DTD); stays and séances by their days in the "
                  "window (cost x days inside / (exit - entry + 1)), the final in-hospital stay included. "
                  "Decedents = on-support treated dying after inclusion with the whole window inside the "
                  "claims window; both arms share the death date realised under treatment.",
    "eol_hosp_rate": "mean P(>= 1 full stay overlapping the window | treated) / same without treatment - 1 "
                     "(stays entering before the window but still running into it count).",
    "mortality": "effects.mortality multiplies the death hazard while included. Each arm is evaluated in its "
                 "own world, as the estimator's arms are: the treated arm on the observed death dates, the "
                 "untreated arm on the same patients' death dates without the effect (death_untreated, same "
                 "random draws). Spending rates use each world's own patient-years; end-of-life figures each "
                 "world's own decedents. eol_same_death_date_reference gives the untreated arm on the treated "
                 "decedents' own death dates (identical without a mortality effect).",
    "avoided_spending_share": "1 - rate1 / rate0, rate = sum(E[spend]) / patient-years of that arm's world, "
                              "over the follow-up from inclusion.",
    "avoided_spending_per_patient_year": "rate0 - rate1 (each arm's expected spending over its own "
                                         "patient-years).",
    "unmatched_share_complex": "complex-care patients planted off support / complex-care patients.",
    "observed": "Realised clean amounts of the generated lines and stays for the same patients (noisy).",
}


def _count(d: dict[str, int], key: str, n: int) -> None:
    d[key] = d.get(key, 0) + int(n)


def _check_categories(kinds: list, config: StudyConfig) -> None:
    """Every synthetic code must land in the category the generator means, under the study's rules."""
    rules = config.cleaning.categories
    for kind in kinds:
        spes = kind.pse_spe_cod
        for code in kind.codes:
            for spe in spes:
                act = kind.pse_act_nat[0] if kind.category != "other" else 0
                got = "other"
                for name, r in rules.items():
                    if ((not r.prs_nat_ref or code in r.prs_nat_ref) and (not r.pse_act_nat or act in r.pse_act_nat)
                            and (not r.pse_spe_cod or spe in r.pse_spe_cod)):
                        got = name
                        break
                if got != kind.category:
                    raise GenerationError(
                        f"The study configuration puts synthetic code PRS_NAT_REF={code} (PSE_SPE_COD={spe}) in "
                        f"category '{got}', the generator means '{kind.category}'. Align [cleaning.categories] "
                        "with data_samples/catalog.py.")


def _dcir_table(rng: np.random.Generator, lines: Lines, persons: np.ndarray, ctx: _ChunkContext, dct_first: int,
                defects: dict[str, int]) -> tuple[pa.Table, np.ndarray]:
    """ER_PRS_F rows of a chunk: the clean lines (within the flux horizon) then the defect copies;
    and which of ``lines`` are in the extract.

    Columns are gathered once through a row index (``src``) into the lines; identifiers stay integer
    (identity, person) until the Arrow table, where the strings are taken from per-identity arrays.
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
    _count(defects, "beyond_flux_horizon_lines_not_extracted", int((~keep).sum()))
    kept_idx = np.flatnonzero(keep)

    rate = np.where(pop.any_ald[person], 1.0, ctx.rate_no_ald[lines.cat])  # ALD: 100 % reimbursed
    bse = np.round(lines.amount / rate, 2)
    pai = bse.copy()
    spec_m = (lines.cat == DCIR_CATEGORIES.index("specialist")) & (rng.random(n) < 0.3)
    pai[spec_m] = np.round(pai[spec_m] + rng.uniform(5, 30, spec_m.sum()), 2)
    flux_day = ctx.month_days[flux_m]
    cols: dict[str, np.ndarray] = {
        "DCT_ORD_NUM": dct, "FLX_DIS_DTD": flux_day, "FLX_EMT_NUM": emt_num, "FLX_EMT_ORD": emt_ord,
        "FLX_TRT_DTD": flux_day - trt_lag, "PRS_ORD_NUM": lines.prs_ord, "identity": ident, "person": person,
        "EXE_SOI_DTD": lines.dtd.astype(np.int64), "EXE_SOI_DTF": lines.dtf.astype(np.int64),
        "PRS_NAT_REF": lines.code, "PRS_ACT_QTE": lines.qty, "PRS_PAI_MNT": pai, "BSE_REM_BSE": bse,
        "BSE_REM_MNT": lines.amount, "BSE_PRS_NAT": lines.code, "DPN_QLF": np.zeros(n, dtype=np.int64),
        "CPL_MAJ_TOP": lines.cpl, "PSE_ACT_NAT": lines.act, "PSE_SPE_COD": lines.spe,
    }
    _count(defects, "cpl_maj_top_2_lines", int((lines.cpl[kept_idx] == 2).sum()))

    # Defects: copies of clean base lines (never experiment payments nor surcharges).
    is_exp = np.isin(lines.code[kept_idx], config.cleaning.experiment.prs_nat_ref)
    candidates = kept_idx[~is_exp & (lines.cpl[kept_idx] == 0)]

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
    parts = [kept_idx, i71, i0, reg, reg, pre]
    edges = np.cumsum([0] + [p.size for p in parts])
    s71, s0, swrong, sneg, spre = (slice(edges[j], edges[j + 1]) for j in range(1, 6))
    src = np.concatenate(parts)
    out = {k: v[src] for k, v in cols.items()}
    n_copies = src.size - kept_idx.size
    if nb + n_copies >= DCT_BLOCK:  # pragma: no cover - impossible with PERSONS_PER_CHUNK persons
        raise GenerationError(f"A chunk needs {nb + n_copies:,} DCT_ORD_NUM numbers (> {DCT_BLOCK:,}).")
    out["DCT_ORD_NUM"][kept_idx.size:] = dct_first + nb + np.arange(n_copies)
    out["PRS_ORD_NUM"][kept_idx.size:] = 1
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
    _count(defects, "dpn_qlf_71_lines", i71.size)
    _count(defects, "bse_prs_nat_0_lines", i0.size)
    _count(defects, "regularisation_pairs", reg.size)
    _count(defects, "regularisation_corrections", int(corr.sum()))
    _count(defects, "care_before_window_lines", pre.size)
    return _er_prs_f_arrow(out, ctx), keep


def _er_prs_f_arrow(cols: dict[str, np.ndarray], ctx: _ChunkContext) -> pa.Table:
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
            arrays[f.name] = pa.array(v.astype(np.int32), type=pa.int32()).view(pa.date32())
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


def _observed_summary(acc: TruthAccumulator) -> dict[str, float | None]:
    py, nd = acc.patient_years, acc.n_decedents
    return {
        "spend_treated_per_patient_year": round(acc.obs_spend / py, 2) if py else None,
        "expected_spend_treated_per_patient_year": round(acc.spend1 / py, 2) if py else None,
        "expected_spend_counterfactual_per_patient_year": round(acc.spend0 / py, 2) if py else None,
        "eol_spending_treated": round(acc.obs_eol_spend / nd, 2) if nd else None,
        "eol_hosp_share_treated": round(acc.obs_eol_hosp / nd, 4) if nd else None,
        "expected_eol_hosp_share_treated": round(acc.eol_hosp1 / nd, 4) if nd else None,
        "expected_eol_hosp_share_counterfactual": round(acc.eol_hosp0 / acc.n_decedents0, 4) if acc.n_decedents0 else None,
    }


# --------------------------------------------------------------------------------------------------
def _write_pmsi(tmp: Path, rng: np.random.Generator, parts: list[tuple[np.ndarray, Stays]], pop: Population,
                ids: Identities, tp: TruthParams, config: StudyConfig, fmt: str, defects: dict[str, int]
                ) -> tuple[int, list[str], np.ndarray]:
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
    from data_samples.claims import error_ghm

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


def _write_ir_ben_r(tmp: Path, rng: np.random.Generator, pop: Population, ids: Identities, tp: TruthParams,
                    config: StudyConfig, fmt: str, final_persons: np.ndarray, defects: dict[str, int]) -> str:
    d = tp.defects
    written = np.where(np.isnat(pop.death), SENTINEL_1600, pop.death)
    # in-hospital deaths not (yet) in the referential: only PMSI SOR_MOD = 9 tells
    miss = final_persons[rng.random(final_persons.size) < d.pmsi_only_death_share]
    written[miss] = SENTINEL_1600
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
    defects["sentinel_death_dates"] = int((written[ids.person] == SENTINEL_1600).sum())
    p = ids.person
    cols = {
        "BEN_NIR_PSA": ids.nir, "BEN_RNG_GEM": ids.rng_gem.astype(np.int64), "BEN_IDT_ANO": pop.idt_ano[p],
        "BEN_SEX_COD": pop.sex_code[p].astype(np.int64),
        "BEN_NAI_ANN": np.where(pop.birth_known[p], pop.birth_year[p].astype(str), "1600").astype(object),
        "BEN_NAI_MOI": np.where(pop.birth_known[p], np.char.zfill(pop.birth_month[p].astype(str), 2), "00").astype(object),
        "BEN_RES_DPT": pop.dpt_code[p], "BEN_DCD_DTE": written[p],
    }
    name = config.extract.ir_ben_r + SUFFIX[fmt]
    write_table(tmp / name, cols, TABLES["IR_BEN_R"], fmt)
    return name


def _write_ir_imb_r(tmp: Path, pop: Population, ids: Identities, ald: dict, config: StudyConfig, fmt: str) -> str:
    p = ald["person"]
    cols = {"BEN_NIR_PSA": ids.nir[ids.first[p]], "BEN_RNG_GEM": ids.rng_gem[ids.first[p]].astype(np.int64),
            **{k: ald[k] for k in ("IMB_ALD_NUM", "IMB_ALD_DTD", "IMB_ALD_DTF", "IMB_ETM_NAT", "MED_MTF_COD")}}
    name = config.extract.ir_imb_r + SUFFIX[fmt]
    write_table(tmp / name, cols, TABLES["IR_IMB_R"], fmt)
    return name


def _write_roster(tmp: Path, pop: Population, config: StudyConfig, fmt: str) -> str:
    t = np.flatnonzero(pop.group == TREATED)
    exit_ = np.where(~np.isnat(pop.exit[t]), pop.exit[t], np.where(np.isnat(pop.death[t]), SENTINEL_1600, pop.death[t]))
    cols = {"BEN_NIR_PSA": pop.nir_primary[t], "EQL_EQP_ID": pop.team[t], "EQL_DPT": pop.dpt[t],
            "EQL_INC_DTE": pop.inclusion[t], "EQL_SOR_DTE": exit_,
            **{f: pop.cpx[f][t].astype(np.int64) for f in CPX_FLAGS}}
    name = config.extract.roster + SUFFIX[fmt]
    write_table(tmp / name, cols, TABLES["ROSTER"], fmt)
    return name


__all__ = ["GenerationResult", "generate_extract", "DEFAULT_TRUTH"]
