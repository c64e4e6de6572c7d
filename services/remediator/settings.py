"""The remediator's settings (env `MEDIC_REMEDIATOR_...`, or the `remediator:` file section)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from medic.runtime.settings import CommaList, SectionSettings, split_list


class RemediatorSettings(SectionSettings):
    model_config = SettingsConfigDict(
        env_prefix="MEDIC_REMEDIATOR_", env_nested_delimiter="__", extra="ignore"
    )
    section: ClassVar[str] = "remediator"

    rules: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Rule files or folders (comma-separated in env)."
    )
    builtin_rules: bool = True
    dry_run: bool = Field(default=False, description="Plan only, for every rule.")
    rules_bucket: str = "medic-rules"
    state_bucket: str = "medic-remediator"
    backups_bucket: str = "medic-backups"
    actor: str = Field(default_factory=lambda: f"medic-remediator/{socket.gethostname()}")
    lease_seconds: float = Field(default=120.0, gt=0, description="A claim older is abandoned.")
    max_deliver: int = Field(default=10_000, ge=2, description="Waits are redeliveries.")
    ack_wait: float = Field(
        default=60.0,
        ge=1.0,
        description="Seconds before an event whose handler died is delivered again.",
    )
    durable: str = "remediator"
    filter_subjects: CommaList = Field(default_factory=lambda: ["medic.events.>"])
    concurrency: int = Field(default=64, ge=1)

    _split = field_validator("rules", "filter_subjects", mode="before")(split_list)
