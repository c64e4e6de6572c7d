"""Kubernetes Events whose message carries a transient etcd error or Helm's lock error, and
helm-controller's `DriftDetected` Events that keep repeating (a drift-correction loop).

Attributed to the involved object, so a rule sees "HelmRelease apps/podinfo: etcdserver: leader
changed" even when the object's own status does not say it. A `DriftDetected` Event is judged
by its count (the API server aggregates repeats into `count`, events.k8s.io into
`series.count`): from `drift_loop_after` on, the release is in a loop, one `drift_loop` event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from medic.runtime.kube import EVENTS, ResourceType
from medic.schemas import Evidence, MessageClass, ObjectRef, ReleaseProblem
from medic.upstream import flux
from medic.watcher.problems import Finding
from medic.watcher.sources.base import Source, SourceContext, SourcePlugin
from medic.watcher.sources.conditions import classify
from medic.watcher.sources.kubernetes import (
    TICK_HELP,
    ObjectFilter,
    ObjectSource,
    Tracked,
    WatchOptions,
)

EVENTS_V1 = ResourceType("events.k8s.io", "v1", "events", "Event")


class KubeEventsSettings(BaseModel):
    filter: ObjectFilter = Field(default_factory=ObjectFilter)
    watch: WatchOptions = Field(default_factory=WatchOptions)
    tick: float = Field(default=30.0, gt=0, description=TICK_HELP)
    api: Literal["core", "events.k8s.io"] = Field(
        default="core", description="Which Events API to watch (the same objects, two shapes)."
    )
    drift_loop_after: int = Field(
        default=3, ge=2, description="DriftDetected this many times for one release = a loop."
    )


@dataclass(frozen=True, slots=True)
class EventView:
    message: str
    reason: str
    uid: str
    count: int = 1


def _count(obj: dict[str, Any]) -> int:
    series = obj.get("series") or {}
    return int(series.get("count") or obj.get("count") or obj.get("deprecatedCount") or 1)


def project(obj: dict[str, Any]) -> EventView | None:
    message = str(obj.get("message") or obj.get("note") or "")
    reason = str(obj.get("reason", ""))
    uid = str((obj.get("metadata") or {}).get("uid", ""))
    if reason == flux.DRIFT_DETECTED:
        return EventView(message, reason, uid, _count(obj))
    kind, _ = classify(message)
    if kind not in {MessageClass.TRANSIENT_ETCD, MessageClass.OPERATION_IN_PROGRESS}:
        return None
    return EventView(message, reason, uid)


def judge(
    item: Tracked[EventView], _now: datetime, _source: object, drift_loop_after: int = 3
) -> list[Finding]:
    view = item.projection
    if view.reason == flux.DRIFT_DETECTED:
        if view.count < drift_loop_after:
            return []
        drifted = flux.drifted_objects(view.message)
        evidence = Evidence(
            reason=view.reason,
            message=view.message,
            fields={
                "event": view.uid,
                "count": view.count,
                "drifted": ", ".join(str(d) for d in drifted),
            },
        )
        # One problem per Event object: its count going on rising is the same loop.
        return [Finding(ReleaseProblem.DRIFT_LOOP, (view.uid,), evidence, MessageClass.OTHER)]
    kind, error = classify(view.message)
    problem = (
        ReleaseProblem.TRANSIENT_ETCD_ERROR
        if kind is MessageClass.TRANSIENT_ETCD
        else ReleaseProblem.OPERATION_IN_PROGRESS
    )
    evidence = Evidence(reason=view.reason, message=view.message, fields={"event": view.uid})
    return [Finding(problem, (view.uid, view.message), evidence, kind, error)]


class KubeEventsSource(ObjectSource[EventView]):
    def track_key(self, obj: dict[str, Any], ref: Any) -> str:
        """Each Event on its own: several Events about one release must not replace each other."""
        metadata = obj.get("metadata") or {}
        return str(metadata.get("uid") or f"{ref.uid}/{metadata.get('name', '')}")

    def subject_ref(self, obj: dict[str, Any]) -> Any:
        involved = obj.get("involvedObject") or obj.get("regarding") or {}
        metadata = obj.get("metadata") or {}
        return ObjectRef(
            kind=str(involved.get("kind") or "Unknown"),
            api_version=str(involved.get("apiVersion") or "v1"),
            namespace=involved.get("namespace") or metadata.get("namespace"),
            name=str(involved.get("name") or metadata.get("name", "")),
            uid=str(involved.get("uid") or metadata.get("uid", "")),
            resource_version=str(involved.get("resourceVersion") or ""),
        )


def create(settings: BaseModel, context: SourceContext) -> Source:
    assert isinstance(settings, KubeEventsSettings)
    return KubeEventsSource(
        name="kube_events",
        cluster=context.cluster,
        kube=context.kube,
        rt=EVENTS if settings.api == "core" else EVENTS_V1,
        project=project,
        judge=lambda item, now, src: judge(item, now, src, settings.drift_loop_after),
        filter=settings.filter,
        tick=settings.tick,
        watch=settings.watch,
    )


PLUGIN = SourcePlugin(
    name="kube_events",
    settings_model=KubeEventsSettings,
    create=create,
    rbac=(
        {
            "apiGroups": ["", "events.k8s.io"],
            "resources": ["events"],
            "verbs": ["list", "watch"],
        },
    ),
    description="Events quoting etcd errors or Helm's 'another operation is in progress', and "
    "repeating DriftDetected Events of helm-controller (a drift-correction loop).",
)
