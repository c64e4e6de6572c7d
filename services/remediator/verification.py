"""Waiting for a fix to verify: wake on the object's changes (a shared watch), end on a timer.

A verification can take minutes (helm-controller reconciling a release). It must not hold a
worker re-reading the object meanwhile (issue 17): the rule's check runs once at the start,
then again only when the object changed (one Kubernetes watch per resource type and namespace,
shared by every verification waiting on an object there, open only while one waits), plus a
slow resync for checks that read another object (fleet's force-reconcile reads a Secret); the
timeout is a timer. Without a watch (RBAC lacks `watch`, or it keeps
failing) it falls back to re-checking every `verify.interval`.

A check that judges the written object alone (`judge`, issue 15) is run on the object the watch
delivered instead of reading it again: a fix then costs the API server its read and its write,
and its verification only the shared watch's events, not a GET per change (a burst of 2,000
fixes made 3.9 GETs per fix before).

What is verified is recorded with the claim (`verification_record`), so an owner that takes
over after a crash resumes the same check until the same deadline (issue 16, item 15).

Not for: judging whether the fix worked (the action's `verify` and the rule's condition do
that, `medic.remediator.runner`), nor the decision to act (the engine).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Final

import structlog

from medic.remediator.actions.base import Plan
from medic.runtime.backoff import Backoff
from medic.runtime.kube import (
    ForbiddenError,
    GoneError,
    KubeClient,
    KubeError,
    ResourceType,
)
from medic.schemas import Change

log = structlog.get_logger(__name__)
RESYNC = 30.0  # seconds between checks while a live watch reports no change of the object
WATCH_BACKOFF = Backoff(base=0.5, cap=30.0)
FORBIDDEN_RETRY = 300.0  # RBAC without `watch`: try again this rarely, re-check meanwhile
WatchKey = tuple[ResourceType, str | None]


UNSEEN: Final = object()  # no object delivered by the watch since the last look


@dataclass(eq=False)
class Subscription:
    """One verification's view of its object: `changed` is set on every change of it, and
    `seen` holds the object as the watch last delivered it (None once deleted)."""

    changed: asyncio.Event = field(default_factory=asyncio.Event)
    watched: WatchKey | None = None
    hub: ObjectChanges | None = None
    seen: Any = UNSEEN
    joined_blind: bool = False  # joined a running watch that had delivered nothing about it

    def take_seen(self) -> Any:
        """The object the watch delivered since the last call (UNSEEN when none)."""
        seen, self.seen = self.seen, UNSEEN
        return seen

    @property
    def live(self) -> bool:
        """Whether a watch currently reports this object's changes."""
        return self.hub is not None and self.watched is not None and self.hub.live(self.watched)


