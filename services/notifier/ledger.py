"""What was delivered where, and each object's thread, in NATS KV: survives restarts, shared by
replicas.

Two buckets:
- deliveries, key `<channel>.<hash(result id)>`: `sending` (claimed, with a time), `failed`
  (transient error, may be reclaimed), `held` (a failed attempt waiting to be folded, may be
  reclaimed), or a final state `delivered` / `dead_lettered` / `digested` / `folded`. Claiming
  is create-if-absent (or compare-and-set over `failed`, `held` or an expired `sending`), so a
  redelivered result finds its final state and is not posted twice, and a result for two
  channels is re-sent only to the channel that did not take it.
- threads, key `<channel>.<hash(object)>`: the Slack `ts` of the first message about the object
  (`medic.notifier.folding.thread_key`); its problems are replies.

At-least-once, not exactly-once: a process that dies after the destination took a message but
before the `delivered` write leaves a `sending` claim; after `claim_lease` seconds it is
reclaimed and the message sent again. That window is one request long.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from medic.schemas import stable_id

FINAL_STATES: Final = frozenset({"delivered", "dead_lettered", "digested", "folded"})


@dataclass(frozen=True, slots=True)
class Claim:
    """`done` holds the final state when someone already finished; else we own the send."""

    done: str | None = None
    busy_for: float = 0.0  # another process holds a fresh claim for this many seconds


class Ledger:
    def __init__(
        self,
        deliveries: KeyValue,
        threads: KeyValue,
        lease: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.deliveries = deliveries
        self.threads = threads
        self.lease = lease
        self.clock = clock

    @staticmethod
    def _key(channel: str, ident: str) -> str:
        return f"{channel}.{stable_id(ident)}"

    def _value(self, state: str, **extra: object) -> bytes:
        return json.dumps({"state": state, "at": self.clock(), **extra}).encode()

    async def claim(self, channel: str, result_id: str) -> Claim:
        key = self._key(channel, result_id)
        try:
            await self.deliveries.create(key, self._value("sending"))
        except KeyWrongLastSequenceError:
            pass
        else:
            return Claim()
        try:
            entry = await self.deliveries.get(key)
        except KeyNotFoundError:  # deleted between create and get: try once more next time
            return Claim(busy_for=0.5)
        value = json.loads(entry.value or b"{}")
        state = str(value.get("state", ""))
        if state in FINAL_STATES:
            return Claim(done=state)
        age = self.clock() - float(value.get("at", 0.0))
        if state == "sending" and age < self.lease:
            return Claim(busy_for=self.lease - age)
        try:
            await self.deliveries.update(key, self._value("sending"), last=entry.revision)
        except KeyWrongLastSequenceError:
            return Claim(busy_for=1.0)
        return Claim()

    async def finish(self, channel: str, result_id: str, state: str, **extra: object) -> None:
        await self.deliveries.put(self._key(channel, result_id), self._value(state, **extra))

    async def release(self, channel: str, result_id: str, error: str) -> None:
        await self.deliveries.put(self._key(channel, result_id), self._value("failed", error=error))

    async def state(self, channel: str, result_id: str) -> str | None:
        try:
            entry = await self.deliveries.get(self._key(channel, result_id))
        except KeyNotFoundError:
            return None
        return str(json.loads(entry.value or b"{}").get("state"))

    async def thread(self, channel: str, problem_key: str) -> str | None:
        try:
            entry = await self.threads.get(self._key(channel, problem_key))
        except KeyNotFoundError:
            return None
        return (entry.value or b"").decode() or None

    async def remember_thread(self, channel: str, problem_key: str, thread: str) -> None:
        """The first message of a problem starts its thread; a racing second one does not win."""
        try:
            await self.threads.create(self._key(channel, problem_key), thread.encode())
        except KeyWrongLastSequenceError:
            return
