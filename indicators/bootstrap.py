"""Matched-set cluster bootstrap, vectorised.

Every claims indicator is a smooth function of a few *weighted totals per arm* (spending, patient-years,
decedents, ...). So the bootstrap never rebuilds a dataset: each matched set is reduced once to a row of
per-arm totals (``per_set``, n_sets × k), a replicate draws matched sets with replacement — a row of
counts — and the replicate totals are ``counts @ per_set``. Counts for B replicates form a (B × n_sets)
matrix drawn in a few chunks (bounded memory); there is no Python loop over replicates.

Matching weights are honoured through the membership table of :func:`matched_sets`: a treated unit has
weight 1 in its set; a control has its within-set weight (1/k for 1:k matching). A control reused by
several sets (matching with replacement) appears once per set, so its total weight is the sum — its
matched weight. The unit of resampling is the *person*: sets that share a control person form one
cluster (connected components of the set–person graph) and are drawn together, so a reused control's
outcomes are never treated as independent draws. Without replacement each set is its own cluster.

Confidence intervals are percentile intervals of the replicate statistics. Every statistic is a ratio
of totals within an arm, so a global rescaling of control weights (MatchIt-style normalisation) leaves
it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from indicators.results import Estimate

# Upper bound on the cells of one chunk of the replicate count matrix (memory ~ 8 bytes × this).
_CHUNK_CELLS = 4_000_000


def matched_sets(matched: pd.DataFrame) -> pd.DataFrame:
    """Membership of units in matched sets and resampling clusters:
    ``set_idx, cluster_idx, unit_id, person_id, treated, w``.

    ``matched`` has one row per (unit, matched set) (docs/CONTRACTS.md §3): a treated unit has weight
    1 in its set; a control has its within-set weight (1/k for 1:k matching, the CEM weight for CEM).
    A control person reused by several sets (matching with replacement) has one row per set.

    The bootstrap resamples *persons*, not rows: matched sets linked by a shared person (a control
    reused by several sets) form one cluster and move together (:func:`resampling_clusters`). Without
    replacement every set is its own cluster.
    """
    need = {"unit_id", "person_id", "treated", "weight", "subclass"}
    missing = need - set(matched.columns)
    if missing:
        raise ValueError(f"matched frame lacks columns {sorted(missing)}; it has {list(matched.columns)}")
    mem = matched[["unit_id", "person_id", "treated", "weight", "subclass"]].rename(columns={"weight": "w"})
    mem = mem.assign(treated=mem["treated"].astype(int), w=mem["w"].astype(float))
    mem.loc[mem["treated"] == 1, "w"] = 1.0
    mem = mem[mem["w"] > 0]
    codes, _ = pd.factorize(mem["subclass"], sort=True)
    mem["set_idx"] = codes
    mem["cluster_idx"] = resampling_clusters(codes, mem["person_id"].to_numpy())
    return mem[["set_idx", "cluster_idx", "unit_id", "person_id", "treated", "w"]].reset_index(drop=True)


def resampling_clusters(set_idx: np.ndarray, person: np.ndarray) -> np.ndarray:
    """Cluster of each membership row: connected components of the set–person graph.

    Two matched sets are in one cluster when a person belongs to both (directly or through a chain),
    so resampling clusters resamples persons with every set they count in. Clusters are numbered in
    order of their lowest set.
    """
    set_idx = np.asarray(set_idx, dtype=np.int64)
    if set_idx.size == 0:
        return set_idx
    p_codes, _ = pd.factorize(pd.Series(person), sort=False)
    n_sets, n_persons = int(set_idx.max()) + 1, int(p_codes.max()) + 1
    adj = sparse.coo_matrix((np.ones(set_idx.size), (set_idx, n_sets + p_codes)),
                            shape=(n_sets + n_persons, n_sets + n_persons))
    _, labels = connected_components(adj, directed=False)
    cluster_of_set, _ = pd.factorize(labels[:n_sets])  # numbered by lowest set: deterministic
    return cluster_of_set[set_idx]


def per_set_totals(membership: pd.DataFrame, outcomes: pd.DataFrame, stats: Sequence[str]
                   ) -> tuple[np.ndarray, list[str]]:
    """Per-cluster weighted totals of ``stats`` by arm: an (n_clusters × 2·len(stats)) matrix and its
    names. A cluster is one matched set unless sets share a person (see :func:`matched_sets`).

    Names are ``t.<stat>`` (treated) and ``c.<stat>`` (controls, weighted by within-set weight).
    """
    vals = outcomes.loc[membership["unit_id"], list(stats)].to_numpy(dtype=float)
    w = membership["w"].to_numpy(dtype=float)[:, None]
    key = "cluster_idx" if "cluster_idx" in membership.columns else "set_idx"
    idx = membership[key].to_numpy()
    n_sets = int(idx.max()) + 1 if len(idx) else 0
    is_t = membership["treated"].to_numpy() == 1
    out = np.zeros((n_sets, 2 * len(stats)))
    for j, mask in enumerate((is_t, ~is_t)):
        block = np.zeros((n_sets, len(stats)))
        np.add.at(block, idx[mask], vals[mask] * w[mask])
        out[:, j * len(stats):(j + 1) * len(stats)] = block
    names = [f"t.{s}" for s in stats] + [f"c.{s}" for s in stats]
    return out, names


def resample_counts(n_sets: int, replicates: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Yield (m × n_sets) matrices of how many times each set is drawn, m rows per chunk.

    Each row is one replicate: n_sets draws with replacement among the sets. The chunk size depends
    only on n_sets, so a seed gives the same replicates on any machine.
    """
    chunk = max(1, min(replicates, _CHUNK_CELLS // max(n_sets, 1)))
    done = 0
    while done < replicates:
        m = min(chunk, replicates - done)
        picks = rng.integers(0, n_sets, size=(m, n_sets))
        offsets = (np.arange(m) * n_sets)[:, None]
        counts = np.bincount((picks + offsets).ravel(), minlength=m * n_sets).reshape(m, n_sets)
        yield counts
        done += m


class _Totals(Mapping[str, np.ndarray]):
    """Read-only name → column view over a totals array (1-D point or 2-D replicates)."""

    def __init__(self, names: Sequence[str], arr: np.ndarray) -> None:
        self._pos = {n: i for i, n in enumerate(names)}
        self._arr = arr

    def __getitem__(self, key: str) -> np.ndarray:
        return self._arr[..., self._pos[key]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._pos)

    def __len__(self) -> int:
        return len(self._pos)


Statistic = Callable[[Mapping[str, np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class BootstrapTotals:
    """Point and replicate per-arm totals of a matched sample; evaluates statistics with their CIs."""

    names: tuple[str, ...]
    point: np.ndarray          # (k,)
    draws: np.ndarray          # (B, k): the totals of each of the B bootstrap replicates
    n_sets: int                # resampling units: matched sets, or clusters of sets sharing a person
    ci_level: float
    seed: int

    @property
    def n_replicates(self) -> int:
        return int(self.draws.shape[0])

    def totals(self) -> Mapping[str, np.ndarray]:
        return _Totals(self.names, self.point)

    def replicate_totals(self) -> Mapping[str, np.ndarray]:
        return _Totals(self.names, self.draws)

    def replicate_values(self, stat: Statistic) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(stat(self.replicate_totals()), dtype=float)

    def estimate(self, stat: Statistic) -> Estimate:
        with np.errstate(divide="ignore", invalid="ignore"):
            value = float(stat(self.totals()))
        reps = self.replicate_values(stat)
        return percentile_interval(value, reps, self.ci_level)


def percentile_interval(value: float, reps: np.ndarray, ci_level: float) -> Estimate:
    """Percentile CI of replicate values; replicates where the statistic is undefined are dropped
    and counted (``invalid_replicates``)."""
    ok = np.isfinite(reps)
    invalid = int((~ok).sum())
    if ok.sum() < 2 or not np.isfinite(value):
        return Estimate(value if np.isfinite(value) else float("nan"), None, None, invalid)
    alpha = 1 - ci_level
    lo, hi = np.quantile(reps[ok], [alpha / 2, 1 - alpha / 2])
    return Estimate(value, float(lo), float(hi), invalid)


def cluster_bootstrap(per_set: np.ndarray, names: Sequence[str], replicates: int, seed: int,
                      ci_level: float) -> BootstrapTotals:
    """Draw ``replicates`` matched-set bootstrap samples and return their per-arm totals."""
    n_sets = per_set.shape[0]
    if n_sets == 0:
        raise ValueError("no matched sets to bootstrap: the matched sample is empty")
    rng = np.random.default_rng(seed)
    draws = np.empty((replicates, per_set.shape[1]))
    row = 0
    for counts in resample_counts(n_sets, replicates, rng):
        draws[row:row + counts.shape[0]] = counts @ per_set
        row += counts.shape[0]
    return BootstrapTotals(tuple(names), per_set.sum(axis=0), draws, n_sets, ci_level, seed)
