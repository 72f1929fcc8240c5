"""The command line: every sub-command has help; user errors give a message and a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from study.cli import app

runner = CliRunner()
COMMANDS = ["generate", "validate", "clean", "match", "sweep", "indicators", "surveys", "report", "run"]


def test_top_level_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_help(name: str):
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_bad_config_is_a_clear_error_not_a_traceback(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[matching]\nratio = -3\n", encoding="utf-8")
    result = runner.invoke(app, ["match", "--out", str(tmp_path / "b"), "--config", str(bad)])
    assert result.exit_code == 2
    assert "matching.ratio" in result.output
    assert "Traceback" not in result.output


def test_cli_override_is_validated(tmp_path: Path):
    result = runner.invoke(app, ["match", "--out", str(tmp_path / "b"), "--caliper", "-1"])
    assert result.exit_code == 2
    assert "matching.caliper" in result.output


def test_run_offers_the_whole_chain_and_its_switches():
    result = runner.invoke(app, ["run", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--no-sweep", "--no-report", "--lang", "--no-pdf", "--force", "--engine"):
        assert option in result.output, option


def test_every_step_has_the_same_entry():
    import inspect

    from indicators import sensitivity
    from indicators import study as indicators_study
    from matching import study as matching_study
    from pipeline import runner as clean_runner
    from study import sweep
    from study.chain import STEPS
    from surveys import study as surveys_study

    entries = [clean_runner.run, matching_study.run, indicators_study.run, surveys_study.run, sweep.run,
               sensitivity.run]
    assert list(STEPS.values()) == entries
    for entry in entries:
        params = inspect.signature(entry).parameters
        assert list(params) == ["paths", "config", "force"], entry.__module__
        assert params["force"].kind is inspect.Parameter.KEYWORD_ONLY and params["force"].default is False


def test_run_stops_before_cleaning_when_the_extract_is_invalid(tmp_path: Path):
    data = tmp_path / "extract"
    data.mkdir()
    (data / "IR_BEN_R.csv").write_text("not;an;extract\n", encoding="utf-8")
    result = runner.invoke(app, ["run", "--data", str(data), "--out", str(tmp_path / "b")])
    assert result.exit_code == 1, result.output
    assert "nothing was cleaned" in " ".join(result.output.split())
    assert not (tmp_path / "b" / "clean").exists()
