"""`equilibres generate`: a synthetic SNDS-shaped extract with planted effects and defects.

Stages (each a function of its own module): population → identities/ALDs → per chunk of persons:
expected monthly amounts (both potential outcomes) → claim lines and stays → defects → files.
Everything derives from one ``numpy.random.SeedSequence`` (one child seed per chunk): the same seed,
scale, truth and configuration give byte-identical files, whether the chunks are drawn in this
process or by forked worker processes (their tables are written in chunk order). The extract is
written to a temporary directory beside ``out`` and renamed into place at the end, so a failed run
never leaves a half extract.

Modules: the chunks of persons and their ER_PRS_F lines in :mod:`data_samples.chunks`; the tables
written once for the whole population (PMSI MCO, IR_BEN_R, IR_IMB_R, roster) in
:mod:`data_samples.population_tables`; this module runs them and writes truth.json.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_samples.catalog import DCIR_KINDS
from data_samples.chunks import ChunkContext, chunk_count, chunk_outputs, count_into, freed_memory_kept
from data_samples.claims import Stays, experiment_kind
from data_samples.negative_controls import (
    cataract_stay_rows,
    negative_control_tables,
    negative_control_truth,
    planted_kinds,
)
from data_samples.outcomes import MonthGrid, TruthAccumulator
from data_samples.population import (
    CONTROL,
    DAYS_PER_MONTH,
    OUTSIDE,
    TREATED,
    Population,
    build_ald_rows,
    build_identities,
    build_population,
    death_probability,
    months_included,
    to_date,
)
from data_samples.population_tables import write_ir_ben_r, write_ir_imb_r, write_pmsi, write_roster
from data_samples.surveys import write_synthetic_surveys
from data_samples.truth import DEFAULT_TRUTH, TruthParams, load_truth
from data_samples.writers import FORMATS, SUFFIX, GenerationError, TableWriter
from pipeline.config import StudyConfig
from pipeline.contract_spec import TABLES
from pipeline.io import atomic_write_text

# Chunks run in this many forked worker processes (1 = in process); the files do not depend on it.
DEFAULT_WORKERS = max(1, min(2, os.cpu_count() or 1))


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
    surveys: dict[str, Any]

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
        with freed_memory_kept():  # freed arrays reused, not faulted in afresh (chunks.py)
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
    _check_categories([*kinds, *planted_kinds(tp)], config)
    n_chunks = chunk_count(pop.n)
    ctx = ChunkContext.of(pop, ids, tp, config, grid, kinds, acc, s_chunks.spawn(n_chunks), tmp / ".chunks")

    prs_path = tmp / f"{config.extract.er_prs_f}{ext}"
    writer = TableWriter(prs_path, TABLES["ER_PRS_F"], fmt)
    stays_parts: list[tuple[np.ndarray, Stays]] = []
    # Worker processes are forked before the progress bar starts its thread; closing the outputs stops
    # them if writing fails.
    outputs = chunk_outputs(ctx, n_chunks, workers)
    with closing(outputs), _progress() as progress:
        task = progress.add_task("ER_PRS_F lines", total=n_chunks)
        for out in outputs:  # in chunk order, whatever the number of workers
            writer.write(out.table)
            stays_parts.append((out.stay_persons, out.stays))
            acc.merge(out.acc)
            for key, v in out.defects.items():
                count_into(defects, key, v)
            progress.advance(task)
    # Negative controls last, from their own stream (spawned after the others): every row above is the
    # same with or without them.
    (s_nc,) = ss.spawn(1)
    n_before_nc = writer.rows
    for table in negative_control_tables(ctx, np.random.default_rng(s_nc)):
        writer.write(table)
    writer.close()
    shutil.rmtree(ctx.spool, ignore_errors=True)
    files.append(prs_path.name)
    # Negative-control cataract stays: a stream of their own, spawned after the claims' one, and rows
    # appended after every other MCO row (negative_controls.py): nothing else depends on them.
    (s_cataract,) = ss.spawn(1)
    cataract = cataract_stay_rows(ctx, np.random.default_rng(s_cataract))

    pmsi_rng = np.random.default_rng(s_pmsi)
    n_stays, pmsi_files, final_persons = write_pmsi(tmp, pmsi_rng, stays_parts, pop, ids, tp, config, fmt, defects,
                                                    appended=cataract)
    files += pmsi_files
    ben_rng = np.random.default_rng(s_ben)
    files.append(write_ir_ben_r(tmp, ben_rng, pop, ids, tp, config, fmt, final_persons, defects))
    files.append(write_ir_imb_r(tmp, pop, ids, ald, config, fmt))
    defects.update(ald["defects"])
    files.append(write_roster(tmp, pop, config, fmt))
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
        "negative_control_lines": writer.rows - n_before_nc,
        "stays": n_stays,
        "negative_control_stays": 0 if cataract is None else int(cataract["ETA_NUM"].size),
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
        "caseload": _caseload_summary(pop, config),
        "negative_controls": negative_control_truth(pop, tp),
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
    if tp.effects.has_early_window:
        # only with the early window, so that the shipped truth files keep byte-identical extracts
        truth_doc["early_window"] = _early_window_summary(acc, tp)
    atomic_write_text(tmp / "truth.json", json.dumps(truth_doc, indent=2, sort_keys=False, ensure_ascii=False))

    surveys = write_synthetic_surveys(tmp, seed, config)
    return GenerationResult(out=tmp, scale=scale, seed=seed, fmt=fmt, truth_name=tp.name, counts=counts,
                            indicators=indicators, defects=defects, files=sorted(files), seconds=0.0,
                            surveys=surveys)


def _early_window_summary(acc: TruthAccumulator, tp: TruthParams) -> dict[str, Any]:
    """The effect on stays that varies with time since inclusion, and the truth of the hospitalisation
    indicators it moves (same estimand as the others: on-support treated, follow-up from inclusion)."""
    e = tp.effects
    return {
        "early_days": e.early_days,
        "early_hosp_rate": e.early_hosp_rate,
        "hosp_rate_after": e.hosp_rate,
        "definition": "Full (non-séance) MCO stays entering during follow-up (from the inclusion date to "
                      "death or claims_end), final in-hospital stays included: hosp_stays_per_100py = 100 x "
                      "(expected stays / patient-years), treated minus untreated; hosp_share_any_stay = mean "
                      "P(>= 1 such stay), treated minus untreated. During the first early_days days after "
                      "inclusion the treated's stay hazard is the untreated one x early_hosp_rate.",
        "indicators": acc.hospitalisation(),
    }


def _mortality_summary(pop: Population, tp: TruthParams, config: StudyConfig) -> dict[str, Any]:
    """Deaths of the on-support treated patients with and without the mortality effect (same draws)."""
    t = np.flatnonzero((pop.group == TREATED) & ~pop.off_support)
    claims_end = to_date(config.study.claims_end)
    inc = pop.inclusion[t]
    months = (claims_end - inc).astype("timedelta64[D]").astype(np.float64) / DAYS_PER_MONTH
    included = months_included(inc, pop.exit_planned[t])
    e = tp.effects
    theta = e.mortality
    haz = pop.death_hazard[t]
    p1 = death_probability(haz, np.full(t.size, theta), included, months, e.after_discharge(theta))
    p0 = death_probability(haz, np.ones(t.size), included, months)
    e1, e0 = float(p1.sum()), float(p0.sum())
    return {
        "hazard_ratio_while_included": theta,
        "hazard_ratio_after_discharge": e.after_discharge(theta),
        "population": "on-support treated patients, from inclusion to claims_end",
        "patients": int(t.size),
        "deaths_treated": int((~np.isnat(pop.death[t])).sum()),
        "deaths_untreated_same_draws": int((~np.isnat(pop.death_untreated[t])).sum()),
        "expected_deaths_treated": round(e1, 2),
        "expected_deaths_untreated": round(e0, 2),
        "expected_death_risk_ratio": round(e1 / e0, 6) if e0 else None,
    }


def _caseload_summary(pop: Population, config: StudyConfig) -> dict[str, Any]:
    """Patient-years of every ÉQUILIBRES patient in the caseload year (``economics.caseload_year``, 0 =
    the year of claims_end): while included (the active file: inclusion to discharge, death or
    claims_end) and in intention to treat (inclusion to death or claims_end). Days counted inclusively,
    as the pipeline's follow-up does; patient-years = days / 365.25."""
    year = config.economics.caseload_year or config.study.claims_end.year
    t = pop.group == TREATED
    inc, death, ex = pop.inclusion[t], pop.death[t], pop.exit[t]
    itt_end = np.minimum(np.where(np.isnat(death), to_date(config.study.claims_end), death),
                         to_date(config.study.claims_end))
    active_end = np.where(np.isnat(ex), itt_end, np.minimum(ex, itt_end))
    y0, y1 = np.datetime64(f"{year}-01-01", "D"), np.datetime64(f"{year}-12-31", "D")

    def in_year(end: np.ndarray) -> np.ndarray:
        days = (np.minimum(end, y1) - np.maximum(inc, y0)).astype("timedelta64[D]").astype(np.int64) + 1
        return np.clip(days, 0, None)

    active, itt = in_year(active_end), in_year(itt_end)
    scale = pop.scale_realised
    return {
        "year": year,
        "population": "every ÉQUILIBRES patient of the roster (on and off support)",
        "active_patient_years": round(float(active.sum()) / 365.25, 4),
        "active_patients": int((active > 0).sum()),
        "itt_patient_years": round(float(itt.sum()) / 365.25, 4),
        "itt_patients": int((itt > 0).sum()),
        "active_patient_years_at_full_scale": round(float(active.sum()) / 365.25 / scale, 1) if scale else None,
        "discharged_alive": int((~np.isnat(ex)).sum()),
        "died_included": int((~np.isnat(death) & np.isnat(ex)).sum()),
    }


