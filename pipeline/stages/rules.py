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

Every rule, and every cohort-flow row, also has a French description (:data:`DESCRIPTIONS_FR`, keyed
by rule name), written to the audit trail's ``description_fr`` column for the report in French.
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
    "stage", "rule", "unit", "rows_in", "rows_out", "rows_dropped", "euros_dropped", "rows_flagged",
    "treated_rows", "control_rows", "description", "source", "description_fr",
]

# What the rows of each stage's audit count. Only counts of people (``persons``, ``cohort_rows``:
# person-periods) fall under the small-cell rule; claim lines, stays and ALD records do not.
STAGE_UNITS = {"ingest": "persons", "ald": "ald_records", "roster": "persons", "dcir": "claim_lines",
               "pmsi": "stays", "deaths": "persons", "cohort": "persons", "eligibility": "cohort_rows"}
PEOPLE_UNITS = frozenset({"persons", "cohort_rows"})

# French description of each rule and cohort-flow row (the English one is the rule's docstring).
# Kept here rather than in the docstrings so the one-line "<what> — <source>" convention stays intact;
# tests/test_report_french.py checks that every registered rule has an entry.
DESCRIPTIONS_FR: dict[str, str] = {
    # ingest
    "death_date_sentinel": "BEN_DCD_DTE = 1600-01-01 signifie vivant ou inconnu, pas une date : mise à vide",
    "birth_year_unknown": "Année de naissance 1600 (ou absente) signifie inconnue : date de naissance mise à vide",
    "birth_year_in_future": "Année de naissance BEN_NAI_ANN postérieure à la fin de la fenêtre des soins (née "
                            "après la fin des données), invraisemblable : date de naissance mise à vide",
    "sex_unknown": "BEN_SEX_COD autre que 1 ou 2 (0, 9) signifie inconnu : mis à vide",
    "corsica_departement_variant": "La Corse codée 201/202 est normalisée en 02A/02B",
    "departement_undetermined": "Département 020/209 (Corse, indéterminé) non localisable : mis à vide",
    "unify_persons": "Une personne ayant plusieurs BEN_NIR_PSA/BEN_RNG_GEM forme un seul person_id (BEN_IDT_ANO, "
                     "sinon BEN_NIR_PSA)",
    # ald
    "ald_link_to_beneficiary": "Lignes d'ALD dont le BEN_NIR_PSA/BEN_RNG_GEM est absent de IR_BEN_R, non "
                               "attribuables : retirées",
    "ald_start_unknown": "Lignes d'ALD sans date de début (IMB_ALD_DTD vide ou 1600-01-01), non situables dans "
                         "le temps : retirées",
    "ald_open_ended": "IMB_ALD_DTF = 1600-01-01 désigne une ALD sans fin : fin mise à vide (active dès son début)",
    "ald_lifetime_2099": "IMB_ALD_DTF = 2099-12-31 désigne une ancienne ALD à vie : conservée, active dès son début",
    "ald_overlapping_renewal": "Un renouvellement ajoute une ligne chevauchant la période précédente de la même "
                               "ALD : les périodes sont réunies",
    # roster
    "roster_link_to_beneficiary": "Lignes de la liste des inclus dont le BEN_NIR_PSA est absent de IR_BEN_R, "
                                  "non reliables aux prestations : retirées",
    "roster_inclusion_unknown": "Lignes de la liste des inclus sans date d'inclusion, sans date index possible : "
                                "retirées",
    "roster_inclusion_outside_study": "Lignes de la liste des inclus dont la date d'inclusion EQL_INC_DTE est hors "
                                      "de [inclusion_start, inclusion_end] (erreur de saisie ou autre "
                                      "expérimentation) : retirées",
    "roster_one_row_per_person": "Une personne inscrite plusieurs fois (plusieurs BEN_NIR_PSA) garde son "
                                 "inclusion la plus ancienne",
    "roster_exit_sentinel": "EQL_SOR_DTE = 1600-01-01 signifie toujours incluse : sortie mise à vide "
                            "(convention des dates sentinelles du SNDS)",
    # dcir
    "dpn_qlf_71": "Lignes DPN_QLF = 71 retirées : activité hospitalière publique transmise pour information "
                  "seulement, payée par ailleurs",
    "bse_prs_nat_0": "Lignes BSE_PRS_NAT = 0 retirées : aucune prestation remboursée derrière la ligne",
    "care_window": "Lignes retirées dont le début des soins EXE_SOI_DTD est absent ou hors de "
                   "[claims_start, claims_end]",
    "flux_window": "Lignes retirées payées dans un mois de flux postérieur à claims_end + flux_lag_months "
                   "(18 mois de flux par année de soins)",
    "care_after_flux": "Lignes retirées dont les soins débutent plus de max_care_after_flux_days jours après leur "
                       "date de flux FLX_DIS_DTD (un flux paie des soins déjà faits)",
    "amount_above_maximum": "Lignes retirées dont le montant remboursé BSE_REM_MNT, en valeur absolue, dépasse le "
                            "maximum plausible de leur catégorie de dépense (montant corrompu)",
    "regularisation_netting": "Lignes identiques (NETTING_KEY) sommées ; seuls les groupes de quantité totale "
                              "> 0 sont gardés",
    "link_to_beneficiary": "Prestations retirées dont le BEN_NIR_PSA/BEN_RNG_GEM est absent de IR_BEN_R (aucune "
                           "personne à qui les attribuer)",
    "cpl_maj_top_not_an_act": "Lignes CPL_MAJ_TOP ≥ 2 (majorations, participations forfaitaires) : comptées en "
                              "euros mais pas comme actes",
    # pmsi
    "stay_outside_hospital_perimeter": "Séjours gardés mais comptés hors du périmètre hospitalier (catégories de "
                                       "cleaning.stay_categories, par préfixe de GHM, p. ex. cataracte 02C05) : "
                                       "témoins négatifs, jamais dans les indicateurs principaux",
    "bad_return_codes": "Séjours retirés dont les codes retour du chaînage (NIR_RET … DAT_RET) ne valent pas "
                        "tous « 0 »",
    "nir_x_filled": "Séjours retirés dont le NIR_ANO_17 est absent ou rempli de x (pas d'identifiant patient "
                    "utilisable)",
    "ghm_90_error": "Séjours retirés groupés en CMD 90 (GRG_GHM « 90… », erreurs de groupage)",
    "duplicate_geographic_finess": "Séjours retirés déclarés sous le FINESS géographique de l'AP-HP, de l'AP-HM "
                                   "ou des HCL (doublons du FINESS juridique)",
    "stay_window": "Séjours retirés sans date de sortie ou se terminant hors de [claims_start, claims_end]",
    "stay_link_to_beneficiary": "Séjours retirés dont le NIR_ANO_17 n'est pas un BEN_NIR_PSA de IR_BEN_R "
                                "(aucune personne à qui les attribuer)",
    "seance": "Séances (CMD 28 : dialyse, chimiothérapie, radiothérapie) tenues à part des séjours complets",
    "stay_not_valued": "Séjours non valorisés (VALO 0 ou absent) : coût nul (MNT_TOT_AM est le montant payé "
                       "par l'Assurance Maladie)",
    # deaths
    "death_before_birth": "Décès daté avant le mois de naissance, impossible : la date de cette source est "
                          "écartée et signalée",
    "death_from_pmsi": "Date de décès prise dans le PMSI (date de sortie avec SOR_MOD = 9) quand IR_BEN_R n'en "
                       "a pas",
    "death_before_last_claim": "Décès suivi de soins plus de death_claim_tolerance_days jours après : signalé "
                               "comme erreur",
    # cohort flow (written by the runner and by matching)
    "extract": "Personnes de l'extraction après unification (traités = personnes reliées à la liste des inclus)",
    "cleaned": "Personnes ayant une ligne de cohorte (traités à l'inclusion ; témoins ayant eu des soins "
               "infirmiers avant une date index candidate)",
    "eligible": "Lignes de cohorte (unités) remplissant tous les critères d'éligibilité",
    "matched": "Lignes gardées par l'appariement : patients ÉQUILIBRES appariés et témoins distincts retenus "
               "(les témoins candidats non retenus et les patients non appariés sont écartés)",
    "unmatched": "Patients ÉQUILIBRES (éligibles à l'inclusion) sans témoin trouvé dans leur strate exacte "
                 "à l'intérieur du caliper (écartés = non appariés)",
    # eligibility (first failing criterion)
    "died_before_index": "Lignes de cohorte dont le premier critère non rempli est : décès avant la date index",
    "unknown_sex": "Lignes de cohorte dont le premier critère non rempli est : sexe inconnu",
    "unknown_age": "Lignes de cohorte dont le premier critère non rempli est : âge inconnu",
    "outside_study_area": "Lignes de cohorte dont le premier critère non rempli est : résidence hors des "
                          "départements de l'étude",
    "insufficient_history": "Lignes de cohorte dont le premier critère non rempli est : historique de données "
                            "insuffisant avant la date index",
    "low_prior_nursing_cost": "Lignes de cohorte dont le premier critère non rempli est : coût infirmier "
                              "antérieur trop faible (témoins)",
}
DISABLED_PREFIX_FR = "(désactivée par la configuration) "