class ObjectChanges:
    """Kubernetes watches shared by the verifications waiting on objects of one type and
    namespace. `run(stop)` owns the watch tasks; before it runs (or after it stopped) a
    subscription has no watch and its waiter re-checks on its interval."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube
        self._waiting: dict[WatchKey, dict[str, set[Subscription]]] = {}
        self._watches: dict[WatchKey, asyncio.Task[None]] = {}
        self._live: dict[WatchKey, bool] = {}
        # Per running watch: each object's state as it last delivered it (None: deleted), so a
        # verification that joins the watch later judges that instead of reading the object.
        self._latest: dict[WatchKey, dict[str, Any]] = {}
        # Per running watch: a loop time by which the version it started from had been applied
        # (None after it restarted from "now"): a write sent after that comes after its start,
        # so the watch delivers it and every change since, and a subscriber needs no read.
        self._since: dict[WatchKey, float | None] = {}
        self._tasks: asyncio.TaskGroup | None = None

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tasks = tg
            await stop.wait()
            self._tasks = None
            for task in self._watches.values():
                task.cancel()
            self.wake_all()

    def live(self, key: WatchKey) -> bool:
        return self._live.get(key, False)

    def wake_all(self) -> None:
        for names in self._waiting.values():
            for subscriptions in names.values():
                for subscription in subscriptions:
                    subscription.changed.set()

    @contextlib.asynccontextmanager
    async def subscribe(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        resource_version: str = "",
        sent_at: float | None = None,
    ) -> AsyncIterator[Subscription]:
        """Changes of one object from `resource_version` on (that of the object as written;
        the watch then misses nothing between the write and the first check). `sent_at`: the
        loop time before that write was sent, if the caller wrote it."""
        key: WatchKey = (rt, namespace if rt.namespaced else None)
        subscription = Subscription(watched=key, hub=self)
        names = self._waiting.setdefault(key, {})
        names.setdefault(name, set()).add(subscription)
        try:
            if key in self._watches:
                # A watch someone else started: what it delivered about this object before we
                # came is the latest the watch knows. When it delivered nothing, a change made
                # before it started (after our write) could be missed, unless it started
                # before our write was sent; otherwise the caller checks once.
                latest = self._latest.get(key, {})
                if name in latest:
                    subscription.seen = latest[name]
                else:
                    subscription.joined_blind = not self._covers(key, sent_at)
            elif self._tasks is not None:
                start = resource_version or await self._version_of(rt, namespace, name)
                # Checked again after the await: another subscriber may have started it.
                if key not in self._watches and self._tasks is not None:
                    self._since[key] = asyncio.get_running_loop().time()
                    self._watches[key] = self._tasks.create_task(self._watch(key, start))
                else:
                    subscription.joined_blind = not self._covers(key, sent_at)
            yield subscription
        finally:
            names[name].discard(subscription)
            if not names[name]:
                del names[name]
            if not names:
                del self._waiting[key]
                task = self._watches.pop(key, None)
                if task is not None:
                    task.cancel()
                self._live.pop(key, None)
                self._latest.pop(key, None)
                self._since.pop(key, None)

    def _covers(self, key: WatchKey, sent_at: float | None) -> bool:
        """Whether the running watch of `key` started before a write sent at `sent_at`."""
        since = self._since.get(key)
        return since is not None and sent_at is not None and since <= sent_at

    async def _version_of(self, rt: ResourceType, namespace: str | None, name: str) -> str:
        """Where to start watching when the caller knows no version: the object's own."""
        try:
            obj = await self.kube.get(rt, name, namespace)
        except KubeError:  # not found, or unreadable: watch from now
            return ""
        return str((obj.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(self, key: WatchKey, version: str) -> None:
        rt, namespace = key
        failures = 0
        wlog = log.bind(resource=rt.plural, namespace=namespace)
        while True:
            try:
                self._live[key] = True
                async for kind, obj in self.kube.watch(rt, namespace, version):
                    failures = 0
                    metadata = obj.get("metadata") or {}
                    version = str(metadata.get("resourceVersion") or version)
                    if kind != "BOOKMARK":
                        seen = None if kind == "DELETED" else obj
                        self._wake(key, str(metadata.get("name", "")), seen)
            except GoneError:  # history compacted: start from now; a change may be missed
                version = ""
                self._since[key] = None
                self._wake_key(key)
            except ForbiddenError as exc:
                self._lost(key, wlog, exc, failures)
                await asyncio.sleep(FORBIDDEN_RETRY)
            except KubeError as exc:
                failures += 1
                self._lost(key, wlog, exc, failures)
                await asyncio.sleep(WATCH_BACKOFF.delay(failures))

    def _lost(self, key: WatchKey, wlog: Any, exc: KubeError, failures: int) -> None:
        self._live[key] = False
        self._wake_key(key)  # re-check now: changes may have been missed
        wlog.warning("verify_watch_failed", error=str(exc)[:200], failures=failures)

    def _wake(self, key: WatchKey, name: str, seen: Any = UNSEEN) -> None:
        if key in self._watches:
            self._latest.setdefault(key, {})[name] = seen
        for subscription in self._waiting.get(key, {}).get(name, ()):
            subscription.seen = seen
            subscription.changed.set()

    def _wake_key(self, key: WatchKey) -> None:
        self._latest.pop(key, None)  # events may have been missed: what it knew may be stale
        for subscriptions in self._waiting.get(key, {}).values():
            for subscription in subscriptions:
                subscription.changed.set()


Judge = Callable[[Any], bool]  # the rule's success condition over the object (None: deleted)


async def wait_verified(
    check: Callable[[], Awaitable[bool]],
    subscription: Subscription,
    *,
    deadline: float,
    interval: float,
    stopping: asyncio.Event,
    judge: Judge | None = None,
    checked: bool = False,
) -> bool | None:
    """True when the check holds, False at `deadline` (loop time), None when the service stops.

    Checks at once (unless the caller just did: `checked`), then on each change of the object,
    every RESYNC seconds, and once at the deadline. With `judge`, a change the watch delivered
    is judged on the object it carries (no read), and a live watch's silence needs no resync
    read (a burst's slow verifications made a GET each every 30 s); otherwise `check` reads
    it, at most once per `interval`, so a burst of status updates costs one read."""
    loop = asyncio.get_running_loop()
    while True:
        subscription.changed.clear()
        checked_at = loop.time()
        seen = subscription.take_seen() if judge is not None else UNSEEN
        read = False
        if judge is not None and seen is not UNSEEN:
            if judge(seen):
                return True
        elif checked:
            pass
        else:
            read = True
            if await check_holds(check):
                return True
        checked = False
        if loop.time() >= deadline:
            return False if read else await check_holds(check)
        pause = RESYNC if subscription.live else interval
        quiet = not await _changed(subscription, max(0.0, min(pause, deadline - loop.time())))
        # A live watch's silence says the object did not change (a lost watch wakes every
        # waiter): with a judge, what was judged last still stands, so no read. A check that
        # reads more than the object, or one without a watch, reads again.
        checked = quiet and judge is not None and subscription.live
        if stopping.is_set():
            return None
        spacing = checked_at + interval - loop.time()
        if read and spacing > 0 and (judge is None or subscription.seen is UNSEEN):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), min(spacing, deadline - loop.time()))
            if stopping.is_set():
                return None


