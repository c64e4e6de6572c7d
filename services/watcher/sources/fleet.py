"""Fleet BundleDeployment: agent errors, and a values Secret missing (scenarios.md S4).

The values Secret has the BundleDeployment's name and namespace (fleet >= 0.10 moved values out
of the spec; *verify* per fleet version). A missing Secret is reported at once with how long it
has been missing (`age_seconds`, `since`), so rules judge the grace period with `for:`; when it
reappears, a resolved event follows. The Secret watch keeps names only, never data.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from medic.runtime.kube import SECRETS, ResourceType
from medic.schemas import Evidence, ReleaseProblem
from medic.upstream import fleet
from medic.watcher.informer import Informer
from medic.watcher.problems import Finding
from medic.watcher.sources.base import Emit, Source, SourceContext, SourcePlugin
from medic.watcher.sources.conditions import classify, conditions_of
from medic.watcher.sources.kubernetes import (
    TICK_HELP,
    ObjectFilter,
    ObjectSource,
    Tracked,
    WatchOptions,
)


class FleetSettings(BaseModel):
    filter: ObjectFilter = Field(default_factory=ObjectFilter)
    watch: WatchOptions = Field(default_factory=WatchOptions)
    tick: float = Field(default=5.0, gt=0, description=TICK_HELP)
    missing_after: float = Field(
        default=2.0,
        ge=0,
        description="Seconds a values Secret must stay missing before it is reported: the "
        "BundleDeployment and Secret watches are not ordered, so a new bundle is often seen "
        "a moment before its Secret.",
    )


@dataclass(frozen=True, slots=True)
class BundleView:
    namespace: str
    name: str
    error: str
    reason: str
    deployment_id: str = ""


def project(obj: dict[str, Any]) -> BundleView:
    metadata = obj.get("metadata") or {}
    ready = conditions_of(obj).get(fleet.READY)
    failing = ready is not None and ready.status == "False"
    return BundleView(
        str(metadata.get("namespace", "")),
        str(metadata.get("name", "")),
        ready.message if failing and ready else "",
        ready.reason if failing and ready else "",
        str((obj.get("spec") or {}).get("deploymentID", "")),
    )


class FleetSource(ObjectSource[BundleView]):
    missing_after: float
    secrets: set[tuple[str, str]]
    missing_since: dict[tuple[str, str], datetime]
    secrets_synced: asyncio.Event

    def judge_bundle(self, item: Tracked[BundleView], now: datetime) -> list[Finding]:
        view = item.projection
        findings: list[Finding] = []
        if view.error:
            kind, error = classify(view.error)
            evidence = Evidence(reason=view.reason, message=view.error)
            findings.append(
                Finding(ReleaseProblem.BUNDLE_ERROR, (view.error,), evidence, kind, error)
            )
        key = (view.namespace, view.name)
        if self.secrets_synced.is_set() and key not in self.secrets:
            since = self.missing_since.setdefault(key, now)
            if (now - since).total_seconds() < self.missing_after:
                return findings  # judged again on the next tick
            evidence = Evidence(
                message=f'values secret "{view.name}" not found',
                age_seconds=(now - since).total_seconds(),
                since=since,
                fields={"secret": view.name},
            )
            findings.append(
                # the deployment, not `since` (in memory only): a restart must give the same id
                Finding(ReleaseProblem.VALUES_MISSING, (view.name, view.deployment_id), evidence)
            )
        else:
            self.missing_since.pop(key, None)
        return findings

    async def run(self, emit: Emit, stop: asyncio.Event) -> None:
        informer = Informer(self.kube, SECRETS, self._secret_event, self._secret_sync)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(informer.run(stop))
            tg.create_task(super().run(emit, stop))

    async def _secret_sync(self, items: AsyncIterator[dict[str, Any]]) -> None:
        self.secrets = {_key(obj) async for obj in items}
        self.secrets_synced.set()
        if self.emit is not None:
            await self.rejudge()

    async def _secret_event(self, kind: str, obj: dict[str, Any]) -> None:
        key = _key(obj)
        if kind == "DELETED":
            self.secrets.discard(key)
        else:
            self.secrets.add(key)
        if self.emit is not None:
            await self.rejudge()


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace", "")), str(metadata.get("name", ""))


def create(settings: BaseModel, context: SourceContext) -> Source:
    assert isinstance(settings, FleetSettings)
    source = FleetSource(
        name="fleet",
        cluster=context.cluster,
        kube=context.kube,
        rt=ResourceType(fleet.GROUP, fleet.VERSION, fleet.PLURAL, fleet.KIND),
        project=project,
        judge=lambda item, now, _src: source.judge_bundle(item, now),
        filter=settings.filter,
        tick=settings.tick,
        watch=settings.watch,
    )
    source.missing_after = settings.missing_after
    source.secrets = set()
    source.missing_since = {}
    source.secrets_synced = asyncio.Event()
    return source


PLUGIN = SourcePlugin(
    name="fleet",
    settings_model=FleetSettings,
    create=create,
    rbac=(
        {
            "apiGroups": [fleet.GROUP],
            "resources": [fleet.PLURAL],
            "verbs": ["list", "watch"],
        },
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]},
    ),
    description="Fleet BundleDeployments in error or missing their values Secret (S4).",
    example={"filter": {"namespaces": ["cluster-fleet-*"]}},
)
