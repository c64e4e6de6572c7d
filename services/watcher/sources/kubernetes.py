"""The shape every Kubernetes source shares: watch one resource type, keep a small projection
per object, judge it (pure), and turn the judgement into events through a ProblemTracker.

A periodic tick re-judges every projection, so "longer than a threshold" findings appear when
the time has passed even if the object did not change. Projections, never whole objects, are
kept: memory stays flat per object.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import structlog
from pydantic import BaseModel, Field

from medic.runtime.kube import NAMESPACES, KubeClient, KubeError, ResourceType
from medic.watcher.informer import Informer
from medic.watcher.problems import AnyRef, Finding, ProblemTracker, compact_ref
from medic.watcher.sources.base import Emit

log = structlog.get_logger(__name__)

P = TypeVar("P")


TICK_HELP = (
    "Seconds between re-judgements of every object: how late a 'longer than' threshold "
    "(`*_after`) can be noticed when the object itself does not change."
)
# What `ObjectFilter.namespace_selector` needs (it lists Namespaces by label, nothing else); the
# chart grants it only to a watcher whose sources' config sets a selector.
NAMESPACE_SELECTOR_RBAC: tuple[dict[str, Any], ...] = (
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]},
)


class ObjectFilter(BaseModel):
    """Which objects a source looks at."""

    namespaces: list[str] = Field(
        default_factory=list, description="Namespace globs to watch; empty = all."
    )
    exclude_namespaces: list[str] = Field(
        default_factory=list, description="Namespace globs to skip, even when `namespaces` match."
    )
    label_selector: str | None = Field(
        default=None, description="Label selector on the watched objects (sent to the API server)."
    )
    namespace_selector: str | None = Field(
        default=None,
        description="Label selector on Namespaces: only objects in matching namespaces count.",
    )
    namespace_refresh: float = Field(
        default=60.0, gt=0, description="Seconds between re-reads of `namespace_selector`."
    )

    def allows(self, namespace: str | None, selected: set[str] | None = None) -> bool:
        """`selected`: the namespaces matching `namespace_selector` (None: no such selector)."""
        name = namespace or ""
        if self.namespaces and not any(fnmatch.fnmatch(name, g) for g in self.namespaces):
            return False
        if selected is not None and namespace and namespace not in selected:
            return False
        return not any(fnmatch.fnmatch(name, g) for g in self.exclude_namespaces)


class WatchOptions(BaseModel):
    """How the informer watches: server-side watch length and the client's dead-watch timer."""

    timeout_seconds: int = Field(
        default=300, ge=1, description="Seconds after which the API server ends a watch."
    )
    inactivity_timeout: float = Field(
        default=90.0, gt=0, description="A watch silent this long is dead: reconnect."
    )


@dataclass(slots=True)
class Tracked(Generic[P]):
    obj_ref: AnyRef
    projection: P
    first_seen: datetime


Judge = Callable[[Tracked[P], datetime, "ObjectSource[P]"], list[Finding]]
Project = Callable[[dict[str, Any]], P | None]


