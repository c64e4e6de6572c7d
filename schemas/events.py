"""What the watcher observed: release problems, etcd health, and users' own events."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from medic.schemas.envelope import CloudEvent
from medic.schemas.objects import Condition, ObjectRef

Scalar = str | int | float | bool | None


class ReleaseProblem(StrEnum):
    """The distinct problems a release can be in; one event per (object, problem, evidence)."""

    FAILED = "failed"  # Ready/Released False with a failure reason
    STALLED = "stalled"  # retries exhausted (Stalled=True / RetriesExceeded)
    STALE_STATUS = (
        "stale_status"  # old message format, observedGeneration behind, phantom dependency
    )
    OLD_API_VERSION = "old_api_version"  # stored at a version behind the target
    PENDING = "pending"  # Helm storage: newest revision pending-* longer than a threshold
    DECODE_ERROR = "decode_error"  # Helm storage: record cannot be decoded
    VALUES_MISSING = "values_missing"  # Fleet: BundleDeployment values Secret absent
    BUNDLE_ERROR = "bundle_error"  # Fleet: BundleDeployment reports an error
    OPERATION_STUCK = "operation_stuck"  # Gardener: operation annotation never cleared
    ETCD_LAST_ERRORS = "etcd_last_errors"  # Gardener: Etcd status.lastErrors
    OPERATION_IN_PROGRESS = "operation_in_progress"  # Kubernetes Event: Helm lock error
    TRANSIENT_ETCD_ERROR = "transient_etcd_error"  # Kubernetes Event carrying an etcd error
    DRIFT_LOOP = "drift_loop"  # Flux: helm-controller keeps finding (and correcting) drift


class MessageClass(StrEnum):
    """How a failure message reads, so rules need not parse text themselves."""

    TRANSIENT_ETCD = "transient_etcd"
    DEPENDENCY_NOT_READY = "dependency_not_ready"
    TIMEOUT = "timeout"
    OPERATION_IN_PROGRESS = "operation_in_progress"
    OTHER = "other"
    NONE = "none"


class ProblemState(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class Evidence(BaseModel):
    """What was seen, quoted from the object: the proof a person would ask for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    condition: Condition | None = None
    reason: str = ""
    message: str = ""
    annotations: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    age_seconds: float | None = Field(default=None, ge=0, description="How long it has held.")
    since: AwareDatetime | None = Field(default=None, description="When it was first seen.")
    fields: dict[str, Scalar] = Field(
        default_factory=dict, description="Problem-specific facts, e.g. revision, status, chart."
    )


class ReleaseEventData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    object: ObjectRef
    problem: ReleaseProblem
    state: ProblemState = ProblemState.FIRING
    classification: MessageClass = MessageClass.NONE
    etcd_error: str | None = Field(default=None, description="The transient etcd error quoted.")
    watcher_source: str = Field(description="The watcher source plugin that saw it.")
    evidence: Evidence = Field(default_factory=Evidence)


class ReleaseEvent(CloudEvent):
    type: Literal["medic.release"] = "medic.release"
    data: ReleaseEventData

    def subject_suffix(self) -> str:
        return f"release.{self.data.problem.value}"


class EtcdCondition(StrEnum):
    LEADER_CHANGED = "leader_changed"
    NO_LEADER = "no_leader"
    UNHEALTHY = "unhealthy"
    TIMEOUT = "timeout"
    STABLE = "stable"


class EtcdMember(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint: str
    healthy: bool
    has_leader: bool | None = None
    is_leader: bool | None = None
    leader_changes_total: float | None = None
    error: str | None = None


class EtcdEventData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    condition: EtcdCondition
    endpoint: str | None = Field(default=None, description="The member concerned, if one.")
    members: list[EtcdMember] = Field(default_factory=list)
    stable_since: AwareDatetime | None = Field(
        default=None, description="Since when every member has had a leader and no change."
    )
    detail: str = ""


class EtcdEvent(CloudEvent):
    type: Literal["medic.etcd"] = "medic.etcd"
    data: EtcdEventData

    def subject_suffix(self) -> str:
        return f"etcd.{self.data.condition.value}"


# The type of a user's own event: `custom.` and dot-separated names of their choosing.
CUSTOM_TYPE_PATTERN = r"^custom\.[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"


class CustomEvent(CloudEvent):
    """Users' own events, published to `medic.events.<cluster>.custom.<name>`."""

    type: str = Field(pattern=CUSTOM_TYPE_PATTERN)
    object: ObjectRef | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    def subject_suffix(self) -> str:
        return self.type
