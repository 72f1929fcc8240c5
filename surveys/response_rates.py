"""Survey response rates: AAPOR RR1 (and RR2), the formula named in the result."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from surveys.formatting import Lang, SurveyResult, format_number, small_n_note

RR1_FORMULA = "AAPOR RR1 = I / ((I + P) + (R + NC + O) + (UH + UO))"


@dataclass(frozen=True)
class ResponseRateResult(SurveyResult):
    """AAPOR response rate RR1 (and RR2) of a survey or of one respondent group.

    I = complete interviews, P = partial interviews, R = refusals, NC = non-contacts, O = other
    non-response, UH/UO = unknown eligibility. With only the invited count known, every invited
    non-respondent is a non-response case of unknown reason and RR1 = I / invited.
    """

    group: str
    invited: int | None
    complete: int
    partial: int
    refusals: int | None
    non_contacts: int | None
    other: int | None
    unknown: int | None
    rr1: float | None
    rr2: float | None
    small_n_threshold: int
    formula: str = RR1_FORMULA
    note: str = ""
    method: str = "AAPOR Standard Definitions, RR1 (complete interviews only) and RR2 (with partials)"
    alpha: float | None = None  # a response rate is a count ratio, not a sample estimate: no interval

    @property
    def n(self) -> int:
        return self.invited or 0

    @property
    def small_n_warning(self) -> bool:
        return self.invited is not None and self.invited < self.small_n_threshold

    def summary_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{
            "group": self.group, "invited": self.invited, "complete_I": self.complete, "partial_P": self.partial,
            "refusals_R": self.refusals, "non_contacts_NC": self.non_contacts, "other_O": self.other,
            "unknown_U": self.unknown, "rr1": self.rr1, "rr2": self.rr2, "formula": self.formula,
            "note": self.note, "small_n_warning": self.small_n_warning,
        }])

    def format(self, lang: Lang = "en", decimals: int = 1) -> str:
        if self.rr1 is None:
            return ("taux de réponse non calculable (population invitée non renseignée)" if lang == "fr"
                    else "response rate not computable (invited population not given)")
        pct = format_number(100 * self.rr1, decimals, lang)
        return f"RR1 = {self.complete}/{self.invited} ({pct} %) — {self.formula}"

    def render(self, lang: Lang = "en") -> str:
        s = f"{self.group}: {self.format(lang)}"
        if self.note and self.rr1 is not None:
            s += f" ({self.note})"
        return s + small_n_note(self.n, self.small_n_threshold, lang) if self.invited else s


def response_rate(complete: int, partial: int = 0, *, invited: int | None = None, refusals: int | None = None,
                  non_contacts: int | None = None, other: int | None = None, unknown: int | None = None,
                  group: str = "all", small_n_threshold: int = 30) -> ResponseRateResult:
    """AAPOR RR1 = I / ((I + P) + (R + NC + O) + (UH + UO)); RR2 adds P to the numerator.

    The denominator is the invited count when known (invited cases whose disposition is not given are
    counted as unknown); otherwise the sum of the given dispositions; with neither, no rate.
    """
    known = {"refusals": refusals, "non_contacts": non_contacts, "other": other, "unknown": unknown}
    given = sum(v for v in known.values() if v is not None)
    accounted = complete + partial + given
    notes = []
    if invited is not None:
        if accounted > invited:
            raise ValueError(
                f"response rate of {group!r}: completes + partials + dispositions ({accounted}) exceed the "
                f"invited population ({invited}); check population.invited in the codebook"
            )
        rest = invited - accounted
        if rest:
            unknown = (unknown or 0) + rest
            notes.append(f"{rest} invited without a known disposition counted as non-response (UH/UO)")
        denominator = invited
    elif given:
        denominator = accounted
        notes.append("denominator = sum of the dispositions given (invited count not given)")
    else:
        return ResponseRateResult(group=group, invited=None, complete=complete, partial=partial, refusals=refusals,
                                  non_contacts=non_contacts, other=other, unknown=unknown, rr1=None, rr2=None,
                                  small_n_threshold=small_n_threshold,
                                  note="invited population not given in the codebook")
    return ResponseRateResult(
        group=group, invited=denominator, complete=complete, partial=partial, refusals=refusals,
        non_contacts=non_contacts, other=other, unknown=unknown, rr1=complete / denominator,
        rr2=(complete + partial) / denominator, small_n_threshold=small_n_threshold, note="; ".join(notes),
    )
