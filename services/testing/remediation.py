"""Drive Medic by hand against any API server (the real control plane or the sandbox): run one
watcher source and collect what it emits, hand an event to the remediator, read the results.

For scenario tests that want the watcher's real judgement and the remediator's real decision
without the three processes of the end-to-end rig. Not for production: this is test support.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from nats.js import api

from medic.remediator.service import RemediatorService
from medic.runtime import subjects
from medic.runtime.bus import Bus
from medic.runtime.consumer import Delivery
from medic.runtime.kube import KubeClient
from medic.schemas import Event, ReleaseEvent, RemediationResult, decode_message
from medic.testing.waiting import eventually
from medic.watcher.sources import default_registry
from medic.watcher.sources.base import SourceContext


@dataclass
class SourceRun:
    """One watcher source running until the context ends; `events` is all it emitted."""

    events: list[Event] = field(default_factory=list)

    async def first(
        self, wanted: Callable[[ReleaseEvent], bool], timeout: float = 30.0
    ) -> ReleaseEvent:
        async def found() -> list[ReleaseEvent]:
            return [e for e in self.events if isinstance(e, ReleaseEvent) and wanted(e)]

        return (await eventually(found, timeout=timeout, interval=0.05))[0]


@contextlib.asynccontextmanager
async def source_running(
    kube: KubeClient, name: str, config: dict[str, Any] | None = None, cluster: str = "test"
) -> AsyncIterator[SourceRun]:
    plugin = default_registry(entry_points=False).get(name)
    settings = plugin.settings_model.model_validate({"tick": 0.1, **(config or {})})
    source = plugin.create(settings, SourceContext(cluster=cluster, kube=kube))
    run = SourceRun()
    stop = asyncio.Event()

    async def emit(event: Event) -> None:
        run.events.append(event)

    task = asyncio.create_task(source.run(emit, stop))
    try:
        yield run
    finally:
        # Stopped, not cancelled: the source ends its watches itself (as the watcher service
        # stops it), also when the test body failed.
        stop.set()
        await asyncio.wait_for(task, 15)


async def handle(service: RemediatorService, event: Event, attempt: int = 1) -> None:
    """One delivery of `event` to the remediator, as its consumer would hand it over."""
    suffix = event.subject_suffix() if isinstance(event, ReleaseEvent) else "custom"
    await service.handle(
        event,
        Delivery(
            subject=f"medic.events.test.{suffix}",
            stream_sequence=attempt,
            num_delivered=attempt,
            is_last_attempt=False,
        ),
    )


async def results(bus: Bus) -> list[RemediationResult]:
    """Every result published so far."""
    sub = await bus.js.pull_subscribe(
        "medic.results.>", stream=subjects.RESULTS.name, config=api.ConsumerConfig()
    )
    found: list[RemediationResult] = []
    with contextlib.suppress(Exception):
        while True:
            for message in await sub.fetch(200, timeout=0.3):
                decoded = decode_message(message.data)
                if isinstance(decoded, RemediationResult):
                    found.append(decoded)
    await sub.unsubscribe()
    return found
