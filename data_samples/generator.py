"""`equilibres generate`: a synthetic SNDS-shaped extract with planted effects and defects.

Stages (each a function of its own module): population → identities/ALDs → per chunk of persons:
expected monthly amounts (both potential outcomes) → claim lines and stays → defects → files.
Everything derives from one ``numpy.random.SeedSequence``: the same seed, scale, truth and
configuration give byte-identical files. The extract is written to a temporary directory beside
``out`` and renamed into place at the end, so a failed run never leaves a half extract.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from data_samples.catalog import DCIR_KINDS
from data_samples.claims import (
    Lines,
    Stays,
    add_surcharges,
    draw_lines,
    draw_stays,
    experiment_kind,
    flux_dates,
    hospital_finess,
)
from data_samples.outcomes import DCIR_CATEGORIES, MonthGrid, TruthAccumulator, chunk_means
from data_samples.population import (
    CONTROL,
    CPX_FLAGS,
    DAY,
    OUTSIDE,
    SENTINEL_1600,
    TREATED,
    Identities,
    Population,
    build_ald_rows,
    build_identities,
    build_population,
    pick_identity,
    to_date,
)
from data_samples.truth import DEFAULT_TRUTH, TruthParams, load_truth
from data_samples.writers import FORMATS, SUFFIX, TableWriter, to_arrow, write_table
from pipeline.config import StudyConfig
from pipeline.contract_spec import TABLES, X_NIR
from pipeline.io import PipelineError, atomic_write_text

PERSONS_PER_CHUNK = 4000
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
                     confounding: float | None, config: StudyConfig) -> GenerationResult:
    """Generate the extract into ``out`` (replaced atomically) and return what was written."""
    fmt = fmt.lower()
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
        result = _generate_into(tmp, scale, seed, tp, truth_path, fmt, config)
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
                   config: StudyConfig) -> GenerationResult:
    ss = np.random.SeedSequence(seed)
    s_pop, s_ids, s_ald, s_chunks, s_pmsi, s_ben = ss.spawn(6)
    pop = build_population(np.random.default_rng(s_pop), scale, tp, config)
    ids = build_identities(np.random.default_rng(s_ids), pop, tp)
    ald = build_ald_rows(np.random.default_rng(s_ald), pop, tp, config)
    grid = MonthGrid.of(config)
    ext = SUFFIX[fmt]
    files: list[str] = []
    defects: dict[str, int] = {}

    acc = TruthAccumulator(perimeter=list(config.indicators.perimeter), eol_window=config.indicators.eol_window_months,
                           claims_start_month=int(np.datetime64(config.study.claims_start, "M").astype(np.int64)))
    kinds = [*DCIR_KINDS, experiment_kind(config)]
    _check_categories(kinds, config)

    chunks = [np.arange(a, min(a + PERSONS_PER_CHUNK, pop.n)) for a in range(0, pop.n, PERSONS_PER_CHUNK)]
    chunk_seeds = s_chunks.spawn(len(chunks))
    prs_path = tmp / f"{config.extract.er_prs_f}{ext}"
    writer = TableWriter(prs_path, TABLES["ER_PRS_F"], fmt)
    stays_parts: list[tuple[np.ndarray, Stays]] = []
    dct_offset = 10_000_000
    with _progress() as progress:
        task = progress.add_task("ER_PRS_F lines", total=len(chunks))
        for persons, cseed in zip(chunks, chunk_seeds, strict=True):
            rng = np.random.default_rng(cseed)
            cm = chunk_means(pop, persons, grid, tp, config)
            acc.add_expected(cm, pop, config)
            lines = draw_lines(rng, cm, grid, kinds)
            lines, _ = add_surcharges(rng, lines, tp.defects.cpl_maj_top_2_share_nursing)
            table, dct_offset, kept = _dcir_table(rng, lines, cm.persons, pop, ids, tp, config, dct_offset, defects)
            writer.write(table)
            stays = draw_stays(rng, cm, grid, pop, tp, config)
            stays_parts.append((cm.persons[stays.row], stays))
            _observe(acc, pop, cm.persons, kept, stays, config)
            progress.advance(task)
    writer.close()
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
        "scale": scale,
        "format": fmt,
        "truth_file": tp.name if truth_path is None else str(truth_path),
        "truth_name": tp.name,
        "params": tp.to_dict(),
        "indicators": indicators,
        "observed": _observed_summary(acc),
        "breakdown_per_patient_year": {
            "treated": {k: round(v / acc.patient_years, 2) for k, v in acc.by_cat1.items()} if acc.patient_years else {},
            "counterfactual": {k: round(v / acc.patient_years, 2) for k, v in acc.by_cat0.items()} if acc.patient_years else {},
            "patient_years": round(acc.patient_years, 2),
        },
        "breakdown_eol_per_decedent": {
            "treated": {k: round(v / acc.n_decedents, 2) for k, v in acc.eol_by_cat1.items()} if acc.n_decedents else {},
            "counterfactual": {k: round(v / acc.n_decedents, 2) for k, v in acc.eol_by_cat0.items()} if acc.n_decedents else {},
        },
        "definitions": TRUTH_DEFINITIONS,
        "defects": dict(sorted(defects.items())),
        "counts": counts,
        "study": {"claims_start": str(config.study.claims_start), "claims_end": str(config.study.claims_end),
                  "eol_window_months": config.indicators.eol_window_months,
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


TRUTH_DEFINITIONS = {
    "population": "ÉQUILIBRES patients planted on support (every complex patient planted off support excluded).",
    "estimand": "Expected values under both potential outcomes for the same patients (same deaths and "
                "follow-up): E[Y1] with the planted effects while included, E[Y0] without; ITT (effects stop "
                "at exit from the experiment).",
    "follow_up": "From the inclusion date (EQL_INC_DTE) to death or claims_end; patient-years = days/365.25.",
    "perimeter": "indicators.perimeter: DCIR categories (BSE_REM_MNT, experiment payments included) + "
                 "hospital (MNT_TOT_AM of full stays and séances, counted in the month of entry).",
    "eol_window": "The death month and the eol_window_months - 1 calendar months before it; decedents = "
                  "on-support treated dying after inclusion with the whole window inside the claims window.",
    "eol_hosp_rate": "mean P(>= 1 full stay entering in the window | treated) / same without treatment - 1.",
    "avoided_spending_share": "1 - sum(E[spend1]) / sum(E[spend0]) over the follow-up.",
    "avoided_spending_per_patient_year": "(sum(E[spend0]) - sum(E[spend1])) / patient-years.",
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


def _dcir_table(rng: np.random.Generator, lines: Lines, persons: np.ndarray, pop: Population, ids: Identities,
                tp: TruthParams, config: StudyConfig, dct_offset: int, defects: dict[str, int]
                ) -> tuple[pa.Table, int, Lines]:
    d = tp.defects
    n = lines.size
    base = lines.parent < 0
    person = persons[lines.row]
    ident = pick_identity(rng, ids, person)
    flux = flux_dates(rng, lines.dtd)
    dct = np.zeros(n, dtype=np.int64)
    nb = int(base.sum())
    dct[base] = dct_offset + np.arange(nb)
    # surcharge lines belong to the décompte of their base line
    par = lines.parent[~base]
    ident[~base] = ident[par]
    flux[~base] = flux[par]
    dct[~base] = dct[par]
    horizon = (np.datetime64(config.study.claims_end, "M") + config.study.flux_lag_months + 1).astype("datetime64[D]") - DAY
    keep = flux <= horizon
    _count(defects, "beyond_flux_horizon_lines_not_extracted", int((~keep).sum()))
    kept = lines.take(np.flatnonzero(keep))
    kinds = {k.category: k for k in DCIR_KINDS}
    any_ald = pop.any_ald[person]
    rate = np.ones(n)
    for cat, kind in kinds.items():
        m = lines.cat == DCIR_CATEGORIES.index(cat)
        rate[m & ~any_ald] = kind.reimbursement_rate_no_ald
    bse = np.round(lines.amount / rate, 2)
    pai = bse.copy()
    spec_m = (lines.cat == DCIR_CATEGORIES.index("specialist")) & (rng.random(n) < 0.3)
    pai[spec_m] = np.round(pai[spec_m] + rng.uniform(5, 30, spec_m.sum()), 2)
    cols: dict[str, np.ndarray] = {
        "DCT_ORD_NUM": dct,
        "FLX_DIS_DTD": flux,
        "FLX_EMT_NUM": rng.integers(1, 40, n),
        "FLX_EMT_ORD": rng.integers(0, 5, n),
        "FLX_EMT_TYP": np.ones(n, dtype=np.int64),
        "FLX_TRT_DTD": flux - rng.integers(2, 20, n) * DAY,
        "ORG_CLE_NUM": np.char.add(np.char.add("01", pop.dpt_code[person].astype("<U3")), "0000"),
        "PRS_ORD_NUM": lines.prs_ord,
        "REM_TYP_AFF": np.ones(n, dtype=np.int64),
        "BEN_NIR_PSA": ids.nir[ident],
        "BEN_RNG_GEM": ids.rng_gem[ident].astype(np.int64),
        "EXE_SOI_DTD": lines.dtd,
        "EXE_SOI_DTF": lines.dtf,
        "PRS_NAT_REF": lines.code,
        "PRS_ACT_QTE": lines.qty,
        "PRS_PAI_MNT": pai,
        "BSE_REM_BSE": bse,
        "BSE_REM_MNT": lines.amount,
        "BSE_PRS_NAT": lines.code.copy(),
        "DPN_QLF": np.zeros(n, dtype=np.int64),
        "CPL_MAJ_TOP": lines.cpl,
        "PSE_ACT_NAT": lines.act,
        "PSE_SPE_COD": lines.spe,
    }
    cols["FLX_TRT_DTD"][~base] = cols["FLX_TRT_DTD"][par]
    cols = {k: v[keep] for k, v in cols.items()}
    _count(defects, "cpl_maj_top_2_lines", int((cols["CPL_MAJ_TOP"] == 2).sum()))
    is_exp = np.isin(cols["PRS_NAT_REF"], config.cleaning.experiment.prs_nat_ref)
    candidates = np.flatnonzero(~is_exp & (cols["CPL_MAJ_TOP"] == 0))
    next_dct = dct_offset + nb
    extras = []

    def copies(idx: np.ndarray) -> dict[str, np.ndarray]:
        nonlocal next_dct
        c = {k: v[idx].copy() for k, v in cols.items()}
        c["DCT_ORD_NUM"] = next_dct + np.arange(idx.size)
        c["PRS_ORD_NUM"] = np.ones(idx.size, dtype=np.int64)
        next_dct += idx.size
        return c

    def pick(share: float) -> np.ndarray:
        return candidates[rng.random(candidates.size) < share]

    # Hospital activity sent "for information" (DPN_QLF = 71): also paid elsewhere.
    c71 = copies(pick(d.dpn_qlf_71_share))
    c71["DPN_QLF"][:] = 71
    extras.append(c71)
    _count(defects, "dpn_qlf_71_lines", c71["DPN_QLF"].size)
    # Lines without a base prestation (BSE_PRS_NAT = 0).
    c0 = copies(pick(d.bse_prs_nat_0_share))
    c0["BSE_PRS_NAT"][:] = 0
    extras.append(c0)
    _count(defects, "bse_prs_nat_0_lines", c0["BSE_PRS_NAT"].size)
    # Regularisations: a line paid twice (or first at a wrong amount) then cancelled by a negative repeat.
    reg = pick(d.regularisation_share)
    wrong = copies(reg)
    corr = rng.random(reg.size) < d.regularisation_correction_share
    factor = np.where(corr, rng.uniform(1.1, 1.5, reg.size), 1.0)
    for m in ("PRS_PAI_MNT", "BSE_REM_BSE", "BSE_REM_MNT"):
        wrong[m] = np.round(wrong[m] * factor, 2)
    neg = {k: v.copy() for k, v in wrong.items()}
    neg["DCT_ORD_NUM"] = next_dct + np.arange(reg.size)
    next_dct += reg.size
    for m in ("PRS_ACT_QTE", "PRS_PAI_MNT", "BSE_REM_BSE", "BSE_REM_MNT"):
        neg[m] = -neg[m]
    later = (wrong["FLX_DIS_DTD"].astype("datetime64[M]") + rng.integers(1, 4, reg.size)).astype("datetime64[D]")
    neg["FLX_DIS_DTD"] = np.minimum(later, (horizon.astype("datetime64[M]")).astype("datetime64[D]"))
    neg["FLX_DIS_DTD"] = np.maximum(neg["FLX_DIS_DTD"], wrong["FLX_DIS_DTD"])
    neg["FLX_TRT_DTD"] = neg["FLX_DIS_DTD"] - rng.integers(2, 20, reg.size) * DAY
    extras += [wrong, neg]
    _count(defects, "regularisation_pairs", reg.size)
    _count(defects, "regularisation_corrections", int(corr.sum()))
    # Care before the claims window, paid in its first flux months (dropped by the flux-window rule).
    pre = copies(pick(d.pre_window_lines_share))
    start = to_date(config.study.claims_start)
    pre["EXE_SOI_DTD"] = start - rng.integers(1, 92, pre["EXE_SOI_DTD"].size) * DAY
    pre["EXE_SOI_DTF"] = pre["EXE_SOI_DTD"]
    pre["FLX_DIS_DTD"] = (start.astype("datetime64[M]") + rng.integers(0, 3, pre["EXE_SOI_DTD"].size)).astype("datetime64[D]")
    pre["FLX_TRT_DTD"] = pre["FLX_DIS_DTD"] - 5 * DAY
    extras.append(pre)
    _count(defects, "care_before_window_lines", pre["EXE_SOI_DTD"].size)

    allc = {k: np.concatenate([cols[k]] + [e[k] for e in extras]) for k in cols}
    table = to_arrow(allc, TABLES["ER_PRS_F"])
    return table, next_dct, kept


def _observe(acc: TruthAccumulator, pop: Population, persons: np.ndarray, lines: Lines, stays: Stays,
             config: StudyConfig) -> None:
    """Realised clean amounts for the on-support treated patients (diagnostic 'observed' block)."""
    on = (pop.group[persons] == TREATED) & ~pop.off_support[persons]
    if not on.any():
        return
    claims_end = to_date(config.study.claims_end)
    death = pop.death[persons]
    end = np.where(np.isnat(death), claims_end, death)
    inc = pop.inclusion[persons]
    w = config.indicators.eol_window_months
    dm = np.where(np.isnat(death), -10**6, death.astype("datetime64[M]").astype(np.int64))
    dec = on & ~np.isnat(death) & np.where(np.isnat(death), False, death > inc)
    dec &= dm - (w - 1) >= acc.claims_start_month

    perimeter = set(acc.perimeter)
    cat_ok = np.isin(lines.cat, [DCIR_CATEGORIES.index(c) for c in DCIR_CATEGORIES if c in perimeter])
    r = lines.row
    in_fu = on[r] & (lines.dtd >= inc[r]) & (lines.dtd <= end[r]) & cat_ok
    acc.obs_spend += float(lines.amount[in_fu].sum())
    lm = lines.dtd.astype("datetime64[M]").astype(np.int64)
    in_w = dec[r] & (lm <= dm[r]) & (lm > dm[r] - w) & cat_ok
    acc.obs_eol_spend += float(lines.amount[in_w].sum())
    if "hospital" in perimeter:
        sr = stays.row
        acc.obs_spend += float(stays.cost[on[sr] & (stays.entry >= inc[sr]) & (stays.entry <= end[sr])].sum())
        sm = stays.entry.astype("datetime64[M]").astype(np.int64)
        s_in = dec[sr] & (sm <= dm[sr]) & (sm > dm[sr] - w)
        acc.obs_eol_spend += float(stays.cost[s_in].sum())
        full_in = s_in & (stays.kind != 2)
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
        "expected_eol_hosp_share_counterfactual": round(acc.eol_hosp0 / nd, 4) if nd else None,
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
