"""Kubernetes Events whose message carries a transient etcd error or Helm's lock error, and
helm-controller's DriftDetected Events once they repeat (a drift loop).

Attributed to the involved object, so a rule sees "HelmRelease apps/podinfo: etcdserver: leader
changed" even when the object's own status does not say it. A drift loop is the same
DriftDetected Event seen `drift_repeats` times (the recorder counts repeats on one Event): some
other writer (an HPA on /spec/replicas, a mutating webhook) undoes each correction.
"""

from __future__ import annotations

import functools
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
from medic.watcher.sources.kubernetes import ObjectFilter, ObjectSource, Tracked, WatchOptions

EVENTS_V1 = ResourceType("events.k8s.io", "v1", "events", "Event")


class KubeEventsSettings(BaseModel):
    filter: ObjectFilter = Field(default_factory=ObjectFilter)
    watch: WatchOptions = Field(default_factory=WatchOptions)
    tick: float = Field(default=30.0, gt=0)
    api: Literal["core", "events.k8s.io"] = Field(
        default="core", description="Which Events API to watch (the same objects, two shapes)."
    )
    drift_repeats: int = Field(
        default=3, ge=1, description="DriftDetected seen this often on one release: a drift loop."
    )


@dataclass(frozen=True, slots=True)
class EventView:
    message: str
    reason: str
    uid: str
    count: int = 1


def repeats(obj: dict[str, Any]) -> int:
    """How often the recorder saw this Event (core `count`, events.k8s.io `series.count`)."""
    series = obj.get("series") or {}
    count = obj.get("count") or series.get("count") or obj.get("deprecatedCount") or 1
    return int(count) if str(count).isdigit() else 1


def is_drift(obj: dict[str, Any], message: str) -> bool:
    involved = obj.get("involvedObject") or obj.get("regarding") or {}
    return (
        obj.get("reason") == flux.DRIFT_DETECTED
        and involved.get("kind") == flux.KIND
        and flux.DRIFT_MESSAGE in message
    )


def project(obj: dict[str, Any]) -> EventView | None:
    message = str(obj.get("message") or obj.get("note") or "")
    uid = str((obj.get("metadata") or {}).get("uid", ""))
    if is_drift(obj, message):
        return EventView(message, flux.DRIFT_DETECTED, uid, repeats(obj))
    kind, _ = classify(message)
    if kind not in {MessageClass.TRANSIENT_ETCD, MessageClass.OPERATION_IN_PROGRESS}:
        return None
    return EventView(message, str(obj.get("reason", "")), uid)


def judge(
    item: Tracked[EventView], _now: datetime, _source: object, drift_repeats: int = 3
) -> list[Finding]:
    view = item.projection
    if view.reason == flux.DRIFT_DETECTED:
        if view.count < drift_repeats:
            return []
        drifted = ", ".join(str(r) for r in flux.drifted_resources(view.message))
        fields = {"event": view.uid, "count": view.count, "resources": drifted}
        evidence = Evidence(reason=view.reason, message=view.message, fields=fields)
        # the fingerprint leaves the count out: one event per loop, not one per repeat
        return [Finding(ReleaseProblem.DRIFT_LOOP, (view.uid, view.message), evidence)]
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
        judge=functools.partial(judge, drift_repeats=settings.drift_repeats),
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
            "verbs": ["get", "list", "watch"],
        },
    ),
    description=(
        "Events quoting etcd errors or Helm's 'another operation is in progress'; "
        "helm-controller's DriftDetected repeating (a drift loop)."
    ),
)
