"""Getting each result to each of its channels: at least once, once per channel, never stuck.

Retry design. A result stays un-acked on MEDIC_RESULTS until every channel it is routed to has
taken it (or rejected it for good). A transient failure (timeout, 5xx, 429) makes the handler
raise `TransientError(delay)`: the consumer naks with that delay and JetStream redelivers.
The delay honours `Retry-After`, else it is exponential with jitter (`medic.runtime.backoff`)
capped at `retry_cap` (5 minutes), and `max_deliver` is high (2000 deliveries, more than a week
at the cap, matching the stream's 7-day max age), so a channel down for an hour, or a notifier
restarted meanwhile, still delivers: the message waits on the bus, not in memory. Per channel
outcomes are kept in KV (`medic.notifier.ledger`), so the redelivery goes only to the channels
that have not taken it, and a redelivered result already posted is not posted twice. Permanent
errors (4xx other than 408/429, `invalid_payload`, `channel_not_found`) dead-letter the result
for that channel only (a `DeadLetter` on MEDIC_DEADLETTER with the error) and are not retried.
Every delivery, digest, duplicate and dead-letter is recorded as a `Notification` on
MEDIC_NOTIFICATIONS.

Known limit: all channels share one durable consumer, so a channel that is down for long holds
up to `max_ack_pending` messages un-acked; sized generously (20k) it does not block others.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Final, Literal

import structlog
from prometheus_client import Counter

from medic.notifier.channels.base import Channel, ChannelError, DeliveryReceipt, Rendered
from medic.notifier.digest import DigestBuffer
from medic.notifier.folding import FoldBook, is_step, thread_key
from medic.notifier.ledger import Ledger
from medic.notifier.render import render_digest, render_result, step_line
from medic.notifier.routing import route
from medic.notifier.settings import ChannelConfig, NotifierSettings
from medic.notifier.templates import TemplateSet
from medic.runtime.backoff import Backoff
from medic.runtime.bus import Bus
from medic.runtime.consumer import Delivery
from medic.runtime.errors import Deferred, TransientError
from medic.runtime.subjects import RESULTS
from medic.schemas import (
    DeadLetter,
    DeadLetterData,
    DeliveryStatus,
    ErrorInfo,
    ErrorKind,
    Message,
    Notification,
    NotificationData,
    RemediationResult,
    encode_message,
    stable_id,
)

log = structlog.get_logger(__name__)
SOURCE: Final = "medic/notifier"
CONSUMER: Final = "notifier"
MAX_RATE_WAIT: Final = 30.0  # longer than this in a channel's queue: nak and come back later

DELIVERIES = Counter(
    "medic_notifier_deliveries", "Notifications by channel and status.", ["channel", "status"]
)


class ChannelGate:
    """A per-channel token bucket (Slack: ~1 msg/s per channel) and the channel's Retry-After."""

    def __init__(self, rate: float | None, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = 0.0
        self.paused_until = 0.0
        self.lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        now = asyncio.get_running_loop().time()
        self.paused_until = max(self.paused_until, now + seconds)

    async def acquire(self) -> None:
        async with self.lock:  # one waiter at a time keeps the order of arrival
            loop = asyncio.get_running_loop()
            wait = self.paused_until - loop.time()
            if wait > MAX_RATE_WAIT:
                raise TransientError("channel paused (Retry-After)", delay=wait)
            if wait > 0:
                await asyncio.sleep(wait)
            if self.rate is None:
                return
            now = loop.time()
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens < 1.0:
                await asyncio.sleep((1.0 - self.tokens) / self.rate)
                self.tokens, self.updated = 1.0, loop.time()
            self.tokens -= 1.0


@dataclasses.dataclass
class _Retry:
    after: float | None
    hold: bool = False  # not a failure: a step waits for the outcome to fold into


class Deliverer:
    """The notifier's message handler: route, render, dedup, send, record."""

    def __init__(
        self,
        bus: Bus,
        settings: NotifierSettings,
        ledger: Ledger,
        channels: Mapping[str, Channel],
        gates: Mapping[str, ChannelGate],
        *,
        folds: FoldBook,
    ) -> None:
        self.bus = bus
        self.folds = folds
        self.settings = settings
        self.ledger = ledger
        self.channels = channels
        self.gates = gates
        self.configs: Sequence[ChannelConfig] = [c for c in settings.channels if c.name in channels]
        self.templates = {
            c.name: TemplateSet(c.templates, settings.template_dir) for c in self.configs
        }
        self.backoff = Backoff(base=settings.retry_base, cap=settings.retry_cap)
        self.digests = DigestBuffer(
            settings.digest_threshold, settings.digest_window, self._send_digest
        )

    async def handle(self, message: Message, delivery: Delivery) -> None:
        if not isinstance(message, RemediationResult):
            return
        chosen = route(message, self.configs)
        mlog = log.bind(result_id=message.id, problem_key=message.data.problem_key)
        if chosen.unknown:
            mlog.warning("notify_unknown_channels", channels=list(chosen.unknown))
        if not chosen.channels:
            return
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self._deliver(name, message, delivery, mlog.bind(channel=name)))
                for name in chosen.channels
            ]
        retries = [r for r in (t.result() for t in tasks) if r is not None]
        if retries and all(r.hold for r in retries):
            delay = max(r.after or 0.0 for r in retries)
            raise Deferred(f"{len(retries)} channel(s) hold a failed attempt", delay=delay)
        if retries:
            hinted = [r.after for r in retries if r and r.after is not None]
            n = delivery.num_delivered
            delay = (
                max(hinted) if hinted else self.backoff.ceiling(n) / 2 + self.backoff.delay(n) / 2
            )
            raise TransientError(f"{len(retries)} channel(s) will retry", delay=delay)

    async def _deliver(
        self,
        name: str,
        result: RemediationResult,
        delivery: Delivery,
        clog: structlog.typing.FilteringBoundLogger,
    ) -> _Retry | None:
        """One channel's part; whatever happens here, the other channels go on."""
        claimed = await self._claim(name, result, delivery, clog)
        if claimed is True and self._folds(name) and is_step(result) and self.settings.fold_window:
            claimed = await self._fold_step(name, result, delivery, clog)
        if claimed is not True:
            return claimed  # done before (None), not ours now or held (_Retry)
        try:
            receipt = await self._attempt(name, result, delivery)
        except ChannelError as exc:
            return await self._failed(name, result, delivery, exc, clog)
        except TransientError as exc:
            await self._release(name, result, str(exc), clog)
            return _Retry(after=exc.delay)
        except Exception as exc:  # noqa: BLE001 - per-channel boundary: others must go on
            clog.exception("notification_failed_unexpectedly", error=repr(exc))
            await self._release(name, result, type(exc).__name__, clog)
            return _Retry(after=None)
        if receipt is None:
            clog.info("notification_digested")
            return None
        return await self._delivered(name, result, delivery, receipt, clog)

    async def _claim(
        self,
        name: str,
        result: RemediationResult,
        delivery: Delivery,
        clog: structlog.typing.FilteringBoundLogger,
    ) -> Literal[True] | _Retry | None:
        try:
            claim = await self.ledger.claim(name, result.id)
            if claim.done is not None:
                clog.info("notification_duplicate_skipped", state=claim.done)
                # Publish the final record again (deduplicated by id) in case it was lost.
                await self._record(result, name, DeliveryStatus(claim.done), delivery)
                await self._record(result, name, DeliveryStatus.DUPLICATE, delivery)
                return None
        except Exception as exc:  # noqa: BLE001 - per-channel boundary: KV or bus unavailable
            clog.warning("notification_bookkeeping_failed", error=repr(exc))
            return _Retry(after=None)
        return _Retry(after=claim.busy_for) if claim.busy_for > 0 else True

    def _folds(self, name: str) -> bool:
        """Channels a person reads fold steps; machine channels get every result as it is."""
        return not getattr(self.channels[name], "machine_readable", False)

    async def _fold_step(
        self,
        name: str,
        result: RemediationResult,
        delivery: Delivery,
        clog: structlog.typing.FilteringBoundLogger,
    ) -> Literal[True] | _Retry | None:
        """A failed attempt: folded into an outcome told since (None), held for the outcome
        that follows (_Retry), or sent now (True): into the object's thread when it has one,
        alone when nothing followed within the window."""
        try:
            if await self.folds.told_after(name, result):
                await self.ledger.finish(name, result.id, "folded")
                await self._record(result, name, DeliveryStatus.FOLDED, delivery)
                clog.info("notification_folded")
                return None
            if self.channels[name].supports_threads and await self.ledger.thread(
                name, thread_key(result)
            ):
                return True  # a reply in the thread, not broadcast
            held_for = await self.folds.hold(name, result, step_line(result))
            left = self.settings.fold_window - held_for
            if left > 0:
                await self.ledger.finish(name, result.id, "held")
                clog.info("notification_held", seconds=round(left, 1))
                return _Retry(after=left, hold=True)
            await self.folds.drop(name, result)
        except Exception as exc:  # noqa: BLE001 - per-channel boundary: KV or bus unavailable
            clog.warning("notification_bookkeeping_failed", error=repr(exc))
            await self._release(name, result, type(exc).__name__, clog)
            return _Retry(after=None)
        return True

    async def _delivered(
        self,
        name: str,
        result: RemediationResult,
        delivery: Delivery,
        receipt: DeliveryReceipt,
        clog: structlog.typing.FilteringBoundLogger,
    ) -> _Retry | None:
        """Sent: the claim is never released now, so a bookkeeping failure retries the
        bookkeeping (after the claim lease), it does not re-post at once."""
        try:
            await self.ledger.finish(name, result.id, "delivered", thread=receipt.thread)
            await self._record(result, name, DeliveryStatus.DELIVERED, delivery, receipt=receipt)
        except Exception as exc:  # noqa: BLE001 - per-channel boundary
            clog.warning("notification_bookkeeping_failed", error=repr(exc))
            return _Retry(after=None)
        clog.info("notification_delivered", thread=receipt.thread)
        return None

    async def _attempt(
        self, name: str, result: RemediationResult, delivery: Delivery | None = None
    ) -> DeliveryReceipt | None:
        """Send alone, or as part of the channel's digest during a burst (then None)."""
        if self.digests.is_burst(name):
            await self.digests.add(name, result)
            return None
        return await self._send_one(name, result, delivery)

    async def _release(
        self,
        name: str,
        result: RemediationResult,
        error: str,
        clog: structlog.typing.FilteringBoundLogger,
    ) -> None:
        try:
            await self.ledger.release(name, result.id, error)
        except Exception as exc:  # noqa: BLE001 - the claim then expires after the lease
            clog.warning("notification_release_failed", error=repr(exc))

    async def _failed(
        self,
        name: str,
        result: RemediationResult,
        delivery: Delivery,
        exc: ChannelError,
        clog: structlog.typing.FilteringBoundLogger,
    ) -> _Retry | None:
        if exc.permanent:
            try:
                await self._dead_letter(name, result, delivery, exc)
                await self.ledger.finish(name, result.id, "dead_lettered", error=str(exc))
                await self._record(
                    result, name, DeliveryStatus.DEAD_LETTERED, delivery, error=str(exc)
                )
            except Exception as publish_error:  # noqa: BLE001 - retry the dead-lettering
                clog.warning("deadletter_failed", error=repr(publish_error))
                await self._release(name, result, str(exc), clog)
                return _Retry(after=None)
            clog.error("notification_dead_lettered", error=str(exc), code=exc.code)
            return None
        await self._release(name, result, str(exc), clog)
        if exc.retry_after is not None:
            self.gates[name].pause(exc.retry_after)
        clog.warning(
            "notification_failed_will_retry",
            error=str(exc),
            retry_after=exc.retry_after,
            attempt=delivery.num_delivered,
        )
        DELIVERIES.labels(name, "retry").inc()
        return _Retry(after=exc.retry_after)

    async def _send(
        self, name: str, rendered: Rendered, delivery: Delivery | None = None
    ) -> DeliveryReceipt:
        # Waiting for the channel's rate (Slack: ~1/s) is a timer, not work: the consumer's
        # worker goes to other results (other channels) meanwhile (issue 17).
        if delivery is not None:
            async with delivery.parked():
                await self.gates[name].acquire()
        else:
            await self.gates[name].acquire()
        async with asyncio.timeout(self.settings.send_timeout * 2):
            return await self.channels[name].send(rendered)

    async def _send_one(
        self, name: str, result: RemediationResult, delivery: Delivery | None = None
    ) -> DeliveryReceipt:
        outcome = self._folds(name) and not is_step(result)
        earlier = await self.folds.held_before(name, result) if outcome else []
        rendered = render_result(result, self.templates[name], earlier=earlier)
        channel = self.channels[name]
        thread = None
        key = thread_key(result)
        if channel.supports_threads:
            thread = await self.ledger.thread(name, key)
            rendered = dataclasses.replace(rendered, thread=thread)
        receipt = await self._send(name, rendered, delivery)
        if channel.supports_threads and thread is None and receipt.thread:
            await self.ledger.remember_thread(name, key, receipt.thread)
        if outcome:
            try:
                await self.folds.told(name, result)
            except Exception as exc:  # noqa: BLE001 - sent already; a held step then goes alone
                log.warning("fold_bookkeeping_failed", result_id=result.id, error=repr(exc))
        return receipt if thread is None else DeliveryReceipt(thread=thread, status=receipt.status)

    async def _send_digest(self, name: str, results: list[RemediationResult]) -> None:
        rendered = render_digest(name, results, self.settings.digest_window, self.templates[name])
        await self._send(name, rendered)
        log.info("digest_delivered", channel=name, results=len(results))
        for result in results:
            try:
                await self.ledger.finish(name, result.id, "digested", digest=rendered.message_id)
                await self._record(result, name, DeliveryStatus.DIGESTED, None)
            except Exception as exc:  # noqa: BLE001 - sent already: never fail the waiters now
                log.warning("digest_bookkeeping_failed", result_id=result.id, error=repr(exc))

    async def _record(
        self,
        result: RemediationResult,
        channel: str,
        status: DeliveryStatus,
        delivery: Delivery | None,
        *,
        receipt: DeliveryReceipt | None = None,
        error: str | None = None,
    ) -> None:
        DELIVERIES.labels(channel, status.value).inc()
        record = Notification(
            id=stable_id("notification", channel, result.id, status.value),
            source=SOURCE,
            cluster=result.cluster,
            subject=result.subject,
            data=NotificationData(
                result_id=result.id,
                problem_key=result.data.problem_key,
                channel=channel,
                status=status,
                thread=receipt.thread if receipt else None,
                attempts=delivery.num_delivered if delivery else 1,
                error=error,
            ),
        )
        await self.bus.publish(record)

    async def _dead_letter(
        self, name: str, result: RemediationResult, delivery: Delivery, exc: ChannelError
    ) -> None:
        payload, encoding = DeadLetterData.encode_payload(encode_message(result))
        letter = DeadLetter(
            id=stable_id("deadletter", CONSUMER, name, result.id),
            source=SOURCE,
            cluster=result.cluster,
            subject=result.subject,
            data=DeadLetterData(
                stream=RESULTS.name,
                consumer=CONSUMER,
                subject=delivery.subject,
                sequence=delivery.stream_sequence,
                deliveries=delivery.num_delivered,
                error=ErrorInfo(
                    kind=ErrorKind.PERMANENT,
                    message=f"channel {name}: {exc}",
                    field=f"channels.{name}",
                    exception=type(exc).__name__,
                ),
                payload=payload,
                payload_encoding=encoding,
                headers={"Medic-Channel": name},
            ),
        )
        await self.bus.publish(letter)
