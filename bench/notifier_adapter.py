"""How the notifier benchmark drives `medic.notifier` (kept apart so the API can move)."""

from __future__ import annotations

import importlib.util


def unavailable() -> str | None:
    if importlib.util.find_spec("medic.notifier.channels.webhook") is None:
        return "notifier webhook channel not landed (services/notifier/channels/webhook.py)"
    return "notifier landed but the benchmark adapter is not written yet"


async def delivery_rate(url: str, count: int, concurrency: int) -> float:
    raise NotImplementedError(url, count, concurrency)
