"""Operator settings: environment beats file, and every bad value is named."""

from __future__ import annotations

import pytest

from finetune_operator.errors import UserError
from finetune_operator.settings import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("FINETUNE_"):
            monkeypatch.delenv(key)


def test_defaults():
    settings = load_settings()
    assert settings.namespaces == [] and settings.watches("anything")
    assert settings.limit_for("team-a") == 4
    assert settings.storage_prefix("team-a") is None
    assert settings.rayjob.ray_version == "2.60.0"


def test_environment(monkeypatch):
    monkeypatch.setenv("FINETUNE_NAMESPACES", "team-a, team-b")
    monkeypatch.setenv("FINETUNE_CONCURRENCY_LIMIT", "2")
    monkeypatch.setenv("FINETUNE_NAMESPACE_LIMITS", '{"team-b": 5}')
    monkeypatch.setenv("FINETUNE_STORAGE_PREFIXES", '{"team-a": "s3://team-a/"}')
    monkeypatch.setenv("FINETUNE_PRIORITY_CLASSES", '{"high": 1000}')
    monkeypatch.setenv("FINETUNE_RAYJOB__SERVICE_ACCOUNT", "ray-runner")
    settings = load_settings()
    assert settings.namespaces == ["team-a", "team-b"]
    assert settings.watches("team-a") and not settings.watches("team-c")
    assert settings.limit_for("team-a") == 2 and settings.limit_for("team-b") == 5
    assert settings.storage_prefix("team-a") == "s3://team-a/"
    assert settings.priority_value("high") == 1000 and settings.priority_value("unknown") == 0
    assert settings.rayjob.service_account == "ray-runner"


def test_json_list_of_namespaces(monkeypatch):
    monkeypatch.setenv("FINETUNE_NAMESPACES", '["a", "b"]')
    assert load_settings().namespaces == ["a", "b"]


def test_file_and_environment_override(tmp_path, monkeypatch):
    path = tmp_path / "settings.yaml"
    path.write_text("concurrency_limit: 3\nmetrics_port: 9100\nrayjob:\n  ray_version: 2.59.0\n  shm_ratio: 0.5\n")
    monkeypatch.setenv("FINETUNE_SETTINGS_FILE", str(path))
    monkeypatch.setenv("FINETUNE_METRICS_PORT", "9200")
    monkeypatch.setenv("FINETUNE_RAYJOB__RAY_VERSION", "2.61.0")
    settings = load_settings()
    assert settings.concurrency_limit == 3
    assert settings.metrics_port == 9200
    assert settings.rayjob.ray_version == "2.61.0"
    assert settings.rayjob.shm_ratio == 0.5  # the file's nested value survives the env override


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("FINETUNE_CONCURRENCY_LIMIT", "zero", "FINETUNE_CONCURRENCY_LIMIT"),
    ("FINETUNE_CONCURRENCY_LIMIT", "0", "greater than or equal to 1"),
    ("FINETUNE_METRICS_PORT", "70000", "FINETUNE_METRICS_PORT"),
    ("FINETUNE_NAMESPACE_LIMITS", '{"team-a": 0}', "namespace_limits.team-a"),
    ("FINETUNE_NAMESPACES", "Team_A", "FINETUNE_NAMESPACES"),
    ("FINETUNE_RAYJOB__SHM_RATIO", "2", "FINETUNE_RAYJOB__SHM_RATIO"),
    ("FINETUNE_RAYJOB__IMAGE_PULL_POLICY", "Sometimes", "FINETUNE_RAYJOB__IMAGE_PULL_POLICY"),
    ("FINETUNE_STORAGE_PREFIXES", "s3://x", "storage_prefixes"),
    ("FINETUNE_STORAGE_PREFIXES", '{"a": "s3://x/../y"}', "without '..'"),
])
def test_bad_environment_values_are_named(monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    with pytest.raises(UserError) as caught:
        load_settings()
    assert expected in str(caught.value)


@pytest.mark.parametrize(("content", "expected"), [
    ("concurrency_limit: [1", "not valid YAML"),
    ("- a\n- b\n", "must hold a mapping"),
    ("concurrency_limt: 3\n", "concurrency_limt"),
    ("rayjob:\n  shm_ratio: -1\n", "rayjob.shm_ratio"),
])
def test_bad_files_are_named(tmp_path, content, expected):
    path = tmp_path / "settings.yaml"
    path.write_text(content)
    with pytest.raises(UserError) as caught:
        load_settings(str(path))
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(UserError, match="FINETUNE_SETTINGS_FILE: cannot read"):
        load_settings(str(tmp_path / "absent.yaml"))

