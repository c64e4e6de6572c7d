"""Durable pull consumers: a fetch loop feeding per-object queues, acks after handling, dead-letter.

The shape is controller-runtime's workqueue: the loop that fetches and the handlers are
decoupled, so one slow handler never stops the intake. The loop fetches while earlier messages
are still being handled, bounded by `max_in_flight` (messages fetched and not yet finished),
not by the slowest handler. Messages with the same ordering key (the object they are about) are
handled in order, one at a time; different keys run concurrently, at most `concurrency` at once.
A handler that waits for something (a verification waiting on a watch and a timer) does so
inside `Delivery.parked()`: its message stays in flight and its key stays held, but it gives
its worker slot to others. Every message in flight gets its own in-progress heartbeat (`+WPI`),
so a long handler or one queued behind its key is not redelivered. Why batches and unserialised
acks: one message per fetch and one awaited ack per message caps a pipeline near a few hundred
msg/s (nats.py issue 390).

Nothing is acked before its handler returned; a handler's `TransientError` (or any unexpected
exception) naks with a backoff delay; a `PermanentError`, a schema error, or the last allowed
delivery moves the message to the dead-letter stream with the error and then terms it. On stop,
started handlers finish and messages not yet started are given back (nak) at once. Several
replicas sharing the durable name split the work (JetStream hands each message to one of them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import nats
import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api

from medic.runtime.bus import Bus
from medic.runtime.errors import BusError, Deferred, PermanentError, TransientError
from medic.runtime.metrics import BUS_DEADLETTERS, BUS_HANDLE_SECONDS, BUS_MESSAGES
from medic.runtime.replies import deliver_at_once
from medic.runtime.subjects import StreamSpec
from medic.schemas import (
    DeadLetter,
    DeadLetterData,
    ErrorInfo,
    ErrorKind,
    Message,
    SchemaError,
    decode_message,
    stable_id,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """A durable consumer and how hard it tries. Defaults sized for remediation work."""

    stream: StreamSpec
    durable: str
    filter_subjects: tuple[str, ...]
    max_deliver: int = 5
    ack_wait: float = 60.0
    max_ack_pending: int = 2048
    nak_delays: tuple[float, ...] = (1.0, 5.0, 15.0, 30.0, 60.0)
    batch: int = 256
    fetch_timeout: float = 1.0
    concurrency: int = 128  # handlers running at once; a parked one does not count
    handler_timeout: float = 300.0  # a hung handler is a transient failure, not a stuck key
    max_in_flight: int = 0  # fetched and not finished (queued, running, parked); 0: max_ack_pending

    @property
    def in_flight_limit(self) -> int:
        return min(self.max_in_flight or self.max_ack_pending, self.max_ack_pending)

    def nak_delay(self, num_delivered: int) -> float:
        index = min(max(num_delivered - 1, 0), len(self.nak_delays) - 1)
        return self.nak_delays[index]


class _Slot:
    """One worker slot of a consumer, held by the handler that runs; given up while parked.

    Counted: a handler's concurrent parts (the notifier's channels) may park at once; the slot
    is given up by the first and taken back by the last."""

    __slots__ = ("held", "parked", "slots")

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self.slots = slots
        self.held = False
        self.parked = 0

    def park(self) -> None:
        self.parked += 1
        if self.parked == 1:
            self.give()

    async def unpark(self) -> None:
        self.parked -= 1
        if self.parked == 0:
            await self.take()

    async def take(self) -> None:
        await self.slots.acquire()
        self.held = True

    def give(self) -> None:
        if self.held:
            self.held = False
            self.slots.release()


@dataclass(slots=True)
class Delivery:
    """Transport facts a handler may need: which attempt this is, a way to say 'still busy',
    and a way to wait without holding a worker slot."""

    subject: str
    stream_sequence: int
    num_delivered: int
    is_last_attempt: bool
    headers: dict[str, str] = field(default_factory=dict)
    msg: Msg | None = None
    slot: _Slot | None = None
    newer: asyncio.Event | None = None  # set when a later message about the same object arrives

    async def in_progress(self) -> None:
        """Extend the ack deadline for a long action (`+WPI`). The consumer already sends one
        for every message in flight every `ack_wait / 3`; this is for a handler that knows."""
        if self.msg is not None:
            await self.msg.in_progress()

    @contextlib.asynccontextmanager
    async def parked(self) -> AsyncIterator[None]:
        """Wait inside this block (on a watch, a timer) without holding a worker slot.

        The message stays in flight (heartbeated, not acked) and its object's later messages
        stay queued behind it; other objects' messages take the slot meanwhile. The slot is
        taken back before the block's code after it runs on."""
        if self.slot is None:
            yield
            return
        self.slot.park()
        try:
            yield
        finally:
            await self.slot.unpark()


