"""The informer streams its list page by page: the next page is fetched only when the consumer
has projected the previous one, so the watcher never holds the whole list in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from medic.runtime.kube import KubeClient, ResourceType
from medic.runtime.settings import KubeSettings
from medic.sandbox import KubeSandbox
from medic.testing import objects
from medic.upstream import flux
from medic.watcher.informer import Informer

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
