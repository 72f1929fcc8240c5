"""The synthetic population: persons, their identities, ALDs, deaths and the ÉQUILIBRES roster.

Everything is drawn with numpy from one generator, vectorised over persons. Selection into the
experiment depends only on what the default matching uses (sex, age, any ALD, département, inclusion
quarter and the latent nursing intensity that prior-year nursing cost measures closely) plus, when
``selection.confounding`` > 0, an unobserved frailty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_samples.catalog import ALD_ETM_NAT, ALD_ICD10
from data_samples.truth import TruthParams
from pipeline.config import StudyConfig
from pipeline.contract_spec import LIFETIME_ALD_END, SENTINEL_DATE

TREATED, CONTROL, OUTSIDE = 0, 1, 2
DAY = np.timedelta64(1, "D")
NAT = np.datetime64("NaT", "D")
DAYS_PER_MONTH = 30.4375
CPX_FLAGS = ("CPX_SOCIAL", "CPX_AIDANT", "CPX_PALLIATIF", "CPX_PSY", "CPX_HANDICAP", "CPX_PEDIATRIE")
_ALPHABET = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)


def random_ids(rng: np.random.Generator, n: int, length: int = 17, prefix: str = "") -> np.ndarray:
    """``n`` distinct pseudonymous identifiers of ``length`` characters (base 36), as a str array."""
    body = length - len(prefix)
    out = np.empty(0, dtype=f"<U{length}")
    while out.size < n:
        codes = _ALPHABET[rng.integers(0, 36, size=(n - out.size, body))]
        ids = np.char.add(prefix, codes.view(f"S{body}").ravel().astype(f"<U{body}"))
        out = np.unique(np.concatenate([out, ids]))  # sorted: re-shuffled below
    out = out[:n]
    return out[rng.permutation(n)]


def to_date(x: np.ndarray | np.datetime64) -> np.ndarray:
    return np.asarray(x, dtype="datetime64[D]")


@dataclass
class Population:
    """Person-level arrays (index = person number, 0..n-1)."""

    group: np.ndarray            # TREATED / CONTROL / OUTSIDE
    sex: np.ndarray              # 1 / 2 (true sex; the written code may be 0/9)
    sex_code: np.ndarray         # written BEN_SEX_COD
    birth_year: np.ndarray
    birth_month: np.ndarray
    birth_known: np.ndarray      # False -> BEN_NAI_ANN "1600"
    age_ref: np.ndarray          # age in years at the reference date (outcome model)
    dpt: np.ndarray              # canonical département (3 chars)
    dpt_code: np.ndarray         # written BEN_RES_DPT (Corsica variants)
    any_ald: np.ndarray
    ald_person: np.ndarray       # (person, ald number) pairs of active ALDs
    ald_num: np.ndarray
    log_lam: np.ndarray          # latent log monthly nursing-act spending (untreated)
    frailty: np.ndarray
    cpx: dict[str, np.ndarray]
    off_support: np.ndarray
    inclusion: np.ndarray        # datetime64[D], NaT if not treated
    exit: np.ndarray             # exit date while alive (NaT if none)
    team: np.ndarray             # team id ('' if not treated)
    death: np.ndarray            # true death date within the claims window (NaT if alive)
    seance: np.ndarray           # 0 none, 1 chemotherapy, 2 dialysis
    nir_primary: np.ndarray
    idt_ano: np.ndarray
    death_hazard: np.ndarray     # baseline monthly death hazard (untreated)
    exit_planned: np.ndarray     # planned discharge date of treated patients (NaT if none); see ``exit``
    death_untreated: np.ndarray  # death date from the same draw without the mortality effect
    # share of the study's population the extract covers (its départements, extract_departements)
    scale_realised: float = 1.0
    departements: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        return int(self.group.size)

    @property
    def complex(self) -> np.ndarray:
        return np.any(np.vstack([self.cpx[f] for f in CPX_FLAGS]), axis=0)


def _dpt_choice(rng: np.random.Generator, n: int, dpts: list[str], weights: dict[str, float]) -> np.ndarray:
    w = np.array([weights.get(d, 1.0) for d in dpts], dtype=float)
    return np.asarray(dpts)[rng.choice(len(dpts), size=n, p=w / w.sum())]


def _ages(rng: np.random.Generator, n: int, tp: TruthParams) -> np.ndarray:
    p = tp.population
    u = rng.random(n)
    age = np.clip(rng.normal(p.elderly_age_mean, p.elderly_age_sd, n), 60.0, 104.0)
    kids = u < p.paediatric_share
    adults = (u >= p.paediatric_share) & (u < p.paediatric_share + p.adult_under60_share)
    age[kids] = rng.uniform(0.3, 18.0, kids.sum())
    age[adults] = rng.uniform(18.0, 60.0, adults.sum())
    return age


def _truncated_normal(rng: np.random.Generator, n: int, upper_z: float, shift: float = 0.0) -> np.ndarray:
    """N(shift, 1) draws conditioned on being <= upper_z (inverse-CDF, vectorised)."""
    from scipy.special import ndtr, ndtri

    hi = ndtr(upper_z - shift)
    return shift + ndtri(rng.uniform(0.0, hi, n))


def extract_departements(dpts: list[str], weights: dict[str, float], scale: float) -> tuple[list[str], float]:
    """The study départements a synthetic extract of ``scale`` covers, and the share of the study's
    population they hold (the extract's realised scale).

    A smaller extract is a smaller *territory* at full density, not the whole territory thinned out:
    thinning would leave each matching stratum (sex × age band × ALD × département × quarter) with a
    few controls, so on-support patients would go unmatched for want of candidates — a property of the
    thinned extract, not of the study, whose national pool is dense. Départements are taken largest
    first while they fit in ``scale`` (greedy subset sum, deterministic); at least one is always taken.
    """
    w = {d: float(weights.get(d, 1.0)) for d in dpts}
    total = sum(w.values())
    if scale >= 1:
        return list(dpts), 1.0
    target = scale * total
    chosen: list[str] = []
    acc = 0.0
    for d in sorted(dpts, key=lambda x: (-w[x], x)):
        if acc + w[d] <= target * 1.02:
            chosen.append(d)
            acc += w[d]
    if not chosen:
        smallest = min(dpts, key=lambda x: (w[x], x))
        chosen, acc = [smallest], w[smallest]
    return [d for d in dpts if d in chosen], acc / total


def build_population(rng: np.random.Generator, scale: float, tp: TruthParams, config: StudyConfig) -> Population:
    p, s, d = tp.population, tp.selection, tp.defects
    study = config.study
    study_dpts, realised = extract_departements(study.departements, p.dpt_weights, scale)
    if scale > 1:
        realised = scale
    n_t = max(int(round(p.treated_full_scale * realised)), 4)
    n_c = max(int(round(n_t * p.control_ratio)), 8)
    n_o = max(int(round((n_t + n_c) * p.outside_share)), 2)
    n = n_t + n_c + n_o
    group = np.repeat(np.array([TREATED, CONTROL, OUTSIDE], dtype=np.int8), [n_t, n_c, n_o])

    # Covariates. The control pool shares the treated patients' distribution of age, sex, ALD and
    # département, so every on-support stratum has many candidate controls.
    sex = np.where(rng.random(n) < p.female_share, 2, 1).astype(np.int8)
    age = _ages(rng, n, tp)
    ref_year = 2021.5  # ages are drawn at mid-2021, the middle of the study
    birth_float = ref_year - age
    birth_year = np.floor(birth_float).astype(np.int32)
    birth_month = np.clip((birth_float - birth_year) * 12, 0, 11).astype(np.int32) + 1
    dpt = _dpt_choice(rng, n, study_dpts, p.dpt_weights).astype("<U3")
    outside_idx = np.flatnonzero(group == OUTSIDE)
    corsica = rng.random(outside_idx.size) < p.corsica_share_of_outside
    outside_pool = [x for x in p.outside_dpts if x not in study.departements] or ["999"]
    dpt[outside_idx] = np.where(
        corsica,
        np.asarray(p.corsica_variants)[rng.integers(0, len(p.corsica_variants), outside_idx.size)],
        np.asarray(outside_pool)[rng.integers(0, len(outside_pool), outside_idx.size)],
    )
    dpt_code = dpt.copy()
    # A study that includes Corsica sees both coding conventions for the same département.
    in_corsica = np.isin(dpt, ["02A", "02B"]) & (group != OUTSIDE)
    variant = in_corsica & (rng.random(n) < 0.5)
    dpt_code[variant & (dpt == "02A")] = "201"
    dpt_code[variant & (dpt == "02B")] = "202"

    # ALD: probability rises with age; 1-3 distinct ALD numbers per person.
    p_ald = np.where(age < 18, 0.45, np.where(age < 60, 0.6, 1.0))
    p_ald = p_ald * (p.any_ald_share / np.average(p_ald))
    any_ald = rng.random(n) < np.clip(p_ald, 0, 0.97)
    ald_keys = np.array([int(k) for k in p.ald_weights], dtype=np.int16)
    ald_w = np.array(list(p.ald_weights.values()), dtype=float)
    ald_w /= ald_w.sum()
    n_ald = np.where(any_ald, 1 + (rng.random(n) < 0.35) + (rng.random(n) < 0.08), 0)
    ald_person_l, ald_num_l = [], []
    for j in range(3):
        who = np.flatnonzero(n_ald > j)
        ald_person_l.append(who)
        ald_num_l.append(ald_keys[rng.choice(ald_keys.size, size=who.size, p=ald_w)])
    ald_person = np.concatenate(ald_person_l)
    ald_num = np.concatenate(ald_num_l)
    _, first = np.unique(ald_person.astype(np.int64) * 100 + ald_num, return_index=True)
    ald_person, ald_num = ald_person[np.sort(first)], ald_num[np.sort(first)]

    # Complex-care flags (roster only). Paediatric treated patients are complex by definition.
    cpx = {f: np.zeros(n, dtype=np.int8) for f in CPX_FLAGS}
    treated = group == TREATED
    cpx["CPX_PEDIATRIE"][treated & (age < 18)] = 1
    kids_t = int((treated & (age < 18)).sum())
    other_share = max(s.complex_share * n_t - kids_t, 0) / max(n_t - kids_t, 1)
    cand = np.flatnonzero(treated & (age >= 18))
    cplx = cand[rng.random(cand.size) < other_share]
    flag_names = [f for f in CPX_FLAGS if f != "CPX_PEDIATRIE"]
    flag_w = np.array([s.complex_flag_weights.get(f, 0.1) for f in flag_names])
    first_flag = rng.choice(len(flag_names), size=cplx.size, p=flag_w / flag_w.sum())
    for k, f in enumerate(flag_names):
        cpx[f][cplx[first_flag == k]] = 1
        extra = cplx[(first_flag != k) & (rng.random(cplx.size) < flag_w[k] * 0.3)]
        cpx[f][extra] = 1
    is_complex = np.any(np.vstack([cpx[f] for f in CPX_FLAGS]), axis=0)
    # Palliative care goes with cancer, mental health with the psychiatric ALD: observable traits.
    for flag, num in (("CPX_PALLIATIF", 30), ("CPX_PSY", 23)):
        who = np.flatnonzero(cpx[flag] == 1)
        has = np.isin(who, ald_person[ald_num == num])
        add = who[~has & (rng.random(who.size) < 0.7)]
        ald_person = np.concatenate([ald_person, add])
        ald_num = np.concatenate([ald_num, np.full(add.size, num, dtype=ald_num.dtype)])
        any_ald[add] = True

    # Latent nursing intensity; truncated so that off-support patients are beyond every control.
    mean = s.log_nursing_mean + s.log_nursing_age_slope * (np.clip(age, 18, 100) - 80) / 10 + s.log_nursing_ald * any_ald
    z = _truncated_normal(rng, n, s.truncation_z)
    zt = _truncated_normal(rng, n, s.truncation_z, shift=s.treated_log_nursing_shift / s.log_nursing_sd)
    z = np.where(treated, zt, z)
    off_support = np.zeros(n, dtype=bool)
    cidx = np.flatnonzero(treated & is_complex)
    n_off = int(round(s.off_support_share_complex * cidx.size))
    off_support[rng.choice(cidx, size=n_off, replace=False)] = True
    lo, hi = s.off_support_margin
    z[off_support] = s.truncation_z + rng.uniform(lo, hi, n_off) / s.log_nursing_sd
    log_lam = mean + s.log_nursing_sd * z

    frailty = rng.normal(0.0, 1.0, n) + np.where(treated, s.confounding, 0.0)

    # Inclusion dates (ramp-up), exits, teams.
    years = np.array([int(y) for y in p.inclusion_year_weights], dtype=np.int32)
    yw = np.array(list(p.inclusion_year_weights.values()), dtype=float)
    inc = np.full(n, NAT)
    t_idx = np.flatnonzero(treated)
    yr = years[rng.choice(years.size, size=n_t, p=yw / yw.sum())]
    start = to_date([f"{y}-01-01" for y in yr])
    inc_t = start + rng.integers(0, 365, n_t) * DAY
    lo_d, hi_d = to_date(study.inclusion_start), to_date(study.inclusion_end)
    inc[t_idx] = np.clip(inc_t, lo_d, hi_d)

    # Discharges alive: a time to discharge ~ exponential of mean population.mean_months_to_discharge
    # from inclusion (patients leave when they no longer need the team: regained autonomy, care
    # ended); a discharge after claims_end is not observed. It is planned before the death time is
    # drawn, so that the death hazard can depend on the time spent included.
    claims_end = to_date(study.claims_end)
    exit_plan = discharge_plan(rng, inc, treated, p.mean_months_to_discharge, claims_end)

    # Deaths: constant monthly hazard from covariates (and frailty only through confounding, never
    # here, so survivors among controls are not selected on anything unobserved); treated patients
    # are alive at inclusion and their hazard is multiplied by effects.mortality while included, and
    # by its after-discharge share (effects.health_effects_after_discharge) after a discharge alive.
    b = tp.baseline
    nurse_dev = np.clip(log_lam - mean, -2 * s.log_nursing_sd, 2.5 * s.log_nursing_sd)
    haz = b.monthly_death_hazard * np.exp(
        b.death_age_slope * (np.clip(age, 40, 104) - 80) / 10 + b.death_ald * any_ald + b.death_nursing * nurse_dev
    )
    haz = np.where(age < 18, b.monthly_death_hazard * 0.1, haz)
    unit = rng.standard_exponential(n)
    origin = np.where(treated, inc, to_date(study.claims_start))
    included_months = months_included(origin, exit_plan)
    theta = np.where(treated, tp.effects.mortality, 1.0)
    theta_after = np.where(treated, tp.effects.after_discharge(tp.effects.mortality), 1.0)
    t_months = death_time_months(unit, haz, theta, included_months, theta_after)
    death = _death_date(origin, t_months, claims_end)
    death_untreated = _death_date(origin, unit / haz, claims_end)
    # A planned discharge happens only if the patient is still alive (a death on that day comes first).
    exit_ = np.where(~np.isnat(exit_plan) & (np.isnat(death) | (death > exit_plan)), exit_plan, NAT)

    n_teams = max(int(round(p.teams_full_scale * min(1.0, max(realised, 0.05) * 4))), 1)
    team_dpts = _dpt_choice(rng, n_teams, study_dpts, p.dpt_weights)
    team_ids = np.array([f"EQL-{dp}-{k:03d}" for k, dp in enumerate(team_dpts)])
    team = np.full(n, "", dtype="<U16")
    by_dpt = {dp: np.flatnonzero(team_dpts == dp) for dp in np.unique(team_dpts)}
    for dp in np.unique(dpt[t_idx]):
        who = t_idx[dpt[t_idx] == dp]
        pool = by_dpt.get(dp)
        if pool is None:  # a département without a team of its own: served by a new team
            team_ids = np.append(team_ids, f"EQL-{dp}-{team_ids.size:03d}")
            pool = np.array([team_ids.size - 1])
            by_dpt[dp] = pool
        team[who] = team_ids[pool[rng.integers(0, pool.size, who.size)]]

    # Séances: chemotherapy for some cancers, dialysis for some nephropathies.
    seance = np.zeros(n, dtype=np.int8)
    cancer = np.isin(np.arange(n), ald_person[ald_num == 30])
    renal = np.isin(np.arange(n), ald_person[ald_num == 19])
    eligible = cancer | renal
    p_seance = min(1.0, tp.baseline.seance_share * n / max(int(eligible.sum()), 1))
    chosen = eligible & (rng.random(n) < p_seance)
    seance[chosen] = np.where(renal[chosen], 2, 1)

    # Unknown sex / birth, only in the control pool (they are simply ineligible).
    sex_code = sex.copy()
    ctrl = np.flatnonzero(group == CONTROL)
    unk = ctrl[rng.random(ctrl.size) < d.unknown_sex_share]
    sex_code[unk] = np.where(rng.random(unk.size) < 0.5, 0, 9)
    birth_known = np.ones(n, dtype=bool)
    birth_known[ctrl[rng.random(ctrl.size) < d.unknown_birth_share]] = False

    nir = random_ids(rng, n)
    idt = random_ids(rng, n, prefix="I")
    return Population(
        group=group, sex=sex, sex_code=sex_code, birth_year=birth_year, birth_month=birth_month,
        birth_known=birth_known, age_ref=age, dpt=dpt, dpt_code=dpt_code, any_ald=any_ald,
        ald_person=ald_person.astype(np.int64), ald_num=ald_num.astype(np.int16), log_lam=log_lam,
        frailty=frailty, cpx=cpx, off_support=off_support, inclusion=inc, exit=exit_, team=team,
        death=death, seance=seance, nir_primary=nir, idt_ano=idt, death_hazard=haz, exit_planned=exit_plan,
        death_untreated=death_untreated, scale_realised=realised, departements=tuple(study_dpts),
    )


def discharge_plan(rng: np.random.Generator, inclusion: np.ndarray, treated: np.ndarray, mean_months: float,
                   claims_end: np.datetime64) -> np.ndarray:
    """Planned discharge date of each treated patient: inclusion + Exp(mean ``mean_months``) months,
    at least one day after inclusion; NaT when it falls after ``claims_end`` (or for everybody when
    ``mean_months`` is 0, i.e. nobody leaves alive). A death before that date cancels it."""
    plan = np.full(inclusion.size, NAT)
    t_idx = np.flatnonzero(treated)
    draws = rng.standard_exponential(t_idx.size)  # drawn even when unused: the stream stays the same
    if mean_months <= 0:
        return plan
    days = np.maximum(np.ceil(draws * mean_months * DAYS_PER_MONTH), 1).astype(np.int64)
    when = inclusion[t_idx] + days * DAY
    plan[t_idx] = np.where(when <= claims_end, when, NAT)
    return plan


def months_included(origin: np.ndarray, exit_plan: np.ndarray) -> np.ndarray:
    """Months from ``origin`` to the planned discharge (inf without one)."""
    known = ~np.isnat(exit_plan)
    out = np.full(origin.size, np.inf)
    out[known] = (exit_plan[known] - origin[known]).astype("timedelta64[D]").astype(np.float64) / DAYS_PER_MONTH
    return out


def death_time_months(unit: np.ndarray, hazard: np.ndarray, theta: np.ndarray, included: np.ndarray,
                      theta_after: np.ndarray | float = 1.0) -> np.ndarray:
    """Piecewise-exponential death time (months from the origin) by inversion of the cumulative hazard:
    ``hazard x theta`` for the first ``included`` months, ``hazard x theta_after`` after (1 = the
    baseline hazard again); ``unit`` ~ Exp(1)."""
    after = np.broadcast_to(np.asarray(theta_after, dtype=np.float64), hazard.shape)
    inside = hazard * theta * included  # cumulative hazard at exit (inf if no exit)
    t = unit / (hazard * theta)
    later = unit > inside
    t[later] = included[later] + (unit[later] - inside[later]) / (hazard[later] * after[later])
    return t


def death_probability(hazard: np.ndarray, theta: np.ndarray, included: np.ndarray, months: np.ndarray,
                      theta_after: np.ndarray | float = 1.0) -> np.ndarray:
    """P(death within ``months`` of the origin) under the same piecewise-constant hazard."""
    cum = (hazard * theta * np.minimum(months, included)
           + hazard * np.asarray(theta_after, dtype=np.float64) * np.clip(months - included, 0.0, None))
    return 1.0 - np.exp(-cum)


def _death_date(origin: np.ndarray, t_months: np.ndarray, claims_end: np.datetime64) -> np.ndarray:
    t_days = np.minimum(np.round(t_months * DAYS_PER_MONTH), 10**6).astype(np.int64)
    death = origin + t_days * DAY
    return np.where(death <= claims_end, death, NAT)


# --------------------------------------------------------------------------------------------------
# Identities (IR_BEN_R rows): one per person, two for persons with several BEN_NIR_PSA / ranks.
@dataclass
class Identities:
    person: np.ndarray
    nir: np.ndarray
    rng_gem: np.ndarray
    # per person: index into the identity arrays of each of its identities (first = primary)
    first: np.ndarray
    count: np.ndarray
    second: np.ndarray  # per person: index of its second identity, -1 if none


def build_identities(rng: np.random.Generator, pop: Population, tp: TruthParams) -> Identities:
    d = tp.defects
    n = pop.n
    multi = rng.random(n) < d.multi_nir_share
    same_nir = multi & (rng.random(n) < d.same_nir_other_rank_share)
    m_idx = np.flatnonzero(multi)
    extra_nir = random_ids(rng, m_idx.size + n, prefix="")
    extra_nir = extra_nir[~np.isin(extra_nir, pop.nir_primary)][: m_idx.size]
    second_nir = np.where(same_nir[m_idx], pop.nir_primary[m_idx], extra_nir)
    second_rank = np.where(same_nir[m_idx], 2, 1)
    person = np.concatenate([np.arange(n), m_idx])
    nir = np.concatenate([pop.nir_primary, second_nir])
    rank = np.concatenate([np.ones(n, dtype=np.int32), second_rank.astype(np.int32)])
    count = 1 + multi.astype(np.int64)
    first = np.arange(n)
    second = np.full(n, -1, dtype=np.int64)
    second[m_idx] = np.arange(n, n + m_idx.size)
    return Identities(person=person, nir=nir, rng_gem=rank, first=first, count=count, second=second)


def pick_identity(rng: np.random.Generator, ids: Identities, person: np.ndarray) -> np.ndarray:
    """For each event of ``person``, the identity row it is recorded under (spread for multi-NIR)."""
    second = ids.second[person]
    use_second = (second >= 0) & (rng.random(person.size) < 0.5)
    return np.where(use_second, second, person)


# --------------------------------------------------------------------------------------------------
# ALD periods (IR_IMB_R rows).
def build_ald_rows(rng: np.random.Generator, pop: Population, tp: TruthParams, config: StudyConfig) -> dict:
    d = tp.defects
    claims_start = to_date(config.study.claims_start)
    horizon = to_date(config.study.claims_end) + 365 * DAY
    persons, nums, dtd, dtf = [], [], [], []
    n_2099 = n_open = n_overlap = 0
    m = pop.ald_person.size
    kind = rng.random(m)
    start = claims_start - rng.integers(30, 14 * 365, m) * DAY
    is_open = kind < d.ald_open_ended_share
    is_2099 = (kind >= d.ald_open_ended_share) & (kind < d.ald_open_ended_share + d.ald_lifetime_2099_share)
    chain = ~(is_open | is_2099)
    # open-ended and lifetime rows
    for mask, end in ((is_open, np.datetime64(SENTINEL_DATE, "D")), (is_2099, np.datetime64(LIFETIME_ALD_END, "D"))):
        persons.append(pop.ald_person[mask])
        nums.append(pop.ald_num[mask])
        dtd.append(start[mask])
        dtf.append(np.full(mask.sum(), end))
    n_open, n_2099 = int(is_open.sum()), int(is_2099.sum())
    # renewal chains of five-year periods; renewals usually overlap the previous period
    cp, cn, cs = pop.ald_person[chain], pop.ald_num[chain], start[chain]
    while cp.size:
        end = cs + 5 * 365 * DAY
        persons.append(cp)
        nums.append(cn)
        dtd.append(cs)
        dtf.append(end)
        more = end < horizon
        overlap = np.where(rng.random(more.sum()) < 0.7, rng.integers(1, 90, more.sum()), -1)
        n_overlap += int((overlap > 0).sum())
        cp, cn, cs = cp[more], cn[more], end[more] - overlap * DAY
    # expired ALDs for some persons without an active one (they must not count as ALD at index)
    no_ald = np.flatnonzero(~pop.any_ald & (rng.random(pop.n) < d.ald_expired_share_no_ald))
    keys = np.array(list(ALD_ICD10))
    persons.append(no_ald)
    nums.append(keys[rng.integers(0, keys.size, no_ald.size)].astype(np.int16))
    e_start = claims_start - rng.integers(6 * 365, 12 * 365, no_ald.size) * DAY
    dtd.append(e_start)
    dtf.append(e_start + rng.integers(365, 4 * 365, no_ald.size) * DAY)
    person = np.concatenate(persons)
    num = np.concatenate(nums).astype(np.int64)
    order = np.lexsort((np.concatenate(dtd), num, person))
    num = num[order]
    return {
        "person": person[order],
        "IMB_ALD_NUM": num,
        "IMB_ALD_DTD": np.concatenate(dtd)[order],
        "IMB_ALD_DTF": np.concatenate(dtf)[order],
        "IMB_ETM_NAT": np.array([ALD_ETM_NAT.get(int(x), 41) for x in num], dtype=np.int64),
        "MED_MTF_COD": np.array([ALD_ICD10.get(int(x), "R69") for x in num], dtype=object),
        "defects": {"ald_2099_rows": n_2099, "ald_open_ended_rows": n_open,
                    "ald_overlapping_renewals": n_overlap, "ald_expired_rows": int(no_ald.size)},
    }
