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