async def _changed(subscription: Subscription, timeout: float) -> bool:
    """Whether the subscription was woken (a change, a lost watch, a stop) within `timeout`."""
    try:
        await asyncio.wait_for(subscription.changed.wait(), timeout)
    except TimeoutError:
        return False
    return True


async def check_holds(check: Callable[[], Awaitable[bool]]) -> bool:
    try:
        return await check()
    except KubeError as exc:
        log.warning("verify_read_failed", error=str(exc)[:200])
        return False


def verification_record(plan: Plan, until: datetime) -> dict[str, Any]:
    """What an owner taking over needs to run the same check until the same deadline."""
    assert plan.rt is not None
    return {
        "until": until.isoformat(),
        "rt": asdict(plan.rt),
        "name": plan.name,
        "namespace": plan.namespace,
        "token": plan.token,
        "resource_version": plan.resource_version,
        "reason": plan.reason,
        "extra": json.loads(json.dumps(plan.extra, default=str)),
        "changes": [change.model_dump(mode="json") for change in plan.changes],
    }


def plan_of(record: dict[str, Any]) -> tuple[Plan, datetime]:
    """The written plan and the verification deadline recorded by `verification_record`."""
    plan = Plan(
        verdict="act",
        reason=str(record.get("reason", "")),
        rt=ResourceType(**record["rt"]),
        name=str(record["name"]),
        namespace=record.get("namespace"),
        token=str(record.get("token", "")),
        resource_version=record.get("resource_version"),
        extra=dict(record.get("extra") or {}),
        changes=[Change.model_validate(c) for c in record.get("changes") or []],
    )
    return plan, datetime.fromisoformat(str(record["until"]))
