"""Links between the tables of an extract: the checks `equilibres validate` runs across tables.

Each file is valid on its own, yet the extract can still be unusable: a roster pseudonymised with
another key links no ÉQUILIBRES patient to IR_BEN_R, claims exported for another population link to
nobody, a T_MCOaaC exported from another selection of stays than T_MCOaaB loses those stays. Each
rule below is one link of the SNDS schemas (the foreign keys of ``indsante/schema-snds``) or of the
input contract (docs/CONTRACTS.md §1): the rows of a *child* table must find their row in a *parent*
table, PMSI tables within the same year. A rule counts the child rows without a parent (rows,
distinct keys, euros where the table has amounts), gives examples with masked identifiers, and is

* **refused** when the share of such rows exceeds its threshold (a ``[cleaning]`` setting): cleaning
  would lose them — treated patients, claims, stays — and the evaluation would quietly describe
  another population; a violation, so `equilibres run` stops before cleaning;
* a **note** below it (or always, for a rule without threshold): cleaning drops the rows with an
  audited rule, named in the note, or, where it says so, ignores them.

How: while :mod:`pipeline.contract` reads each file, :class:`LinkKeys` keeps the key columns of every
table some rule joins, aggregated in the validation's DuckDB database (one row per key value and
file, with its row count and euros: a few rows per person, not one per claim line); the rules are
then anti-joins on these small tables. A table with a file that does not read, or whose key columns
do not convert, is left out of the rules (its violations already say why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.config import StudyConfig
from pipeline.contract_spec import IDENTIFIER_COLUMNS, TABLES, TableSpec
from pipeline.plausibility import Finding
from pipeline.readers import mask_identifier, quote_identifier

# Amounts summed with the rows of a child table (euros of the rows that do not link).
EUROS_COLUMN = {"ER_PRS_F": "BSE_REM_MNT", "MCO_VALO": "MNT_TOT_AM"}


@dataclass(frozen=True)
class LinkRule:
    """Rows of ``child`` whose columns ``on`` (child column, parent column) match no row of ``parent``.

    ``limit`` names the ``[cleaning]`` setting above whose share the rule refuses the extract (None:
    only ever a note); ``cleaning`` says what cleaning does with such rows, ``remedy`` what to do,
    ``source`` where the link is documented. ``usable`` (SQL on the child's key columns) restricts the
    rule to the rows it is about."""

    name: str
    child: str
    parent: str
    on: tuple[tuple[str, str], ...]
    unit: str
    limit: str | None
    cleaning: str
    remedy: str
    source: str
    usable: str = "TRUE"

    @property
    def per_year(self) -> bool:
        return TABLES[self.child].per_year and TABLES[self.parent].per_year


_PERSON = (("BEN_NIR_PSA", "BEN_NIR_PSA"), ("BEN_RNG_GEM", "BEN_RNG_GEM"))
_STAY = (("ETA_NUM", "ETA_NUM"), ("RSA_NUM", "RSA_NUM"))
_SAME_EXTRACT = ("export {child} and {parent} from the same extraction (same population, same date), or raise "
                 "{limit} in a --config file if these rows are really meant to be there")

LINK_RULES: tuple[LinkRule, ...] = (
    LinkRule(
        "roster_in_ir_ben_r", "ROSTER", "IR_BEN_R", (("BEN_NIR_PSA", "BEN_NIR_PSA"),), "roster row",
        "max_unlinked_roster_share",
        "cleaning drops them (rule roster_link_to_beneficiary, counted in audit/attrition.csv): these ÉQUILIBRES "
        "patients are lost to the evaluation",
        "export the roster with the pseudonymised identifiers of this SNDS extract (same pseudonymisation key), "
        "or add these patients to the IR_BEN_R extraction",
        "docs/CONTRACTS.md §1 (EQUILIBRES_ROSTER.BEN_NIR_PSA is an IR_BEN_R BEN_NIR_PSA); fiches/fiche_beneficiaire"),
    LinkRule(
        "claims_in_ir_ben_r", "ER_PRS_F", "IR_BEN_R", _PERSON, "line", "max_unlinked_share",
        "cleaning drops them with their euros (rule link_to_beneficiary, counted in audit/attrition.csv)",
        _SAME_EXTRACT,
        "schema-snds schemas/DCIR/ER_PRS_F.json (foreign key BEN_NIR_PSA, BEN_RNG_GEM → IR_BEN_R)"),
    LinkRule(
        "ald_in_ir_ben_r", "IR_IMB_R", "IR_BEN_R", _PERSON, "ALD row", "max_unlinked_share",
        "cleaning drops them (rule ald_link_to_beneficiary, counted in audit/attrition.csv)",
        _SAME_EXTRACT,
        "schema-snds schemas/DCIR_DCIRS/IR_IMB_R.json (foreign key BEN_NIR_PSA, BEN_RNG_GEM → IR_BEN_R)"),
    LinkRule(
        "stay_links_in_mco_b", "MCO_C", "MCO_B", _STAY, "T_MCOaaC row", "max_unlinked_share",
        "cleaning starts from the stays of T_MCOaaB, so these rows are ignored and their stays lost, without a "
        "count in audit/attrition.csv",
        "export T_MCOaaB and T_MCOaaC of each year from the same selection of stays, or raise {limit} in a "
        "--config file",
        "schema-snds schemas/PMSI/PMSI MCO/T_MCOaaC.json (foreign key ETA_NUM, RSA_NUM → T_MCOaaB, both ways); "
        "fiches/requete_type_pmsi_mco"),
    LinkRule(
        "stays_in_mco_c", "MCO_B", "MCO_C", _STAY, "stay", "max_unlinked_share",
        "these stays have no patient nor dates: cleaning drops them (first rule bad_return_codes, else "
        "nir_x_filled, counted in audit/attrition.csv)",
        "export T_MCOaaB and T_MCOaaC of each year from the same selection of stays, or raise {limit} in a "
        "--config file",
        "schema-snds schemas/PMSI/PMSI MCO/T_MCOaaC.json (foreign key ETA_NUM, RSA_NUM → T_MCOaaB, both ways); "
        "fiches/requete_type_pmsi_mco"),
    LinkRule(
        "stay_costs_in_mco_b", "MCO_VALO", "MCO_B", _STAY, "T_MCOaaVALO row", "max_unlinked_share",
        "cleaning costs the stays of T_MCOaaB, so these amounts reach no stay (ignored, not counted in "
        "audit/attrition.csv)",
        "export T_MCOaaVALO and T_MCOaaB of each year from the same selection of stays, or raise {limit} in a "
        "--config file",
        "schema-snds schemas/PMSI/PMSI MCO/T_MCOaaVALO.json (foreign key ETA_NUM, RSA_NUM → T_MCOaaB)"),
    # PMSI linkage through NIR_ANO_17 is imperfect by nature (return codes): a note, never a refusal.
    LinkRule(
        "stay_patients_in_ir_ben_r", "MCO_C", "IR_BEN_R", (("NIR_ANO_17", "BEN_NIR_PSA"),), "T_MCOaaC row", None,
        "cleaning drops these stays (rule stay_link_to_beneficiary, or an earlier PMSI rule, counted in "
        "audit/attrition.csv)",
        "check that T_MCOaaC and IR_BEN_R come from the same extraction",
        "schema-snds schemas/PMSI/PMSI MCO/T_MCOaaC.json (foreign key NIR_ANO_17 → IR_BEN_R.BEN_NIR_PSA); "
        "fiches/fiche_beneficiaire",
        # x-filled or missing identifiers are rule nir_x_filled's, not a broken link.
        usable="NIR_ANO_17 IS NOT NULL AND REPLACE(UPPER(TRIM(NIR_ANO_17)), 'X', '') <> ''"),
)


def key_columns(key: str) -> list[str]:
    """The columns of table ``key`` some rule joins on, in contract order."""
    needed = {c for r in LINK_RULES if r.child == key for c, _ in r.on}
    needed |= {p for r in LINK_RULES if r.parent == key for _, p in r.on}
    return [c for c in TABLES[key].names if c in needed]


def _table(key: str) -> str:
    return f"link_keys_{key.lower()}"


class LinkKeys:
    """The key columns of the tables the link rules join, collected file by file during validation.

    ``add`` runs on the typed table of one file (a DuckDB table named ``typed`` in ``con``); ``expect``
    says how many files each table has, so that a table with a file left out (unreadable, key columns
    that do not convert) is not joined."""

    def __init__(self, con: Any) -> None:
        self.con = con
        self.expected: dict[str, int] = {}
        self.added: dict[str, int] = {}
        self.files: dict[str, list[str]] = {}

    def expect(self, key: str, n_files: int) -> None:
        self.expected[key] = n_files

    def add(self, spec: TableSpec, typed: str, columns: list[str], file: str, year: int | None) -> None:
        """Keep the key columns of one file (``columns``: those that converted)."""
        cols = key_columns(spec.key)
        if not cols or not set(cols) <= set(columns):
            return
        euros = EUROS_COLUMN.get(spec.key)
        euros_sql = f"SUM({quote_identifier(euros)})" if euros in columns else "CAST(NULL AS DOUBLE)"
        names = self.files.setdefault(spec.key, [])
        keys = ", ".join(quote_identifier(c) for c in cols)
        select = (f"SELECT {keys}, {'NULL' if year is None else int(year)}::INTEGER AS _year, {len(names)}::INTEGER "
                  f"AS _file, COUNT(*)::BIGINT AS _n, {euros_sql}::DOUBLE AS _euros FROM {typed} GROUP BY {keys}")
        if not names:
            self.con.execute(f"CREATE OR REPLACE TABLE {_table(spec.key)} AS {select}")
        else:
            self.con.execute(f"INSERT INTO {_table(spec.key)} {select}")
        names.append(file)
        self.added[spec.key] = self.added.get(spec.key, 0) + 1

    def complete(self, key: str) -> bool:
        return self.expected.get(key, 0) > 0 and self.added.get(key, 0) == self.expected[key]

    def findings(self, config: StudyConfig, k: int = 3, *, notes: bool = True) -> list[Finding]:
        """Every rule whose two tables were read in full: refusals, and (``notes``) the notes."""
        out: list[Finding] = []
        for rule in LINK_RULES:
            if self.complete(rule.child) and self.complete(rule.parent):
                f = self._run(rule, config, k)
                if f is not None and (notes or f.refuse):
                    out.append(f)
        return out

    def _run(self, rule: LinkRule, config: StudyConfig, k: int) -> Finding | None:
        child, parent = _table(rule.child), _table(rule.parent)
        cols = [c for c, _ in rule.on]
        keys = ", ".join(f"c.{quote_identifier(c)}" for c in cols)
        match = " AND ".join(f"p.{quote_identifier(pc)} = c.{quote_identifier(cc)}" for cc, pc in rule.on)
        if rule.per_year:
            match += " AND p._year = c._year"
            keys = "c._year, " + keys
        unlinked = (f"FROM {child} c WHERE ({rule.usable}) AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {match}) "
                    f"GROUP BY {keys}")
        total, = self.con.execute(f"SELECT COALESCE(SUM(_n), 0) FROM {child} WHERE {rule.usable}").fetchone()
        n_keys, n_rows, euros = self.con.execute(
            f"SELECT COUNT(*), COALESCE(SUM(n), 0), SUM(e) FROM (SELECT SUM(c._n) AS n, SUM(c._euros) AS e {unlinked})"
        ).fetchone()
        if not n_rows:
            return None
        examples = self._examples(rule, cols, unlinked, keys, k)
        share = n_rows / total if total else 1.0
        limit = None if rule.limit is None else float(getattr(config.cleaning, rule.limit))
        refuse = limit is not None and share > limit
        child_label, parent_label = TABLES[rule.child].label, TABLES[rule.parent].label
        columns = "/".join(cols)
        what = (f"{n_rows:,} of {total:,} {rule.unit}s ({100.0 * share:.1f} %; {n_keys:,} distinct "
                f"{columns}{' and year' if rule.per_year else ''}"
                f"{f', {euros:,.2f} €' if euros is not None else ''}) have a {columns} that {parent_label} "
                f"does not hold{' in the same year' if rule.per_year else ''}")
        if limit is None:
            verdict = "a note (this rule never refuses):"
        elif refuse:
            verdict = f"above [cleaning] {rule.limit} = {limit:.0%}: refused, because"
        else:
            verdict = f"within [cleaning] {rule.limit} = {limit:.0%}, so not refused:"
        remedy = rule.remedy.format(child=child_label, parent=parent_label, limit=rule.limit)
        hint = f"{what}; {verdict} {rule.cleaning}. To fix: {remedy}. Link: {rule.source}."
        files = self.files[rule.child]
        where = files[0] if len(files) == 1 else f"{len(files)} files of {child_label}"
        return Finding(where, child_label, "+".join(cols), rule.name, int(n_rows), examples, hint, refuse=refuse)

    def _examples(self, rule: LinkRule, cols: list[str], unlinked: str, keys: str, k: int) -> list[dict[str, Any]]:
        rows = self.con.execute(
            f"SELECT {keys}, SUM(c._n) AS n, LIST(DISTINCT c._file ORDER BY c._file) {unlinked} "
            f"ORDER BY n DESC, {keys} LIMIT {int(k)}").fetchall()
        names = self.files[rule.child]
        out = []
        for r in rows:
            values = list(r[:-2])
            ex: dict[str, Any] = {}
            if rule.per_year:
                ex["year"] = values.pop(0)
            for c, v in zip(cols, values, strict=True):
                ex[c] = "NULL" if v is None else mask_identifier(v) if c in IDENTIFIER_COLUMNS else repr(v)
            ex[f"{rule.unit}s"] = r[-2]
            ex["file"] = " and ".join(names[i] for i in r[-1])
            out.append(ex)
        return out
