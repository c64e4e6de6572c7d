"""Benchmark 1: pipeline throughput, events/s, against the raw nats-py pull-fetch-and-ack rate.

One stream of N release events is published once; each measurement reads all of it through its
own durable consumer (DeliverPolicy.ALL), so every figure sees the same messages on the same
server. The baseline is nats-py alone: `fetch(512)` and `ack()` of every message, no decoding.
Medic figures: the bus layer (`medic.runtime.consumer.Consumer` with a no-op handler: decoding,
ordering groups, ack after handling) and, once the remediator has landed, the whole remediator
pipeline (consume, match, decide, publish the result; actions in dry-run) with 10, 1,000 and
10,000 rules loaded.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import nats
from bench.common import Row, nats_bus, not_measured, workdir
from nats.js import api

from medic.runtime.bus import Bus
from medic.runtime.consumer import Consumer, ConsumerSpec, Delivery
from medic.runtime.subjects import EVENTS
from medic.schemas import Message, MessageClass, ReleaseProblem
from medic.testing.factories import release_event

PROBLEMS = [ReleaseProblem.FAILED, ReleaseProblem.STALLED, ReleaseProblem.PENDING]
CLASSES = [MessageClass.TRANSIENT_ETCD, MessageClass.TIMEOUT, MessageClass.OTHER]


def make_events(count: int, clusters: int = 4, namespaces: int = 50) -> list[Message]:
    """Distinct events spread over clusters/namespaces/problems, so rule indexes matter."""
    return [
        release_event(
            name=f"app-{i}",
            namespace=f"ns-{i % namespaces}",
            cluster=f"c{i % clusters}",
            problem=PROBLEMS[i % len(PROBLEMS)],
            classification=CLASSES[i % len(CLASSES)],
            message=f"install failed: etcdserver: leader changed ({i})",
        )
        for i in range(count)
    ]


async def publish_events(bus: Bus, events: list[Message], chunk: int = 1000) -> None:
    for start in range(0, len(events), chunk):
        await bus.publish_many(events[start : start + chunk])


async def raw_fetch_ack(bus: Bus, count: int, durable: str = "raw") -> float:
    """nats-py alone: pull fetch(512) and ack every message. Returns messages/s."""
    await bus.js.add_consumer(
        EVENTS.name,
        config=api.ConsumerConfig(
            durable_name=durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            max_ack_pending=4096,
        ),
    )
    sub = await bus.js.pull_subscribe_bind(durable=durable, stream=EVENTS.name)
    done = 0
    started = time.perf_counter()
    try:
        while done < count:
            try:
                msgs = await sub.fetch(512, timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            for msg in msgs:
                await msg.ack()
            done += len(msgs)
        await bus.nc.flush()
        elapsed = time.perf_counter() - started
    finally:
        await sub.unsubscribe()
    return count / elapsed


async def consume_with(
    bus: Bus, count: int, durable: str, handle: Any, *, batch: int = 512, concurrency: int = 128
) -> float:
    """Run a medic Consumer until `count` messages were handled. Returns messages/s."""
    stop = asyncio.Event()
    handled = 0

    async def handler(message: Message, delivery: Delivery) -> None:
        nonlocal handled
        await handle(message, delivery)
        handled += 1
        if handled >= count:
            stop.set()

    spec = ConsumerSpec(
        stream=EVENTS,
        durable=durable,
        filter_subjects=("medic.events.>",),
        max_ack_pending=4096,
        batch=batch,
        fetch_timeout=0.5,
        concurrency=concurrency,
    )
    consumer = Consumer(bus, spec, handler)
    await consumer.setup()
    started = time.perf_counter()
    await consumer.run(stop)
    await bus.nc.flush()
    elapsed = time.perf_counter() - started
    return count / elapsed


async def _noop(_message: Message, _delivery: Delivery) -> None:
    return None


def remediator_available() -> str | None:
    """None when the remediator pipeline can be benchmarked, else why not."""
    try:
        from bench import remediator_adapter
    except ImportError as exc:
        return f"remediator not importable ({exc})"
    return remediator_adapter.unavailable()


async def run(
    count: int = 20_000, rule_counts: tuple[int, ...] = (10, 1_000, 10_000), repeats: int = 1
) -> list[Row]:
    rows: list[Row] = []
    with workdir("pipeline") as base:
        async with nats_bus(base) as (_server, bus):
            events = make_events(count)
            await publish_events(bus, events)
            # Interleaved (baseline, medic) pairs so both see the same machine load; the best
            # of each is reported (the least disturbed run).
            raw_rates: list[float] = []
            bus_rates: list[float] = []
            for r in range(repeats):
                raw_rates.append(await raw_fetch_ack(bus, count, f"raw{r}"))
                bus_rates.append(await consume_with(bus, count, f"medic-bus{r}", _noop))
            raw, medic_bus = max(raw_rates), max(bus_rates)
            rows.append(
                Row(
                    name="1a consumer, no-op handler (events/s)",
                    medic=medic_bus,
                    baseline=raw,
                    unit="ev/s",
                    target=">= 0.5x raw",
                    met=medic_bus >= 0.5 * raw,
                    extra={"count": count, "raw_runs": raw_rates, "medic_runs": bus_rates},
                )
            )
            rows.extend(await _remediator_rows(bus, base, events, raw, rule_counts))
    return rows


async def _remediator_rows(
    bus: Bus, base: Path, events: list[Message], raw: float, rule_counts: tuple[int, ...]
) -> list[Row]:
    why = remediator_available()
    names = [f"1b remediator, {n:,} rules (events/s)" for n in rule_counts]
    if why is not None:
        return [not_measured(name, why, ">= 0.5x raw at 1,000") for name in names]
    from bench import remediator_adapter

    rows: list[Row] = []
    rates: dict[int, float] = {}
    for n, name in zip(rule_counts, names, strict=True):
        rate = await remediator_adapter.pipeline_rate(bus, base, events, n)
        rates[n] = rate
        target, met = "", None
        if n == 1_000:
            target, met = ">= 0.5x raw", rate >= 0.5 * raw
        rows.append(Row(name=name, medic=rate, baseline=raw, unit="ev/s", target=target, met=met))
    if rule_counts and min(rule_counts) in rates and max(rule_counts) in rates:
        small, large = rates[min(rule_counts)], rates[max(rule_counts)]
        slowdown = small / large
        rows.append(
            Row(
                name=f"1c {max(rule_counts):,} vs {min(rule_counts):,} rules (slowdown x)",
                medic=slowdown,
                baseline=1.0,
                unit="x",
                target="<= 1.5x",
                met=slowdown <= 1.5,
            )
        )
    return rows
