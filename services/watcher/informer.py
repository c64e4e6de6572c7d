"""List-then-watch for one resource type, the way client-go's reflector does it.

Lists (paged), then watches from the list's resourceVersion with bookmarks; resumes from the last
seen resourceVersion after a dropped stream; on 410 Gone re-lists and reports the objects as they
are now (callers diff against what they knew, so only changes become events); backs off with
jitter on errors (the client already honours 429 Retry-After and retries 5xx).
Knows the Kubernetes API, not NATS and not what a problem is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog

from medic.runtime.backoff import Backoff
from medic.runtime.kube import (
    GoneError,
    KubeClient,
    KubeError,
    ResourceType,
    TooManyRequestsError,
)

log = structlog.get_logger(__name__)

OnEvent = Callable[[str, dict[str, Any]], Awaitable[None]]
# The (re-)listed objects, streamed page by page: a consumer projects each object as it comes,
# so the watcher never holds the whole list (10,000 Helm release Secrets are hundreds of MB).
OnSync = Callable[[AsyncIterator[dict[str, Any]]], Awaitable[None]]


class Informer:
    def __init__(
        self,
        kube: KubeClient,
        rt: ResourceType,
        on_event: OnEvent,
        on_sync: OnSync,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        watch_timeout: int = 300,
        inactivity_timeout: float = 90.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.kube = kube
        self.rt = rt
        self.on_event = on_event
        self.on_sync = on_sync
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.watch_timeout = watch_timeout
        self.inactivity_timeout = inactivity_timeout
        self.backoff = backoff or Backoff(base=0.2, cap=30.0)
        self.resource_version = ""
        self.synced = asyncio.Event()
        self.log = log.bind(resource=rt.plural, group=rt.group)

    async def relist(self) -> None:
        listed = ""

        async def objects() -> AsyncIterator[dict[str, Any]]:
            nonlocal listed
            pages = self.kube.pages(
                self.rt, self.namespace, self.label_selector, self.field_selector
            )
            async for page, version in pages:
                listed = version or listed
                page.reverse()
                while page:  # each listed object is dropped as soon as it was projected
                    yield page.pop()
                del page  # before the next page is fetched: one page at a time, never two

        await self.on_sync(objects())
        self.resource_version = listed
        self.synced.set()

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                if not self.resource_version:
                    await self.relist()
                await self._watch(stop)
                failures = 0
            except GoneError:
                self.log.info("watch_expired_relisting", resource_version=self.resource_version)
                self.resource_version = ""
            except KubeError as exc:
                failures += 1
                delay = self.backoff.delay(failures)
                if isinstance(exc, TooManyRequestsError):
                    delay = max(delay, exc.retry_after)
                self.log.warning("watch_failed", error=str(exc)[:200], retry_in=round(delay, 2))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    async def _watch(self, stop: asyncio.Event) -> None:
        stream = self.kube.watch(
            self.rt,
            self.namespace,
            self.resource_version,
            label_selector=self.label_selector,
            timeout_seconds=self.watch_timeout,
            inactivity_timeout=self.inactivity_timeout,
        )
        stopping = asyncio.create_task(stop.wait())
        step: asyncio.Future[Any] | None = None
        try:
            iterator = aiter(stream)
            while True:
                step = asyncio.ensure_future(anext(iterator))
                done, _ = await asyncio.wait({step, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if stopping in done:
                    step.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await step
                    return
                try:
                    kind, obj = step.result()
                except StopAsyncIteration:
                    return  # server closed the watch (timeoutSeconds): resume from last rv
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if version:
                    self.resource_version = str(version)
                if kind != "BOOKMARK" and self._selected(obj):
                    await self.on_event(kind, obj)
        finally:
            stopping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopping
            if step is not None and not step.done():
                # Cancelled from outside (a TaskGroup) while the generator was running: it must
                # stop before it can be closed ("aclose(): asynchronous generator is already
                # running" otherwise).
                step.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, KubeError):
                    await step
            await stream.aclose()

    def _selected(self, obj: dict[str, Any]) -> bool:
        """Field selectors the watch itself cannot apply on every server (e.g. Secret type)."""
        if not self.field_selector:
            return True
        for clause in self.field_selector.split(","):
            key, _, value = clause.partition("=")
            if key == "type" and obj.get("type") != value:
                return False
        return True
