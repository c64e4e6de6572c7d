"""Notifier settings from env JSON or the YAML file's `notifier:` section; secrets stay secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medic.notifier.channels import default_registry
from medic.notifier.service import build_channels
from medic.notifier.settings import NotifierSettings
from medic.runtime import logging as medic_logging
from medic.runtime.settings import SettingsError


def test_channels_from_env_json(monkeypatch: pytest.MonkeyPatch) -> None:
    channels = [{"name": "ops", "type": "slack", "options": {"webhook_url": "https://h/s/T/B/X"}}]
    monkeypatch.setenv("MEDIC_NOTIFIER_CHANNELS", json.dumps(channels))
    monkeypatch.setenv("MEDIC_NOTIFIER_DIGEST_THRESHOLD", "5")
    settings = NotifierSettings.load()
    assert isinstance(settings, NotifierSettings)
    assert settings.channels[0].name == "ops"
    assert settings.digest_threshold == 5


def test_channels_from_yaml_section(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("xoxb-from-file\n")
    config = tmp_path / "medic.yaml"
    config.write_text(
        f"""
notifier:
  digest_window: 10
  channels:
    - name: platform
      type: slack
      filters: {{outcomes: [failed, escalated], namespaces: ["prod-*"]}}
      templates: {{title: "{{{{ outcome }}}} {{{{ object_display }}}}"}}
      options: {{token_file: {token}, channel: "#platform"}}
    - name: pager
      type: webhook
      default: false
      options: {{url: "https://events.example.com/medic", headers: {{X-Team: sre}}}}
"""
    )
    monkeypatch.setenv("MEDIC_CONFIG", str(config))
    settings = NotifierSettings.load()
    assert isinstance(settings, NotifierSettings)
    assert [c.name for c in settings.channels] == ["platform", "pager"]
    channels = build_channels(settings, default_registry())
    assert channels["platform"].supports_threads


def test_invalid_channel_name_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIC_NOTIFIER_CHANNELS", json.dumps([{"name": "a b", "type": "x"}]))
    with pytest.raises(SettingsError, match="MEDIC_NOTIFIER_CHANNELS"):
        NotifierSettings.load()


def test_channel_secrets_are_never_logged_nor_shown() -> None:
    secret_url = "https://h.example/p/s3cr3t"
    options = {"token": "xoxb-very-secret", "channel": "#o"}
    settings = NotifierSettings(
        channels=[
            {"name": "ops", "type": "slack", "options": options},
            {"name": "hook", "type": "webhook", "options": {"url": secret_url}},
        ]  # type: ignore[list-item]
    )
    assert "xoxb-very-secret" not in repr(settings)
    build_channels(settings, default_registry())
    line = medic_logging.redact_secrets(None, "info", {"event": "x", "detail": f"at {secret_url}"})
    assert "s3cr3t" not in str(line)
    line = medic_logging.redact_secrets(None, "info", {"token": "xoxb-very-secret"})
    assert "xoxb-very-secret" not in str(line)


def test_secrets_from_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-env")
    monkeypatch.setenv("HOOK_KEY", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    settings = NotifierSettings(
        channels=[
            {
                "name": "ops",
                "type": "slack",
                "options": {"token_env": "SLACK_BOT_TOKEN", "channel": "#o"},
            },
            {
                "name": "hook",
                "type": "webhook",
                "options": {"url": "https://h/x", "secret_env": "HOOK_KEY"},
            },
        ]  # type: ignore[list-item]
    )
    channels = build_channels(settings, default_registry())
    assert channels["ops"].supports_threads
    assert channels["hook"].signer is not None  # type: ignore[attr-defined]


def test_a_channel_with_a_missing_secret_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    settings = NotifierSettings(
        channels=[
            {
                "name": "ops",
                "type": "slack",
                "options": {"token_env": "NOT_SET_ANYWHERE", "channel": "#o"},
            }
        ]  # type: ignore[list-item]
    )
    with pytest.raises(SettingsError, match=r"channels\[ops\].*NOT_SET_ANYWHERE"):
        build_channels(settings, default_registry())