@dataclass(frozen=True)
class Rule:
    """A named cleaning rule: its stage, kind, the function that builds its expression, its source."""

    stage: str
    name: str
    kind: RuleKind
    fn: Callable[..., Any]
    description: str
    source: str
    description_fr: str = ""

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
        r = Rule(stage=stage, name=fn.__name__, kind=kind, fn=fn, description=description, source=source,
                 description_fr=DESCRIPTIONS_FR.get(fn.__name__, ""))
        REGISTRY[(stage, fn.__name__)] = r
        return r

    return decorate


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
    description_fr: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    unit: str = ""

    def __post_init__(self) -> None:
        if not self.unit:
            self.unit = STAGE_UNITS[self.stage]
        # Rows built without a French text (the cohort-flow rows) take it from the rule name.
        if not self.description_fr:
            self.description_fr = DESCRIPTIONS_FR.get(self.rule, "")
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
                   rows_flagged=rows_flagged, description=r.description, source=r.source,
                   description_fr=r.description_fr, **kw)

    def as_record(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return d


# -- fates: one pass for every drop rule of a stage ----------------------------------------------


def fate_expr(table: ir.Table, rules: Sequence[Rule], enabled: Sequence[bool] | None = None,
              **kwargs: Any) -> ir.IntegerValue:
    """The number (1-based) of the first enabled drop rule that drops each row; 0 when kept.

    A rule's null result counts as "not dropped" (a CASE branch whose condition is null is not taken)
    so that a missing value never silently removes a row; rules that must drop nulls say so
    explicitly.
    """
    enabled = list(enabled) if enabled is not None else [True] * len(rules)
    branches = []
    for i, (r, on) in enumerate(zip(rules, enabled, strict=True), start=1):
        if on:
            branches.append((r(table, **kwargs), i))
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
            row.description_fr = DISABLED_PREFIX_FR + row.description_fr
        out.append(row)
        remaining -= dropped
    return out


def with_check_row(table: ir.Table, repeated: ir.Table, fate: int, count_column: str) -> ir.Table:
    """``table`` and one more row carrying an input check made in the same query: ``fate`` (negative,
    so no fate filter of the stages ever selects it), the count ``repeated.repeated`` in
    ``count_column``, every other column null. The stages' audit functions read it apart from the
    rows of their rules (``pipeline.input_checks.repeated_line_keys`` makes ``repeated``)."""
    if fate >= 0:
        raise ValueError(f"a check row needs a negative fate, got {fate}")
    values = {}
    for name, dtype in table.schema().items():
        if name == "fate":
            values[name] = ibis.literal(fate, dtype)
        elif name == count_column:
            values[name] = repeated.repeated.cast(dtype)
        else:
            values[name] = ibis.null(dtype)
    return ibis.union(table, repeated.select(**values), distinct=False)


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
