"""Expected monthly spending and hospital risk of each person, under both potential outcomes.

For every person-month the model gives the *untreated* expected amount of each spending category
(``mu0``) and hospital-stay rate, and the *treated* ones (``mu1``) with the planted multiplicative
effects: substitution effects (nursing categories, experiment payments) for the part of the month the
patient is included, health effects (other categories, hospital, final stay, and the lower nursing need
after a discharge alive) also after that discharge, by the share
``effects.health_effects_after_discharge``. The observed extract is drawn
from ``mu1`` for ÉQUILIBRES patients and ``mu0`` for everybody else; truth.json compares the
expected values of both arms on the same treated patients (see :class:`TruthAccumulator`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import gammaln, pdtrc, xlogy

from data_samples.population import DAY, TREATED, Population, to_date
from data_samples.truth import TruthParams
from pipeline.config import StudyConfig

DCIR_CATEGORIES = ("nursing_acts", "nurse_travel", "nurse_assessment", "experiment", "gp", "specialist",
                   "pharmacy", "other")
NURSING_CATEGORIES = ("nursing_acts", "nurse_travel", "nurse_assessment")
# DCIR categories under a health effect (truth.HEALTH_EFFECTS), which may persist after discharge.
HEALTH_CATEGORIES = ("gp", "specialist", "pharmacy", "other")


@dataclass(frozen=True)
class MonthGrid:
    starts: np.ndarray  # first day of each month of the claims window
    ends: np.ndarray    # last day

    @classmethod
    def of(cls, config: StudyConfig) -> MonthGrid:
        first = np.datetime64(config.study.claims_start, "M")
        last = np.datetime64(config.study.claims_end, "M")
        months = np.arange(first, last + 1)
        return cls(starts=months.astype("datetime64[D]"), ends=(months + 1).astype("datetime64[D]") - DAY)

    @property
    def size(self) -> int:
        return int(self.starts.size)

    def index_of(self, dates: np.ndarray) -> np.ndarray:
        return (dates.astype("datetime64[M]") - self.starts[0].astype("datetime64[M]")).astype(np.int64)


@dataclass
class ChunkMeans:
    persons: np.ndarray
    present: np.ndarray      # (n, M) alive at some point of the month
    alive_end: np.ndarray    # (n, M) last day alive in the month (datetime64[D])
    alive_days: np.ndarray   # (n, M) days alive in the month (0 after death)
    eol_k: np.ndarray        # (n, M) months before the death month (0 = death month), -1 otherwise
    tf: np.ndarray           # (n, M) share of the alive days spent included in ÉQUILIBRES (substitution)
    fu: np.ndarray           # (n, M) share of the alive days in the follow-up (treated: index -> end)
    th: np.ndarray           # (n, M) share of the alive days under the health effects (tf + persisting part)
    mu0: dict[str, np.ndarray]
    mu1: dict[str, np.ndarray]
    hosp_rate0: np.ndarray
    hosp_rate1: np.ndarray
    hosp_cost: np.ndarray
    seance_rate: np.ndarray
    final_p0: np.ndarray     # (n,) probability that the death happens in hospital
    final_p1: np.ndarray
    observed_treated: np.ndarray  # (n,) draw observed data from mu1
    seance_cost: float = 0.0
    final_cost: float = 0.0
    # Early window (effects.early_days > 0; None when off): the first ``early_days`` days after
    # inclusion, where the treated's stay rate is ``hosp_rate1_early`` (the month's rate had every
    # alive day been in the window) instead of ``hosp_rate1``. ``early_share`` = share of the month's
    # alive days in the window; ``early_start`` = inclusion date (NaT for persons never included).
    early_days: int = 0
    early_start: np.ndarray | None = None
    early_share: np.ndarray | None = None
    hosp_rate1_early: np.ndarray | None = None

    def observed(self, cat: str) -> np.ndarray:
        return np.where(self.observed_treated[:, None], self.mu1[cat], self.mu0[cat])

    @property
    def observed_hosp_rate(self) -> np.ndarray:
        return np.where(self.observed_treated[:, None], self.hosp_rate1, self.hosp_rate0)

    def hosp_rate1_in_followup(self) -> np.ndarray:
        """(n, M) treated-arm expected full stays entering in follow-up, by month: ``hosp_rate1`` on the
        follow-up days outside the early window, ``hosp_rate1_early`` on the early ones (all in follow-up)."""
        base = self.hosp_rate1 * self.fu
        if self.early_share is None:
            return base
        return base + (self.hosp_rate1_early - self.hosp_rate1) * self.early_share

    @property
    def observed_final_p(self) -> np.ndarray:
        return np.where(self.observed_treated, self.final_p1, self.final_p0)


def _overlap_share(lo: np.ndarray, hi_excl: np.ndarray, m_start: np.ndarray, m_end_excl: np.ndarray) -> np.ndarray:
    """Share of [m_start, m_end_excl) covered by [lo, hi_excl) (NaT lo = no coverage)."""
    a = np.maximum(lo[:, None], m_start)
    b = np.minimum(hi_excl[:, None], m_end_excl)
    days = (b - a).astype("timedelta64[D]").astype(np.float64)
    total = (m_end_excl - m_start).astype("timedelta64[D]").astype(np.float64)
    share = np.where(np.isnat(a) | np.isnat(b), 0.0, np.clip(days, 0, None)) / np.maximum(total, 1.0)
    return np.clip(share, 0.0, 1.0)


def chunk_means(pop: Population, persons: np.ndarray, grid: MonthGrid, tp: TruthParams,
                config: StudyConfig) -> ChunkMeans:
    b, s, e, fe = tp.baseline, tp.selection, tp.effects, tp.frailty_effects
    n, M = persons.size, grid.size
    death = pop.death[persons]
    has_death = ~np.isnat(death)
    inc = pop.inclusion[persons]
    treated = pop.group[persons] == TREATED
    claims_end = to_date(config.study.claims_end)

    present = np.where(has_death[:, None], grid.starts[None, :] <= death[:, None], True)
    alive_end = np.where(has_death[:, None], np.minimum(grid.ends[None, :], death[:, None]), grid.ends[None, :])
    alive_days = ((alive_end - grid.starts[None, :]).astype("timedelta64[D]").astype(np.float64) + 1) * present
    month_days = (grid.ends - grid.starts).astype("timedelta64[D]").astype(np.float64) + 1
    af = alive_days / month_days  # partial death month

    dm = np.where(has_death, grid.index_of(np.where(has_death, death, grid.starts[0])), 10**6)
    k = dm[:, None] - np.arange(M)[None, :]
    E = tp.eol_months
    eol_k = np.where((k >= 0) & (k < E) & present, k, -1)

    def eol(mults: list[float]) -> np.ndarray:
        out = np.ones((n, M))
        for j, v in enumerate(mults):
            out[eol_k == j] = v
        return out

    end_alive_excl = np.where(has_death, death, claims_end) + DAY
    m_start = grid.starts[None, :]
    m_end_excl = alive_end + DAY
    stop = np.where(np.isnat(pop.exit[persons]), end_alive_excl, pop.exit[persons])
    tf = _overlap_share(inc, stop, m_start, m_end_excl) * present
    fu = _overlap_share(inc, end_alive_excl, m_start, m_end_excl) * present
    # health effects: while included, then after a discharge alive by the share that persists
    th = tf + e.health_effects_after_discharge * (fu - tf)

    age = pop.age_ref[persons]
    any_ald = pop.any_ald[persons]
    frail = pop.frailty[persons]
    age_f = np.exp(b.age_slope * (np.clip(age, 18, 100) - 80) / 10)[:, None]
    ald_f = np.where(any_ald, b.ald_factor, 1.0)[:, None]
    nurse_dev = np.clip(pop.log_lam[persons] - s.log_nursing_mean, -1.5, 2.0)
    nurse_f = np.exp(b.nursing_slope * nurse_dev)[:, None]
    cov = age_f * ald_f * nurse_f * af

    eol_n, eol_o = eol(b.eol_nursing), eol(b.eol_other)
    lam = np.exp(pop.log_lam[persons])[:, None]
    mu0: dict[str, np.ndarray] = {}
    mu0["nursing_acts"] = lam * eol_n * af
    mu0["nurse_travel"] = mu0["nursing_acts"] * b.nurse_travel_ratio
    mu0["nurse_assessment"] = b.nurse_assessment * eol_n * af
    mu0["experiment"] = np.zeros((n, M))
    for cat in ("gp", "specialist", "pharmacy", "other"):
        gamma = getattr(fe, cat, 0.0)
        mu0[cat] = getattr(b, cat) * cov * eol_o * np.exp(gamma * frail)[:, None]

    in_eol = eol_k >= 0
    mu1: dict[str, np.ndarray] = {}
    # Substitution: fee-for-service nursing replaced by the flat-rate payments while included only.
    # After a discharge alive, the regained autonomy lowers the fee-for-service nursing need (a health
    # effect, effects.nursing_after_discharge) outside the end-of-life months, where the need returns.
    autonomy = (th - tf) * (eol_k < 0) * (e.nursing_after_discharge - 1)
    for cat in NURSING_CATEGORIES:
        mu1[cat] = mu0[cat] * (1 - tf + tf * getattr(e, cat) + autonomy)
    share = np.where(in_eol, e.experiment_share_eol, e.experiment_share)
    mu1["experiment"] = tf * share * sum(mu0[c] for c in NURSING_CATEGORIES)
    # Health: the rest of the system, while included and after a discharge alive (``th``).
    for cat in HEALTH_CATEGORIES:
        mu1[cat] = mu0[cat] * (1 - th + th * getattr(e, cat))

    hosp0 = b.hosp_monthly_rate * cov * eol(b.eol_hosp_rate) * np.exp(fe.hospital * frail)[:, None]
    theta = np.where(in_eol, e.hosp_rate_eol, e.hosp_rate)
    hosp1 = hosp0 * (1 - th + th * theta)
    hosp_cost = np.where(in_eol, b.eol_hosp_cost_mean, b.hosp_cost_mean)
    seance_rate = np.where(pop.seance[persons][:, None] > 0, b.seance_monthly_rate * af, 0.0)

    final_p0 = np.where(has_death, b.final_stay_prob, 0.0)
    ex = pop.exit[persons]
    followed_at_death = treated & has_death & (death >= inc)
    included_at_death = followed_at_death & (np.isnat(ex) | (ex > death))
    final_effect = np.where(included_at_death, e.final_stay,
                            np.where(followed_at_death, e.after_discharge(e.final_stay), 1.0))
    final_p1 = final_p0 * final_effect
    early: dict[str, object] = {}
    if e.has_early_window:
        # the first early_days days after inclusion (alive days only): untreated rate x early_hosp_rate
        start = np.where(treated, inc, np.datetime64("NaT", "D"))
        early["early_share"] = _overlap_share(start, start + e.early_days * DAY, m_start, m_end_excl) * present
        early.update(early_days=e.early_days, early_start=start, hosp_rate1_early=hosp0 * e.early_hosp_rate)
    return ChunkMeans(
        persons=persons, present=present, alive_end=alive_end, alive_days=alive_days, eol_k=eol_k, tf=tf, fu=fu,
        th=th, mu0=mu0, mu1=mu1,
        hosp_rate0=hosp0, hosp_rate1=hosp1, hosp_cost=hosp_cost, seance_rate=seance_rate,
        final_p0=final_p0, final_p1=final_p1, observed_treated=treated,
        seance_cost=b.seance_cost_mean, final_cost=b.final_stay_cost_mean, **early,
    )


def window_day_share(death: np.ndarray, window_days: int, grid: MonthGrid) -> np.ndarray:
    """(n, M): share of each month's alive days inside the end-of-life window
    ``[death - (window_days - 1), death]`` (death day included); 0 where there is no death (NaT).

    Claim dates are uniform over the alive days of their month (see claims.draw_lines), so an amount
    expected in month m falls in the window with exactly this probability.
    """
    death = to_date(death)
    known = ~np.isnat(death)
    d = np.where(known, death, grid.starts[0])[:, None]
    first = d - (window_days - 1) * DAY
    last_alive = np.minimum(grid.ends[None, :], d)
    alive = (last_alive - grid.starts[None, :]).astype("timedelta64[D]").astype(np.float64) + 1
    inside = (last_alive - np.maximum(grid.starts[None, :], first)).astype("timedelta64[D]").astype(np.float64) + 1
    share = np.clip(inside, 0, None) / np.where(alive > 0, alive, 1.0)
    return np.where(known[:, None] & (alive > 0), share, 0.0)


@dataclass(frozen=True)
class StayWindowModel:
    """Expected overlap of the generator's hospital stays with an end-of-life window, by entry day.

    claims.draw_stays: in each alive month, Poisson(rate) full stays enter on a uniform alive day, last
    LOS = 1 + Poisson(mean - 1) nights (mean x eol_hosp_los_factor in the model's end-of-life months)
    and end at the latest the day before death (an entry on the death day moves to the day before; a
    death on the 1st drops that month's stays). A stay's cost is spread evenly over its exit - entry + 1
    days, as the estimator prorates it. With o = entry - death (days), ``share[k, j]`` is E[days inside
    the window / stay days] and ``overlap[k, j]`` P(stay reaches the window), for offsets[j] and LOS
    law k (0 ordinary, 1 end of life). Both depend on the entry offset only, never on the calendar.
    """

    window_days: int
    offsets: np.ndarray      # entry - death, from -(window_days - 1 + max_los) to -1
    share: np.ndarray        # (2, L)
    overlap: np.ndarray      # (2, L)
    final_share: float       # E[days of the final stay inside the window / its days]
    final_los_cdf: np.ndarray | None = None  # P(final stay LOS <= k), k = 0 .. FINAL_STAY_MAX_LOS

    @classmethod
    def of(cls, window_days: int, tp: TruthParams) -> StayWindowModel:
        b = tp.baseline
        means = (b.hosp_los_mean, b.hosp_los_mean * b.eol_hosp_los_factor)
        max_los = 1 + max(_poisson_quantile(LOS_TAIL, m - 1) for m in means)
        los = np.arange(1, max_los + 1)
        offsets = np.arange(-(window_days - 1 + max_los), 0)
        first = -(window_days - 1)
        x = np.minimum(offsets[:, None] + los[None, :], -1)          # exit offset (<= day before death)
        days_in = np.clip(x - np.maximum(offsets[:, None], first) + 1, 0, None)
        frac = days_in / (x - offsets[:, None] + 1)
        reach = (x >= first).astype(np.float64)
        share, overlap = np.empty((2, offsets.size)), np.empty((2, offsets.size))
        for k, m in enumerate(means):
            pmf = _poisson_pmf(los - 1, m - 1)
            share[k], overlap[k] = frac @ pmf, reach @ pmf
        f = np.arange(1, FINAL_STAY_MAX_LOS + 1)  # final stay: entry = death - f, exit = death
        f_pmf = _poisson_pmf(f - 1, b.final_stay_los_mean - 1)
        f_pmf[-1] += pdtrc(FINAL_STAY_MAX_LOS - 1, b.final_stay_los_mean - 1)  # capped at the maximum
        final_share = float((np.minimum(f + 1, window_days) / (f + 1)) @ f_pmf)
        return cls(window_days=window_days, offsets=offsets, share=share, overlap=overlap,
                   final_share=final_share, final_los_cdf=np.concatenate([[0.0], np.cumsum(f_pmf)]))

    def final_in_followup(self, death: np.ndarray, inclusion: np.ndarray) -> np.ndarray:
        """P(the final in-hospital stay, entry = death - LOS, enters on or after inclusion); 0 without a
        death (claims.draw_stays: LOS = min(1 + Poisson(final_stay_los_mean - 1), FINAL_STAY_MAX_LOS))."""
        ok = ~np.isnat(death)
        gap = (np.where(ok, death, inclusion) - inclusion).astype("timedelta64[D]").astype(np.int64)
        return np.where(ok, self.final_los_cdf[np.clip(gap, 0, FINAL_STAY_MAX_LOS)], 0.0)

    def expected(self, rate: np.ndarray, cost: np.ndarray, alive_days: np.ndarray, eol_month: np.ndarray,
                 death: np.ndarray, grid: MonthGrid,
                 early: EarlyWindow | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per person: expected prorated cost of full stays in the window, and expected number of full
        stays reaching it. Arguments are (n, M) month arrays of the same persons and their death dates;
        ``early`` = the treated arm's early window (entries drawn on its days have its own rate)."""
        n, M = rate.shape
        days = death[:, None] + self.offsets[None, :] * DAY
        m = grid.index_of(days)
        valid = m >= 0
        mc = np.clip(m, 0, M - 1)
        per_day = np.where(valid, np.take_along_axis(rate / np.maximum(alive_days, 1.0), mc, axis=1), 0.0)
        if early is not None:
            e_day = np.where(valid, np.take_along_axis(early.rate / np.maximum(alive_days, 1.0), mc, axis=1), 0.0)
            per_day = np.where(early.contains(days), e_day, per_day)
        eol = np.take_along_axis(eol_month, mc, axis=1)
        share = np.where(eol, self.share[1][None, :], self.share[0][None, :])
        overlap = np.where(eol, self.overlap[1][None, :], self.overlap[0][None, :])
        spend = (per_day * np.take_along_axis(cost, mc, axis=1) * share).sum(axis=1)
        count = (per_day * overlap).sum(axis=1)
        # entries on the death day: moved to the day before (a one-day stay inside the window), unless
        # the death is on the 1st of the month (then the month's stays are dropped)
        md = grid.index_of(death)[:, None]
        not_first = (death != grid.starts[md[:, 0]])
        day_rate = rate if early is None else np.where(early.contains(death[:, None]), early.rate, rate)
        r_d = np.take_along_axis(day_rate / np.maximum(alive_days, 1.0), md, axis=1)[:, 0] * not_first
        spend += r_d * np.take_along_axis(cost, md, axis=1)[:, 0]
        count += r_d
        return spend, count


@dataclass(frozen=True)
class EarlyWindow:
    """The treated arm's early window of some persons: days [start, start + days) have the month rate
    ``rate`` (n, M) instead of the usual one (effects.early_days)."""

    start: np.ndarray   # (n,) datetime64[D], NaT = no window
    days: int
    rate: np.ndarray    # (n, M)

    def contains(self, dates: np.ndarray) -> np.ndarray:
        """(n, k) whether each person's dates (n, k) fall in its window."""
        s = self.start[:, None]
        return ~np.isnat(s) & (dates >= s) & (dates < s + self.days * DAY)

    @classmethod
    def of(cls, cm: ChunkMeans, rows: np.ndarray) -> EarlyWindow | None:
        if cm.early_start is None or cm.hosp_rate1_early is None:
            return None
        return cls(start=cm.early_start[rows], days=cm.early_days, rate=cm.hosp_rate1_early[rows])


def _poisson_pmf(k: np.ndarray, mu: float) -> np.ndarray:
    return np.exp(xlogy(k, mu) - mu - gammaln(k + 1))


def _poisson_quantile(tail: float, mu: float) -> int:
    """Smallest k with P(Poisson(mu) > k) < tail."""
    k = np.arange(0, int(mu + 20 * np.sqrt(mu + 1) + 50))
    return int(k[np.argmax(pdtrc(k, mu) < tail)])


LOS_TAIL = 1e-12          # LOS probabilities beyond this tail are ignored (StayWindowModel)
FINAL_STAY_MAX_LOS = 40   # the final (in-hospital death) stay lasts at most 40 nights (claims.draw_stays)


@dataclass
class TruthAccumulator:
    """Sums over on-support treated patients of expected outcomes in both arms (and observed ones).

    One accumulator per chunk of persons; ``merge`` adds them up in chunk order (deterministic).
    """

    perimeter: list[str]
    eol_window_days: int
    claims_start: np.datetime64
    n_treated: int = 0
    n_on_support: int = 0
    n_complex: int = 0
    n_off_support_complex: int = 0
    patient_years: float = 0.0
    # untreated world (death dates without the mortality effect; equal to the above without one)
    patient_years0: float = 0.0
    n_decedents0: int = 0
    # control arm evaluated on the treated world's death dates (reference when mortality changes)
    eol_spend0_same_death: float = 0.0
    eol_hosp0_same_death: float = 0.0
    spend1: float = 0.0
    spend0: float = 0.0
    by_cat1: dict[str, float] = field(default_factory=dict)
    by_cat0: dict[str, float] = field(default_factory=dict)
    n_decedents: int = 0
    eol_spend1: float = 0.0
    eol_spend0: float = 0.0
    eol_hosp1: float = 0.0
    eol_hosp0: float = 0.0
    eol_by_cat1: dict[str, float] = field(default_factory=dict)
    eol_by_cat0: dict[str, float] = field(default_factory=dict)
    # full (non-séance) stays entering in follow-up, expected number and sum over patients of P(>= 1),
    # treated and untreated arms (the hospitalisation truth, written with the early window)
    hosp_stays1: float = 0.0
    hosp_stays0: float = 0.0
    hosp_any1: float = 0.0
    hosp_any0: float = 0.0
    # observed (realised, clean) counterparts, filled from the generated lines and stays
    obs_spend: float = 0.0
    obs_eol_spend: float = 0.0
    obs_eol_hosp: int = 0

    def empty_like(self) -> TruthAccumulator:
        return TruthAccumulator(perimeter=list(self.perimeter), eol_window_days=self.eol_window_days,
                                claims_start=self.claims_start)

    def merge(self, other: TruthAccumulator) -> None:
        for name in self.__dataclass_fields__:
            mine, theirs = getattr(self, name), getattr(other, name)
            if name in ("perimeter", "eol_window_days", "claims_start"):
                continue
            if isinstance(mine, dict):
                for k, v in theirs.items():
                    mine[k] = mine.get(k, 0.0) + v
            else:
                setattr(self, name, mine + theirs)

    def add_expected(self, cm: ChunkMeans, pop: Population, grid: MonthGrid, stays: StayWindowModel,
                     config: StudyConfig, cm0: ChunkMeans | None = None) -> None:
        """Add a chunk's expected outcomes. ``cm`` holds the treated world (observed death dates);
        ``cm0`` the untreated world (``pop.death_untreated`` for the treated, see
        :func:`untreated_world`), used for the untreated arm; None = the same death dates (no mortality
        effect). Each arm is a ratio over its *own* person-time and its own decedents, like the
        estimator's arm totals."""
        cm0 = cm if cm0 is None else cm0
        p = cm.persons
        t = pop.group[p] == TREATED
        self.n_treated += int(t.sum())
        cplx = pop.complex[p] & t
        self.n_complex += int(cplx.sum())
        self.n_off_support_complex += int((cplx & pop.off_support[p]).sum())
        on = t & ~pop.off_support[p]
        self.n_on_support += int(on.sum())
        if not on.any():
            return
        claims_end = to_date(config.study.claims_end)
        inc = pop.inclusion[p][on]
        for death, attr in ((pop.death[p][on], "patient_years"), (pop.death_untreated[p][on], "patient_years0")):
            end = np.where(np.isnat(death), claims_end, death)
            days = (end - inc).astype("timedelta64[D]").astype(float) + 1
            setattr(self, attr, getattr(self, attr) + float(days.sum()) / 365.25)
        w1, w0 = cm.fu[on], cm0.fu[on]
        for cat in self.perimeter:
            if cat == "hospital":
                v1 = self._hosp_expected(cm, on, treated_arm=True)
                v0 = self._hosp_expected(cm0, on, treated_arm=False)
            else:
                v1, v0 = cm.mu1[cat][on], cm0.mu0[cat][on]
            a1, a0 = float((v1 * w1).sum()), float((v0 * w0).sum())
            if cat == "hospital" and cm.early_share is not None:
                # stays entering in the early window have the early rate (all of them in follow-up)
                a1 += float(((cm.hosp_rate1_early - cm.hosp_rate1) * cm.early_share * cm.hosp_cost)[on].sum())
            self.by_cat1[cat] = self.by_cat1.get(cat, 0.0) + a1
            self.by_cat0[cat] = self.by_cat0.get(cat, 0.0) + a0
            self.spend1 += a1
            self.spend0 += a0
        self._add_hospitalisation(cm, cm0, pop, on, stays)
        idx = np.flatnonzero(on)
        rows1 = idx[self.decedents(pop.death[p][on], inc)]
        rows0 = idx[self.decedents(pop.death_untreated[p][on], inc)]
        self.n_decedents += int(rows1.size)
        self.n_decedents0 += int(rows0.size)
        self._add_end_of_life(cm, pop.death[p], grid, stays, rows1, arm=True)
        self._add_end_of_life(cm0, pop.death_untreated[p], grid, stays, rows0, arm=False)
        # reference: the untreated arm on the treated world's death dates (the contrast "same patient,
        # same death date"; equal to the main one without a mortality effect)
        self._add_end_of_life(cm, pop.death[p], grid, stays, rows1, arm=False, same_death=True)

    def _add_hospitalisation(self, cm: ChunkMeans, cm0: ChunkMeans, pop: Population, on: np.ndarray,
                             stays: StayWindowModel) -> None:
        """Expected full stays entering in follow-up and P(>= 1) per on-support treated patient, both arms
        (ordinary stays: Poisson, so P(none) = exp(-expected); the final stay independent of them)."""
        p = cm.persons
        inc = pop.inclusion[p][on]
        for world, death, arm in ((cm, pop.death[p][on], True), (cm0, pop.death_untreated[p][on], False)):
            ordinary = (world.hosp_rate1_in_followup() if arm else world.hosp_rate0 * world.fu)[on].sum(axis=1)
            final = (world.final_p1 if arm else world.final_p0)[on] * stays.final_in_followup(death, inc)
            n_stays, p_any = float((ordinary + final).sum()), float((1 - np.exp(-ordinary) * (1 - final)).sum())
            if arm:
                self.hosp_stays1 += n_stays
                self.hosp_any1 += p_any
            else:
                self.hosp_stays0 += n_stays
                self.hosp_any0 += p_any

    def hospitalisation(self) -> dict[str, float | None]:
        """Truth of the hospitalisation indicators (full stays entering in follow-up, by arm)."""
        if not (self.n_on_support and self.patient_years and self.patient_years0):
            return {}
        rate1 = 100 * self.hosp_stays1 / self.patient_years
        rate0 = 100 * self.hosp_stays0 / self.patient_years0
        share1, share0 = self.hosp_any1 / self.n_on_support, self.hosp_any0 / self.n_on_support
        out = {"hosp_stays_per_100py": rate1 - rate0, "hosp_stays_per_100py_treated": rate1,
               "hosp_stays_per_100py_control": rate0, "hosp_share_any_stay": share1 - share0,
               "hosp_share_any_stay_treated": share1, "hosp_share_any_stay_control": share0}
        return {k: round(v, 6) for k, v in out.items()}

    def decedents(self, death: np.ndarray, inclusion: np.ndarray) -> np.ndarray:
        """Treated decedents of the end-of-life truth: death after inclusion, whole window in the claims."""
        ok = ~np.isnat(death)
        first = np.where(ok, death, self.claims_start) - (self.eol_window_days - 1) * DAY
        return ok & np.where(ok, death > inclusion, False) & (first >= self.claims_start)

    def _add_end_of_life(self, cm: ChunkMeans, deaths: np.ndarray, grid: MonthGrid, stays: StayWindowModel,
                         rows: np.ndarray, arm: bool, same_death: bool = False) -> None:
        """Expected spending and P(>= 1 full stay) in the eol_window_days days before death, one arm
        (``deaths`` = the death dates of ``cm``'s world, by chunk row)."""
        if rows.size == 0:
            return
        death = deaths[rows]
        share = window_day_share(death, self.eol_window_days, grid)
        alive_days = cm.alive_days[rows]
        eol_month = cm.eol_k[rows] >= 0
        rate = (cm.hosp_rate1 if arm else cm.hosp_rate0)[rows]
        fp = (cm.final_p1 if arm else cm.final_p0)[rows]
        early = EarlyWindow.of(cm, rows) if arm else None
        full, n_reaching = stays.expected(rate, cm.hosp_cost[rows], alive_days, eol_month, death, grid, early)
        tot = 0.0
        book = self.eol_by_cat1 if arm else self.eol_by_cat0
        for cat in self.perimeter:
            if cat == "hospital":
                seances = (cm.seance_rate[rows] * cm.seance_cost * share).sum(axis=1)
                part = float((full + seances + fp * cm.final_cost * stays.final_share).sum())
            else:
                part = float(((cm.mu1 if arm else cm.mu0)[cat][rows] * share).sum())
            if not same_death:
                book[cat] = book.get(cat, 0.0) + part
            tot += part
        p_any = float((1 - (1 - fp) * np.exp(-n_reaching)).sum())
        if same_death:
            self.eol_spend0_same_death += tot
            self.eol_hosp0_same_death += p_any
        elif arm:
            self.eol_spend1 += tot
            self.eol_hosp1 += p_any
        else:
            self.eol_spend0 += tot
            self.eol_hosp0 += p_any

    @staticmethod
    def _hosp_expected(cm: ChunkMeans, on: np.ndarray, treated_arm: bool) -> np.ndarray:
        """Expected hospital € by month (follow-up perimeter: stays counted in their entry month)."""
        rate = (cm.hosp_rate1 if treated_arm else cm.hosp_rate0)[on]
        out = rate * cm.hosp_cost[on] + cm.seance_rate[on] * cm.seance_cost
        fp = (cm.final_p1 if treated_arm else cm.final_p0)[on]
        # the final stay's cost falls in the death month (last present month)
        M = cm.present.shape[1]
        last = np.where(cm.present[on], np.arange(M)[None, :], -1).max(axis=1)
        final = np.zeros_like(out)
        final[np.arange(final.shape[0]), last] = fp * cm.final_cost
        return out + final

    def same_death_reference(self) -> dict[str, float | None]:
        """End-of-life contrasts with the untreated arm evaluated on the treated decedents' own death
        dates: what the programme changes for the same patient dying on the same day. Differs from the
        arm-vs-arm indicators only when the programme changes mortality."""
        nd = self.n_decedents
        if not nd or not self.eol_hosp0_same_death:
            return {}
        return {"eol_hosp_rate": round(self.eol_hosp1 / self.eol_hosp0_same_death - 1, 6),
                "eol_spending_control": round(self.eol_spend0_same_death / nd, 6),
                "eol_spending_difference": round((self.eol_spend1 - self.eol_spend0_same_death) / nd, 6)}

    def indicators(self) -> dict[str, float | None]:
        def ratio(a: float, b: float) -> float | None:
            return a / b if b else None

        # Each arm over its own person-time and decedents: rate1 = treated world, rate0 = untreated
        # world (the same when the programme does not change mortality).
        rate1 = ratio(self.spend1, self.patient_years)
        rate0 = ratio(self.spend0, self.patient_years0)
        h1 = ratio(self.eol_hosp1, self.n_decedents)
        h0 = ratio(self.eol_hosp0, self.n_decedents0)
        out: dict[str, float | None] = {
            "unmatched_share_complex": ratio(self.n_off_support_complex, self.n_complex),
            "eol_hosp_rate": (h1 / h0 - 1) if h1 is not None and h0 else None,
            "eol_spending_treated": ratio(self.eol_spend1, self.n_decedents),
            "eol_spending_control": ratio(self.eol_spend0, self.n_decedents0),
            "avoided_spending_share": (1 - rate1 / rate0) if rate1 is not None and rate0 else None,
            "avoided_spending_per_patient_year": (rate0 - rate1) if rate1 is not None and rate0 is not None
            else None,
        }
        return {k: (round(v, 6) if v is not None else None) for k, v in out.items()}
