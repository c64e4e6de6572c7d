"""The bus on a real nats-server: set-up, dedup, redelivery, dead-letter, replicas, restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from nats.js import api

from medic.runtime import subjects
from medic.runtime.bus import Bus
from medic.runtime.consumer import Consumer, ConsumerSpec, Delivery
from medic.runtime.embedded_nats import EmbeddedNats
from medic.runtime.errors import PermanentError, TransientError
from medic.runtime.settings import NatsSettings
from medic.schemas import DeadLetter, ErrorKind, Message, Outcome, decode_message
from medic.testing.factories import release_event
from medic.testing.notifier import make_result
from medic.testing.waiting import eventually

Handler = Callable[[Message, Delivery], Awaitable[None]]


def spec(durable: str = "test", **overrides: object) -> ConsumerSpec:
    defaults: dict[str, object] = {
        "stream": subjects.EVENTS,
        "durable": durable,
        "filter_subjects": ("medic.events.>",),
        "max_deliver": 3,
        "nak_delays": (0.05,),
        "fetch_timeout": 0.2,
        "ack_wait": 5.0,
    }
    defaults.update(overrides)
    return ConsumerSpec(**defaults)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(bus: Bus, consumer_spec: ConsumerSpec, handler: Handler) -> AsyncIterator[None]:
    consumer = Consumer(bus, consumer_spec, handler)
    await consumer.setup()
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


async def stream_messages(bus: Bus, stream: str) -> int:
    info = await bus.js.stream_info(stream)
    return int(info.state.messages)


async def dead_letters(bus: Bus) -> list[DeadLetter]:
    sub = await bus.js.pull_subscribe(
        "medic.deadletter.>", stream=subjects.DEADLETTER.name, config=api.ConsumerConfig()
    )
    letters: list[DeadLetter] = []
    with contextlib.suppress(Exception):
        for msg in await sub.fetch(100, timeout=0.5):
            decoded = decode_message(msg.data)
            assert isinstance(decoded, DeadLetter)
            letters.append(decoded)
    await sub.unsubscribe()
    return letters


async def test_stream_setup_is_idempotent(bus: Bus) -> None:
    await bus.ensure_streams()
    await bus.ensure_streams()
    names = {info.config.name for info in await bus.js.streams_info()}
    assert {s.name for s in subjects.STREAMS} <= names
    consumer = Consumer(bus, spec(), lambda _m, _d: asyncio.sleep(0))
    await consumer.setup()
    await consumer.setup()
    info = await bus.js.consumer_info(subjects.EVENTS.name, "test")
    assert info.config.max_deliver == 3


async def test_republished_event_is_stored_once(bus: Bus) -> None:
    event = release_event()
    first = await bus.publish(event)
    second = await bus.publish(event)
    assert not first.duplicate
    assert second.duplicate
    assert second.seq == first.seq
    assert await stream_messages(bus, subjects.EVENTS.name) == 1


async def test_a_result_is_stored_once_per_id_past_the_dedup_window(
    nats_settings: NatsSettings,
) -> None:
    """Its subject ends in its id and it is published expecting no result under that id yet:
    a second one (a redelivery, another replica, an event re-emitted) is refused as a duplicate
    however late it comes and whatever outcome it says, where `Nats-Msg-Id` forgets."""
    short = nats_settings.model_copy(update={"duplicate_window": 0.5})
    bus = await Bus.connect(short, name="test-result-slot")
    try:
        await bus.ensure_streams()
        first = make_result("web", outcome=Outcome.NO_OP)
        other = make_result("api", outcome=Outcome.NO_OP)
        stored = await bus.publish(first)
        await asyncio.sleep(1.0)  # the dedup window is over
        again = await bus.publish(first)
        skipped = first.data.model_copy(update={"outcome": Outcome.SKIPPED, "reason": "later"})
        late = await bus.publish(first.model_copy(update={"data": skipped}))
        await bus.publish(other)
        msg = await bus.js.get_msg(subjects.RESULTS.name, stored.seq)
        count = await stream_messages(bus, subjects.RESULTS.name)
    finally:
        await bus.close()
    assert msg.subject == f"medic.results.test.no-op.{first.id}"
    assert not stored.duplicate
    assert (again.duplicate, again.seq) == (True, stored.seq)
    assert (late.duplicate, late.seq) == (True, stored.seq)
    assert count == 2


async def test_subject_carries_cluster_and_problem(bus: Bus) -> None:
    ack = await bus.publish(release_event(cluster="prod-eu"))
    msg = await bus.js.get_msg(subjects.EVENTS.name, ack.seq)
    assert msg.subject == "medic.events.prod-eu.release.failed"


async def test_handled_message_is_acked_once(bus: Bus) -> None:
    seen: list[str] = []

    async def handler(message: Message, _delivery: Delivery) -> None:
        seen.append(message.id)

    await bus.publish(release_event("a"))
    async with running(bus, spec(), handler):
        await eventually(lambda: asyncio.sleep(0, result=len(seen) == 1))
    info = await bus.js.consumer_info(subjects.EVENTS.name, "test")
    assert info.num_ack_pending == 0
    assert info.num_pending == 0
    assert len(seen) == 1


async def test_transient_failure_is_redelivered_then_dead_lettered(bus: Bus) -> None:
    attempts: list[int] = []

    async def handler(_message: Message, delivery: Delivery) -> None:
        attempts.append(delivery.num_delivered)
        raise TransientError("API server busy")

    event = release_event("flaky")
    await bus.publish(event)
    async with running(bus, spec(), handler):
        letters = await eventually(lambda: dead_letters(bus))
    assert attempts == [1, 2, 3]
    assert letters[0].data.error.kind is ErrorKind.EXHAUSTED
    assert letters[0].data.deliveries == 3
    assert json.loads(letters[0].data.original_bytes())["id"] == event.id


async def test_permanent_failure_is_dead_lettered_at_once(bus: Bus) -> None:
    attempts: list[int] = []

    async def handler(_message: Message, delivery: Delivery) -> None:
        attempts.append(delivery.num_delivered)
        raise PermanentError("rule refers to unknown action", field="action")

    await bus.publish(release_event("bad"))
    async with running(bus, spec(), handler):
        letters = await eventually(lambda: dead_letters(bus))
    assert attempts == [1]
    assert letters[0].data.error.kind is ErrorKind.PERMANENT
    assert letters[0].data.error.field == "action"


async def test_malformed_payload_is_dead_lettered_with_field_and_does_not_block(bus: Bus) -> None:
    handled: list[str] = []

    async def handler(message: Message, _delivery: Delivery) -> None:
        handled.append(message.id)

    await bus.js.publish("medic.events.test.release.failed", b"\xff not json")
    bad = json.loads(release_event("x").model_dump_json())
    bad["data"]["problem"] = "exploded"
    await bus.js.publish("medic.events.test.release.failed", json.dumps(bad).encode())
    good = release_event("fine")
    await bus.publish(good)
    async with running(bus, spec(), handler):
        await eventually(lambda: asyncio.sleep(0, result=handled == [good.id]))
        letters = await eventually(lambda: _at_least(dead_letters(bus), 2))
    fields = sorted(str(letter.data.error.field) for letter in letters)
    assert fields == ["None", "data.problem"]
    assert all(letter.data.error.kind is ErrorKind.SCHEMA for letter in letters)


async def _at_least(letters: Awaitable[list[DeadLetter]], count: int) -> list[DeadLetter]:
    found = await letters
    return found if len(found) >= count else []


async def test_unknown_major_version_is_rejected_naming_the_field(bus: Bus) -> None:
    payload = json.loads(release_event("future").model_dump_json())
    payload["schemaversion"] = "2.0"
    await bus.js.publish("medic.events.test.release.failed", json.dumps(payload).encode())
    async with running(bus, spec(), lambda _m, _d: asyncio.sleep(0)):
        letters = await eventually(lambda: dead_letters(bus))
    assert letters[0].data.error.field == "schemaversion"


async def test_replicas_split_work_without_double_handling(bus: Bus) -> None:
    handled: Counter[str] = Counter()
    by_replica: Counter[str] = Counter()

    def handler_for(replica: str) -> Handler:
        async def handler(message: Message, _delivery: Delivery) -> None:
            handled[message.id] += 1
            by_replica[replica] += 1
            await asyncio.sleep(0.001)

        return handler

    events = [release_event(f"r{i}") for i in range(400)]
    await bus.publish_many(events)
    small = spec(batch=16)
    async with running(bus, small, handler_for("a")), running(bus, small, handler_for("b")):
        await eventually(lambda: asyncio.sleep(0, result=len(handled) == 400), timeout=20)
    assert set(handled.values()) == {1}
    assert by_replica["a"] > 0
    assert by_replica["b"] > 0


async def test_acknowledged_messages_survive_a_server_restart(
    nats_server: EmbeddedNats, nats_settings: NatsSettings
) -> None:
    bus = await Bus.connect(nats_settings, name="restart-test")
    try:
        await bus.ensure_streams()
        seen: set[str] = set()

        async def handler(message: Message, _delivery: Delivery) -> None:
            seen.add(message.id)

        published = [release_event(f"before{i}") for i in range(50)]
        await bus.publish_many(published)
        async with running(bus, spec(), handler):
            await eventually(lambda: asyncio.sleep(0, result=len(seen) == 50))
            await nats_server.stop()
            await nats_server.start()
            await eventually(lambda: asyncio.sleep(0, result=bus.is_connected), timeout=15)
            after = [release_event(f"after{i}") for i in range(50)]
            for event in after:
                await _publish_retrying(bus, event)
            await eventually(lambda: asyncio.sleep(0, result=len(seen) == 100), timeout=20)
        assert seen == {e.id for e in published + after}
    finally:
        await bus.close()


async def _publish_retrying(bus: Bus, event: Message) -> None:
    """A publisher's duty after a reconnect: retry until the stream acks (dedup makes it safe)."""
    for _ in range(100):
        try:
            await bus.publish(event)
        except Exception:
            await asyncio.sleep(0.1)
        else:
            return
    pytest.fail("publish never acknowledged")