Handler = Callable[[Message, Delivery], Awaitable[None]]
_Item = tuple[Msg, Message | None, SchemaError | None]  # a fetched message, decoded or not
STATUS = api.Header.STATUS.value
DESCRIPTION = api.Header.DESCRIPTION.value


class _Puller:
    """Pull requests answered on our own inbox, collected by a callback subscription.

    Why not nats-py's `PullSubscription.fetch`: it awaits every message through `next_msg`
    (a uuid, a task and a `wait_for` each), which cost as much CPU as the whole of our handling
    per event (bench/pipeline.py; issue 541 of nats.py measured callbacks 3.5x faster than the
    iterator). The protocol is the same: `$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>` with
    `batch` and `expires`; the server answers with the messages, then a 404/408 status when
    it has no more or the request expired. Messages that arrive after a fetch gave up (late, or
    answers to an expired request) wait in the buffer for the next fetch, so none is dropped.
    """

    def __init__(self, bus: Bus, stream: str, durable: str) -> None:
        self.nc = bus.nc
        self.request_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.inbox = self.nc.new_inbox()
        self.buffer: list[Msg] = []
        self.want = 0
        self.ready = asyncio.Event()
        self.deleted = False
        self.sub: Subscription | None = None
        self.open_until = 0.0  # when the server ends our last long-poll request at the latest
        self.ended = True  # the server answered our last request's end (a 404/408 status)

    async def start(self) -> None:
        self.sub = await self.nc.subscribe(self.inbox, cb=self._on_msg, pending_msgs_limit=-1)
        deliver_at_once(self.sub, self._take)  # no queue and task hop per fetched message

    async def _on_msg(self, msg: Msg) -> None:
        self._take(msg)

    def _take(self, msg: Msg) -> None:
        status = msg.headers.get(STATUS) if msg.headers else None
        if status is None:
            self.buffer.append(msg)
            if len(self.buffer) >= self.want:
                self.ready.set()
            return
        if status == "100":  # idle heartbeat / flow control: nothing to hand out
            return
        if status == "409" and "deleted" in (msg.headers or {}).get(DESCRIPTION, "").lower():
            self.deleted = True
        self.ended = True
        self.ready.set()  # 404 no messages, 408 expired, 409 ...: this request is over

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to `batch` messages, returned as soon as any are there; waits up to `timeout`.

        Two steps, as nats-py's fetch does: a `no_wait` request takes what is stored now (the
        server answers 404 when there is nothing); only when that is empty does a long-poll
        request wait, and it hands out its first message at once instead of holding it until
        the batch is full (which would add `timeout` to the latency of a lone event). Messages
        that arrive later for that request wait in the buffer for the next fetch.
        """
        if not self.buffer:
            await self._request({"batch": batch, "no_wait": True}, want=batch, timeout=timeout)
        if not self.buffer:
            request = {"batch": batch, "expires": int(timeout * 1e9)}
            self.open_until = time.monotonic() + timeout
            await self._request(request, want=1, timeout=timeout)
        if self.deleted and not self.buffer:
            raise nats.js.errors.NotFoundError(description="consumer deleted")
        msgs, self.buffer = self.buffer[:batch], self.buffer[batch:]
        return msgs

    async def _expired(self) -> None:
        """Until the server has ended our last request (its 408/404 status arrives)."""
        while self.open_until > time.monotonic() and not self.ended:
            self.ready.clear()
            await self.ready.wait()

    async def _request(self, request: Mapping[str, object], want: int, timeout: float) -> None:
        self.want = want
        self.ended = False
        self.ready.clear()
        self.deleted = False
        await self.nc.publish(self.request_subject, json.dumps(request).encode(), reply=self.inbox)
        # The server ends a request itself (404/408 status); the margin covers a lost connection.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), timeout + 1.0)

    async def close(self) -> list[Msg]:
        """Stop taking messages; return those delivered but never handed out.

        A long-poll request that handed out its first message stays open on the server until
        it expires, and whatever becomes available meanwhile (a message given back on stop, a
        redelivery) is sent to our inbox: listen until then, or it would wait for ack_wait."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._expired(), self.open_until - time.monotonic() + 0.5)
        sub, self.sub = self.sub, None
        if sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        left, self.buffer = self.buffer, []
        return left


