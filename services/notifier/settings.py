"""The notifier's settings: channels, their routing filters and templates, digest and retry knobs.

Environment `MEDIC_NOTIFIER_...` (nested with `__`; `MEDIC_NOTIFIER_CHANNELS` takes a JSON list)
or the `notifier:` section of the YAML file named by `MEDIC_CONFIG`. Channel `options` are
validated by the channel type's own model (`medic.notifier.channels`); secrets in them are
`SecretStr`, `*_file` paths (a mounted Secret) or `*_env` names of environment variables, and
are registered with the log redactor, never logged.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from medic.runtime.settings import SectionSettings
from medic.runtime.subjects import check_token
from medic.schemas import Outcome


class ChannelFilter(BaseModel):
    """Which results a channel wants. Empty lists match everything (`skipped` needs opting in)."""

    model_config = ConfigDict(extra="forbid")

    outcomes: list[Outcome] = Field(default_factory=list)
    severities: list[str] = Field(default_factory=list)
    clusters: list[str] = Field(default_factory=list, description="Glob patterns.")
    namespaces: list[str] = Field(default_factory=list, description="Glob patterns.")
    include_skipped: bool = False

    def matches(self, *, outcome: Outcome, severity: str, cluster: str, namespace: str) -> bool:
        if outcome is Outcome.SKIPPED and not (self.include_skipped or outcome in self.outcomes):
            return False
        if self.outcomes and outcome not in self.outcomes:
            return False
        if self.severities and severity not in self.severities:
            return False
        if self.clusters and not _any_glob(cluster, self.clusters):
            return False
        return not self.namespaces or _any_glob(namespace, self.namespaces)


def _any_glob(value: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


class ChannelConfig(BaseModel):
    """One configured channel: a name rules refer to, a type, filters, templates, options."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: str
    enabled: bool = True
    default: bool = Field(
        default=True, description="Receives results whose rule named no channels (notify: [])."
    )
    filters: ChannelFilter = Field(default_factory=ChannelFilter)
    templates: dict[str, str] = Field(
        default_factory=dict, description="Template name (e.g. 'text') -> Jinja2 source."
    )
    rate_per_second: float | None = Field(default=None, gt=0)
    rate_burst: int = Field(default=1, ge=1)
    options: dict[str, object] = Field(default_factory=dict, repr=False)  # may hold secrets

    _name = field_validator("name")(lambda v: check_token(v, "channel name"))


class NotifierSettings(SectionSettings):
    model_config = SettingsConfigDict(
        env_prefix="MEDIC_NOTIFIER_", env_nested_delimiter="__", extra="ignore"
    )
    section: ClassVar[str] = "notifier"

    channels: list[ChannelConfig] = Field(default_factory=list)
    template_dir: Path | None = Field(default=None, description="Overrides packaged templates.")
    digest_threshold: int = Field(default=10, ge=1, description="More than this per window...")
    digest_window: float = Field(default=30.0, gt=0, description="...seconds -> one digest.")
    retry_base: float = Field(default=1.0, gt=0)
    retry_cap: float = Field(default=300.0, gt=0, description="Longest wait between retries.")
    max_deliver: int = Field(default=2000, ge=2)
    ack_wait: float = Field(
        default=60.0, ge=1.0, description="Seconds before a result whose sender died is retried."
    )
    claim_lease: float = Field(default=120.0, gt=0, description="A crashed send's claim expires.")
    send_timeout: float = Field(default=10.0, gt=0)
    fetch_timeout: float = Field(default=1.0, gt=0, description="Longest wait for a batch.")
    fold_window: float = Field(
        default=60.0,
        ge=0,
        description="How long a failed attempt waits for the outcome it is folded into "
        "(the remediator comes back at least every 30 s); 0 sends it at once.",
    )
    threads_bucket: str = "medic-notifier-threads"
    folds_bucket: str = "medic-notifier-folds"
    deliveries_bucket: str = "medic-notifier-deliveries"
    deliveries_ttl: float = Field(default=8 * 24 * 3600.0, gt=0)


def read_secret(
    value: SecretStr | None, path: Path | None, what: str, env: str | None = None
) -> str | None:
    """A secret from a file (Kubernetes Secret volume), an environment variable, or its value."""
    if env is not None:
        if not os.environ.get(env):
            raise ValueError(f"{what}: environment variable {env} is not set")
        return os.environ[env].strip()
    if path is not None:
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise ValueError(f"{what}: cannot read {path}: {exc.strerror}") from None
        return text or None
    return value.get_secret_value() if value is not None else None
