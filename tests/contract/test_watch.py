"""Watches as the watcher's informer makes them: from a list's resourceVersion, with label
selectors and bookmarks, resumed from the last version seen; 410 once the history is gone.

On the real server a compaction alone does not expire anything the watch cache still holds:
kube-apiserver serves watches (and lists at an exact resourceVersion, and continue tokens)
from its cache after etcd compacted those revisions. The 410 comes when the cache no longer
has the version either, as after a kube-apiserver restart (the cache is rebuilt from etcd at
the current revision) or once the cache's window has moved on; the informer must then re-list.
The sandbox's `compact()` is both at once: its history is gone at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from medic.runtime.kube import GoneError, KubeClient
from medic.testing.contract import CONFIGMAPS, KubeApi, configmap
from medic.watcher.informer import Informer

# kube-apiserver sends a bookmark 2 s before the watch's deadline (apiserver
# pkg/storage/cacher/cache_watcher.go nextBookmarkTime), and only past the version it started at.
WATCH_SECONDS = 4


Events = list[tuple[str, dict[str, Any]]]


async def _events(
    kube: KubeClient, ns: str, since: str, done: Callable[[Events], bool], **options: Any
) -> Events:
    """The events (bookmarks included) of a watch from `since`, until `done(events)`."""
    seen: Events = []
    stream = kube.watch(CONFIGMAPS, ns, since, timeout_seconds=WATCH_SECONDS, **options)
    try:
        async with asyncio.timeout(WATCH_SECONDS + 5):
            async for event in stream:
                seen.append(event)
                if done(seen):
                    break
    finally:
        await stream.aclose()
    return seen


def _count(count: int) -> Callable[[Events], bool]:
    return lambda seen: len(seen) >= count


def _bookmark_after_delete(seen: Events) -> bool:
    kinds = [kind for kind, _ in seen]
    return "DELETED" in kinds and kinds[-1] == "BOOKMARK"


def _summary(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str]]:
    return [(kind, obj["metadata"].get("name", "")) for kind, obj in events]


async def test_watch_from_a_list_version_with_selector_bookmark_and_resume(
    kube_api: KubeApi,
) -> None:
    kube, ns = kube_api.kube, kube_api.namespace
    await kube.create(CONFIGMAPS, configmap("before", ns, tier="web"))
    _, listed = await kube.list(CONFIGMAPS, ns)
    await kube.create(CONFIGMAPS, configmap("other", ns, tier="db"))
    await kube.create(CONFIGMAPS, configmap("c1", ns, tier="web"))
    events: Events = []
    stream = kube.watch(
        CONFIGMAPS, ns, listed, label_selector="tier=web", timeout_seconds=WATCH_SECONDS
    )
    try:
        async with asyncio.timeout(WATCH_SECONDS + 5):
            async for kind, obj in stream:
                events.append((kind, obj))
                if (kind, obj["metadata"].get("name")) == ("ADDED", "c1"):
                    # the watch is open: these writes land while it watches, so the server
                    # owes a bookmark past them
                    await kube.patch(CONFIGMAPS, "c1", ns, {"data": {"key": "changed"}})
                    await kube.delete(CONFIGMAPS, "c1", ns)
                if _bookmark_after_delete(events):
                    break
    finally:
        await stream.aclose()
    if kube_api.sandbox is not None:  # sandbox LIMITS: a bookmark every interval, moved or not
        events = [e for e in events if e[0] != "BOOKMARK"] + events[-1:]
    assert _summary(events) == [
        ("ADDED", "c1"),
        ("MODIFIED", "c1"),
        ("DELETED", "c1"),
        ("BOOKMARK", ""),
    ]
    bookmark = events[-1][1]
    assert bookmark["kind"] == "ConfigMap"
    assert bookmark["apiVersion"] == "v1"
    assert int(bookmark["metadata"]["resourceVersion"]) >= int(
        events[2][1]["metadata"]["resourceVersion"]
    )
    await kube.create(CONFIGMAPS, configmap("after", ns, tier="web"))
    resumed = await _events(kube, ns, bookmark["metadata"]["resourceVersion"], _count(1))
    assert _summary(resumed) == [("ADDED", "after")]


def _drop_watch_cache(kube_api: KubeApi) -> None:
    """Real: restart kube-apiserver, whose new watch cache starts at the current revision.

    On this thread, not `asyncio.to_thread`: the child's parent-death signal is tied to the
    thread that started it, and the executor's thread ends with the test's event loop."""
    if kube_api.plane is not None:
        kube_api.plane.restart_apiserver()


async def test_after_compaction_an_old_version_is_410_and_the_informer_relists(
    kube_api: KubeApi,
) -> None:
    kube, ns = kube_api.kube, kube_api.namespace
    for i in range(3):
        await kube.create(CONFIGMAPS, configmap(f"c{i}", ns))
    first_page = await kube.request("GET", CONFIGMAPS.path(ns), query={"limit": "1"})
    old = first_page["metadata"]["resourceVersion"]
    token = first_page["metadata"]["continue"]
    await kube.patch(CONFIGMAPS, "c0", ns, {"data": {"key": "changed"}})
    await kube_api.compact()
    if kube_api.real:  # the watch cache still serves what etcd just compacted away
        assert _summary(await _events(kube, ns, old, _count(1))) == [("MODIFIED", "c0")]
    _drop_watch_cache(kube_api)
    with pytest.raises(GoneError) as gone:
        await _events(kube, ns, old, _count(1))
    assert gone.value.reason == "Expired"
    assert "too old resource version" in gone.value.message
    with pytest.raises(GoneError):
        await kube.request("GET", CONFIGMAPS.path(ns), query={"limit": "1", "continue": token})

    synced: list[list[str]] = []
    changes: list[tuple[str, str]] = []

    async def on_sync(objects: AsyncIterator[dict[str, Any]]) -> None:
        synced.append([o["metadata"]["name"] async for o in objects])

    async def on_event(kind: str, obj: dict[str, Any]) -> None:
        changes.append((kind, obj["metadata"]["name"]))

    informer = Informer(kube, CONFIGMAPS, on_event, on_sync, namespace=ns, watch_timeout=30)
    informer.resource_version = old  # as if it had been watching before the history went
    stop = asyncio.Event()
    task = asyncio.create_task(informer.run(stop))
    try:
        async with asyncio.timeout(20):
            await informer.synced.wait()
            assert synced == [["c0", "c1", "c2"]]
            await kube.create(CONFIGMAPS, configmap("c3", ns))
            while ("ADDED", "c3") not in changes:
                await asyncio.sleep(0.05)
        assert changes == [("ADDED", "c3")]
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
