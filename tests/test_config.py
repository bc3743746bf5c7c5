"""Configuration: schema defaults, one-line errors naming the key, architecture names, run settings."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import ROOT, SCHEMA, tiny_config

from fasflow.config import check_architecture, check_architectures, run_settings, study_settings, timm_architectures, validate_config
from fasflow.errors import ConfigError

PAPER = yaml.safe_load((ROOT / "config/config.yaml").read_text())


def test_defaults_come_from_the_schema():
    config = copy.deepcopy(PAPER)
    config["scenarios"]["S4"] = {"distill": True}  # a new scenario names only what differs
    del config["evaluate"]["batch_size"]
    validate_config(config, SCHEMA)
    assert config["scenarios"]["S4"]["lr"] == 1e-4 and config["scenarios"]["S4"]["alpha"] == 0.6
    assert config["evaluate"]["batch_size"] == 64
    assert config["tune"]["search_space"]["dropout"]["log"] is False
    # Defaults are copies: filling one config does not change another's lists.
    first, second = copy.deepcopy(PAPER), copy.deepcopy(PAPER)
    for c in (first, second):
        del c["evaluate"]["bpcer_at_apcer"]
        validate_config(c, SCHEMA)
    first["evaluate"]["bpcer_at_apcer"].append(0.2)
    assert second["evaluate"]["bpcer_at_apcer"] == [0.01, 0.05, 0.10]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"train": {"batch_size": "many"}}, "config key train.batch_size: 'many' is not of type 'integer' (got 'many')"),
        ({"subset": {"n_imagez": 3}}, "config key subset: Additional properties are not allowed ('n_imagez' was unexpected)"),
        ({"scenarios": {"S1": {"lr": -1}}}, "config key scenarios.S1.lr:"),
        ({"teacher": {"distill": True}}, "('distill' was unexpected)"),
    ],
)
def test_schema_errors_are_one_line_naming_the_key(change, message):
    config = copy.deepcopy(PAPER)
    for section, values in change.items():
        for key, value in values.items():
            if isinstance(value, dict):
                config[section][key].update(value)
            else:
                config[section][key] = value
    with pytest.raises(ConfigError) as info:
        validate_config(config, SCHEMA)
    text = str(info.value)
    assert message in text
    assert "\n" not in text and len(text) < 400  # not a dump of the whole configuration


def test_architecture_names_are_checked_with_the_nearest_valid_names():
    known = timm_architectures()
    assert "mobilenetv2_100" in known and "efficientnet_b0" in known
    check_architectures(tiny_config(), known)
    with pytest.raises(ConfigError, match=r"models.student: 'mobilenetv2_10' is not a timm architecture; nearest: .*mobilenetv2_100"):
        check_architecture("mobilenetv2_10", "models.student", known)


def test_architecture_list_is_cached_per_timm_version(tmp_path):
    first = timm_architectures(tmp_path)
    cached = list(tmp_path.glob("timm-*-architectures.txt"))
    assert len(cached) == 1 and cached[0].read_text().split() == first
    cached[0].write_text("only_this_one\n")  # the cache, not timm, answers the second time
    assert timm_architectures(tmp_path) == ["only_this_one"]


def test_run_settings_hold_only_what_a_run_depends_on():
    config = tiny_config()
    teacher = run_settings(config, "teacher")
    assert teacher["arch"] == config["models"]["teacher"] and teacher["hyperparameters"]["distill"] is False
    s3 = study_settings(config, "S3")
    assert s3["arch"] == config["models"]["student"] and s3["hyperparameters"] is config["scenarios"]["S3"]
    assert s3["tune"] is config["tune"] and set(s3) == {"arch", "train", "hyperparameters", "tune"}


def test_without_timm_where_snakemake_runs_the_check_is_left_to_the_jobs(monkeypatch):
    import importlib.metadata

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    with pytest.warns(UserWarning, match="timm is not installed"):
        check_architectures(tiny_config())
