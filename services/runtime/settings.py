"""Settings from environment variables (prefix `MEDIC_`) and an optional YAML file.

Precedence: init args > environment > the file named by `MEDIC_CONFIG` > defaults. Nested fields
use `__` (`MEDIC_NATS__URLS`). Each service adds its own section class (`MEDIC_WATCHER_...`) by
subclassing `SectionSettings`; this module owns only what every service shares. A wrong value
raises `SettingsError` naming the variable, so start-up stops with a clear message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from medic.runtime.subjects import check_token

CONFIG_ENV = "MEDIC_CONFIG"


class SettingsError(ValueError):
    """A setting is invalid; names the environment variable (or file key) to fix."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid settings:\n  " + "\n  ".join(errors))
        self.errors = errors


def split_list(value: Any) -> Any:
    """Accept `a,b,c` as well as a JSON list or a YAML list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return yaml.safe_load(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


CommaList = Annotated[list[str], NoDecode]


class NatsSettings(BaseModel):
    """How to reach NATS. Defaults follow runtime-facts.md: reconnect forever, ping every 15 s."""

    urls: CommaList = Field(default_factory=list, description="Empty: embedded nats-server.")
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    nkey_seed_file: Path | None = None
    creds_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    connect_timeout: float = Field(default=5.0, gt=0)
    ping_interval: float = Field(default=15.0, gt=0)
    max_outstanding_pings: int = Field(default=2, ge=1)
    reconnect_wait: float = Field(default=1.0, gt=0)
    stream_replicas: int = Field(default=1, ge=1, le=5)
    duplicate_window: float = Field(default=600.0, gt=0, description="Seconds of msg-id dedup.")
    embedded_data_dir: Path = Path(".medic/nats")

    _split = field_validator("urls", mode="before")(split_list)


class KubeSettings(BaseModel):
    kubeconfig: Path | None = Field(default=None, description="None: in-cluster, else sandbox.")
    context: str | None = None
    in_cluster: bool = False
    qps: float = Field(default=20.0, gt=0)
    burst: int = Field(default=50, ge=1)
    connections: int = Field(
        default=100,
        ge=1,
        description="HTTP connections to the API server at most, i.e. requests in flight (a "
        "watch holds one); more wait in the client. Raise it with `qps` and the remediator's "
        "`concurrency` for bursts of thousands of fixes.",
    )
    request_timeout: float = Field(default=30.0, gt=0)


class HealthSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


class _YamlSection(PydanticBaseSettingsSource):
    """Reads one section (or the root) of the file named by MEDIC_CONFIG."""

    def __init__(self, settings_cls: type[BaseSettings], section: str | None) -> None:
        super().__init__(settings_cls)
        self.section = section

    def get_field_value(
        self,
        field: Any,  # noqa: ARG002 - interface
        field_name: str,
    ) -> tuple[Any, str, bool]:
        return None, field_name, False  # pragma: no cover - __call__ is used instead

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get(CONFIG_ENV)
        if not path:
            return {}
        try:
            document = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError([f"{CONFIG_ENV}={path}: {exc}"]) from exc
        if not isinstance(document, dict):
            raise SettingsError([f"{CONFIG_ENV}={path}: expected a mapping at the top"])
        if self.section is None:
            return {k: v for k, v in document.items() if k in self.settings_cls.model_fields}
        value = document.get(self.section) or {}
        return value if isinstance(value, dict) else {}


class SectionSettings(BaseSettings):
    """Base of every settings class: env first, then the YAML file's section, then defaults."""

    section: ClassVar[str | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - not used: no .env files
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - secrets come via env
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        assert isinstance(init_settings, InitSettingsSource)
        return (init_settings, env_settings, _YamlSection(settings_cls, cls.section))

    @classmethod
    def load(cls, **overrides: Any) -> SectionSettings:
        """Build from the environment; turn validation errors into one naming each variable."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            prefix = str(cls.model_config.get("env_prefix", ""))
            delimiter = str(cls.model_config.get("env_nested_delimiter") or "__")
            errors = []
            for error in exc.errors(include_url=False):
                path = [str(p) for p in error["loc"]]
                env = (prefix + delimiter.join(path)).upper()
                errors.append(f"{env} ({'.'.join(path)}): {error['msg']}")
            raise SettingsError(errors) from exc


class RuntimeSettings(SectionSettings):
    """What every service shares: identity, logging, NATS, Kubernetes, health endpoint."""

    model_config = SettingsConfigDict(
        env_prefix="MEDIC_", env_nested_delimiter="__", extra="ignore", case_sensitive=False
    )

    cluster: str = "local"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    nats: NatsSettings = Field(default_factory=NatsSettings)
    kube: KubeSettings = Field(default_factory=KubeSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)

    _cluster = field_validator("cluster")(lambda v: check_token(v, "cluster"))

    def secrets(self) -> list[str]:
        """Secret values to redact from any log line."""
        values = [self.nats.password, self.nats.token]
        return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
