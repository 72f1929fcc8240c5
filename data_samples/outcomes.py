"""Expected monthly spending and hospital risk of each person, under both potential outcomes.

For every person-month the model gives the *untreated* expected amount of each spending category
(``mu0``) and hospital-stay rate, and the *treated* ones (``mu1``) with the planted multiplicative
effects applied for the part of the month the patient is included. The observed extract is drawn
from ``mu1`` for ÉQUILIBRES patients and ``mu0`` for everybody else; truth.json compares the
expected values of both arms on the same treated patients (see :class:`TruthAccumulator`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from data_samples.population import DAY, TREATED, Population, to_date
from data_samples.truth import TruthParams
from pipeline.config import StudyConfig

DCIR_CATEGORIES = ("nursing_acts", "nurse_travel", "nurse_assessment", "experiment", "gp", "specialist",
                   "pharmacy", "other")
NURSING_CATEGORIES = ("nursing_acts", "nurse_travel", "nurse_assessment")


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
    eol_k: np.ndarray        # (n, M) months before the death month (0 = death month), -1 otherwise
    tf: np.ndarray           # (n, M) share of the alive days spent included in ÉQUILIBRES
    fu: np.ndarray           # (n, M) share of the alive days in the follow-up (treated: index -> end)
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

    def observed(self, cat: str) -> np.ndarray:
        return np.where(self.observed_treated[:, None], self.mu1[cat], self.mu0[cat])

    @property
    def observed_hosp_rate(self) -> np.ndarray:
        return np.where(self.observed_treated[:, None], self.hosp_rate1, self.hosp_rate0)

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
    for cat in ("nursing_acts", "nurse_travel", "nurse_assessment", "gp", "specialist", "pharmacy", "other"):
        mu1[cat] = mu0[cat] * (1 - tf + tf * getattr(e, cat))
    share = np.where(in_eol, e.experiment_share_eol, e.experiment_share)
    mu1["experiment"] = tf * share * sum(mu0[c] for c in NURSING_CATEGORIES)

    hosp0 = b.hosp_monthly_rate * cov * eol(b.eol_hosp_rate) * np.exp(fe.hospital * frail)[:, None]
    theta = np.where(in_eol, e.hosp_rate_eol, e.hosp_rate)
    hosp1 = hosp0 * (1 - tf + tf * theta)
    hosp_cost = np.where(in_eol, b.eol_hosp_cost_mean, b.hosp_cost_mean)
    seance_rate = np.where(pop.seance[persons][:, None] > 0, b.seance_monthly_rate * af, 0.0)

    final_p0 = np.where(has_death, b.final_stay_prob, 0.0)
    ex = pop.exit[persons]
    included_at_death = treated & has_death & (death >= inc) & (np.isnat(ex) | (ex > death))
    final_p1 = final_p0 * np.where(included_at_death, e.final_stay, 1.0)
    return ChunkMeans(
        persons=persons, present=present, alive_end=alive_end, eol_k=eol_k, tf=tf, fu=fu, mu0=mu0, mu1=mu1,
        hosp_rate0=hosp0, hosp_rate1=hosp1, hosp_cost=hosp_cost, seance_rate=seance_rate,
        final_p0=final_p0, final_p1=final_p1, observed_treated=treated,
        seance_cost=b.seance_cost_mean, final_cost=b.final_stay_cost_mean,
    )


@dataclass
class TruthAccumulator:
    """Sums over on-support treated patients of expected outcomes in both arms (and observed ones)."""

    perimeter: list[str]
    eol_window: int
    claims_start_month: int = 0
    n_treated: int = 0
    n_on_support: int = 0
    n_complex: int = 0
    n_off_support_complex: int = 0
    patient_years: float = 0.0
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
    # observed (realised, clean) counterparts, filled from the generated lines and stays
    obs_spend: float = 0.0
    obs_eol_spend: float = 0.0
    obs_eol_hosp: int = 0

    def add_expected(self, cm: ChunkMeans, pop: Population, config: StudyConfig) -> None:
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
        end = np.where(np.isnat(pop.death[p]), claims_end, pop.death[p])[on]
        self.patient_years += float(((end - pop.inclusion[p][on]).astype("timedelta64[D]").astype(float) + 1).sum()) / 365.25
        w = cm.fu[on]
        for cat in self.perimeter:
            if cat == "hospital":
                v1 = self._hosp_expected(cm, on, treated_arm=True)
                v0 = self._hosp_expected(cm, on, treated_arm=False)
            else:
                v1, v0 = cm.mu1[cat][on], cm.mu0[cat][on]
            a1, a0 = float((v1 * w).sum()), float((v0 * w).sum())
            self.by_cat1[cat] = self.by_cat1.get(cat, 0.0) + a1
            self.by_cat0[cat] = self.by_cat0.get(cat, 0.0) + a0
            self.spend1 += a1
            self.spend0 += a0
        # End of life: treated decedents dying after inclusion, whole window inside the claims window.
        dec = self.decedents(cm, pop, on)
        if dec.any():
            win = self.window_mask(cm)[on][dec]
            self.n_decedents += int(dec.sum())
            for arm in (True, False):
                tot = 0.0
                for cat in self.perimeter:
                    if cat == "hospital":
                        v = self._hosp_expected(cm, on, treated_arm=arm)[dec]
                    else:
                        v = (cm.mu1 if arm else cm.mu0)[cat][on][dec]
                    part = float((v * win).sum())
                    book = self.eol_by_cat1 if arm else self.eol_by_cat0
                    book[cat] = book.get(cat, 0.0) + part
                    tot += part
                rate = (cm.hosp_rate1 if arm else cm.hosp_rate0)[on][dec]
                fp = (cm.final_p1 if arm else cm.final_p0)[on][dec]
                p_any = 1 - (1 - fp) * np.exp(-(rate * win).sum(axis=1))
                if arm:
                    self.eol_spend1 += tot
                    self.eol_hosp1 += float(p_any.sum())
                else:
                    self.eol_spend0 += tot
                    self.eol_hosp0 += float(p_any.sum())

    def decedents(self, cm: ChunkMeans, pop: Population, on: np.ndarray) -> np.ndarray:
        p = cm.persons[on]
        death = pop.death[p]
        ok = ~np.isnat(death)
        ok &= np.where(ok, death > pop.inclusion[p], False)
        M = cm.present.shape[1]
        dm = np.where(ok, (death.astype("datetime64[M]").astype(np.int64) - self.claims_start_month), M)
        return ok & (dm - (self.eol_window - 1) >= 0)

    def window_mask(self, cm: ChunkMeans) -> np.ndarray:
        """Months of the end-of-life window: the death month and the eol_window - 1 months before."""
        M = cm.present.shape[1]
        # eol_k only spans the model's own end-of-life months; the window may be longer.
        last = np.where(cm.present, np.arange(M)[None, :], -1).max(axis=1)
        k = last[:, None] - np.arange(M)[None, :]
        return ((k >= 0) & (k < self.eol_window)).astype(np.float64)

    @staticmethod
    def _hosp_expected(cm: ChunkMeans, on: np.ndarray, treated_arm: bool) -> np.ndarray:
        rate = (cm.hosp_rate1 if treated_arm else cm.hosp_rate0)[on]
        out = rate * cm.hosp_cost[on] + cm.seance_rate[on] * cm.seance_cost
        fp = (cm.final_p1 if treated_arm else cm.final_p0)[on]
        # the final stay's cost falls in the death month (last present month)
        M = cm.present.shape[1]
        last = np.where(cm.present[on], np.arange(M)[None, :], -1).max(axis=1)
        final = np.zeros_like(out)
        final[np.arange(final.shape[0]), last] = fp * cm.final_cost
        return out + final

    def indicators(self) -> dict[str, float | None]:
        def ratio(a: float, b: float) -> float | None:
            return a / b if b else None

        py = self.patient_years
        out: dict[str, float | None] = {
            "unmatched_share_complex": ratio(self.n_off_support_complex, self.n_complex),
            "eol_hosp_rate": (self.eol_hosp1 / self.eol_hosp0 - 1) if self.eol_hosp0 else None,
            "eol_spending_treated": ratio(self.eol_spend1, self.n_decedents),
            "eol_spending_control": ratio(self.eol_spend0, self.n_decedents),
            "avoided_spending_share": (1 - self.spend1 / self.spend0) if self.spend0 else None,
            "avoided_spending_per_patient_year": ratio(self.spend0 - self.spend1, py),
        }
        return {k: (round(v, 6) if v is not None else None) for k, v in out.items()}
