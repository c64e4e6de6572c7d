"""A pipeline under fault for the fault suite: problems in, one idempotent apply, one result out.

The publisher retries every chunk on `BusError` until JetStream acknowledged it (ids are stable,
so a retry is deduplicated). The handler records each invocation (KV `FAULTS_CALLS`), applies
at most once per event (KV `FAULTS_APPLIED`, create-if-absent) and publishes one result whose
id derives from the event id (so a re-publish after a crash is deduplicated). `check()` reads
back what happened. The consumer side also runs as its own process (`python -m
medic.testing.pipeline consume URL...`) so a test can SIGKILL it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError, ServiceUnavailableError

from medic.runtime import subjects
from medic.runtime.bus import Bus
from medic.runtime.consumer import Consumer, ConsumerSpec, Delivery
from medic.runtime.errors import BusError, TransientError
from medic.runtime.settings import NatsSettings
from medic.schemas import Message, Outcome, ReleaseEvent, RemediationResult, ResultData, stable_id
from medic.testing.factories import release_event

APPLIED = "FAULTS_APPLIED"
CALLS = "FAULTS_CALLS"
DURABLE = "faults"


def problems(count: int, cluster: str = "faults") -> list[ReleaseEvent]:
    return [release_event(f"app-{i:05d}", f"ns-{i % 7}", cluster=cluster) for i in range(count)]


async def connect_retrying(settings: NatsSettings, name: str, timeout: float = 30.0) -> Bus:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        bus: Bus | None = None
        try:
            bus = await Bus.connect(settings, name=name)
            await bus.ensure_streams()
        except (BusError, nats.errors.Error, TimeoutError):
            if bus is not None:  # connected but not set up: never leave the socket behind
                await bus.close()
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)
            continue
        return bus


async def publish_all(
    bus: Bus, events: Sequence[Message], chunk: int = 200, ack_timeout: float = 3.0
) -> int:
    """Publish every event, retrying each chunk until acked; returns the number of retries.

    A chunk whose acks do not all arrive within `ack_timeout` (its server was killed) is sent
    again whole: the ids are stable, so JetStream stores each event once.
    """
    retries = 0
    for start in range(0, len(events), chunk):
        part = events[start : start + chunk]
        while True:
            try:
                async with asyncio.timeout(ack_timeout):
                    await asyncio.gather(*(bus.publish(message) for message in part))
                break
            except (BusError, TimeoutError):
                retries += 1
                await asyncio.sleep(0.1)
    return retries


def result_for(message: Message) -> RemediationResult:
    return RemediationResult(
        id=stable_id("result", message.id),
        source="medic/faults",
        cluster=message.cluster,
        subject=message.subject,
        data=ResultData(
            event_id=message.id,
            problem_key=message.id,
            rule="faults",
            action="apply",
            outcome=Outcome.APPLIED,
        ),
    )


class PipelineHandler:
    """Idempotent apply keyed by event id, one invocation record per call, one result."""

    def __init__(self, bus: Bus, delay: float = 0.0) -> None:
        self.bus = bus
        self.delay = delay  # simulated work, so a kill lands mid-run
        self.invocations = 0

    async def setup(self) -> None:
        self.applied = await self.bus.kv(APPLIED)
        self.calls = await self.bus.kv(CALLS)

    async def __call__(self, message: Message, _delivery: Delivery) -> None:
        self.invocations += 1
        try:
            await self.calls.put(f"{message.id}.{uuid.uuid4().hex}", b"1")
            if self.delay:
                await asyncio.sleep(self.delay)
            with contextlib.suppress(KeyWrongLastSequenceError):
                await self.applied.create(message.id, str(os.getpid()).encode())
            await self.bus.publish(result_for(message))
        except (BusError, nats.errors.Error) as exc:
            raise TransientError(f"bus unavailable: {exc!r}", delay=0.2) from exc


def consumer_spec() -> ConsumerSpec:
    return ConsumerSpec(
        stream=subjects.EVENTS,
        durable=DURABLE,
        filter_subjects=("medic.events.>",),
        ack_wait=5.0,
        max_deliver=50,
        nak_delays=(0.1, 0.2, 0.5),
        fetch_timeout=0.5,
    )


async def consume(
    settings: NatsSettings, stop: asyncio.Event, delay: float = 0.0
) -> PipelineHandler:
    bus = await connect_retrying(settings, "faults-consumer")
    try:
        handler = PipelineHandler(bus, delay)
        await handler.setup()
        consumer = Consumer(bus, consumer_spec(), handler)
        await consumer.setup()
        await consumer.run(stop)
        return handler
    finally:
        await bus.close()


@dataclass(frozen=True)
class Outcomes:
    applied: int
    invocations: int
    results_stored: int
    distinct_results: int
    distinct_result_events: int


async def check(bus: Bus) -> Outcomes:
    # Every key of both buckets is written once (unique per call / create-if-absent), so the
    # bucket's stream holds exactly one message per key: count them there. Listing keys runs a
    # watch that can time out on a loaded cluster and read as "no keys".
    applied_count_ = await _stored(bus, APPLIED)
    call_count = await _stored(bus, CALLS)
    info = await bus.js.stream_info(subjects.RESULTS.name)
    ids: set[str] = set()
    events: set[str] = set()
    stored = info.state.messages
    if stored:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60.0
        sub = await _reader_of_results(bus, deadline)
        seen = 0
        try:
            while seen < stored:
                try:
                    batch = await sub.fetch(512, timeout=2.0)
                except (nats.errors.TimeoutError, ServiceUnavailableError):
                    # A loaded cluster that just lost a node can be slow to answer, or answer
                    # 503 while the reader's consumer has no leader yet: keep asking.
                    if loop.time() > deadline:
                        raise
                    await asyncio.sleep(0.2)
                    continue
                for msg in batch:
                    decoded = RemediationResult.model_validate_json(msg.data)
                    ids.add(decoded.id)
                    events.add(decoded.data.event_id)
                    seen += 1
                    await msg.ack()
        finally:
            await sub.unsubscribe()
    return Outcomes(applied_count_, call_count, stored, len(ids), len(events))


async def _reader_of_results(bus: Bus, deadline: float) -> JetStreamContext.PullSubscription:
    """A consumer reading every stored result; its creation is retried until `deadline`: on a
    loaded cluster that just lost a node, the API's answer can take longer than its timeout."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return await bus.js.pull_subscribe("medic.results.>", stream=subjects.RESULTS.name)
        except nats.errors.TimeoutError:
            if loop.time() > deadline:
                raise