async def test_graceful_stop_finishes_in_flight_work_and_acks(bus: Bus) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    finished: list[str] = []

    async def slow(message: Message, _delivery: Delivery) -> None:
        started.set()
        await release.wait()
        finished.append(message.id)

    await bus.publish(release_event("slow"))
    consumer = Consumer(bus, spec(), slow)
    await consumer.setup()
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await asyncio.wait_for(started.wait(), 5)
    stop.set()
    release.set()
    await asyncio.wait_for(task, 5)
    assert len(finished) == 1

    async def acked() -> bool:
        # The ack is a publish the server applies asynchronously: poll, do not race it.
        info = await bus.js.consumer_info(subjects.EVENTS.name, "test")
        return info.num_ack_pending == 0 and info.num_pending == 0

    await eventually(acked, timeout=5.0)


async def test_message_whose_last_delivery_was_lost_is_dead_lettered(bus: Bus) -> None:
    """A process killed mid-handling never acks. After max_deliver such deliveries the server
    gives up and announces it; the restarted consumer moves the message to the dead-letter
    stream, so it is parked with a reason rather than silently left behind."""
    lost = spec(max_deliver=2, ack_wait=0.5, nak_delays=(0.05,))
    event = release_event("lost")
    await bus.publish(event)
    for _ in range(lost.max_deliver):  # each run is a process that dies while handling
        hung = asyncio.Event()

        async def never_returns(_message: Message, _delivery: Delivery, hung=hung) -> None:
            hung.set()
            await asyncio.Event().wait()

        task = asyncio.create_task(Consumer(bus, lost, never_returns).run(asyncio.Event()))
        await asyncio.wait_for(hung.wait(), 10)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    handled: list[str] = []

    async def record(message: Message, _delivery: Delivery) -> None:
        handled.append(message.id)

    async with running(bus, lost, record):
        letters = await eventually(lambda: dead_letters(bus), timeout=15)
    assert handled == []
    assert letters[0].data.error.kind is ErrorKind.EXHAUSTED
    assert json.loads(letters[0].data.original_bytes())["id"] == event.id


