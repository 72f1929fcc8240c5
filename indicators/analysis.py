"""The matched analysis: unit outcomes + matched-set membership + bootstrap totals, built once.

Every indicator module takes a :class:`MatchedAnalysis` and turns ratios of its per-arm totals into
:class:`~indicators.results.Indicator` objects. ``headline_effects`` and the full run share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from indicators.bootstrap import BootstrapTotals, Statistic, cluster_bootstrap, matched_sets, per_set_totals
from indicators.outcomes import ClaimsData, spend_categories
from indicators.results import Estimate, Indicator, pct_fr
from pipeline.config import StudyConfig


def outcome_stats(config: StudyConfig) -> list[str]:
    """The unit outcome columns summed per arm and matched set."""
    cats = spend_categories(config)
    return [
        "n", "pyears", "died", "any_stay", "stays", "hosp_days", "seances",
        *[f"s_{c}" for c in cats], "s_perimeter", "fu_experiment_hours", "fu_nursing_acts",
        *[f"eol_s_{c}" for c in cats], "eol_s_perimeter", "eol_nursing_spend", "eol_nursing_acts",
        "eol_experiment_hours", "eol_any_stay", "eol_hosp_days", "eol_death_in_hosp",
        "pre_s_perimeter", "pre_pyears", "post_s_perimeter", "post_pyears",
        # stays outside the hospital perimeter (negative controls, cleaning.stay_categories)
        *[f"stays_{c}" for c in config.cleaning.stay_category_names],
    ]


def ratio(arm: str, num: str, den: str, scale: float = 1.0) -> Statistic:
    """Statistic: weighted total of ``num`` over weighted total of ``den`` in one arm (t or c)."""
    return lambda T: scale * T[f"{arm}.{num}"] / T[f"{arm}.{den}"]


def difference(a: Statistic, b: Statistic) -> Statistic:
    return lambda T: a(T) - b(T)


def quotient(a: Statistic, b: Statistic) -> Statistic:
    return lambda T: a(T) / b(T)


def relative_difference(a: Statistic, b: Statistic) -> Statistic:
    return lambda T: a(T) / b(T) - 1.0


@dataclass(frozen=True)
class MatchedAnalysis:
    """Everything the indicators of one matched sample are computed from."""

    config: StudyConfig
    membership: pd.DataFrame      # set_idx, unit_id, treated, w
    outcomes: pd.DataFrame        # one row per unit, indexed by unit_id
    boot: BootstrapTotals
    claims: ClaimsData

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def n_sets(self) -> int:
        return int(self.membership["set_idx"].nunique())

    @property
    def n_clusters(self) -> int:
        """Resampling units of the bootstrap: sets linked by a shared control person count as one."""
        return self.boot.n_sets

    @property
    def n_control_persons(self) -> int:
        return int(self.membership.loc[self.membership["treated"] == 0, "person_id"].nunique())

    @property
    def n_treated(self) -> int:
        return int(self.membership.loc[self.membership["treated"] == 1, "unit_id"].nunique())

    @property
    def n_control(self) -> int:
        return int(self.membership.loc[self.membership["treated"] == 0, "unit_id"].nunique())

    def n_decedents(self, arm: str) -> int:
        flag = 1 if arm == "t" else 0
        ids = self.membership.loc[self.membership["treated"] == flag, "unit_id"].unique()
        return int(self.outcomes.loc[ids, "died"].sum())

    @property
    def method(self) -> str:
        b = self.boot
        return (f"bootstrap of matched sets, sets sharing a control person resampled together "
                f"({b.n_replicates} replicates, {self.n_sets} sets in {b.n_sets} clusters, seed {b.seed}), "
                f"percentile {b.ci_level:.0%} CI; controls weighted by matching weights")

    @property
    def method_fr(self) -> str:
        b = self.boot
        return (f"bootstrap des ensembles appariés, les ensembles partageant un témoin étant tirés ensemble "
                f"({b.n_replicates} réplications, {self.n_sets} ensembles en {b.n_sets} grappes, graine "
                f"{b.seed}), IC à {pct_fr(b.ci_level)} par les percentiles ; témoins pondérés par les "
                f"poids d'appariement")

    # -- estimation ----------------------------------------------------------------------------
    def est(self, stat: Statistic) -> Estimate:
        return self.boot.estimate(stat)

    def indicator(self, id: str, label_fr: str, label_en: str, unit: str, stat: Statistic, *,
                  n: int | None, population: str, definition: str,
                  population_fr: str | None = None, definition_fr: str | None = None,
                  arms: Mapping[str, Statistic] | None = None,
                  extra: Mapping[str, float] | None = None) -> Indicator:
        e = self.est(stat)
        arm_values: dict[str, float | None] = {}
        arm_ci: dict[str, tuple[float | None, float | None]] = {}
        for name, s in (arms or {}).items():
            ea = self.est(s)
            arm_values[name] = ea.value
            arm_ci[name] = (ea.ci_low, ea.ci_high)
        arm_values.update(extra or {})
        return Indicator(id=id, label_fr=label_fr, label_en=label_en, unit=unit, value=e.value,
                         ci_low=e.ci_low, ci_high=e.ci_high, n=n, method=self.method,
                         ci_level=self.boot.ci_level, population=population, definition=definition,
                         arm_values=arm_values, arm_ci=arm_ci, n_control=self.n_control,
                         replicates=self.boot.n_replicates, method_fr=self.method_fr,
                         population_fr=population_fr, definition_fr=definition_fr)

    def effect_rows(self, measure: str, t: Statistic, c: Statistic, **info: object) -> dict[str, object]:
        """One tidy row: arm values, difference (t − c) and ratio (t / c), each with its CI."""
        row: dict[str, object] = {"measure": measure, **info}
        for name, s in (("treated", t), ("control", c), ("difference", difference(t, c)),
                        ("ratio", quotient(t, c))):
            e = self.est(s)
            row[name] = e.value
            row[f"{name}_ci_low"] = e.ci_low
            row[f"{name}_ci_high"] = e.ci_high
        return row


def analyse(matched: pd.DataFrame, claims: ClaimsData, config: StudyConfig,
            replicates: int | None = None) -> MatchedAnalysis:
    """Compute unit outcomes, matched-set membership and the bootstrap totals of a matched sample."""
    ic = config.indicators
    membership = matched_sets(matched)
    units = matched.loc[:, ["unit_id", "person_id", "treated", "index_date"]]
    outcomes = claims.unit_outcomes(units, config)
    stats = outcome_stats(config)
    per_set, names = per_set_totals(membership, outcomes, stats)
    boot = cluster_bootstrap(per_set, names, replicates or ic.bootstrap_replicates, ic.seed, ic.ci_level)
    return MatchedAnalysis(config, membership, outcomes, boot, claims)

