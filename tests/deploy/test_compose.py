"""docker-compose.yml and the Dockerfile stay consistent with the CLI and the settings.

No Docker engine runs here, so they are kept correct by reading them.
"""

from __future__ import annotations

from pathlib import Path

import typer.main
import yaml

from medic.cli import app
from medic.runtime.settings import RuntimeSettings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, object]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def test_every_service_runs_a_medic_command_that_exists() -> None:
    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    services = compose()["services"]
    assert isinstance(services, dict)
    medic = {name: spec for name, spec in services.items() if name != "nats"}
    assert set(medic) == {"watcher", "remediator", "notifier"}
    for name, spec in medic.items():
        assert spec["command"][0] in commands, name
        assert "/readyz" in " ".join(spec["healthcheck"]["test"]), name
        assert spec["depends_on"]["nats"]["condition"] == "service_healthy"


def test_environment_names_map_to_settings() -> None:
    services = compose()["services"]
    assert isinstance(services, dict)
    nested = {
        "NATS": RuntimeSettings.model_fields["nats"].annotation,
        "KUBE": RuntimeSettings.model_fields["kube"].annotation,
    }
    for spec in services.values():
        for key in spec.get("environment") or {}:
            if not key.startswith("MEDIC_") or key.startswith(
                ("MEDIC_REMEDIATOR_", "MEDIC_NOTIFIER_")
            ):
                continue
            name = key.removeprefix("MEDIC_")
            if "__" in name:
                section, field = name.split("__", 1)
                model = nested[section]
                assert field.lower() in model.model_fields, key  # type: ignore[union-attr]
            else:
                assert name.lower() in RuntimeSettings.model_fields, key


def test_nats_runs_jetstream_with_a_persistent_volume_and_a_sync_interval() -> None:
    services = compose()["services"]
    assert isinstance(services, dict)
    assert "nats-data:/data" in services["nats"]["volumes"]
    config = (ROOT / "deploy" / "nats" / "nats.conf").read_text()
    assert "jetstream" in config
    assert "sync_interval" in config


def test_image_runs_medic_as_non_root_with_a_healthcheck() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["medic"]' in dockerfile
    assert "USER 10001" in dockerfile
    assert "/healthz" in dockerfile
    assert "MEDIC_HEALTH__HOST=0.0.0.0" in dockerfile
