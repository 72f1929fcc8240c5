"""Who finds no control: share of unmatched treated units overall, for complex-care profiles and per
flag, how they differ from the matched, and the `unmatched_share_complex` indicator record.

Small-cell rule: a count of people c with 0 < c < ``min_cell_count`` is never written. Shares and CIs
are always computed from the true counts, and are masked together with the counts they would reveal
(a share next to its denominator gives the numerator back). Masked cells are null, and the row carries
``suppressed = True`` and a note.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from matching.matcher import UNMATCHED_REASONS
from pipeline.stats import wilson_interval

INDICATOR_ID = "unmatched_share_complex"


def is_small(count: float | int | None, min_cell_count: int) -> bool:
    """A count of people that must not be published (zero is not a disclosure)."""
    return count is not None and not pd.isna(count) and 0 < count < min_cell_count


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
        rows.append(_suppress(row, n, k, numeric, reason_counts, min_cell_count))
    return pd.DataFrame(rows)


def _suppress(row: dict[str, Any], n: int, k: int, numeric: Sequence[str], reason_counts: dict[str, int],
              min_cell: int) -> dict[str, Any]:
    notes = []
    if is_small(n, min_cell):
        for key in list(row):
            if key != "profile":
                row[key] = None
        notes.append(f"fewer than {min_cell} treated")
    else:
        if is_small(k, min_cell) or is_small(n - k, min_cell):
            for key in ("n_unmatched", "share_unmatched", "ci_low", "ci_high"):
                row[key] = None
            notes.append(f"fewer than {min_cell} unmatched or matched")
        if is_small(k, min_cell):
            for c in numeric:
                row[f"mean_unmatched_{c}"] = None
            for key in reason_counts:
                row[f"share_reason_{key}"] = None
        if is_small(n - k, min_cell):
            for c in numeric:
                row[f"mean_matched_{c}"] = None
        for key, cnt in reason_counts.items():
            if is_small(cnt, min_cell) or is_small(k - cnt, min_cell):
                row[f"share_reason_{key}"] = None
                if "reason shares" not in " ".join(notes):
                    notes.append("some reason shares hide small counts")
    row["suppressed"] = bool(notes)
    row["suppression_note"] = "; ".join(notes) or None
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
) -> dict[str, Any]:
    """The `unmatched_share_complex` record (docs/CONTRACTS.md §4), from the true counts.

    ``method_fr`` is the French description of the matching method (English ``method`` if omitted).
    """
    unmatched = np.asarray(unmatched, dtype=bool)
    cpx = complex_mask(treated, flags)
    n = int(cpx.sum())
    k = int((cpx & unmatched).sum())
    lo, hi = wilson_interval(k, n, ci_level)
    value = k / n if n else None
    overall_n = len(treated)
    overall_k = int(unmatched.sum())
    record: dict[str, Any] = {
        "id": INDICATOR_ID,
        "label_fr": "Part des patients ÉQUILIBRES en situation complexe sans témoin comparable",
        "label_en": "Share of complex-care ÉQUILIBRES patients with no comparable control",
        "value": value,
        "ci_low": lo if n else None,
        "ci_high": hi if n else None,
        "n": n,
        "unit": "share",
        "method": f"{method}; Wilson score interval ({ci_level:.0%})",
        "published": published,
        "arm_values": {
            "all_treated": overall_k / overall_n if overall_n else None,
            "non_complex": int((~cpx & unmatched).sum()) / int((~cpx).sum()) if (~cpx).any() else None,
        },
        "population": "eligible ÉQUILIBRES patients at inclusion with at least one complex-care flag "
                      f"({', '.join(flags)})",
        "definition": "treated patients for whom matching found no control (exact strata + caliper), "
                      "divided by all complex-care treated patients passed to matching",
        "method_fr": f"{method_fr or method} ; intervalle de Wilson ({100 * ci_level:g}\u00a0%)",
        "population_fr": "patients ÉQUILIBRES éligibles à l'inclusion avec au moins un indicateur de soins "
                         f"complexes ({', '.join(flags)})",
        "definition_fr": "patients traités pour lesquels l'appariement n'a trouvé aucun témoin (strates exactes "
                         "+ caliper), rapportés à l'ensemble des patients traités en soins complexes soumis à "
                         "l'appariement",
        "suppressed": False,
    }
    if is_small(n, min_cell_count) or is_small(k, min_cell_count) or is_small(n - k, min_cell_count):
        record.update(value=None, ci_low=None, ci_high=None, suppressed=True)
        record["n"] = None if is_small(n, min_cell_count) else n
    if is_small(overall_k, min_cell_count) or is_small(overall_n - overall_k, min_cell_count):
        record["arm_values"]["all_treated"] = None
    nc_n = int((~cpx).sum())
    nc_k = int((~cpx & unmatched).sum())
    if is_small(nc_n, min_cell_count) or is_small(nc_k, min_cell_count) or is_small(nc_n - nc_k, min_cell_count):
        record["arm_values"]["non_complex"] = None
    return record
