"""Result tables are declared once (pipeline/result_tables.py): every CSV output has a schema whose
columns carry a kind; the report reads tables through it and formats cells by the declared kind."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.config import StudyConfig, load_config
from pipeline.facts import NoFacts
from pipeline.io import PipelineError
from pipeline.paths import OUTPUTS, BuildPaths
from pipeline.result_tables import KINDS, TABLES, column_kinds, covariate_kind, validate_result
from pipeline.results import StepParams
from reports.build import run
from reports.sections.sensitivity import main_spec
from tests.report_fixture import make_fixture_build


def test_every_csv_output_is_declared_with_known_kinds():
    csv_keys = {o.key for o in OUTPUTS if o.kind == "csv"}
    assert csv_keys == set(TABLES)
    for key, schema in TABLES.items():
        for name, column in schema.columns.items():
            assert column.metadata["kind"] in KINDS, (key, name)


def test_validation_reports_every_failure_at_once():
    frame = pd.DataFrame({"row": ["treated"], "estimate": ["not a number"], "person_note": ["x"]})
    with pytest.raises(PipelineError) as err:
        validate_result("did", frame)
    msg = str(err.value)
    assert "indicators/did.csv" in msg and "person_note" in msg and "estimate" in msg


def test_kinds_come_from_the_declaration_not_the_name():
    kinds = column_kinds("sweep", ["n_treated", "max_abs_smd_after", "eol_hosp_rate", "eol_hosp_rate_ci_low"])
    assert kinds == {"n_treated": "count", "max_abs_smd_after": "smd", "eol_hosp_rate": "indicator",
                     "eol_hosp_rate_ci_low": "indicator"}
    assert column_kinds("unmatched_profiles", ["mean_unmatched_prior_nursing_cost"]) == {
        "mean_unmatched_prior_nursing_cost": "number"}
    assert covariate_kind("prior_nursing_cost") == "eur" and covariate_kind("age") == "number"
    with pytest.raises(PipelineError, match="not declared"):
        column_kinds("did", ["n_people"])


def test_the_report_refuses_an_undeclared_column(tmp_path):
    build = make_fixture_build(tmp_path / "b")
    did = pd.read_csv(build / "indicators/did.csv").assign(mystery=1.0)
    did.to_csv(build / "indicators/did.csv", index=False)
    with pytest.raises(PipelineError, match="mystery"):
        run(BuildPaths(build), load_config(), pdf=False)


def test_a_declared_count_is_masked_below_the_threshold(tmp_path):
    build = make_fixture_build(tmp_path / "b")
    rates = pd.read_csv(build / "surveys/response_rates.csv")
    rates.loc[0, "invited"] = 3  # "invited" is a count of people: it must not show
    rates.to_csv(build / "surveys/response_rates.csv", index=False)
    html = run(BuildPaths(build), load_config().with_overrides({"report": {"lang": "en"}}),
               pdf=False).html_path.read_text(encoding="utf-8")
    table = html[html.find("Response rates"):]
    table = table[:table.find("</table>")]
    assert ">3<" not in table and "&lt;\u00a010" in table


def _matching_params(**matching) -> StepParams:
    cfg = StudyConfig().with_overrides({"matching": matching, "cohort": {"age_band_width": 5}})
    return StepParams(step="match", config=cfg, sections=("cohort", "matching"), facts=NoFacts())


def test_main_specification_is_the_saved_matching():
    sw = pd.DataFrame({"method": ["nearest", "nearest", "optimal"], "caliper": [0.1, 0.2, 0.2],
                       "ratio": [1, 1, 1], "age_band_width": [5, 5, 5], "transform": ["log1p"] * 3,
                       "replace": [False, False, False]})
    assert main_spec(sw, _matching_params(method="nearest", caliper=0.2, ratio=1, transform="log1p")) == 1
    assert main_spec(sw, _matching_params(method="nearest", caliper=0.3)) is None
    assert main_spec(sw, None) is None


def test_arm_values_of_a_spending_share_are_euros_not_percentages():
    from reports.records import arm_unit
    # avoided_spending_share carries each arm's spending per patient-year (e.g. 5 068 € vs 6 735 €)
    assert arm_unit("share", [5067.9, 6735.1]) == "eur_per_patient_year"
    assert arm_unit("share", [0.42, 0.56]) == "share"
    assert arm_unit("relative_difference", [0.42, 0.56]) == "share"
