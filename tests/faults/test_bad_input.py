"""Bad input on the bus: garbage and wrongly typed events are dead-lettered with a precise error,
and a poison message (its handler always fails) does not block the good ones behind it."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from medic.runtime.bus import Bus
from medic.runtime.consumer import Consumer, ConsumerSpec, Delivery
from medic.runtime.errors import TransientError
from medic.runtime.subjects import DEADLETTER, EVENTS
from medic.schemas import DeadLetter, Message, encode_message
from medic.testing.factories import release_event
from medic.testing.waiting import eventually

pytestmark = pytest.mark.faults


async def test_garbage_dead_lettered_and_poison_does_not_block(bus: Bus) -> None:
    rng = random.Random(8)
    good = [release_event(f"good-{i}", cluster="bad") for i in range(20)]
    poison = release_event("poison", cluster="bad")
    valid = json.loads(encode_message(good[0]))
    wrong_type = {**valid, "id": "wrong-type", "data": {**valid["data"], "problem": 42}}
    raw = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))) for _ in range(20)]
    raw += [json.dumps(wrong_type).encode(), b"{}", b"null", b"[]"]
    handled: list[str] = []

    async def handler(message: Message, _delivery: Delivery) -> None:
        if message.id == poison.id:
            raise TransientError("poison", delay=0.05)
        handled.append(message.id)

    spec = ConsumerSpec(EVENTS, "bad-input", ("medic.events.>",), max_deliver=3)
    consumer = Consumer(bus, spec, handler)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await bus.publish(poison)
        for i, payload in enumerate(raw):
            await bus.js.publish(f"medic.events.bad.custom.raw{i}", payload)
        await bus.publish_many(good)

        async def all_good() -> bool:
            return {m.id for m in good} <= set(handled)

        await eventually(all_good, timeout=10.0)

        async def letters() -> list[DeadLetter]:
            info = await bus.js.stream_info(DEADLETTER.name)
            if info.state.messages < len(raw) + 1:
                return []
            sub = await bus.js.pull_subscribe("medic.deadletter.>", stream=DEADLETTER.name)
            try:
                msgs = await sub.fetch(info.state.messages, timeout=2.0)
            finally:
                await sub.unsubscribe()
            return [DeadLetter.model_validate_json(m.data) for m in msgs]

        dead = await eventually(letters, timeout=15.0)
    finally:
        stop.set()
        await task
    assert poison.id not in handled
    kinds = [d.data.error.kind.value for d in dead]
    assert kinds.count("schema") == len(raw)
    assert "exhausted" in kinds
    # The wrongly typed event names its field.
    fields = [d.data.error.field or "" for d in dead if d.data.error.kind.value == "schema"]
    assert any("problem" in f for f in fields), fields
