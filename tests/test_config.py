"""The study configuration: defaults load, user files merge over them, bad keys are rejected clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.config import DEFAULT_CONFIG_PATH, ConfigError, load_config, write_params


def test_default_config_has_every_section_and_study_specifics():
    cfg = load_config()
    assert cfg.study.name == "ÉQUILIBRES"
    assert set(cfg.study.regions) == {"Île-de-France", "Hauts-de-France", "Occitanie"}
    assert "075" in cfg.study.departements and "031" in cfg.study.departements
    assert cfg.cleaning.experiment.prs_nat_ref == [9951]
    assert cfg.published["eol_hosp_rate"] == pytest.approx(-0.21)
    assert cfg.matching.method == "nearest"
    # every codebook named by the study exists beside the configuration
    for path in cfg.codebook_paths():
        assert path.exists(), path


def test_user_file_merges_over_defaults(tmp_path: Path):
    user = tmp_path / "study.toml"
    user.write_text('[matching]\nratio = 3\ncaliper = 0.25\n[report]\nlang = "en"\n', encoding="utf-8")
    cfg = load_config(user)
    assert cfg.matching.ratio == 3
    assert cfg.matching.caliper == pytest.approx(0.25)
    assert cfg.report.lang == "en"
    # untouched keys keep the defaults
    assert cfg.matching.method == "nearest"
    assert cfg.study.claims_start.year == 2019


def test_unknown_key_is_rejected_with_its_name(tmp_path: Path):
    user = tmp_path / "bad.toml"
    user.write_text("[matching]\ncalliper = 0.2\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(user)
    msg = str(err.value)
    assert "matching.calliper" in msg and "unknown key" in msg and str(user) in msg


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[matching]\ncaliper = -0.2\n", "matching.caliper"),
        ("[matching]\nratio = 0\n", "matching.ratio"),
        ('[matching]\nmethod = "magic"\n', "matching.method"),
        ("[report]\nmin_cell_count = 0\n", "report.min_cell_count"),
        ('[study.regions]\nX = ["75"]\n', "study.regions"),
        ("[study]\ninclusion_start = 2024-01-01\ninclusion_end = 2023-01-01\n", "study"),
    ],
)
def test_out_of_range_values_are_rejected(tmp_path: Path, toml: str, key: str):
    user = tmp_path / "bad.toml"
    user.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(user)
    assert key in str(err.value)


def test_invalid_toml_and_missing_file_say_what_to_do(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[matching\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


def test_overrides_and_fingerprint():
    cfg = load_config()
    other = cfg.with_overrides({"matching": {"ratio": 2, "caliper": None}})
    assert other.matching.ratio == 2
    assert other.matching.caliper == cfg.matching.caliper  # None means "not given"
    assert cfg.fingerprint("matching") != other.fingerprint("matching")
    assert cfg.fingerprint("cleaning") == other.fingerprint("cleaning")
    with pytest.raises(ConfigError, match="matching.ratio"):
        cfg.with_overrides({"matching": {"ratio": -1}})


def test_write_params_records_the_parameters_used(tmp_path: Path):
    cfg = load_config().with_overrides({"matching": {"ratio": 4}})
    out = tmp_path / "params.json"
    write_params(cfg, out, sections=["matching"], n_treated=12)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["matching"]["ratio"] == 4 and data["n_treated"] == 12


def test_default_file_is_the_packaged_one():
    assert DEFAULT_CONFIG_PATH.name == "equilibres.toml" and DEFAULT_CONFIG_PATH.exists()
