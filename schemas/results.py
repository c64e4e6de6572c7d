"""What the remediator decided and did: one result per decision, for people and machines."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from medic.schemas.envelope import CloudEvent
from medic.schemas.objects import ObjectRef


class Outcome(StrEnum):
    PLANNED = "planned"  # dry-run: what would be done
    APPLIED = "applied"  # written, verification pending
    SUCCEEDED = "succeeded"  # verified fixed
    FAILED = "failed"  # verification failed or the write failed
    SKIPPED = "skipped"  # cooldown, limit, precondition, already fixed, grace period
    ESCALATED = "escalated"  # limit reached or unsafe: people must act
    NO_OP = "no-op"  # nothing to change


class Change(BaseModel):
    """One field the action changed, before and after (an RFC 6901 path)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    before: Any = None
    after: Any = None


class ResultData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(description="The event that triggered the decision (causation id).")
    problem_key: str = Field(description="Stable key of the problem; threads notifications.")
    rule: str
    action: str
    outcome: Outcome
    reason: str = ""
    object: ObjectRef | None = None
    attempt: int = Field(default=0, ge=0)
    max_attempts: int | None = None
    dry_run: bool = False
    severity: Literal["info", "warning", "critical"] = "warning"
    changes: list[Change] = Field(default_factory=list)
    diagnosis: dict[str, Any] = Field(default_factory=dict)
    evidence: dict[str, Any] = Field(default_factory=dict)
    notify: list[str] = Field(default_factory=list, description="Channel names to tell.")
    started_at: AwareDatetime | None = None
    duration_ms: float | None = Field(default=None, ge=0)


class RemediationResult(CloudEvent):
    type: Literal["medic.result"] = "medic.result"
    data: ResultData

    def subject_suffix(self) -> str:
        return self.data.outcome.value
