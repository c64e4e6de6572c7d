"""From findings about objects to events: one per distinct problem state, and a resolved one.

A finding's fingerprint names its state (reason, message, revision...) but never its age, so a
problem seen again after a restart or a re-list gets the same event id, and JetStream stores it
once. When a finding disappears (or the object is deleted) a resolved event follows.
Pure bookkeeping: no I/O and no clock (callers pass `now`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

from medic.schemas import (
    Evidence,
    MessageClass,
    ObjectRef,
    ProblemState,
    ReleaseEvent,
    ReleaseEventData,
    ReleaseProblem,
    stable_id,
)


@dataclass(frozen=True)
class Finding:
    problem: ReleaseProblem
    fingerprint: tuple[str, ...]
    evidence: Evidence = field(default_factory=Evidence)
    classification: MessageClass = MessageClass.NONE
    etcd_error: str | None = None


@dataclass(frozen=True, slots=True)
class Ref:
    """An ObjectRef's fields as a source keeps them per tracked object: about 100 bytes where the
    pydantic model costs about 1 KB (10,000 objects per source); the model is built for events."""

    kind: str
    api_version: str
    namespace: str | None
    name: str
    uid: str
    resource_version: str

    def model(self) -> ObjectRef:
        return ObjectRef(
            kind=self.kind,
            api_version=self.api_version,
            namespace=self.namespace,
            name=self.name,
            uid=self.uid,
            resource_version=self.resource_version,
        )


AnyRef: TypeAlias = ObjectRef | Ref


def as_model(ref: AnyRef) -> ObjectRef:
    return ref.model() if isinstance(ref, Ref) else ref


def compact_ref(obj: dict[str, object], kind: str = "", api_version: str = "") -> Ref:
    """The object's Ref; `kind`/`api_version` stand in where a list's items omit them (the API
    server leaves them out of the items of built-in types). Repeating strings are interned."""
    metadata = obj.get("metadata") or {}
    assert isinstance(metadata, dict)
    namespace = metadata.get("namespace")
    return Ref(
        kind=sys.intern(str(obj.get("kind") or kind)),
        api_version=sys.intern(str(obj.get("apiVersion") or api_version)),
        namespace=sys.intern(str(namespace)) if namespace else None,
        name=str(metadata.get("name", "")),
        uid=str(metadata.get("uid", "")),
        resource_version=str(metadata.get("resourceVersion", "")),
    )


def object_ref(obj: dict[str, object]) -> ObjectRef:
    metadata = obj.get("metadata") or {}
    assert isinstance(metadata, dict)
    return ObjectRef(
        kind=str(obj.get("kind", "")),
        api_version=str(obj.get("apiVersion", "")),
        namespace=metadata.get("namespace"),
        name=str(metadata.get("name", "")),
        uid=str(metadata.get("uid", "")),
        resource_version=str(metadata.get("resourceVersion", "")),
    )


class ProblemTracker:
    """The findings currently firing per object uid, for one cluster and one source."""

    def __init__(self, cluster: str, source: str) -> None:
        self.cluster = cluster
        self.source = source
        self.firing: dict[str, dict[ReleaseProblem, tuple[Finding, AnyRef]]] = {}

    def update(
        self, ref: AnyRef, findings: list[Finding], now: datetime, key: str | None = None
    ) -> list[ReleaseEvent]:
        """Events for what changed on this object since the last update. `key` separates
        observations about the same object (e.g. several Kubernetes Events about one release)."""
        key = key or ref.uid or f"{ref.kind}/{ref.namespace}/{ref.name}"
        before = self.firing.get(key)
        if before is None and not findings:
            return []  # the common case on every tick: nothing firing, nothing found
        before = before or {}
        after = {f.problem: (f, ref) for f in findings}
        events = [
            self._event(ref, finding, ProblemState.FIRING, now)
            for problem, (finding, _) in after.items()
            if problem not in before or before[problem][0].fingerprint != finding.fingerprint
        ]
        events += [
            self._event(ref, finding, ProblemState.RESOLVED, now)
            for problem, (finding, _) in before.items()
            if problem not in after
        ]
        if after:
            self.firing[key] = after
        else:
            self.firing.pop(key, None)
        return events

    def forget(self, ref: AnyRef, now: datetime, key: str | None = None) -> list[ReleaseEvent]:
        """The object was deleted: everything it had is resolved."""
        return self.update(ref, [], now, key)

    def _event(
        self, ref: AnyRef, finding: Finding, state: ProblemState, now: datetime
    ) -> ReleaseEvent:
        identity = (ref.uid or ref.name, finding.problem.value, *finding.fingerprint)
        event_id = stable_id(*identity, state.value)
        return ReleaseEvent(
            id=event_id,
            source=f"medic/watcher/{self.cluster}/{self.source}",
            cluster=self.cluster,
            subject=f"{ref.kind}/{ref.namespace or '_'}/{ref.name}",
            time=now,
            data=ReleaseEventData(
                object=as_model(ref),
                problem=finding.problem,
                state=state,
                classification=finding.classification,
                etcd_error=finding.etcd_error,
                watcher_source=self.source,
                evidence=finding.evidence,
            ),
        )
