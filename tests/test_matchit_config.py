"""The MatchIt-compatibility settings reach the Matcher from the study TOML, the `equilibres match` options
and the sweep; left at their defaults they change nothing in what is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from matching.study import matcher_from_config
from pipeline.config import load_config
from study import sweep
from study.cli import app

MATCHIT = {"method": "propensity", "ps_covariates": ["age", "ald"], "ps_model": "glm", "ps_scale": "probability",
           "order": "largest", "caliper_scale": "sd_all", "discard": "both"}


def test_defaults_are_not_written_and_fingerprints_do_not_move():
    config = load_config()
    dumped = config.to_dict()["matching"]
    assert not {"ps_covariates", "ps_model", "ps_scale", "discard"} & dumped.keys()
    m = matcher_from_config(config)
    assert (m.ps_model, m.ps_scale, m.discard, m.ps_covariates, m.order) == ("penalised", "logit", "none", None,
                                                                             "closest")
    # setting a key to its default is the same configuration
    same = config.with_overrides({"matching": {"ps_model": "penalised", "discard": "none"}})
    assert same.fingerprint("matching") == config.fingerprint("matching")


def test_toml_keys_reach_the_matcher_and_params(tmp_path: Path):
    toml = tmp_path / "study.toml"
    toml.write_text('[matching]\nmethod = "propensity"\nps_covariates = ["age", "ald"]\nps_model = "glm"\n'
                    'ps_scale = "probability"\norder = "largest"\ncaliper_scale = "sd_all"\ndiscard = "both"\n',
                    encoding="utf-8")
    config = load_config(toml)
    m = matcher_from_config(config)
    assert {k: getattr(m, k) for k in MATCHIT} == MATCHIT
    dumped = config.to_dict()["matching"]
    assert {k: dumped[k] for k in MATCHIT} == MATCHIT  # params.json records what was used


def test_cli_options_reach_the_matcher(tmp_path: Path, monkeypatch):
    seen = {}

    def fake_run_step(paths, config, name, **_):
        seen["matcher"] = matcher_from_config(config)

        class Done:
            def render(self) -> str:
                return "ok"
        return Done()

    monkeypatch.setattr("study.chain.run_step", fake_run_step)
    result = CliRunner().invoke(app, [
        "match", "--out", str(tmp_path / "b"), "--method", "propensity", "--ps-covariates", "age, ald",
        "--ps-model", "glm", "--ps-scale", "probability", "--order", "largest", "--caliper-scale", "sd_all",
        "--discard", "both"])
    assert result.exit_code == 0, result.output
    m = seen["matcher"]
    assert {k: getattr(m, k) for k in MATCHIT} == MATCHIT


@pytest.mark.parametrize("option,value,key", [("--ps-model", "lasso", "matching.ps_model"),
                                              ("--discard", "all", "matching.discard"),
                                              ("--order", "biggest", "matching.order")])
def test_cli_values_are_validated(tmp_path: Path, option, value, key):
    result = CliRunner().invoke(app, ["match", "--out", str(tmp_path / "b"), option, value])
    assert result.exit_code == 2
    assert key in result.output


def test_sweep_specifications_keep_the_matchit_settings():
    config = load_config().with_overrides({"matching": MATCHIT})
    specs, _ = sweep.sweep_specs(config)
    for spec in specs:
        m = matcher_from_config(sweep.spec_config(config, spec))
        assert (m.ps_model, m.ps_scale, m.order, m.caliper_scale, m.discard) == ("glm", "probability", "largest",
                                                                                 "sd_all", "both")
        assert m.method == spec["method"]
