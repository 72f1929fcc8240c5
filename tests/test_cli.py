"""The command line: every sub-command has help; user errors give a message and a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app

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
