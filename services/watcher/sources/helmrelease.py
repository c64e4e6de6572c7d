"""Flux HelmRelease: failed and stalled releases, stale status.

Judgement (pure) per scenarios.md S1/S2: Ready=False with a failure reason (the message
classified: transient etcd error, timeout, ...); Stalled=True (retries exhausted); stale status
(old message format, observedGeneration behind for longer than a threshold, DependencyNotReady
while every dependency is Ready). Not for objects left at an old API version: how an object is
stored is not visible on it (managedFields only say which version a writer used); the CRD's
`status.storedVersions` says it, and `flux_crds` reads that.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from medic.runtime.kube import KubeClient, KubeError, ResourceType
from medic.schemas import Evidence, ReleaseProblem
from medic.upstream import flux
from medic.watcher.problems import Finding
from medic.watcher.sources.base import Emit, Source, SourceContext, SourcePlugin
from medic.watcher.sources.conditions import Cond, classify, compact_conditions, last_write
from medic.watcher.sources.kubernetes import (
    TICK_HELP,
    ObjectFilter,
    ObjectSource,
    Tracked,
    WatchOptions,
)


class HelmReleaseSettings(BaseModel):
    version: str | None = Field(
        default=None,
        description="HelmRelease version to watch; unset = the one the cluster prefers.",
    )
    stale_after: float = Field(
        default=600.0,
        ge=0,
        description="Seconds `status.observedGeneration` may lag `metadata.generation` before "
        "the status is `stale_status`.",
    )
    filter: ObjectFilter = Field(default_factory=ObjectFilter)
    watch: WatchOptions = Field(default_factory=WatchOptions)
    tick: float = Field(default=5.0, gt=0, description=TICK_HELP)


CONDITIONS = frozenset({flux.READY, flux.STALLED, flux.RELEASED})  # what the judgement reads
# Quoted in a failure's evidence with Ready's status, each key present (None: not on the object),
# so that an action can judge the release as of the event's resourceVersion without reading it
# again (`retry`'s plan; the write carries that version, so any change since is refused).
REQUESTS = (flux.REQUESTED_AT, flux.RESET_AT, flux.FORCE_AT)


@dataclass(frozen=True, slots=True)
class HelmReleaseView:
    """What the judgement needs of a HelmRelease, kept for every one of them (10,000 and more):
    slots, the three conditions read and no others, interned repeating strings."""

    namespace: str
    generation: int
    observed_generation: int
    ready_condition: Cond | None
    stalled: Cond | None
    released: Cond | None
    written_at: datetime | None
    depends_on: tuple[tuple[str, str], ...]
    requests: tuple[tuple[str, str], ...] = ()  # the reconcile-request annotations present

    @property
    def ready(self) -> bool:
        ready = self.ready_condition
        return ready is not None and ready.status == "True"

    def quoted(self) -> dict[str, str | None]:
        """Ready's status and the reconcile-request annotations, as of the judged version."""
        present = dict(self.requests)
        ready = self.ready_condition
        return {"ready": ready.status if ready else None} | {k: present.get(k) for k in REQUESTS}


def project(obj: dict[str, Any]) -> HelmReleaseView:
    metadata = obj.get("metadata") or {}
    namespace = sys.intern(str(metadata.get("namespace", "")))
    status = obj.get("status") or {}
    written_at, _ = last_write(obj)
    deps = tuple(
        (sys.intern(str(d.get("namespace") or namespace)), str(d.get("name")))
        for d in (obj.get("spec") or {}).get("dependsOn") or []
        if isinstance(d, dict) and d.get("name")
    )
    conditions = compact_conditions(obj, CONDITIONS)
    annotations = metadata.get("annotations") or {}
    return HelmReleaseView(
        namespace=namespace,
        generation=int(metadata.get("generation", 0) or 0),
        observed_generation=int(status.get("observedGeneration", -1)),
        ready_condition=conditions.get(flux.READY),
        stalled=conditions.get(flux.STALLED),
        released=conditions.get(flux.RELEASED),
        written_at=written_at,
        depends_on=deps,
        requests=tuple((k, str(annotations[k])) for k in REQUESTS if k in annotations),
    )


