"""Settings come from env and a YAML file; a wrong value names the variable to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from medic.runtime.settings import CONFIG_ENV, RuntimeSettings, SettingsError


def test_defaults_need_no_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    settings = RuntimeSettings.load()
    assert isinstance(settings, RuntimeSettings)
    assert settings.cluster == "local"
    assert settings.nats.urls == []
    assert settings.nats.ping_interval == 15.0


def test_env_overrides_with_nested_delimiter_and_comma_lists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEDIC_CLUSTER", "prod-eu")
    monkeypatch.setenv("MEDIC_NATS__URLS", "nats://a:4222, nats://b:4222")
    monkeypatch.setenv("MEDIC_NATS__PASSWORD", "hunter2-secret")
    settings = RuntimeSettings.load()
    assert isinstance(settings, RuntimeSettings)
    assert settings.cluster == "prod-eu"
    assert settings.nats.urls == ["nats://a:4222", "nats://b:4222"]
    assert "hunter2-secret" not in repr(settings)
    assert settings.secrets() == ["hunter2-secret"]


def test_yaml_file_is_read_and_env_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "medic.yaml"
    config.write_text("cluster: from-file\nnats:\n  urls: [nats://file:4222]\nlog_level: debug\n")
    monkeypatch.setenv(CONFIG_ENV, str(config))
    monkeypatch.setenv("MEDIC_CLUSTER", "from-env")
    settings = RuntimeSettings.load()
    assert isinstance(settings, RuntimeSettings)
    assert settings.cluster == "from-env"
    assert settings.nats.urls == ["nats://file:4222"]
    assert settings.log_level == "debug"


def test_wrong_value_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIC_NATS__PING_INTERVAL", "soon")
    with pytest.raises(SettingsError) as caught:
        RuntimeSettings.load()
    assert "MEDIC_NATS__PING_INTERVAL" in str(caught.value)


def test_cluster_must_be_a_subject_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIC_CLUSTER", "prod.eu")
    with pytest.raises(SettingsError) as caught:
        RuntimeSettings.load()
    assert "MEDIC_CLUSTER" in str(caught.value)
