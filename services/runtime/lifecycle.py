"""How a Medic process lives: connect, serve health, run its services, shut down gracefully.

SIGTERM/SIGINT set one `stop` event; every service stops fetching, finishes and acks in-flight
work and returns; then the bus drains and the process exits 0. Each service is a task owned by one
TaskGroup, so a crash in one is not silent: it cancels the others and the process exits non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import structlog

from medic.runtime import heap
from medic.runtime import logging as medic_logging
from medic.runtime.bus import Bus
from medic.runtime.health import HealthServer
from medic.runtime.settings import RuntimeSettings

log = structlog.get_logger(__name__)


class Service(Protocol):
    """A running part of Medic (watcher, remediator, notifier, or a plugin's own loop)."""

    name: str

    async def run(self, stop: asyncio.Event) -> None: ...


@runtime_checkable
class Summarised(Protocol):
    """A service that can say what it will do (rules, sources, channels), for `medic run`."""

    def summary(self) -> list[str]: ...


@dataclass
class ServiceContext:
    """What a service's `build` gets: settings, the bus, the health server to add checks to."""

    settings: RuntimeSettings
    bus: Bus
    health: HealthServer
    stop: asyncio.Event = field(default_factory=asyncio.Event)


ServiceFactory = Callable[[ServiceContext], Awaitable[Service]]


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


@contextlib.asynccontextmanager
async def service_context(
    settings: RuntimeSettings, name: str, stop: asyncio.Event | None = None
) -> AsyncIterator[ServiceContext]:
    """Connect to NATS, ensure the streams, serve health; undo all of it on exit."""
    medic_logging.register_secrets(settings.secrets())
    bus = await Bus.connect(settings.nats, name=name)
    health = HealthServer(settings.health.host, settings.health.port)
    try:
        await bus.ensure_streams()

        async def nats_ready() -> bool:
            return bus.is_connected

        health.add_check("nats", nats_ready)
        await health.start()
        yield ServiceContext(
            settings=settings, bus=bus, health=health, stop=stop or asyncio.Event()
        )
    finally:
        await health.stop()
        await bus.close()


async def run_services(
    settings: RuntimeSettings,
    name: str,
    factories: Sequence[ServiceFactory],
    stop: asyncio.Event | None = None,
    on_started: Callable[[Sequence[Service]], None] | None = None,
) -> None:
    """Build and run services until stopped by a signal (or `stop`), then shut down cleanly;
    `on_started` sees the services once built, before they run."""
    stop = stop or asyncio.Event()
    with stop_on_signals(stop):
        async with service_context(settings, name, stop) as ctx:
            services = [await factory(ctx) for factory in factories]
            log.info("services_started", services=[s.name for s in services])
            if on_started is not None:
                on_started(services)
            heap.settle()  # what start-up built stays; the collector need not scan it again
            async with asyncio.TaskGroup() as tg:
                for service in services:
                    tg.create_task(service.run(stop), name=service.name)
            log.info("services_stopped", services=[s.name for s in services])
