"""Named cleaning rules and the audit rows they produce.

A *rule* is a small function with a one-line docstring of the form
``"<what it does> — <SNDS documentation page>"``; the part after the dash is its source, written to
the audit trail. Three kinds exist:

- ``drop`` rules return a boolean expression that is true for rows to drop. A stage combines its
  drop rules into one ``fate`` column (the number of the first rule that drops the row, 0 = kept),
  so that one aggregate by ``fate`` gives every rule's rows and euros in a single pass, and rows
  are attributed to exactly one rule (the first that drops them).
- ``flag`` rules return a boolean expression that is true for rows the rule changes without
  dropping them (sentinel dates turned into nulls, acts not counted, ...); the audit counts them
  in ``rows_flagged``.
- ``merge`` rules (person unification, regularisation netting) turn several rows into one; the
  stage computes their counts itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import ibis
import ibis.expr.types as ir

RuleKind = Literal["drop", "flag", "merge"]

DOC_BASE = "https://documentation-snds.health-data-hub.fr/snds/fiches/"
SCALPEL_BASE = (
    "https://github.com/X-DataInitiative/SCALPEL-Extraction/blob/master/src/main/scala/fr/polytechnique/"
    "cmap/cnam/etl/sources/data/"
)

AUDIT_COLUMNS = [
    "stage", "rule", "rows_in", "rows_out", "rows_dropped", "euros_dropped", "rows_flagged",
    "treated_rows", "control_rows", "description", "source",
]


@dataclass(frozen=True)
class Rule:
    """A named cleaning rule: its stage, kind, the function that builds its expression, its source."""

    stage: str
    name: str
    kind: RuleKind
    fn: Callable[..., Any]
    description: str
    source: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


REGISTRY: dict[tuple[str, str], Rule] = {}


def _split_doc(fn: Callable[..., Any]) -> tuple[str, str]:
    doc = (fn.__doc__ or "").strip()
    if not doc or "\n" in doc or " — " not in doc:
        raise ValueError(
            f"Rule {fn.__name__} needs a one-line docstring '<what it does> — <source page>'; got {doc!r}"
        )
    description, _, source = doc.rpartition(" — ")
    source = source.strip().rstrip(".")
    if source.startswith("fiches/"):
        source = DOC_BASE + source[len("fiches/"):] + ".html"
    elif source.startswith("SCALPEL3 "):
        source = SCALPEL_BASE + source[len("SCALPEL3 "):]
    return description.strip(), source


def rule(stage: str, kind: RuleKind) -> Callable[[Callable[..., Any]], Rule]:
    """Register a function as a named rule of ``stage``; its docstring gives description and source."""

    def decorate(fn: Callable[..., Any]) -> Rule:
        description, source = _split_doc(fn)
        r = Rule(stage=stage, name=fn.__name__, kind=kind, fn=fn, description=description, source=source)
        REGISTRY[(stage, fn.__name__)] = r
        return r

    return decorate


def rules_of(stage: str) -> list[Rule]:
    return [r for (s, _), r in REGISTRY.items() if s == stage]


# -- audit rows ----------------------------------------------------------------------------------


@dataclass
class AuditRow:
    stage: str
    rule: str
    rows_in: int
    rows_out: int
    rows_dropped: int
    euros_dropped: float = 0.0
    rows_flagged: int = 0
    treated_rows: int | None = None
    control_rows: int | None = None
    description: str = ""
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rows_in, self.rows_out, self.rows_dropped = int(self.rows_in), int(self.rows_out), int(self.rows_dropped)
        self.rows_flagged = int(self.rows_flagged)
        self.euros_dropped = round(float(self.euros_dropped or 0.0), 2)
        if self.rows_in != self.rows_out + self.rows_dropped:
            raise AssertionError(
                f"audit row {self.stage}/{self.rule} breaks conservation: rows_in={self.rows_in} "
                f"!= rows_out={self.rows_out} + rows_dropped={self.rows_dropped}"
            )

    @classmethod
    def for_rule(cls, r: Rule, rows_in: int, rows_out: int, euros_dropped: float = 0.0,
                 rows_flagged: int = 0, **kw: Any) -> AuditRow:
        return cls(stage=r.stage, rule=r.name, rows_in=rows_in, rows_out=rows_out,
                   rows_dropped=int(rows_in) - int(rows_out), euros_dropped=euros_dropped,
                   rows_flagged=rows_flagged, description=r.description, source=r.source, **kw)

    def as_record(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return d


# -- fates: one pass for every drop rule of a stage ----------------------------------------------


def fate_expr(table: ir.Table, rules: Sequence[Rule], enabled: Sequence[bool] | None = None,
              **kwargs: Any) -> ir.IntegerValue:
    """The number (1-based) of the first enabled drop rule that drops each row; 0 when kept.

    A rule's null result counts as "not dropped" so that a missing value never silently removes a
    row; rules that must drop nulls say so explicitly.
    """
    enabled = list(enabled) if enabled is not None else [True] * len(rules)
    branches = []
    for i, (r, on) in enumerate(zip(rules, enabled, strict=True), start=1):
        if on:
            branches.append((r(table, **kwargs).fill_null(False), i))
    if not branches:
        return ibis.literal(0, type="int8")
    return ibis.cases(*branches, else_=0).cast("int8")


def audit_from_fates(rules: Sequence[Rule], counts: dict[int, int], euros: dict[int, float],
                     rows_in: int, enabled: Sequence[bool] | None = None) -> list[AuditRow]:
    """Audit rows of a chain of drop rules from per-fate row counts and euros."""
    enabled = list(enabled) if enabled is not None else [True] * len(rules)
    out = []
    remaining = int(rows_in)
    for i, (r, on) in enumerate(zip(rules, enabled, strict=True), start=1):
        dropped = int(counts.get(i, 0))
        row = AuditRow.for_rule(r, rows_in=remaining, rows_out=remaining - dropped,
                                euros_dropped=float(euros.get(i, 0.0) or 0.0))
        if not on:
            row.description = f"(disabled by configuration) {row.description}"
        out.append(row)
        remaining -= dropped
    return out


def flag_row(r: Rule, rows: int, flagged: int) -> AuditRow:
    """An audit row for a rule that changes values without dropping rows."""
    return AuditRow.for_rule(r, rows_in=rows, rows_out=rows, rows_flagged=flagged)


def in_list(col: ir.Value, values: Sequence[Any]) -> ir.BooleanValue:
    """``col IN values``, false for an empty list (an empty code list selects nothing)."""
    if not values:
        return ibis.literal(False)
    return col.isin(list(values))


def month_of(d: ir.DateValue) -> ir.DateValue:
    """First day of the month of a date, as a date on every backend.

    Built from year and month because ``truncate`` returns a timestamp on DuckDB while Ibis still
    types it as a date (so a cast back to date would be elided).
    """
    return ibis.date(d.year().cast("int32"), d.month().cast("int32"), ibis.literal(1, "int32"))
