"""The delivery ledger on a real NATS KV: claims, final states, lease expiry, threads."""

from __future__ import annotations

from medic.notifier.ledger import Ledger
from medic.runtime.bus import Bus


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def ledger(bus: Bus, clock: Clock) -> Ledger:
    return Ledger(await bus.kv("t-deliveries"), await bus.kv("t-threads"), lease=60, clock=clock)


async def test_a_finished_delivery_is_reported_as_done(bus: Bus) -> None:
    book = await ledger(bus, Clock())
    assert (await book.claim("ops", "r1")).done is None
    await book.finish("ops", "r1", "delivered")
    assert (await book.claim("ops", "r1")).done == "delivered"
    assert (await book.claim("other", "r1")).done is None  # per channel


async def test_a_fresh_claim_is_respected_and_an_expired_one_taken_over(bus: Bus) -> None:
    clock = Clock()
    book = await ledger(bus, clock)
    assert (await book.claim("ops", "r1")).busy_for == 0
    second = await book.claim("ops", "r1")
    assert second.done is None
    assert second.busy_for == 60
    clock.now += 61  # the first sender died mid-send
    taken = await book.claim("ops", "r1")
    assert taken.done is None
    assert taken.busy_for == 0


async def test_a_released_claim_can_be_taken_at_once(bus: Bus) -> None:
    book = await ledger(bus, Clock())
    await book.claim("ops", "r1")
    await book.release("ops", "r1", "500")
    assert (await book.claim("ops", "r1")).busy_for == 0


async def test_the_first_thread_of_a_problem_wins(bus: Bus) -> None:
    book = await ledger(bus, Clock())
    assert await book.thread("ops", "p/1") is None
    await book.remember_thread("ops", "p/1", "111.1")
    await book.remember_thread("ops", "p/1", "222.2")
    assert await book.thread("ops", "p/1") == "111.1"
