"""Gardener Etcd (druid.gardener.cloud): an operation annotation never cleared (scenarios.md S5).

Stuck means: an operation annotation (`druid.gardener.cloud/operation` or the deprecated
`gardener.cloud/operation`, see `medic.upstream.gardener`) still present longer than a threshold
while the status is otherwise done by Gardener's own test (CheckEtcdObject: no lastErrors,
observedGeneration == generation, AllMembersUpdated True when replicas > 0, ready). The age
comes from the newest managedFields time (when the annotation was written), else first seen.
`status.lastErrors` becomes an event of its own. Both events quote what druid reported
(lastErrors, lastOperation), so an escalation can say it.
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
    operations: tuple[tuple[str, str], ...]  # (annotation key, value), either key or both
    done: bool
    written_at: datetime | None
    last_errors: tuple[str, ...]
    last_operation: str


def project(obj: dict[str, Any]) -> EtcdView:
    status = obj.get("status") or {}
    errors = tuple(
        str(e.get("description") or e.get("message") or e) if isinstance(e, dict) else str(e)
        for e in status.get("lastErrors") or []
    )
    return EtcdView(
        tuple(gardener.operation_annotations(obj).items()),
        not gardener.not_done(obj),
        last_write(obj)[0],
        errors,
        gardener.druid_report(obj)["lastOperation"],
    )


def _druid_fields(view: EtcdView) -> dict[str, str | int | float | bool | None]:
    return {
        "lastErrors": "; ".join(view.last_errors) or "none",
        "lastOperation": view.last_operation,
    }


def judge(
    item: Tracked[EtcdView],
    now: datetime,
    _source: ObjectSource[EtcdView],
    settings: GardenerEtcdSettings,
) -> list[Finding]:
    view = item.projection
    findings: list[Finding] = []
    if view.operations and view.done:
        since = view.written_at or item.first_seen
        age = max(0.0, (now - since).total_seconds())
        if age >= settings.operation_after:
            keys = ", ".join(f"{key}={value}" for key, value in view.operations)
            evidence = Evidence(
                annotations=dict(view.operations),
                age_seconds=age,
                since=since,
                message=f"operation annotation {keys} still present while the Etcd is done "
                "by Gardener's check (etcd-druid removes it when a reconcile completes)",
                fields=_druid_fields(view),
            )
            findings.append(
                Finding(
                    ReleaseProblem.OPERATION_STUCK,
                    # druid's lastOperation too: what it reports next is a new observation
                    (
                        *(value for _, value in view.operations),
                        since.isoformat(),
                        view.last_operation,
                    ),
                    evidence,
                )
            )
    if view.last_errors:
        evidence = Evidence(message="; ".join(view.last_errors), fields=_druid_fields(view))
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
    description="Gardener Etcd resources done by Gardener's check whose operation annotation "
    "(druid.gardener.cloud/operation or gardener.cloud/operation) is never cleared (S5).",
    example={"operation_after": 300},
)