def ordering_key(message: Message) -> str:
    """Messages about one object are handled in order; the CloudEvents subject names it."""
    return f"{message.cluster}/{message.subject}" if message.subject else message.id


class Consumer:
    """Runs one durable pull consumer until `stop` is set, then finishes in-flight work."""

    def __init__(self, bus: Bus, spec: ConsumerSpec, handler: Handler) -> None:
        self.bus = bus
        self.spec = spec
        self.handler = handler
        self._sub: _Puller | None = None
        self.log = log.bind(consumer=spec.durable, stream=spec.stream.name)
        # Metric children looked up once: `.labels()` per message showed in the profile.
        self._acked = BUS_MESSAGES.labels(spec.durable, "acked")
        self._handle_seconds = BUS_HANDLE_SECONDS.labels(spec.durable)
        # The workqueue: messages fetched and not finished, per ordering key in arrival order.
        self._queues: dict[str, deque[_Item]] = {}
        self._newer: dict[str, asyncio.Event] = {}  # per key being handled: a later one came
        self._in_flight: dict[int, Msg] = {}
        self._slots = asyncio.Semaphore(spec.concurrency)
        self._room = asyncio.Event()  # set when a message finished (or on stop)
        self._idle = asyncio.Event()  # set when no key has work
        self._idle.set()
        self._stopping = asyncio.Event()
        self._tasks: asyncio.TaskGroup | None = None

    def consumer_config(self) -> api.ConsumerConfig:
        return api.ConsumerConfig(
            durable_name=self.spec.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            max_deliver=self.spec.max_deliver,
            ack_wait=self.spec.ack_wait,
            max_ack_pending=self.spec.max_ack_pending,
            filter_subjects=list(self.spec.filter_subjects),
            max_waiting=512,
        )

    async def setup(self) -> None:
        """Create or update the durable consumer (idempotent), then subscribe our pull inbox."""
        await self.bus.js.add_consumer(self.spec.stream.name, config=self.consumer_config())
        if self._sub is None:
            self._sub = _Puller(self.bus, self.spec.stream.name, self.spec.durable)
            await self._sub.start()

    async def run(self, stop: asyncio.Event) -> None:
        if self._sub is None:
            await self.setup()
        advisory = await self.bus.nc.subscribe(
            f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.spec.stream.name}.{self.spec.durable}",
            cb=self._on_max_deliveries,
        )
        try:
            await self._fetch_until(stop)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await advisory.unsubscribe()
            await self.close()
        self.log.info("consumer_stopped")

    async def _on_max_deliveries(self, advisory: Msg) -> None:
        """The server gave up on a message whose last delivery we never finished (a crash).

        Move it to the dead-letter stream like any exhausted message; the dead-letter id is
        the same one `_dead_letter` uses, so when we did dead-letter it, this is deduplicated.
        """
        try:
            info = json.loads(advisory.data)
            sequence = int(info["stream_seq"])
            stored = await self.bus.js.get_msg(self.spec.stream.name, sequence)
        except (ValueError, KeyError, nats.errors.Error) as exc:
            self.log.warning("max_deliveries_advisory_unreadable", error=repr(exc))
            return
        deliveries = int(info.get("deliveries", self.spec.max_deliver))
        letter = self._letter(
            stored.data or b"",
            stored.subject or "",
            dict(stored.headers or {}),
            sequence,
            deliveries,
            ErrorInfo(
                kind=ErrorKind.EXHAUSTED,
                message=f"no acknowledgement after {deliveries} deliveries (handler lost)",
            ),
        )
        try:
            await self.bus.publish(letter)
        except BusError as exc:
            self.log.exception("deadletter_publish_failed", error=repr(exc), sequence=sequence)
            return
        BUS_DEADLETTERS.labels(self.spec.durable, ErrorKind.EXHAUSTED.value).inc()
        self.log.error("message_dead_lettered", kind="exhausted", sequence=sequence)

    async def _fetch_until(self, stop: asyncio.Event) -> None:
        """Fetch while there is room in flight; handlers run in their own per-key tasks."""
        self._stopping.clear()
        async with asyncio.TaskGroup() as tg:
            self._tasks = tg
            beat = tg.create_task(self._keep_alive(), name=f"{self.spec.durable}-heartbeat")
            relay = tg.create_task(self._relay_stop(stop), name=f"{self.spec.durable}-stop")
            await self._fetch_loop(stop)
            # Started handlers finish; messages queued behind them are given back (nak).
            await self._idle.wait()
            beat.cancel()
            relay.cancel()
        self._tasks = None

    async def _relay_stop(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._stopping.set()
        self._room.set()

    async def _fetch_loop(self, stop: asyncio.Event) -> None:
        failures = 0
        limit = self.spec.in_flight_limit
        while not stop.is_set():
            room = limit - len(self._in_flight)
            if room <= 0:  # as many messages in flight as allowed: wait for one to finish
                self._room.clear()
                await self._room.wait()
                continue
            try:
                assert self._sub is not None
                msgs = await self._sub.fetch(
                    min(self.spec.batch, room), timeout=self.spec.fetch_timeout
                )
            except nats.errors.TimeoutError:
                continue
            except (nats.errors.Error, OSError) as exc:
                failures += 1
                self.log.warning("fetch_failed", error=repr(exc), failures=failures)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=min(5.0, 0.2 * failures))
                if isinstance(exc, nats.js.errors.NotFoundError):
                    with contextlib.suppress(nats.errors.Error):
                        await self.setup()
                continue
            failures = 0
            for msg in msgs:
                self._dispatch(msg)
            if msgs:
                await asyncio.sleep(0)  # let the new handlers start before fetching more

    async def close(self) -> None:
        """Drop the pull inbox so the connection can drain without waiting on it; messages
        delivered to us but not handled go back at once (nak) rather than after ack_wait."""
        sub, self._sub = self._sub, None
        if sub is not None:
            for msg in await sub.close():
                with contextlib.suppress(nats.errors.Error):
                    await msg.nak()

    def _dispatch(self, msg: Msg) -> None:
        """Queue a fetched message behind earlier ones about the same object."""
        try:
            decoded: Message | None = decode_message(msg.data)
            error = None
            key = ordering_key(decoded)  # type: ignore[arg-type]
        except SchemaError as exc:
            decoded, error, key = None, exc, f"seq:{msg.metadata.sequence.stream}"
        self._in_flight[id(msg)] = msg
        queued = self._queues.get(key)
        if queued is not None:
            queued.append((msg, decoded, error))
            newer = self._newer.get(key)
            if newer is not None:  # the message being handled may be waiting: it gives way
                newer.set()
            return
        self._queues[key] = deque([(msg, decoded, error)])
        self._idle.clear()
        assert self._tasks is not None
        self._tasks.create_task(self._work_through(key))

    async def _work_through(self, key: str) -> None:
        """Handle one object's messages in order, each holding a worker slot while it runs."""
        queued = self._queues[key]
        slot = _Slot(self._slots)
        try:
            while queued:
                msg, decoded, error = queued.popleft()
                try:
                    if self._stopping.is_set():  # not started: give it back for someone else
                        with contextlib.suppress(nats.errors.Error):
                            await msg.nak()
                        continue
                    slot.parked = 0
                    await slot.take()
                    newer = self._newer[key] = asyncio.Event()
                    if queued:
                        newer.set()
                    try:
                        await self._handle_one(msg, decoded, error, slot, newer)
                    finally:
                        slot.give()
                except (nats.errors.Error, OSError) as exc:  # the ack itself failed
                    self.log.warning("ack_failed", error=repr(exc))
                finally:
                    self._finished(msg)
        finally:
            del self._queues[key]
            self._newer.pop(key, None)
            if not self._queues:
                self._idle.set()

    def _finished(self, msg: Msg) -> None:
        self._in_flight.pop(id(msg), None)
        self._room.set()

    async def _keep_alive(self) -> None:
        """Every message in flight (queued, running or parked) and every one delivered but not
        yet handed out: tell the server we still have it, so it does not redeliver it."""
        while True:
            await asyncio.sleep(self.spec.ack_wait / 3)
            buffered = self._sub.buffer if self._sub is not None else []
            for msg in [*self._in_flight.values(), *buffered]:
                if not msg._ackd:  # noqa: SLF001 - nats-py exposes no public flag
                    with contextlib.suppress(nats.errors.Error):
                        await msg.in_progress()

    async def _handle_one(
        self,
        msg: Msg,
        message: Message | None,
        error: Any,
        slot: _Slot | None = None,
        newer: asyncio.Event | None = None,
    ) -> None:
        started = time.perf_counter()
        meta = msg.metadata
        delivery = Delivery(
            subject=msg.subject,
            stream_sequence=meta.sequence.stream,
            num_delivered=meta.num_delivered,
            is_last_attempt=meta.num_delivered >= self.spec.max_deliver,
            headers=dict(msg.headers or {}),
            msg=msg,
            slot=slot,
            newer=newer,
        )
        if message is None:
            await self._dead_letter(msg, delivery, ErrorKind.SCHEMA, error)
            return
        try:
            # asyncio.timeout, not wait_for: wait_for wraps each handler in an extra task.
            async with asyncio.timeout(self.spec.handler_timeout):
                await self.handler(message, delivery)
        except PermanentError as exc:
            await self._dead_letter(msg, delivery, ErrorKind.PERMANENT, exc, exc.field)
        except Exception as exc:  # noqa: BLE001 - task boundary: route, never drop
            delay = exc.delay if isinstance(exc, TransientError) and exc.delay else None
            mlog = self.log.bind(event_id=message.id, subject=message.subject, type=message.type)
            await self._retry_or_dead_letter(msg, delivery, exc, delay, mlog)
        else:
            await msg.ack()
            self._acked.inc()
        finally:
            self._handle_seconds.observe(time.perf_counter() - started)

    async def _retry_or_dead_letter(
        self,
        msg: Msg,
        delivery: Delivery,
        exc: Exception,
        delay: float | None,
        mlog: structlog.typing.FilteringBoundLogger,
    ) -> None:
        if delivery.is_last_attempt:
            await self._dead_letter(msg, delivery, ErrorKind.EXHAUSTED, exc)
            return
        wait = delay if delay is not None else self.spec.nak_delay(delivery.num_delivered)
        deferred = isinstance(exc, Deferred)
        (mlog.info if deferred else mlog.warning)(
            "handling_deferred" if deferred else "handling_failed_will_retry",
            error=str(exc) if deferred else repr(exc),
            attempt=delivery.num_delivered,
            max_deliver=self.spec.max_deliver,
            retry_in=round(wait, 3),
        )
        await msg.nak(delay=wait)
        BUS_MESSAGES.labels(self.spec.durable, "deferred" if deferred else "nak").inc()

    def _letter(  # noqa: PLR0917 - one call site per dead-letter path, all positional facts
        self,
        payload_bytes: bytes,
        subject: str,
        headers: dict[str, str],
        sequence: int,
        deliveries: int,
        error: ErrorInfo,
    ) -> DeadLetter:
        payload, encoding = DeadLetterData.encode_payload(payload_bytes)
        stream = self.spec.stream.name
        return DeadLetter(
            id=stable_id("deadletter", stream, sequence),
            source=f"medic/consumer/{self.spec.durable}",
            cluster="_",
            subject=subject,
            data=DeadLetterData(
                stream=stream,
                consumer=self.spec.durable,
                subject=subject,
                sequence=sequence,
                deliveries=deliveries,
                error=error,
                payload=payload,
                payload_encoding=encoding,
                headers=headers,
            ),
        )

    async def _dead_letter(
        self,
        msg: Msg,
        delivery: Delivery,
        kind: ErrorKind,
        exc: BaseException,
        field_name: str | None = None,
    ) -> None:
        letter = self._letter(
            msg.data,
            msg.subject,
            {k: str(v) for k, v in (msg.headers or {}).items()},
            delivery.stream_sequence,
            delivery.num_delivered,
            ErrorInfo(
                kind=kind,
                message=str(exc),
                field=field_name or getattr(exc, "field", None),
                exception=type(exc).__name__,
            ),
        )
        try:
            await self.bus.publish(letter)
        except Exception as publish_error:
            self.log.exception("deadletter_publish_failed", error=repr(publish_error))
            await msg.nak(delay=self.spec.nak_delay(delivery.num_delivered))
            return
        self.log.error(
            "message_dead_lettered",
            kind=kind.value,
            error=str(exc),
            field=letter.data.error.field,
            sequence=delivery.stream_sequence,
            deliveries=delivery.num_delivered,
        )
        await msg.term()
        BUS_MESSAGES.labels(self.spec.durable, "deadletter").inc()
        BUS_DEADLETTERS.labels(self.spec.durable, kind.value).inc()
