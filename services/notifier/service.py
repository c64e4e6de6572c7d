"""The notifier service: results from MEDIC_RESULTS to channels. Wiring only.

`build(ctx)` reads `NotifierSettings`, builds the configured channels from the registry
(built-ins plus the `medic.channels` entry points), binds the KV buckets and the durable
consumer "notifier", and returns the service; `run(stop)` runs the consumer and the digest
flusher in one TaskGroup and closes the channels at the end.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Final

import structlog

from medic.notifier.channels import Channel, ChannelRegistry, default_registry
from medic.notifier.delivery import CONSUMER, ChannelGate, Deliverer
from medic.notifier.folding import FoldBook
from medic.notifier.ledger import Ledger
from medic.notifier.settings import NotifierSettings
from medic.runtime import logging as medic_logging
from medic.runtime.bus import Bus
from medic.runtime.consumer import Consumer, ConsumerSpec
from medic.runtime.lifecycle import ServiceContext
from medic.runtime.settings import SettingsError
from medic.runtime.subjects import PREFIX, RESULTS

log = structlog.get_logger(__name__)
NAME: Final = "notifier"
NO_CHANNEL: Final = (
    "notifier: no channel configured: results stay on NATS (medic.results.>), nobody is told;"
    " set MEDIC_NOTIFIER_CHANNELS"
)


def consumer_spec(settings: NotifierSettings) -> ConsumerSpec:
    """Nak delays grow to `retry_cap`; `max_deliver` high so an outage of hours still delivers."""
    delays: list[float] = []
    delay = settings.retry_base
    while delay < settings.retry_cap:
        delays.append(delay)
        delay *= 2
    return ConsumerSpec(
        stream=RESULTS,
        durable=CONSUMER,
        filter_subjects=(f"{PREFIX}.results.>",),
        max_deliver=settings.max_deliver,
        ack_wait=settings.ack_wait,
        max_ack_pending=20_000,
        nak_delays=(*delays, settings.retry_cap),
        batch=256,
        fetch_timeout=settings.fetch_timeout,
        concurrency=64,
        handler_timeout=max(300.0, settings.digest_window + 4 * settings.send_timeout),
    )


def build_channels(settings: NotifierSettings, registry: ChannelRegistry) -> dict[str, Channel]:
    channels: dict[str, Channel] = {}
    for config in settings.channels:
        if not config.enabled:
            continue
        if config.name in channels:
            raise ValueError(f"channel {config.name!r} is configured twice")
        try:
            channel = registry.create(config)
        except (ValueError, KeyError) as exc:  # pydantic's ValidationError is a ValueError
            raise SettingsError([f"notifier.channels[{config.name}]: {exc}"]) from exc
        secrets = getattr(channel, "secrets", None)
        if callable(secrets):
            medic_logging.register_secrets(secrets())
        channels[config.name] = channel
    return channels


@dataclass
class NotifierService:
    bus: Bus
    settings: NotifierSettings
    deliverer: Deliverer
    consumer: Consumer
    name: str = NAME

    def summary(self) -> list[str]:
        """Which channels deliver, for `medic run`'s start-up summary."""
        delivering = [c for c in self.settings.channels if c.name in self.deliverer.channels]
        if not delivering:
            return [NO_CHANNEL]
        lines = [f"notifier: {len(delivering)} channel(s)"]
        for channel in delivering:
            default = ", default" if channel.default else ""
            lines.append(f"  {channel.name} ({channel.type}{default})")
        return lines

    @classmethod
    async def create(
        cls, bus: Bus, settings: NotifierSettings, registry: ChannelRegistry | None = None
    ) -> NotifierService:
        registry = registry or default_registry()
        channels = build_channels(settings, registry)
        gates = {
            c.name: ChannelGate(
                c.rate_per_second or registry.get(c.type).default_rate, c.rate_burst
            )
            for c in settings.channels
            if c.name in channels
        }
        ledger = Ledger(
            await bus.kv(settings.deliveries_bucket, ttl=settings.deliveries_ttl),
            await bus.kv(settings.threads_bucket, ttl=settings.deliveries_ttl),
            lease=settings.claim_lease,
        )
        folds = FoldBook(
            await bus.kv(settings.folds_bucket, ttl=settings.deliveries_ttl), clock=time.time
        )
        deliverer = Deliverer(bus, settings, ledger, channels, gates, folds=folds)
        consumer = Consumer(bus, consumer_spec(settings), deliverer.handle)
        await consumer.setup()
        log.info("notifier_ready", channels=sorted(channels))
        return cls(bus, settings, deliverer, consumer)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.consumer.run(stop), name="notifier-consumer")
                tg.create_task(self.deliverer.digests.run(stop), name="notifier-digests")
        finally:
            for channel in self.deliverer.channels.values():
                await channel.close()


async def build(ctx: ServiceContext) -> NotifierService:
    settings = NotifierSettings.load()
    assert isinstance(settings, NotifierSettings)
    service = await NotifierService.create(ctx.bus, settings)

    async def consumer_bound() -> bool:
        return ctx.bus.is_connected

    ctx.health.add_check("notifier", consumer_bound)
    return service
