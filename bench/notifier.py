"""Benchmark 4: notifier deliveries/s to a local webhook receiver with signing, against raw
aiohttp POSTs of the same bodies to the same receiver (same concurrency, same session reuse).

The receiver is a plain aiohttp server on loopback that counts requests and answers 204; it
does not verify signatures, so both sides pay the same receiving cost and the ratio shows what
the notifier adds (rendering, Standard Webhooks signing, retries bookkeeping).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from bench.common import Row, workdir

CONCURRENCY = 16


@dataclass
class Receiver:
    url: str
    received: int = 0
    wanted: int | None = None  # set `reached` once `received` gets here
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    def expect(self, more: int) -> None:
        self.wanted = self.received + more
        self.reached.clear()


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver(url="")

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        state.received += 1
        if state.wanted is not None and state.received >= state.wanted:
            state.reached.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server  # noqa: SLF001 - aiohttp exposes the bound port only here
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    state.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield state
    finally:
        await runner.cleanup()


def payloads(count: int) -> list[dict[str, object]]:
    """Result-shaped JSON documents, one per delivery, distinct objects."""
    return [
        {
            "type": "medic.result",
            "id": f"result-{i}",
            "rule": "retry-transient-etcd",
            "outcome": "succeeded",
            "object": f"HelmRelease/ns-{i % 50}/app-{i}",
            "message": "install failed: etcdserver: leader changed",
            "attempt": 1,
        }
        for i in range(count)
    ]


async def raw_posts(url: str, payloads: list[bytes], concurrency: int = CONCURRENCY) -> float:
    """aiohttp alone: POST every body, `concurrency` in flight. Returns POSTs/s."""
    pending = iter(payloads)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def worker() -> None:
            for body in pending:
                async with session.post(
                    url, data=body, headers={"content-type": "application/json"}
                ) as response:
                    response.raise_for_status()

        started = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(concurrency):
                tg.create_task(worker())
        return len(payloads) / (time.perf_counter() - started)


async def run(count: int = 2_000, repeats: int = 3) -> list[Row]:
    name = "4a notifier webhook channel+signing (deliveries/s)"
    from bench import notifier_adapter

    why = notifier_adapter.unavailable()
    raw_runs: list[float] = []
    medic_runs: list[float] = []
    async with receiver() as rx:
        documents = payloads(count)
        raw_bodies = [notifier_adapter.body(d) for d in documents]
        before = rx.received
        # Interleaved (baseline, medic) pairs against the same receiver; best of each reported.
        for _ in range(repeats):
            raw_runs.append(await raw_posts(rx.url, raw_bodies))
            if why is None:
                medic_runs.append(
                    await notifier_adapter.delivery_rate(rx.url, documents, CONCURRENCY)
                )
        received = rx.received - before
        service = None
        if why is None:
            with workdir("notifier") as base:
                service = await notifier_adapter.service_rate(rx.url, count, rx, base)
    expected = count * repeats * (1 if why else 2)
    service_row = Row(
        name="4b notifier service, bus->webhook (deliveries/s)",
        medic=service,
        baseline=max(raw_runs),
        unit="req/s",
        target="(ratio reported)",
        note=why or "",
    )
    return [
        Row(
            name=name,
            medic=max(medic_runs) if medic_runs else None,
            baseline=max(raw_runs),
            unit="req/s",
            target="(ratio reported)",
            note=why or "",
            extra={
                "count": count,
                "concurrency": CONCURRENCY,
                "raw_runs": raw_runs,
                "medic_runs": medic_runs,
                "all_received": received == expected,
            },
        ),
        service_row,
    ]
