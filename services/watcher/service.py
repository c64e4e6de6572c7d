"""The watcher service: runs the enabled sources and publishes what they see. Wiring only."""

from __future__ import annotations

import asyncio

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

    async def emit(self, event: Event) -> None:
        """Publish until JetStream acknowledges (dedup makes repeats harmless); with
        `publish_attempts` set, give up after that many and let the service fail."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.ctx.bus.publish(event)
            except BusError as exc:
                if self.publish_attempts and attempt >= self.publish_attempts:
                    raise
                metrics.PUBLISH_RETRIES.inc()
                delay = self.backoff.delay(attempt)
                log.warning(
                    "publish_failed_retrying", event_id=event.id, error=str(exc), retry_in=delay
                )
                await asyncio.sleep(delay)
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

    async def run(self, stop: asyncio.Event) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                for source in self.sources:
                    tg.create_task(source.run(self.emit, stop), name=f"source:{source.name}")
        finally:
            if self.kube is not None:
                await self.kube.close()


def build_sources(
    settings: WatcherSettings, context: SourceContext, registry: SourceRegistry
) -> list[Source]:
    sources = []
    for name in settings.sources:
        plugin = registry.get(name)
        config = plugin.settings_model.model_validate(settings.config.get(name, {}))
        sources.append(plugin.create(config, context))
    return sources


async def build(ctx: ServiceContext) -> WatcherService:
    settings = WatcherSettings.load()
    assert isinstance(settings, WatcherSettings)
    needs_kube = any(name != "etcd_probe" for name in settings.sources)
    kube = await KubeClient.connect(ctx.settings.kube) if needs_kube else None
    if kube is not None:
        ctx.health.add_check("kubernetes", kube.reachable)
    context = SourceContext(cluster=ctx.settings.cluster, kube=kube)
    try:
        sources = build_sources(settings, context, default_registry())
    except BaseException:
        if kube is not None:
            await kube.close()
        raise
    return WatcherService(ctx, sources, kube, settings.publish_attempts)
