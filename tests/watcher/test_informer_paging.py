"""The informer streams its list page by page: the next page is fetched only when the consumer
has projected the previous one, so the watcher never holds the whole list in memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from medic.runtime.kube import KubeClient, ResourceType
from medic.runtime.settings import KubeSettings
from medic.sandbox import KubeSandbox
from medic.schemas import ReleaseEvent
from medic.testing import objects
from medic.testing.helm import corrupt_release_secret
from medic.testing.waiting import eventually
from medic.upstream import flux
from medic.watcher.informer import Informer
from medic.watcher.sources import helm_storage, helmrelease
from medic.watcher.sources.base import SourceContext
from medic.watcher.sources.kubernetes import ObjectSource

HR = ResourceType(flux.GROUP, "v2", flux.PLURAL, flux.KIND)


def list_requests(sandbox: KubeSandbox) -> list[str]:
    return [
        r.path
        for r in sandbox.store.requests
        if r.verb == "list" and r.resource == flux.PLURAL and "watch" not in r.path
    ]


async def test_relist_streams_pages_and_watches_from_the_lists_version() -> None:
    async with KubeSandbox.start() as sandbox:
        for i in range(1_200):
            sandbox.store.put(objects.helmrelease(f"app-{i:04d}", f"ns-{i % 3}"))
        kube = await KubeClient.connect(KubeSettings(kubeconfig=sandbox.kubeconfig_path))
        seen: list[str] = []
        requests_after_first: list[int] = []

        async def on_sync(items: AsyncIterator[dict[str, Any]]) -> None:
            async for obj in items:
                if not seen:
                    requests_after_first.append(len(list_requests(sandbox)))
                seen.append(obj["metadata"]["name"])

        async def on_event(_kind: str, _obj: dict[str, Any]) -> None:
            return None

        informer = Informer(kube, HR, on_event, on_sync)
        try:
            await informer.relist()
        finally:
            await kube.close()
        assert len(seen) == len(set(seen)) == 1_200
        assert requests_after_first == [1]  # the first object came before page 2 was asked for
        pages = list_requests(sandbox)
        assert len(pages) == 3
        assert all("limit=500" in path for path in pages)
        assert all("continue=" in path for path in pages[1:])
        assert informer.resource_version == str(sandbox.store.rv)


async def test_writes_between_pages_are_neither_lost_nor_skipped() -> None:
    """While the source projects page 1, one listed object fails, two are deleted, one is created
    in page 1's range and one of page 2 is deleted: page 2 starts right after page 1's last
    object (an offset would now skip one) and the watch from the list's version replays the
    writes, so the source ends up with exactly the objects there are and reports the failure."""
    async with KubeSandbox.start() as sandbox:
        names = [f"app-{i:04d}" for i in range(1_200)]
        for name in names:
            sandbox.store.put(objects.helmrelease(name, status=objects.ready_status(name, "apps")))
        kube = await KubeClient.connect(KubeSettings(kubeconfig=sandbox.kubeconfig_path))
        settings = helmrelease.HelmReleaseSettings(version="v2", tick=0.1)
        source = helmrelease.create(settings, SourceContext(cluster="paging", kube=kube))
        assert isinstance(source, ObjectSource)
        projected = source.on_sync
        written = asyncio.Event()

        async def write_after_page_one(items: AsyncIterator[dict[str, Any]]) -> None:
            async def interleaved() -> AsyncIterator[dict[str, Any]]:
                count = 0
                async for obj in items:
                    yield obj
                    count += 1
                    if count == 500:  # page 1 projected, page 2 not asked for yet
                        assert len(list_requests(sandbox)) == 1
                        status = objects.etcd_failed_status("app-0001", "apps")
                        sandbox.store.patch_merge(
                            flux.api_version("v2"),
                            flux.KIND,
                            "app-0001",
                            "apps",
                            {"status": status},
                        )
                        for gone in ("app-0002", "app-0003"):
                            sandbox.store.delete(flux.api_version("v2"), flux.KIND, gone, "apps")
                        new = objects.helmrelease(
                            "app-0250a", status=objects.ready_status("x", "apps")
                        )
                        sandbox.store.put(new)
                        sandbox.store.delete(flux.api_version("v2"), flux.KIND, "app-0600", "apps")
                        written.set()

            await projected(interleaved())

        source.on_sync = write_after_page_one  # type: ignore[method-assign]
        events: list[ReleaseEvent] = []

        async def emit(event: ReleaseEvent) -> None:
            events.append(event)

        expected = (set(names) - {"app-0002", "app-0003", "app-0600"}) | {"app-0250a"}
        stop = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(source.run(emit, stop))

                async def settled() -> bool:
                    tracked = {item.obj_ref.name for item in source.tracked.values()}
                    failed = {
                        (e.data.object.name, e.data.problem.value, e.data.state.value)
                        for e in events
                    }
                    return tracked == expected and ("app-0001", "failed", "firing") in failed

                try:
                    await eventually(settled, timeout=30)
                finally:
                    stop.set()
        finally:
            await kube.close()
        assert written.is_set()
        assert len(list_requests(sandbox)) == 3  # the three pages, then only the watch
        assert {e.data.object.name for e in events} == {"app-0001"}


async def test_list_items_without_kind_are_reported_with_the_resources_kind() -> None:
    """The API server leaves kind/apiVersion out of the items of built-in types (a Secret list):
    the source names the object by its resource type, and keeps no Secret data."""
    source = helm_storage.create(
        helm_storage.HelmStorageSettings(),
        SourceContext(cluster="c", kube=None),  # type: ignore[arg-type]
    )
    assert isinstance(source, ObjectSource)
    events: list[ReleaseEvent] = []

    async def emit(event: ReleaseEvent) -> None:
        events.append(event)

    source.emit = emit
    secret = corrupt_release_secret("broken")
    del secret["kind"], secret["apiVersion"]
    secret["metadata"]["uid"] = "uid-1"

    async def listed() -> AsyncIterator[dict[str, Any]]:
        yield secret

    await source.on_sync(listed())
    assert [
        (e.data.object.kind, e.data.object.api_version, e.data.problem.value) for e in events
    ] == [("Secret", "v1", "decode_error")]
    (item,) = source.tracked.values()
    assert not any(isinstance(v, dict) for v in vars_of(item.projection))


def vars_of(projection: object) -> list[object]:
    slots = getattr(type(projection), "__slots__", ())
    return [getattr(projection, name) for name in slots]


async def test_an_informer_cancelled_while_watching_closes_its_watch_cleanly() -> None:
    """Cancelled from outside (a TaskGroup ending on an error) while waiting for the next watch
    event: the generator is stopped before it is closed, no RuntimeError ("aclose(): asynchronous
    generator is already running", seen on the real API server)."""
    async with KubeSandbox.start() as sandbox:
        kube = await KubeClient.connect(KubeSettings(kubeconfig=sandbox.kubeconfig_path))
        synced = asyncio.Event()

        async def on_event(_kind: str, _obj: dict[str, Any]) -> None:
            return None

        async def on_sync(items: AsyncIterator[dict[str, Any]]) -> None:
            async for _ in items:
                pass
            synced.set()

        try:
            informer = Informer(kube, HR, on_event, on_sync)
            task = asyncio.create_task(informer.run(asyncio.Event()))
            await asyncio.wait_for(synced.wait(), 10)

            async def watching() -> bool:
                return any(r.verb == "watch" for r in sandbox.store.requests)

            await eventually(watching)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=10)
            assert done
            assert task.cancelled()  # not a RuntimeError from the generator
        finally:
            await kube.close()
