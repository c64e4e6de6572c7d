"""The audit trail: every write Medic makes (or would make in dry-run), before and after."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from medic.schemas.envelope import CloudEvent
from medic.schemas.objects import ObjectRef


class AuditData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    actor: str = Field(description="Who acted: service identity and replica.")
    rule: str
    action: str
    event_id: str
    object: ObjectRef
    verb: str = Field(description="The API verb used: patch, update, create, delete.")
    dry_run: bool = False
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    backup_id: str | None = None
    outcome: Literal["written", "conflict", "error", "dry-run"] = "written"
    error: str | None = None


class AuditEntry(CloudEvent):
    type: Literal["medic.audit"] = "medic.audit"
    data: AuditData