@dataclass
class ObjectSource(Generic[P]):
    name: str
    cluster: str
    kube: KubeClient
    rt: ResourceType
    project: Project[P]
    judge: Judge[P]
    filter: ObjectFilter = field(default_factory=ObjectFilter)
    field_selector: str | None = None
    tick: float = 5.0
    watch: WatchOptions = field(default_factory=WatchOptions)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    tracked: dict[str, Tracked[P]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tracker = ProblemTracker(self.cluster, self.name)
        self.emit: Emit | None = None
        self.by_name: dict[tuple[str | None, str], str] = {}
        self.selected_namespaces: set[str] | None = None

    def lookup(self, namespace: str | None, name: str) -> P | None:
        """A tracked object's projection by namespace and name (O(1): judges call it per tick)."""
        item = self.tracked.get(self.by_name.get((namespace, name), ""))
        if item is None or item.obj_ref.namespace != namespace or item.obj_ref.name != name:
            return None
        return item.projection

    def track(self, key: str, item: Tracked[P]) -> None:
        self.tracked[key] = item
        self.by_name[(item.obj_ref.namespace, item.obj_ref.name)] = key

    def _untrack(self, key: str) -> Tracked[P] | None:
        gone = self.tracked.pop(key, None)
        if (
            gone is not None
            and self.by_name.get((gone.obj_ref.namespace, gone.obj_ref.name)) == key
        ):
            del self.by_name[(gone.obj_ref.namespace, gone.obj_ref.name)]
        return gone

    async def run(self, emit: Emit, stop: asyncio.Event) -> None:
        self.emit = emit
        informer = Informer(
            self.kube,
            self.rt,
            self.on_event,
            self.on_sync,
            label_selector=self.filter.label_selector,
            field_selector=self.field_selector,
            watch_timeout=self.watch.timeout_seconds,
            inactivity_timeout=self.watch.inactivity_timeout,
        )
        async with asyncio.TaskGroup() as tg:
            if self.filter.namespace_selector:
                await self.refresh_namespaces()
                tg.create_task(self._namespace_refresher(stop))
            tg.create_task(informer.run(stop))
            tg.create_task(self._ticker(stop))

    async def refresh_namespaces(self) -> None:
        """Namespaces matching the selector; on an API error the last answer is kept."""
        try:
            items, _ = await self.kube.list(
                NAMESPACES, label_selector=self.filter.namespace_selector
            )
        except KubeError as exc:
            log.warning("namespace_selector_failed", source=self.name, error=str(exc)[:200])
            if self.selected_namespaces is None:
                self.selected_namespaces = set()
            return
        self.selected_namespaces = {str((i.get("metadata") or {}).get("name")) for i in items}

    async def _namespace_refresher(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.filter.namespace_refresh)
            if not stop.is_set():
                await self.refresh_namespaces()

    async def _ticker(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.tick)
            await self.rejudge()

    async def rejudge(self) -> None:
        now = self.clock()
        for key in list(self.tracked):
            item = self.tracked.get(key)
            if item is not None:
                findings = self._judge(item, now)
                await self._publish(self.tracker.update(item.obj_ref, findings, now, key))

    def _judge(self, item: Tracked[P], now: datetime) -> list[Finding]:
        return self.judge(item, now, self)

    async def on_sync(self, items: AsyncIterator[dict[str, Any]]) -> None:
        seen = set()
        async for obj in items:
            seen.add(await self.on_object(obj))
        now = self.clock()
        for key in [k for k in self.tracked if k not in seen]:
            gone = self._untrack(key)
            if gone is not None:
                await self._publish(self.tracker.forget(gone.obj_ref, now, key))

    async def on_event(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "DELETED":
            key = self.track_key(obj, self.subject_ref(obj))
            gone = self._untrack(key)
            if gone is not None:
                await self._publish(self.tracker.forget(gone.obj_ref, self.clock(), key))
            return
        await self.on_object(obj)

    def subject_ref(self, obj: dict[str, Any]) -> AnyRef:
        """The object events are about (an Event source overrides: the involved object)."""
        return compact_ref(obj, self.rt.kind, self.rt.api_version)

    def track_key(self, obj: dict[str, Any], ref: AnyRef) -> str:  # noqa: ARG002 - for overrides
        """What one tracked observation is keyed by: the object's uid (an Event source: its own)."""
        return str(ref.uid or ref.name)

    async def on_object(self, obj: dict[str, Any]) -> str:
        ref = self.subject_ref(obj)
        key = self.track_key(obj, ref)
        if not self.filter.allows(ref.namespace, self.selected_namespaces):
            return key
        projection = self.project(obj)
        now = self.clock()
        if projection is None:
            gone = self._untrack(key)
            if gone is not None:
                await self._publish(self.tracker.forget(gone.obj_ref, now, key))
            return key
        previous = self.tracked.get(key)
        item = Tracked(ref, projection, previous.first_seen if previous else now)
        self.track(key, item)
        await self._publish(self.tracker.update(ref, self._judge(item, now), now, key))
        await self.after_change(item)
        return key

    async def after_change(self, item: Tracked[P]) -> None:
        """Hook for sources whose judgement depends on other objects (dependencies)."""

    async def _publish(self, events: list[Any]) -> None:
        assert self.emit is not None
        for event in events:
            await self.emit(event)