async def _stored(bus: Bus, bucket: str) -> int:
    await bus.kv(bucket)  # creates the bucket when nothing was written yet
    info = await bus.js.stream_info(f"KV_{bucket}")
    return int(info.state.messages)


async def applied_count(bus: Bus) -> int:
    return await _stored(bus, APPLIED)


@dataclass
class ConsumerProcess:
    """`python -m medic.testing.pipeline consume URL...` as a child, for real SIGKILLs."""

    urls: list[str]
    log_path: Path
    delay: float = 0.0
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(  # noqa: S603 - our own module
                [
                    sys.executable,
                    "-m",
                    "medic.testing.pipeline",
                    "consume",
                    str(self.delay),
                    *self.urls,
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None

    async def stop(self) -> int:
        process, self.process = self.process, None
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(asyncio.to_thread(process.wait), 15.0)
        except TimeoutError:
            process.kill()
            return await asyncio.to_thread(process.wait)


async def _main(delay: float, urls: list[str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    settings = NatsSettings(urls=urls, reconnect_wait=0.1, duplicate_window=120.0)
    await consume(settings, stop, delay)


if __name__ == "__main__":  # pragma: no cover - run by ConsumerProcess
    if len(sys.argv) < 4 or sys.argv[1] != "consume":
        sys.exit("usage: python -m medic.testing.pipeline consume DELAY URL...")
    asyncio.run(_main(float(sys.argv[2]), sys.argv[3:]))