TRUTH_DEFINITIONS = {
    "population": "ÉQUILIBRES patients planted on support (every complex patient planted off support excluded).",
    "estimand": "Expected values under both potential outcomes for the same patients (same deaths and "
                "follow-up): E[Y1] with the planted effects, E[Y0] without; ITT over the follow-up from "
                "inclusion, discharges alive included. Substitution effects (nursing_acts, nurse_travel, "
                "nurse_assessment, experiment payments) apply while included only; health effects (gp, "
                "specialist, pharmacy, other, hospital rate, final in-hospital stay, mortality, and the "
                "nursing need after discharge, nursing_after_discharge, outside the end-of-life months) "
                "while included and after a discharge alive as 1 + health_effects_after_discharge x "
                "(effect - 1).",
    "caseload": "Patient-years of every ÉQUILIBRES patient in the caseload year: active = from EQL_INC_DTE to "
                "the first of the discharge (EQL_SOR_DTE), death and claims_end (the published active file); "
                "itt = to death or claims_end. Days counted inclusively, / 365.25.",
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
    "mortality": "effects.mortality multiplies the death hazard while included, and by "
                 "1 + health_effects_after_discharge x (mortality - 1) after a discharge alive. Each arm is "
                 "evaluated in its own world, as the estimator's arms are: the treated arm on the observed death dates, the "
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


__all__ = ["GenerationError", "GenerationResult", "generate_extract", "DEFAULT_TRUTH"]
