"""Who finds no control: share of unmatched treated units overall, for complex-care profiles and per
flag, how they differ from the matched, and the `unmatched_share_complex` indicator record.

Small-cell rule (:func:`pipeline.privacy.is_small`): a count of people c with 0 < c < ``min_cell_count``
is never written. Shares and CIs are always computed from the true counts, and are masked together with
the counts they would reveal (a share next to its denominator gives the numerator back). Masked cells
are null, and the row carries ``suppressed = True`` and ``suppression_note``: the reasons, as
language-neutral ids joined by ";" (:data:`SUPPRESSION_NOTES`), which the report translates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from matching.matcher import UNMATCHED_REASONS
from pipeline.privacy import is_small
from pipeline.results import IndicatorRecord
from pipeline.stats import wilson_interval

INDICATOR_ID = "unmatched_share_complex"

#: Why cells of a profile row are masked (``suppression_note``, ids joined by ";"); the threshold is
#: ``report.min_cell_count``, saved in matching/params.json.
SUPPRESSION_NOTES = {
    "few_treated": "fewer than min_cell_count treated in the profile: the whole row is masked",
    "few_unmatched_or_matched": "fewer than min_cell_count unmatched or matched: the share is masked",
    "reason_shares_masked": "some shares of unmatched reasons would reveal a small count",
}


def complex_mask(treated: pd.DataFrame, flags: Sequence[str]) -> np.ndarray:
    """Complex-care profile: the `complex` column when present, else any of the flags."""
    if "complex" in treated.columns:
        return treated["complex"].fillna(0).to_numpy().astype(bool)
    present = [f for f in flags if f in treated.columns]
    if not present:
        raise ValueError(
            "unmatched profiles: neither a 'complex' column nor any complex-care flag "
            f"{list(flags)} is in the treated rows; check cohort.complex_flags."
        )
    return treated[present].fillna(0).to_numpy().astype(bool).any(axis=1)


def unmatched_profiles(
    treated: pd.DataFrame,
    unmatched: np.ndarray,
    flags: Sequence[str],
    covariates: Sequence[str],
    min_cell_count: int,
    ci_level: float = 0.95,
    reasons: pd.Series | None = None,
) -> pd.DataFrame:
    """One row per profile: overall, complex, non-complex, each flag.

    ``treated`` = every treated unit passed to matching; ``unmatched`` = boolean mask over its rows;
    ``reasons`` = the unmatched reason of each unmatched row (aligned on ``treated``; optional).
    """
    unmatched = np.asarray(unmatched, dtype=bool)
    cpx = complex_mask(treated, flags)
    profiles: list[tuple[str, np.ndarray]] = [
        ("overall", np.ones(len(treated), dtype=bool)),
        ("complex", cpx),
        ("non_complex", ~cpx),
    ]
    profiles += [(f, treated[f].fillna(0).to_numpy().astype(bool)) for f in flags if f in treated.columns]
    numeric = [c for c in covariates if c in treated.columns and pd.api.types.is_numeric_dtype(treated[c])]
    rows = []
    for name, mask in profiles:
        n = int(mask.sum())
        k = int((mask & unmatched).sum())
        lo, hi = wilson_interval(k, n, ci_level)
        row: dict[str, Any] = {
            "profile": name, "n_treated": n, "n_unmatched": k,
            "share_unmatched": k / n if n else np.nan, "ci_low": lo, "ci_high": hi,
        }
        for c in numeric:
            x = treated[c].to_numpy(dtype=float, na_value=np.nan)
            row[f"mean_matched_{c}"] = float(np.nanmean(x[mask & ~unmatched])) if (mask & ~unmatched).any() else np.nan
            row[f"mean_unmatched_{c}"] = float(np.nanmean(x[mask & unmatched])) if (mask & unmatched).any() else np.nan
        reason_counts: dict[str, int] = {}
        if reasons is not None:
            r = pd.Series(reasons).to_numpy()
            for key in UNMATCHED_REASONS:
                reason_counts[key] = int((mask & unmatched & (r == key)).sum())
                row[f"share_reason_{key}"] = reason_counts[key] / k if k else np.nan
        rows.append(suppress_profile_row(row, n, k, numeric, reason_counts, min_cell_count))
    return pd.DataFrame(rows)


def suppress_profile_row(row: dict[str, Any], n: int, k: int, numeric: Sequence[str], reason_counts: dict[str, int],
                         min_cell_count: int) -> dict[str, Any]:
    """Mask the cells of one profile row that would reveal a small count; note why (ids)."""
    notes = []
    if is_small(n, min_cell_count):
        for key in list(row):
            if key != "profile":
                row[key] = None
        notes.append("few_treated")
    else:
        if is_small(k, min_cell_count) or is_small(n - k, min_cell_count):
            for key in ("n_unmatched", "share_unmatched", "ci_low", "ci_high"):
                row[key] = None
            notes.append("few_unmatched_or_matched")
        if is_small(k, min_cell_count):
            for c in numeric:
                row[f"mean_unmatched_{c}"] = None
            for key in reason_counts:
                row[f"share_reason_{key}"] = None
        if is_small(n - k, min_cell_count):
            for c in numeric:
                row[f"mean_matched_{c}"] = None
        for key, cnt in reason_counts.items():
            if is_small(cnt, min_cell_count) or is_small(k - cnt, min_cell_count):
                row[f"share_reason_{key}"] = None
                if "reason_shares_masked" not in notes:
                    notes.append("reason_shares_masked")
    row["suppressed"] = bool(notes)
    row["suppression_note"] = ";".join(notes) or None
    return row


def unmatched_indicator(
    treated: pd.DataFrame,
    unmatched: np.ndarray,
    flags: Sequence[str],
    min_cell_count: int,
    published: float | None,
    method: str,
    ci_level: float = 0.95,
    method_fr: str | None = None,
    no_comparable: np.ndarray | None = None,
) -> IndicatorRecord:
    """The `unmatched_share_complex` record (docs/CONTRACTS.md §4), from the true counts.

    The value is the share of complex-care treated patients with **no comparable control**:
    ``no_comparable`` (a subset of ``unmatched``; default: every unmatched patient) marks those whose
    profile has no candidate control within the caliper in any period of the study
    (``Matcher.unmatched_["n_comparable_any_period"] == 0``). The share of complex patients left
    unmatched for any reason (comparable candidates existed but none was available at the patient's
    time zero) is ``arm_values["complex_unmatched_any_reason"]``.

    ``method_fr`` is the French description of the matching method (English ``method`` if omitted).
    Value, interval and arm shares are masked (null) when they would reveal a small count.
    """
    unmatched = np.asarray(unmatched, dtype=bool)
    none_comparable = unmatched if no_comparable is None else np.asarray(no_comparable, dtype=bool) & unmatched
    cpx = complex_mask(treated, flags)
    n = int(cpx.sum())
    k = int((cpx & none_comparable).sum())
    k_any = int((cpx & unmatched).sum())
    lo, hi = wilson_interval(k, n, ci_level)
    overall_n = len(treated)
    overall_k = int(unmatched.sum())
    nc_n = int((~cpx).sum())
    nc_k = int((~cpx & unmatched).sum())

    def reveals(k_: int, n_: int) -> bool:  # the share k_/n_ next to n_ would give a small count back
        return is_small(n_, min_cell_count) or is_small(k_, min_cell_count) or is_small(n_ - k_, min_cell_count)

    suppressed, any_small, nc_small = reveals(k, n), reveals(k_any, n), reveals(nc_k, nc_n)
    all_small = is_small(overall_k, min_cell_count) or is_small(overall_n - overall_k, min_cell_count)
    return IndicatorRecord(
        id=INDICATOR_ID,
        label_fr="Part des patients ÉQUILIBRES en situation complexe sans témoin comparable",
        label_en="Share of complex-care ÉQUILIBRES patients with no comparable control",
        unit="share",
        value=None if suppressed or not n else k / n,
        ci_low=None if suppressed or not n else lo,
        ci_high=None if suppressed or not n else hi,
        n=None if is_small(n, min_cell_count) else n,
        method=f"{method}; Wilson score interval ({ci_level:.0%})",
        population="eligible ÉQUILIBRES patients at inclusion with at least one complex-care flag "
                   f"({', '.join(flags)})",
        definition="complex-care treated patients with no comparable control: no candidate control with "
                   "their profile (the exact matching variables other than the period) and a prior-year "
                   "nursing cost within the caliper, in any period of the study; divided by all "
                   "complex-care treated patients passed to matching. Patients with comparable candidates "
                   "none of whom was available on their index date are unmatched but not counted "
                   "(arm_values.complex_unmatched_any_reason counts every unmatched patient)",
        published=published,
        method_fr=f"{method_fr or method} ; intervalle de Wilson ({100 * ci_level:g}\u00a0%)",
        population_fr="patients ÉQUILIBRES éligibles à l'inclusion avec au moins un indicateur de soins "
                      f"complexes ({', '.join(flags)})",
        definition_fr="patients traités en soins complexes sans témoin comparable : aucun témoin candidat de "
                      "même profil (variables d'appariement exact hors période) et de coût infirmier de "
                      "l'année précédente dans le caliper, à aucune période de l'étude ; rapportés à "
                      "l'ensemble des patients traités en soins complexes soumis à l'appariement. Les "
                      "patients ayant des candidats comparables dont aucun n'était disponible à leur date "
                      "d'inclusion ne sont pas appariés mais ne sont pas comptés "
                      "(arm_values.complex_unmatched_any_reason compte tous les non-appariés)",
        arm_values={
            "all_treated": overall_k / overall_n if overall_n and not all_small else None,
            "non_complex": nc_k / nc_n if nc_n and not nc_small else None,
            "complex_unmatched_any_reason": k_any / n if n and not any_small else None,
        },
        suppressed=suppressed,
        n_suppressed=is_small(n, min_cell_count),
    )
