"""How the notifier benchmark drives `medic.notifier` (kept apart so the API can move).

Measured at the channel: `WebhookChannel.send` (JSON body, Standard Webhooks HMAC signature,
one pooled aiohttp session, status handling) with the same concurrency and the same payloads
as the raw aiohttp POSTs.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import time
from pathlib import Path
from typing import Any


def unavailable() -> str | None:
    try:
        found = importlib.util.find_spec("medic.notifier.channels.webhook") is not None
    except ImportError:
        found = False
    if not found:
        return "notifier webhook channel not landed (services/notifier/channels/webhook.py)"
    return None


SECRET = "whsec_" + base64.b64encode(b"medic-bench-signing-key-0123456789").decode()


async def delivery_rate(url: str, payloads: list[dict[str, Any]], concurrency: int) -> float:
    from pydantic import SecretStr

    from medic.notifier.channels.base import Rendered
    from medic.notifier.channels.webhook import WebhookChannel, WebhookOptions

    channel = WebhookChannel("bench", WebhookOptions(url=SecretStr(url), secret=SecretStr(SECRET)))
    rendered = [
        Rendered(
            title="bench",
            text="bench",
            color="good",
            blocks=[],
            payload=payload,
            message_id=f"bench-{i}",
            problem_key=str(payload.get("object", i)),
        )
        for i, payload in enumerate(payloads)
    ]
    pending = iter(rendered)

    async def worker() -> None:
        for item in pending:
            await channel.send(item)

    try:
        started = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(concurrency):
                tg.create_task(worker())
        return len(rendered) / (time.perf_counter() - started)
    finally:
        await channel.close()


def body(payload: dict[str, Any]) -> bytes:
    """The bytes the webhook channel sends for a payload (compact JSON), for the raw side."""
    return json.dumps(payload, separators=(",", ":")).encode()


async def service_rate(url: str, count: int, receiver: Any, base: Path) -> float:
    """The whole notifier service: N results on MEDIC_RESULTS -> consumer -> routing, render,
    KV ledger claim/finish, signed POST, Notification record. Deliveries/s until the receiver
    has all N (digests disabled by a threshold above N, so every result is its own POST)."""
    from bench.common import nats_bus

    from medic.notifier.service import NotifierService
    from medic.notifier.settings import ChannelConfig, NotifierSettings
    from medic.testing.notifier import make_result

    channel = ChannelConfig(
        name="hook",
        type="webhook",
        options={"url": url, "secret": SECRET},
    )
    settings = NotifierSettings(
        channels=[channel], digest_threshold=count + 1, digest_window=60.0, send_timeout=5.0
    )
    results = [make_result(f"app-{i}", namespace=f"ns-{i % 50}") for i in range(count)]
    async with nats_bus(base, name="bench-notifier") as (_server, bus):
        for start in range(0, count, 1000):
            await bus.publish_many(results[start : start + 1000])
        before = receiver.received
        receiver.expect(count)
        service = await NotifierService.create(bus, settings)
        stop = asyncio.Event()
        started = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(service.run(stop))
            try:
                await asyncio.wait_for(receiver.reached.wait(), timeout=120)
            finally:
                elapsed = time.perf_counter() - started
                stop.set()
        delivered: int = receiver.received - before
    return delivered / elapsed
