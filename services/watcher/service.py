"""The watcher service: runs the enabled sources and publishes what they see. Wiring only."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

import structlog

from medic.runtime.backoff import Backoff
from medic.runtime.errors import BusError
from medic.runtime.kube import KubeClient
from medic.runtime.lifecycle import ServiceContext
from medic.schemas import Event
from medic.watcher import metrics
from medic.watcher.settings import WatcherSettings
from medic.watcher.sources import default_registry
from medic.watcher.sources.base import Source, SourceContext, SourceRegistry

log = structlog.get_logger(__name__)


T = TypeVar("T")


class StoppedError(Exception):
    """The service is stopping: a wait was abandoned."""


async def until_stopped(work: Coroutine[Any, Any, T], stop: asyncio.Event) -> T:
    """`await work`, unless `stop` is set first (then cancel it and raise StoppedError)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await stopped
    if task.cancelled() or not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise StoppedError
    return task.result()


class WatcherService:
    name = "watcher"

    def __init__(
        self,
        ctx: ServiceContext,
        sources: list[Source],
        kube: KubeClient | None,
        publish_attempts: int = 0,
    ) -> None:
        self.ctx = ctx
        self.publish_attempts = publish_attempts
        self.sources = sources
        self.kube = kube
        self.backoff = Backoff(base=0.2, cap=10.0)
        self.described: list[str] = []  # one line per source, for summary()

    def summary(self) -> list[str]:
        settings = self.ctx.settings
        kube = settings.kube
        where = "in-cluster" if kube.in_cluster else f"kubeconfig {kube.kubeconfig}"
        if self.kube is None:
            where = "no Kubernetes API: etcd only"
        elif kube.context:
            where += f", context {kube.context}"
        head = f"watcher: {len(self.sources)} source(s) on cluster {settings.cluster!r} ({where})"
        return [head, *(f"  {line}" for line in self.described)]

    async def emit(self, event: Event) -> None:
        """Publish until JetStream acknowledges (dedup makes repeats harmless); with
        `publish_attempts` set, give up after that many and let the service fail.

        A stop ends the wait at once (NATS may be down for minutes): the event is not lost,
        the next start lists the same objects and publishes the same ids again."""
        stop = self.ctx.stop
        attempt = 0
        while not stop.is_set():
            attempt += 1
            try:
                await until_stopped(self.ctx.bus.publish(event), stop)
            except StoppedError:
                break
            except BusError as exc:
                if self.publish_attempts and attempt >= self.publish_attempts:
                    raise
                metrics.PUBLISH_RETRIES.inc()
                delay = self.backoff.delay(attempt)
                log.warning(
                    "publish_failed_retrying", event_id=event.id, error=str(exc), retry_in=delay
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            else:
                metrics.EVENTS.labels(event.subject_suffix()).inc()
                log.info(
                    "event_published",
                    event_id=event.id,
                    type=event.type,
                    subject=event.subject,
                    detail=event.subject_suffix(),
                )
                return
        log.warning("publish_abandoned_on_stop", event_id=event.id, attempts=attempt)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                for source in self.sources:
                    tg.create_task(source.run(self.emit, stop), name=f"source:{source.name}")
        finally:
            if self.kube is not None:
                await self.kube.close()


def build_sources(
    settings: WatcherSettings,
    context: SourceContext,
    registry: SourceRegistry,
    described: list[str] | None = None,
) -> list[Source]:
    """The enabled sources; `described` collects a line about each (SourcePlugin.describe)."""
    sources = []
    for name in settings.sources:
        plugin = registry.get(name)
        config = plugin.settings_model.model_validate(settings.config.get(name, {}))
        sources.append(plugin.create(config, context))
        if described is not None:
            described.append(plugin.describe(config))
    return sources


async def build(ctx: ServiceContext) -> WatcherService:
    settings = WatcherSettings.load()
    assert isinstance(settings, WatcherSettings)
    needs_kube = any(name != "etcd_probe" for name in settings.sources)
    kube = await KubeClient.connect(ctx.settings.kube) if needs_kube else None
    if kube is not None:
        ctx.health.add_check("kubernetes", kube.reachable)
    context = SourceContext(cluster=ctx.settings.cluster, kube=kube)
    described: list[str] = []
    try:
        sources = build_sources(settings, context, default_registry(), described)
    except BaseException:
        if kube is not None:
            await kube.close()
        raise
    service = WatcherService(ctx, sources, kube, settings.publish_attempts)
    service.described = described
    return service
