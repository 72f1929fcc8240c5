"""A verdict per headline: pass or fail on five checks, each with its reason (thresholds in the
``[sensitivity]`` section of the study TOML).

* balance: max |SMD| after matching ≤ ``max_abs_smd`` (matching/balance.csv);
* overlap: share of eligible ÉQUILIBRES patients with a control ≥ ``min_matched_share``;
* pre-trends: the event study's pre-trend test p ≥ ``pretrend_alpha``;
* negative controls: no systematic error detected — fails when the mean systematic error exceeds
  ``max_systematic_error`` in absolute value *and* its interval excludes 0 (a large but imprecise
  mean, on few or sparse negative controls, is noise, not evidence of bias);
* power: minimum detectable effect ≤ ``min_effect_of_interest[headline]``.

The verdict is "pass" when every check passes, "fail" when one fails, and "incomplete" when none
fails but one could not be judged (its input missing): a verdict never passes on a missing check.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

CHECKS = ("balance", "overlap", "pretrends", "negative_controls", "power")


@dataclass(frozen=True)
class Check:
    """One check of a headline: its value, the threshold, whether it passed (None: not judged), why."""

    name: str
    value: float | None
    threshold: float | None
    passed: bool | None
    reason: str


def at_most(name: str, value: float | None, threshold: float | None, what: str) -> Check:
    """A check that passes when ``value`` ≤ ``threshold``."""
    if value is None or threshold is None:
        missing = what if value is None else f"no threshold for {what}"
        return Check(name, value, threshold, None, f"{name}: not judged ({missing} unavailable)")
    ok = value <= threshold
    return Check(name, value, threshold, ok, f"{name}: {what} = {value:.3g} {'≤' if ok else '>'} {threshold:.3g}")


def at_least(name: str, value: float | None, threshold: float | None, what: str) -> Check:
    """A check that passes when ``value`` ≥ ``threshold``."""
    if value is None or threshold is None:
        missing = what if value is None else f"no threshold for {what}"
        return Check(name, value, threshold, None, f"{name}: not judged ({missing} unavailable)")
    ok = value >= threshold
    return Check(name, value, threshold, ok, f"{name}: {what} = {value:.3g} {'≥' if ok else '<'} {threshold:.3g}")


def negative_control_check(mean: float | None, ci: tuple[float | None, float | None] | None,
                           threshold: float | None) -> Check:
    """Fails when the negative controls show a systematic error both material (|mean| > threshold) and
    distinguishable from 0 (its interval excludes 0); passes otherwise; not judged without them."""
    check = at_most("negative_controls", None if mean is None else abs(mean), threshold,
                    "|mean systematic error| of negative controls")
    lo, hi = ci if ci is not None else (None, None)
    if check.passed is False and lo is not None and hi is not None and lo <= 0 <= hi:
        return Check("negative_controls", check.value, threshold, True,
                     f"negative_controls: |mean systematic error| = {check.value:.3g} > {threshold:.3g} "
                     f"but its interval [{lo:.3g}; {hi:.3g}] contains 0")
    return check


@dataclass(frozen=True)
class Verdict:
    """The verdict of one headline and the checks behind it."""

    id: str
    checks: tuple[Check, ...]

    @property
    def verdict(self) -> str:
        states = [c.passed for c in self.checks]
        if any(s is False for s in states):
            return "fail"
        return "pass" if all(s is True for s in states) else "incomplete"

    @property
    def reasons(self) -> list[str]:
        """Why: the failed checks first, then those not judged, then those passed."""
        order = {False: 0, None: 1, True: 2}
        return [c.reason for c in sorted(self.checks, key=lambda c: order[c.passed])]

    def summary_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"id": self.id, "check": c.name, "value": c.value, "threshold": c.threshold,
                              "passed": c.passed, "reason": c.reason} for c in self.checks])


def headline_verdict(id: str, *, max_abs_smd: float | None, matched_share: float | None,
                     pretrend_p: float | None, systematic_error: float | None, mde: float | None,
                     thresholds: dict[str, float | None],
                     systematic_error_ci: tuple[float | None, float | None] | None = None) -> Verdict:
    """The five checks of one headline. ``thresholds``: max_abs_smd, min_matched_share, pretrend_alpha,
    max_systematic_error, min_effect (the headline's smallest effect of interest)."""
    return Verdict(id, (
        at_most("balance", max_abs_smd, thresholds["max_abs_smd"], "max |SMD| after matching"),
        at_least("overlap", matched_share, thresholds["min_matched_share"], "share of treated matched"),
        at_least("pretrends", pretrend_p, thresholds["pretrend_alpha"], "pre-trend test p-value"),
        negative_control_check(systematic_error, systematic_error_ci, thresholds["max_systematic_error"]),
        at_most("power", mde, thresholds["min_effect"], "minimum detectable effect"),
    ))
