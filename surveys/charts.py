"""Survey charts (matplotlib, written as PNG bytes so the runner can write them atomically)."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from surveys.stats import FrequencyResult, PairedResult  # noqa: E402


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    # No software/date metadata, so the same results give the same bytes.
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _wrap(text: str, width: int = 48) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def likert_diverging_chart(items: Sequence[tuple[str, FrequencyResult]], lang: str = "en",
                           title: str = "") -> bytes:
    """Diverging stacked bars of Likert items that share one scale, centred at 0.

    The lower half of the scale extends to the left, the upper half to the right; with an odd number
    of levels the middle level is split half and half around zero. Shares exclude item non-response.
    """
    if not items:
        raise ValueError("likert_diverging_chart needs at least one item")
    first = items[0][1]
    codes = first.codes
    for _, r in items:
        if r.codes != codes:
            raise ValueError("items of one diverging chart must share the same scale (codes)")
    labels = first.labels_fr if lang == "fr" else first.labels_en
    k = len(codes)
    half = k // 2
    colours = plt.get_cmap("RdBu")(np.linspace(0.12, 0.88, k))
    fig, ax = plt.subplots(figsize=(9, 0.75 * len(items) + 1.8))
    y = np.arange(len(items))[::-1]
    for row, (_, r) in zip(y, items, strict=True):
        shares = np.array([s if r.n else 0.0 for s in r.shares]) * 100
        neutral = shares[half] if k % 2 else 0.0
        left = -(shares[:half].sum() + neutral / 2)
        for i in range(k):
            ax.barh(row, shares[i], left=left, color=colours[i], edgecolor="white", height=0.6,
                    label=labels[i] if row == y[0] else None)
            if shares[i] >= 7:
                ax.text(left + shares[i] / 2, row, f"{shares[i]:.0f}", ha="center", va="center", fontsize=8,
                        color="white" if i in (0, k - 1) else "black")
            left += shares[i]
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, [_wrap(f"{t} (n = {r.n})") for t, r in items], fontsize=8)
    ax.set_xlim(-100, 100)
    ticks = np.arange(-100, 101, 25)
    ax.set_xticks(ticks, [f"{abs(t)} %" for t in ticks])
    ax.set_xlabel("Part des réponses (hors non-réponse)" if lang == "fr" else "Share of answers (item non-response excluded)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18 if len(items) > 2 else -0.3), ncol=min(k, 5),
              fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def before_after_chart(items: Sequence[tuple[str, PairedResult]], lang: str = "en", title: str = "") -> bytes:
    """Mean score before and after, with their confidence intervals, per paired item (dumbbell chart)."""
    if not items:
        raise ValueError("before_after_chart needs at least one item")
    fig, ax = plt.subplots(figsize=(8, 0.9 * len(items) + 1.6))
    y = np.arange(len(items))[::-1]
    before_lbl = "Avant (ancien exercice)" if lang == "fr" else "Before (former practice)"
    after_lbl = "Après (ÉQUILIBRES)" if lang == "fr" else "After (ÉQUILIBRES)"
    for row, (_, r) in zip(y, items, strict=True):
        b, a = r.before, r.after
        ax.plot([b.mean, a.mean], [row, row], color="grey", linewidth=2, zorder=1)
        ax.errorbar(b.mean, row + 0.08, xerr=[[b.mean - b.ci_low], [b.ci_high - b.mean]], fmt="o",
                    color="#b2182b", capsize=3, label=before_lbl if row == y[0] else None, zorder=2)
        ax.errorbar(a.mean, row - 0.08, xerr=[[a.mean - a.ci_low], [a.ci_high - a.mean]], fmt="o",
                    color="#2166ac", capsize=3, label=after_lbl if row == y[0] else None, zorder=2)
        sep = "," if lang == "fr" else "."
        ax.text(b.mean, row + 0.28, f"{b.mean:.1f}".replace(".", sep), ha="center", fontsize=8)
        ax.text(a.mean, row + 0.28, f"{a.mean:.1f}".replace(".", sep), ha="center", fontsize=8)
    ax.set_yticks(y, [_wrap(f"{t} (n = {r.n_pairs})", 36) for t, r in items], fontsize=8)
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.7, len(items) - 0.3)
    level = f"{100 * items[0][1].ci_level:g}"
    ax.set_xlabel(f"Note moyenne /10 (IC {level} %)" if lang == "fr" else f"Mean score /10 ({level} % CI)")
    ax.legend(loc="lower left", fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)