def judge(
    item: Tracked[HelmReleaseView],
    now: datetime,
    source: ObjectSource[HelmReleaseView],
    settings: HelmReleaseSettings,
) -> list[Finding]:
    view = item.projection
    findings: list[Finding] = []
    ready = view.ready_condition
    stale: list[str] = []
    if ready is not None and ready.status == "False":
        if ready.reason == flux.DEPENDENCY_NOT_READY:
            deps = [source.lookup(ns, name) for ns, name in view.depends_on]
            if deps and all(dep is not None and dep.ready for dep in deps):
                stale.append("dependency-ready")
        else:
            kind, error = classify(ready.message)
            if ready.reason in flux.FAILED_REASONS or error is not None:
                evidence = Evidence(
                    condition=ready.model(),
                    reason=ready.reason,
                    message=ready.message,
                    fields=view.quoted(),
                )
                findings.append(
                    Finding(
                        ReleaseProblem.FAILED,
                        (ready.reason, ready.message, _when(ready)),
                        evidence,
                        kind,
                        error,
                    )
                )
    stalled = view.stalled
    if stalled is not None and stalled.status == "True":
        message = ready.message if ready is not None else stalled.message
        kind, error = classify(message)
        evidence = Evidence(
            condition=stalled.model(), reason=stalled.reason, message=message, fields=view.quoted()
        )
        findings.append(
            Finding(
                ReleaseProblem.STALLED,
                (stalled.reason, message, _when(stalled)),
                evidence,
                kind,
                error,
            )
        )
    released = view.released
    if released is not None and released.message in flux.OLD_SUCCESS_MESSAGES:
        stale.append("old-message-format")
    since = view.written_at or item.first_seen
    if (
        view.observed_generation < view.generation
        and (now - since).total_seconds() >= settings.stale_after
    ):
        stale.append("observed-generation-behind")
    if stale:
        condition = ready or released
        evidence = Evidence(
            condition=condition.model() if condition else None,
            reason=condition.reason if condition else "",
            message=condition.message if condition else "",
            fields={
                "stale": ",".join(stale),
                "generation": view.generation,
                "observedGeneration": view.observed_generation,
            },
        )
        kind, _ = classify(evidence.message)
        findings.append(Finding(ReleaseProblem.STALE_STATUS, tuple(stale), evidence, kind))
    return findings


class HelmReleaseSource(ObjectSource[HelmReleaseView]):
    discover: bool = True

    async def run(self, emit: Emit, stop: asyncio.Event) -> None:
        if self.discover:
            self.rt = self.rt.at(await served_version(self.kube))
        await super().run(emit, stop)

    # A release turning Ready may clear a phantom DependencyNotReady of its dependants: the
    # periodic tick re-judges them. Re-judging everything on every change would be O(n^2) on
    # the initial list (10,000 HelmReleases), so no `after_change` hook here.


def _when(condition: Any) -> str:
    """The condition's transition time: a new failure after a recovery is a new event, while a
    restart or re-list sees the same time and so the same id."""
    moment = getattr(condition, "last_transition_time", None)
    return moment.isoformat() if moment is not None else ""


async def served_version(kube: KubeClient) -> str:
    """The version the cluster prefers for HelmReleases (v2 after Flux 2.3, v2beta2 before)."""
    try:
        group = await kube.request("GET", f"/apis/{flux.GROUP}")
    except KubeError:
        return flux.STORAGE_VERSION
    preferred = (group.get("preferredVersion") or {}).get("version")
    return str(preferred) if preferred in flux.VERSIONS else flux.STORAGE_VERSION


def create(settings: BaseModel, context: SourceContext) -> Source:
    assert isinstance(settings, HelmReleaseSettings)
    version = settings.version or flux.STORAGE_VERSION
    rt = ResourceType(flux.GROUP, version, flux.PLURAL, flux.KIND)
    source = HelmReleaseSource(
        name="helmrelease",
        cluster=context.cluster,
        kube=context.kube,
        rt=rt,
        project=project,
        judge=lambda item, now, src: judge(item, now, src, settings),
        filter=settings.filter,
        tick=settings.tick,
        watch=settings.watch,
    )
    source.discover = settings.version is None
    return source


PLUGIN = SourcePlugin(
    name="helmrelease",
    settings_model=HelmReleaseSettings,
    create=create,
    rbac=({"apiGroups": [flux.GROUP], "resources": [flux.PLURAL], "verbs": ["list", "watch"]},),
    description="Flux HelmReleases that failed, stalled or went stale.",
    example={"stale_after": 600, "filter": {"namespaces": ["apps-*"]}},
)
