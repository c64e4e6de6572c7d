"""The watcher's settings (env `MEDIC_WATCHER_...`, or the `watcher:` section of the file)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from medic.runtime.settings import CommaList, SectionSettings, split_list

ETCD_PROBE = "etcd_probe"


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
            "helm_storage",
            "fleet",
            "gardener_etcd",
            "kube_events",
        ],
        description="Enabled sources; etcd_probe is added when its endpoints are configured.",
    )
    config: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Per source.")
    publish_attempts: int = Field(default=0, ge=0, description="0 = retry until published.")

    _split = field_validator("sources", mode="before")(split_list)

    @model_validator(mode="after")
    def _probe_when_endpoints(self) -> WatcherSettings:
        """etcd endpoints are the one setting S1's etcd gate needs: they enable the probe."""
        if self.config.get(ETCD_PROBE, {}).get("endpoints") and ETCD_PROBE not in self.sources:
            self.sources = [*self.sources, ETCD_PROBE]
        return self
