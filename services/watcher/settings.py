"""The watcher's settings (env `MEDIC_WATCHER_...`, or the `watcher:` section of the file)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from medic.runtime.settings import CommaList, SectionSettings, split_list


class WatcherSettings(SectionSettings):
    """Which sources run and their options, e.g. MEDIC_WATCHER_SOURCES=helmrelease,helm_storage
    and MEDIC_WATCHER_CONFIG='{"helm_storage": {"pending_after": 60}}'."""

    model_config = SettingsConfigDict(
        env_prefix="MEDIC_WATCHER_", env_nested_delimiter="__", extra="ignore"
    )
    section: ClassVar[str] = "watcher"

    sources: CommaList = Field(
        default_factory=lambda: [
            "helmrelease",
            "flux_crds",
            "helm_storage",
            "fleet",
            "gardener_etcd",
            "kube_events",
        ],
        description="Enabled sources; etcd_probe needs `config.etcd_probe.endpoints`.",
    )
    config: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Per source.")
    publish_attempts: int = Field(default=0, ge=0, description="0 = retry until published.")

    _split = field_validator("sources", mode="before")(split_list)