async def test_hung_handler_times_out_and_is_retried(bus: Bus) -> None:
    attempts: list[int] = []

    async def hangs_once(_message: Message, delivery: Delivery) -> None:
        attempts.append(delivery.num_delivered)
        if delivery.num_delivered == 1:
            await asyncio.Event().wait()

    await bus.publish(release_event("hang"))
    async with running(bus, spec(handler_timeout=0.3), hangs_once):
        await eventually(lambda: asyncio.sleep(0, result=attempts == [1, 2]))


async def test_kv_bucket_is_created_once_and_keeps_state_across_restart(
    nats_server: EmbeddedNats, nats_settings: NatsSettings
) -> None:
    bus = await Bus.connect(nats_settings, name="kv-test")
    try:
        kv = await bus.kv("medic-state-test", history=5)
        again = await bus.kv("medic-state-test", history=5)
        await kv.put("object.apps.podinfo", b"attempts=1")
        assert (await again.get("object.apps.podinfo")).value == b"attempts=1"
        await nats_server.stop()
        await nats_server.start()
        await eventually(lambda: asyncio.sleep(0, result=bus.is_connected), timeout=15)
        entry = await eventually(lambda: _kv_get(bus, "medic-state-test", "object.apps.podinfo"))
        assert entry == b"attempts=1"
    finally:
        await bus.close()


async def _kv_get(bus: Bus, bucket: str, key: str) -> bytes | None:
    try:
        kv = await bus.kv(bucket)
        entry = await kv.get(key)
    except Exception:
        return None
    return entry.value


async def test_connect_fails_closed_when_nobody_listens() -> None:
    from medic.runtime.embedded_nats import free_port
    from medic.runtime.errors import BusError

    settings = NatsSettings(
        urls=[f"nats://127.0.0.1:{free_port()}"], connect_timeout=0.5, reconnect_wait=0.05
    )
    with pytest.raises(BusError, match="cannot connect"):
        await asyncio.wait_for(Bus.connect(settings), 15)


async def test_connection_keeps_reconnecting_after_the_first_connect(
    nats_server: EmbeddedNats, nats_settings: NatsSettings
) -> None:
    bus = await Bus.connect(nats_settings, name="reconnect-forever")
    try:
        assert bus.nc.options["max_reconnect_attempts"] == -1
    finally:
        await bus.close()


def test_a_result_id_that_is_no_subject_token_gets_one_subject_all_the_same() -> None:
    odd = make_result("web").model_copy(update={"id": "line\nbreak"})
    subject, slot = subjects.result_subject(odd), subjects.result_slot(odd)
    token = subject.rsplit(".", 1)[1]
    assert token.isalnum()
    assert "\n" not in subject
    assert slot == f"medic.results.test.*.{token}"
    assert subjects.result_subject(odd) == subject  # the same every time
