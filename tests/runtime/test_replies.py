"""The lean request path on a real nats-server: it must mean what nats-py's own calls mean."""

from __future__ import annotations

import asyncio
import time

import nats.errors
import pytest
from nats.js.errors import (
    APIError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoStreamResponseError,
)

from medic.runtime.bus import Bus
from medic.runtime.replies import Replies
from medic.schemas import encode_message
from medic.testing.factories import release_event


async def test_kv_operations_agree_with_nats_py(bus: Bus) -> None:
    kv = await bus.kv("replies-test")
    ops = bus.kv_ops("replies-test")

    revision = await ops.create("a", b"one")
    assert (await kv.get("a")).revision == revision
    assert (await ops.get("a")).value == b"one"
    with pytest.raises(KeyWrongLastSequenceError):
        await ops.create("a", b"again")  # exists: create refuses, as nats-py's
    with pytest.raises(KeyWrongLastSequenceError):
        await ops.update("a", b"two", revision + 100)  # not its revision
    updated = await ops.update("a", b"two", revision)
    assert (await kv.get("a")).value == b"two"
    assert (await ops.get("a")).revision == updated

    with pytest.raises(KeyNotFoundError):
        await ops.get("never-written")
    await kv.delete("a")  # a tombstone: read as absent, and created again
    with pytest.raises(KeyNotFoundError):
        await ops.get("a")
    recreated = await ops.create("a", b"three")
    assert (await kv.get("a")).revision == recreated

    found = await ops.get_many(["a", "never-written", "a"])
    assert [f.value if f else None for f in found] == [b"three", None, b"three"]


async def test_refusals_and_silence_raise_what_nats_py_raises(bus: Bus) -> None:
    replies = Replies(bus.nc)
    event = release_event()
    with pytest.raises(NoStreamResponseError):  # no stream takes the subject
        await replies.publish("nobody.listens", encode_message(event))
    with pytest.raises(nats.errors.NoRespondersError):  # a plain request: nobody listens
        await replies.request("nobody.listens", b"")
    with pytest.raises(APIError):  # the stream refuses: wrong expected stream name
        await replies.publish(
            "medic.events.x", encode_message(event), {"Nats-Expected-Stream": "OTHER"}
        )

    silent = await bus.nc.subscribe("silent.service")  # takes requests, never answers
    begun = time.monotonic()
    with pytest.raises(nats.errors.TimeoutError):
        await replies.request("silent.service", b"", timeout=0.3)
    assert 0.25 < time.monotonic() - begun < 3.0
    await silent.unsubscribe()
    assert not replies._pending  # nothing left waiting


async def test_many_requests_in_flight_each_get_their_own_answer(bus: Bus) -> None:
    await bus.kv("replies-many")
    ops = bus.kv_ops("replies-many")
    revisions = await asyncio.gather(*(ops.create(f"k{i}", str(i).encode()) for i in range(300)))
    assert len(set(revisions)) == 300
    found = await ops.get_many([f"k{i}" for i in reversed(range(300))])
    assert [f.value for f in found if f] == [str(i).encode() for i in reversed(range(300))]
