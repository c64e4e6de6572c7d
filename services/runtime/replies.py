"""Request-reply for the hot path: JetStream publishes with their acks, and KV reads and writes.

nats-py's `request` draws two bytes from `os.urandom` (a system call) for every reply token and
waits in `asyncio.wait_for`; JetStream publishes and KV operations go through it. At six or
seven of them per event, that machinery was a quarter of the remediator's CPU (issue 15,
BENCHMARKS.md: about 45-55 us per operation, 22-30 us here). Here a token is a counter on one
wildcard inbox subscription and the wait a bare future with one timer. The protocol is
nats-py's own: the same subjects, headers and JetStream API answers, and the same errors
(`KeyNotFoundError`, `KeyWrongLastSequenceError`, `APIError`, `NoStreamResponseError`,
`nats.errors.TimeoutError`), so callers handle them as before.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api
from nats.js.errors import (
    APIError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoStreamResponseError,
)

NO_RESPONDERS = "503"
NOT_FOUND = "404"
WRONG_LAST_SEQUENCE = (10071, 10164)  # JSStreamWrongLastSequenceErrF / ...ConstantErr
KV_OPERATION = "KV-Operation"
EXPECTED_LAST = str(api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value)
DELETED = ("DEL", "PURGE")
SWEEP = 0.1  # seconds between checks for requests past their timeout


class Replies:
    """Requests on one connection whose answers come to one subscription (`_INBOX.<id>.*`)."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._prefix = ""
        self._pending: dict[str, asyncio.Future[Msg]] = {}
        self._tokens = itertools.count()
        self._started = asyncio.Lock()
        # (deadline, token) of each request in flight, earliest first: one sweep every
        # SWEEP seconds expires what is due, instead of a timer per request (3-4 % of the
        # remediator's CPU, issue 15); a timeout ends at most SWEEP late.
        self._deadlines: list[tuple[float, str]] = []
        self._sweeping: asyncio.TimerHandle | None = None

    async def _start(self) -> None:
        async with self._started:
            if self._prefix:
                return
            prefix = f"{self.nc.new_inbox()}."
            sub = await self.nc.subscribe(f"{prefix}*", cb=self._answer, pending_bytes_limit=0)
            deliver_at_once(sub, self._deliver)
            self._prefix = prefix

    async def _answer(self, msg: Msg) -> None:
        self._deliver(msg)

    def _deliver(self, msg: Msg) -> None:
        future = self._pending.pop(msg.subject[len(self._prefix) :], None)
        if future is not None and not future.done():
            future.set_result(msg)

    def _sweep(self) -> None:
        self._sweeping = None
        now = asyncio.get_running_loop().time()
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            future = self._pending.pop(heapq.heappop(deadlines)[1], None)
            if future is not None and not future.done():
                future.set_exception(nats.errors.TimeoutError())
        if deadlines:
            self._sweeping = asyncio.get_running_loop().call_later(SWEEP, self._sweep)

    async def request(
        self,
        subject: str,
        payload: bytes = b"",
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Msg:
        return (await self.request_many([subject], payload, headers, timeout))[0]

    async def request_many(
        self,
        subjects: list[str],
        payload: bytes = b"",
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> list[Msg]:
        """The same request to each subject, all in flight at once (no task per request)."""
        if not subjects:
            return []
        if not self._prefix:
            await self._start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waiting: list[tuple[str, asyncio.Future[Msg]]] = []
        for _ in subjects:
            token = str(next(self._tokens))
            future: asyncio.Future[Msg] = loop.create_future()
            self._pending[token] = future
            heapq.heappush(self._deadlines, (deadline, token))
            waiting.append((token, future))
        if self._sweeping is None:
            self._sweeping = loop.call_later(SWEEP, self._sweep)
        try:
            for subject, (token, _) in zip(subjects, waiting, strict=True):
                reply = self._prefix + token
                await self.nc.publish(subject, payload, reply=reply, headers=headers)
            answers = [await future for _, future in waiting]
        finally:
            for token, _ in waiting:
                self._pending.pop(token, None)
        for msg in answers:
            if msg.headers and msg.headers.get("Status") == NO_RESPONDERS:
                raise nats.errors.NoRespondersError
        return answers

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> api.PubAck:
        """A JetStream publish: the stream's ack, or its refusal as nats-py raises it (no
        stream on the subject: `NoStreamResponseError`)."""
        try:
            msg = await self.request(subject, payload, headers)
        except nats.errors.NoRespondersError:
            raise NoStreamResponseError from None
        answer = json.loads(msg.data)
        if "error" in answer:
            error = answer["error"]
            if error.get("err_code") in WRONG_LAST_SEQUENCE:
                raise KeyWrongLastSequenceError(description=error.get("description"))
            APIError.from_error(error)  # raises the error's class (BadRequestError, ...)
        # The fields themselves: `PubAck.from_response` inspects the dataclass for each ack.
        return api.PubAck(
            stream=answer["stream"],
            seq=answer["seq"],
            domain=answer.get("domain"),
            duplicate=answer.get("duplicate"),
        )


def deliver_at_once(sub: Subscription, deliver: Callable[[Msg], None]) -> None:
    """Hand this subscription's messages to `deliver` as the read loop parses them, instead
    of through its queue and the task that awaits it (a queue put, a task switch and a
    coroutine per answer: 4-6 % of the remediator's CPU, issue 15). nats-py's reader puts each
    message with `sub._pending_queue.put_nowait`; where that is not so (another nats-py), the
    subscription keeps its own queue and callback, which deliver the same way."""
    task = getattr(sub, "_wait_for_msgs_task", None)
    if not isinstance(getattr(sub, "_pending_queue", None), asyncio.Queue) or task is None:
        return
    sub._pending_queue = _AtOnce(sub, deliver)  # type: ignore[assignment]  # noqa: SLF001
    task.cancel()


class _AtOnce:
    """The queue nats-py's reader puts a subscription's messages in, delivering each at once."""

    def __init__(self, sub: Subscription, deliver: Callable[[Msg], None]) -> None:
        self.sub = sub
        self.deliver = deliver

    def put_nowait(self, msg: Msg) -> None:
        self.sub._pending_size -= len(msg.data)  # noqa: SLF001 - as its consumer task would
        self.deliver(msg)

    def qsize(self) -> int:
        return 0

    def empty(self) -> bool:
        return True

    def task_done(self) -> None:
        return None

    async def join(self) -> None:
        return None


@dataclass(frozen=True)
class Stored:
    """A KV entry as read: its value and revision."""

    value: bytes
    revision: int


class KvOps:
    """The KV operations the hot path needs (get, create, update) on a bucket made with
    `allow_direct` (`Bus.kv`), through `Replies`; anything else stays with nats-py's KeyValue."""

    def __init__(self, replies: Replies, bucket: str) -> None:
        self.replies = replies
        self.stream = f"KV_{bucket}"
        self.prefix = f"$KV.{bucket}."

    async def get(self, key: str) -> Stored:
        """The latest value; `KeyNotFoundError` when absent or deleted (as nats-py's `get`)."""
        found = (await self.get_many([key]))[0]
        if found is None:
            raise KeyNotFoundError
        return found

    async def get_many(self, keys: list[str]) -> list[Stored | None]:
        """The latest value of each key, read concurrently; None where absent or deleted."""
        return [_stored(msg) for msg in await self._last(keys)]

    async def _last(self, keys: list[str]) -> list[Msg]:
        """The direct get's answer for each key: its last message, a tombstone, or a status."""
        direct = f"$JS.API.DIRECT.GET.{self.stream}.{self.prefix}"
        return await self.replies.request_many([direct + key for key in keys])

    async def update(self, key: str, value: bytes, last: int) -> int:
        """Write if the key's latest revision is `last` (0: it has none); the new revision."""
        headers = {EXPECTED_LAST: str(last)}
        return (await self.replies.publish(f"{self.prefix}{key}", value, headers)).seq

    async def create(self, key: str, value: bytes) -> int:
        """Write if the key is absent or deleted (nats-py's `create`: a deleted key keeps a
        tombstone, so the write expects the tombstone's revision)."""
        try:
            return await self.update(key, value, 0)
        except KeyWrongLastSequenceError:
            tombstone = await self._tombstone(key)
            if tombstone is None:
                raise
            return await self.update(key, value, tombstone)

    async def _tombstone(self, key: str) -> int | None:
        headers = (await self._last([key]))[0].headers or {}
        if not headers.get("Status") and headers.get(KV_OPERATION) in DELETED:
            return int(headers["Nats-Sequence"])
        return None


def _stored(msg: Msg) -> Stored | None:
    headers = msg.headers or {}
    status = headers.get("Status")
    if status == NOT_FOUND:
        return None
    if status:
        raise APIError.from_msg(msg)
    if headers.get(KV_OPERATION) in DELETED:
        return None
    return Stored(msg.data, int(headers["Nats-Sequence"]))
