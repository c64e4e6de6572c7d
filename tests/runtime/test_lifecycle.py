"""A process serves health and metrics, reports readiness by NATS, and stops cleanly."""

from __future__ import annotations

import asyncio

import aiohttp

from medic.runtime.lifecycle import ServiceContext, run_services
from medic.runtime.settings import HealthSettings, NatsSettings, RuntimeSettings
from medic.testing.waiting import eventually


class Idle:
    name = "idle"

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.finished = False

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.finished = True


async def test_health_ready_metrics_then_graceful_stop(nats_settings: NatsSettings) -> None:
    settings = RuntimeSettings(nats=nats_settings, health=HealthSettings(port=0))
    stop = asyncio.Event()
    built: list[Idle] = []

    async def factory(ctx: ServiceContext) -> Idle:
        built.append(Idle(ctx))
        return built[-1]

    task = asyncio.create_task(run_services(settings, "test", [factory], stop))
    await eventually(lambda: asyncio.sleep(0, result=bool(built)))
    port = built[0].ctx.health.port
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
            assert response.status == 200
        async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
            assert response.status == 200
            assert (await response.json())["checks"] == {"nats": True}
        async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert "medic_bus_messages" in await response.text()
        streams = {info.config.name for info in await built[0].ctx.bus.js.streams_info()}
        assert "MEDIC_EVENTS" in streams
    stop.set()
    await asyncio.wait_for(task, 10)
    assert built[0].finished
