"""Counting what happened, for the fault suite: writes in the sandbox's request log and every
message of a stream, decoded. Not for waiting (medic.testing.waiting) or for judging."""

from __future__ import annotations

import contextlib
import uuid

import nats
from nats.js import api

from medic.runtime.bus import Bus
from medic.sandbox import SandboxStore
from medic.schemas import Message, decode_message


def patched_names(
    store: SandboxStore, namespace: str | None = None, resource: str = "configmaps"
) -> list[str]:
    """The object name of every successful patch of `resource` (one entry per write)."""
    return [
        str(r.name)
        for r in store.requests
        if r.verb == "patch"
        and r.resource == resource
        and r.status < 300
        and (namespace is None or r.namespace == namespace)
    ]


def count_patches(
    store: SandboxStore, namespace: str | None = None, resource: str = "configmaps"
) -> int:
    return len(patched_names(store, namespace, resource))


async def fetch_all(bus: Bus, stream: str, batch: int = 512) -> list[Message]:
    """Every message stored in `stream` now, oldest first (an ephemeral pull consumer)."""
    info = await bus.js.stream_info(stream)
    total = info.state.messages
    found: list[Message] = []
    if not total:
        return found
    sub = await bus.js.pull_subscribe(
        ">",
        durable=None,
        stream=stream,
        config=api.ConsumerConfig(
            name=f"tally-{uuid.uuid4().hex[:8]}", ack_policy=api.AckPolicy.NONE
        ),
    )
    try:
        for _ in range(total // batch + 10):  # bounded: a message deleted meanwhile never comes
            if len(found) >= total:
                break
            with contextlib.suppress(nats.errors.TimeoutError):
                found += [decode_message(m.data) for m in await sub.fetch(batch, timeout=1.0)]
    finally:
        await sub.unsubscribe()
    return found
