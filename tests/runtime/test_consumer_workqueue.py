"""The consumer as a workqueue, on a real nats-server: fetching never waits for the slowest handler.

One object's slow handler must not hold back others (issue 17); messages about one object stay
in order; messages in flight are bounded; a handler parked on a wait gives its worker slot away;
every message in flight is heartbeated, so a long one is not delivered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from medic.runtime import subjects
from medic.runtime.bus import Bus
from medic.runtime.consumer import Consumer, ConsumerSpec, Delivery
from medic.schemas import Message, ReleaseEvent
from medic.testing.factories import release_event
from medic.testing.waiting import eventually

Handler = Callable[[Message, Delivery], Awaitable[None]]


def spec(**overrides: object) -> ConsumerSpec:
    defaults: dict[str, object] = {
        "stream": subjects.EVENTS,
        "durable": "workqueue",
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


def name_of(message: Message) -> str:
    assert isinstance(message, ReleaseEvent)
    return message.data.object.name


async def test_a_slow_handler_does_not_hold_back_other_objects(bus: Bus) -> None:
    release = asyncio.Event()
    handled: list[str] = []

    async def handler(message: Message, _delivery: Delivery) -> None:
        if name_of(message) == "slow-1":
            await release.wait()
        handled.append(name_of(message))

    await bus.publish(release_event("slow-1"))
    async with running(bus, spec(), handler):
        await asyncio.sleep(0.3)  # slow-1 is being handled (fetched in an earlier batch)
        for i in range(5):
            await bus.publish(release_event(f"fast-{i}"))
        await eventually(lambda: asyncio.sleep(0, result=len(handled) == 5), timeout=5.0)
        assert "slow-1" not in handled
        release.set()
        await eventually(lambda: asyncio.sleep(0, result=len(handled) == 6), timeout=5.0)


async def test_messages_about_one_object_are_handled_in_order_one_at_a_time(bus: Bus) -> None:
    order: list[str] = []
    running_now = 0
    overlapped = False

    async def handler(message: Message, _delivery: Delivery) -> None:
        nonlocal running_now, overlapped
        running_now += 1
        overlapped = overlapped or running_now > 1
        await asyncio.sleep(0.01)
        order.append(message.id)
        running_now -= 1

    events = [release_event("same", message=f"attempt {i}") for i in range(20)]
    for event in events:
        await bus.publish(event)
    async with running(bus, spec(batch=4), handler):
        await eventually(lambda: asyncio.sleep(0, result=len(order) == 20), timeout=10.0)
    assert order == [e.id for e in events]
    assert not overlapped


async def test_messages_in_flight_are_bounded(bus: Bus) -> None:
    release = asyncio.Event()
    started: list[str] = []

    async def handler(message: Message, _delivery: Delivery) -> None:
        started.append(name_of(message))
        await release.wait()

    await bus.publish_many([release_event(f"r{i}") for i in range(20)])
    async with running(bus, spec(max_in_flight=5), handler):
        await eventually(lambda: asyncio.sleep(0, result=len(started) == 5), timeout=5.0)
        await asyncio.sleep(0.5)  # room for the fetch loop to (wrongly) take more
        info = await bus.js.consumer_info(subjects.EVENTS.name, "workqueue")
        assert len(started) == 5
        assert info.num_ack_pending == 5
        release.set()
        await eventually(lambda: asyncio.sleep(0, result=len(started) == 20), timeout=5.0)


async def test_a_parked_handler_gives_its_worker_slot_to_others(bus: Bus) -> None:
    release = asyncio.Event()
    handled: list[str] = []

    async def handler(message: Message, delivery: Delivery) -> None:
        if name_of(message) == "waits":
            async with delivery.parked():
                await release.wait()
        handled.append(name_of(message))

    await bus.publish(release_event("waits"))
    async with running(bus, spec(concurrency=1), handler):
        await asyncio.sleep(0.3)
        await bus.publish_many([release_event(f"other-{i}") for i in range(3)])
        await eventually(lambda: asyncio.sleep(0, result=len(handled) == 3), timeout=5.0)
        release.set()
        await eventually(lambda: asyncio.sleep(0, result=len(handled) == 4), timeout=5.0)
    assert handled[-1] == "waits"


async def test_a_long_handler_and_the_message_queued_behind_it_are_delivered_once(
    bus: Bus,
) -> None:
    deliveries: list[tuple[str, int]] = []

    async def handler(message: Message, delivery: Delivery) -> None:
        deliveries.append((message.id, delivery.num_delivered))
        await asyncio.sleep(3.5)  # longer than ack_wait: only the heartbeats keep it ours

    first = release_event("long", message="first")
    second = release_event("long", message="second")
    await bus.publish(first)
    await bus.publish(second)
    async with running(bus, spec(ack_wait=1.5), handler):
        await eventually(lambda: asyncio.sleep(0, result=len(deliveries) == 2), timeout=10.0)

        async def acked() -> bool:
            info = await bus.js.consumer_info(subjects.EVENTS.name, "workqueue")
            return info.num_ack_pending == 0 and info.num_pending == 0

        await eventually(acked, timeout=10.0)
    assert deliveries == [(first.id, 1), (second.id, 1)]


async def test_a_handler_learns_when_a_later_message_about_its_object_arrives(bus: Bus) -> None:
    told: list[bool] = []

    async def handler(message: Message, delivery: Delivery) -> None:
        if message.id == first.id:
            assert delivery.newer is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(delivery.newer.wait(), 5.0)
            told.append(delivery.newer.is_set())

    first = release_event("same", message="first")
    await bus.publish(first)
    async with running(bus, spec(), handler):
        await asyncio.sleep(0.3)
        await bus.publish(release_event("same", message="second"))
        await eventually(lambda: asyncio.sleep(0, result=told == [True]), timeout=5.0)


async def test_parts_of_one_handler_parked_at_once_give_back_one_slot(bus: Bus) -> None:
    """The notifier delivers to several channels at once; each may park on its rate."""
    handled: list[str] = []

    async def handler(message: Message, delivery: Delivery) -> None:
        async def part() -> None:
            async with delivery.parked():
                await asyncio.sleep(0.05)

        async with asyncio.TaskGroup() as tg:
            for _ in range(3):
                tg.create_task(part())
        handled.append(name_of(message))

    await bus.publish_many([release_event(f"p{i}") for i in range(20)])
    async with running(bus, spec(concurrency=2), handler):
        await eventually(lambda: asyncio.sleep(0, result=len(handled) == 20), timeout=10.0)
