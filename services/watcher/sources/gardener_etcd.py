"""Gardener Etcd (druid.gardener.cloud): an operation annotation never cleared (scenarios.md S5).

Stuck means: `gardener.cloud/operation` still present longer than a threshold while status says
the work is done (ready, readyReplicas == replicas, observedGeneration == generation). The age
comes from the newest managedFields time (when the annotation was written), else first seen.
`status.lastErrors` becomes an event of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from medic.runtime.kube import ResourceType
from medic.schemas import Evidence, ReleaseProblem
from medic.upstream import gardener
from medic.watcher.problems import Finding
from medic.watcher.sources.base import Source, SourceContext, SourcePlugin
from medic.watcher.sources.conditions import last_write
from medic.watcher.sources.kubernetes import (
    TICK_HELP,
    ObjectFilter,
    ObjectSource,
    Tracked,
    WatchOptions,
)


class GardenerEtcdSettings(BaseModel):
    operation_after: float = Field(
        default=300.0,
        ge=0,
        description="Seconds an operation annotation may stay before it is `operation_stuck`.",
    )
    filter: ObjectFilter = Field(default_factory=ObjectFilter)
    watch: WatchOptions = Field(default_factory=WatchOptions)
    tick: float = Field(default=5.0, gt=0, description=TICK_HELP)


@dataclass(frozen=True, slots=True)
class EtcdView:
    operation: str | None
    done: bool
    written_at: datetime | None
    last_errors: tuple[str, ...]


def project(obj: dict[str, Any]) -> EtcdView:
    metadata = obj.get("metadata") or {}
    status = obj.get("status") or {}
    done = (
        bool(status.get("ready"))
        and status.get("readyReplicas") == status.get("replicas")
        and status.get("observedGeneration") == metadata.get("generation")
    )
    errors = tuple(
        str(e.get("description") or e.get("message") or e) for e in status.get("lastErrors") or []
    )
    return EtcdView(
        (metadata.get("annotations") or {}).get(gardener.OPERATION),
        done,
        last_write(obj)[0],
        errors,
    )


def judge(
    item: Tracked[EtcdView],
    now: datetime,
    _source: ObjectSource[EtcdView],
    settings: GardenerEtcdSettings,
) -> list[Finding]:
    view = item.projection
    findings: list[Finding] = []
    if view.operation and view.done:
        since = view.written_at or item.first_seen
        age = max(0.0, (now - since).total_seconds())
        if age >= settings.operation_after:
            evidence = Evidence(
                annotations={gardener.OPERATION: view.operation},
                age_seconds=age,
                since=since,
                message=f"operation annotation {view.operation!r} present while status is done",
            )
            findings.append(
                Finding(
                    ReleaseProblem.OPERATION_STUCK, (view.operation, since.isoformat()), evidence
                )
            )
    if view.last_errors:
        evidence = Evidence(message="; ".join(view.last_errors))
        findings.append(Finding(ReleaseProblem.ETCD_LAST_ERRORS, view.last_errors, evidence))
    return findings


def create(settings: BaseModel, context: SourceContext) -> Source:
    assert isinstance(settings, GardenerEtcdSettings)
    return ObjectSource(
        name="gardener_etcd",
        cluster=context.cluster,
        kube=context.kube,
        rt=ResourceType(gardener.GROUP, gardener.VERSION, gardener.PLURAL, gardener.KIND),
        project=project,
        judge=lambda item, now, src: judge(item, now, src, settings),
        filter=settings.filter,
        tick=settings.tick,
        watch=settings.watch,
    )


PLUGIN = SourcePlugin(
    name="gardener_etcd",
    settings_model=GardenerEtcdSettings,
    create=create,
    rbac=(
        {
            "apiGroups": [gardener.GROUP],
            "resources": [gardener.PLURAL],
            "verbs": ["list", "watch"],
        },
    ),
    description="Gardener Etcd resources whose operation annotation is never cleared (S5).",
    example={"operation_after": 300},
)
