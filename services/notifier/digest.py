"""Bursts become one digest message per channel.

When more than `threshold` results for a channel arrive within `window` seconds, further ones
join the channel's open digest instead of being posted one by one. The digest is flushed by
`run` (a task of the service) `window` seconds after it opened, or at shutdown. Each result's
handler waits until the digest containing it was sent and only then returns, so its message is
acked after the digest went out: nothing is lost if the process dies first (the results are
redelivered and digested or sent again), at the price of a possible repeat after a crash
between sending the digest and acking.

Results about the same object are handled in order by the consumer, so a burst about a single
object is digested one result per window; bursts across many objects (the usual case) group.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from medic.runtime.errors import TransientError
from medic.schemas import RemediationResult

Flush = Callable[[str, list[RemediationResult]], Awaitable[None]]


@dataclass
class _Open:
    deadline: float
    results: list[RemediationResult] = field(default_factory=list)
    done: asyncio.Future[None] = field(default_factory=asyncio.Future)


class DigestBuffer:
    def __init__(self, threshold: int, window: float, flush: Flush) -> None:
        self.threshold = threshold
        self.window = window
        self._flush = flush
        self._arrivals: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )
        self._open: dict[str, _Open] = {}
        self._changed = asyncio.Event()
        self._closed = False

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def is_burst(self, channel: str) -> bool:
        """Count this arrival; True when it is one too many for the window (or a digest is open)."""
        now = self._now()
        arrivals = self._arrivals[channel]
        arrivals.append(now)
        while arrivals and arrivals[0] < now - self.window:
            arrivals.popleft()
        return channel in self._open or len(arrivals) > self.threshold

    async def add(self, channel: str, result: RemediationResult) -> None:
        """Join the channel's digest and wait until it was sent; raises the send's error."""
        if self._closed:
            raise TransientError("notifier stopping: digest closed", delay=1.0)
        pending = self._open.get(channel)
        if pending is None:
            pending = _Open(deadline=self._now() + self.window)
            self._open[channel] = pending
            self._changed.set()
        pending.results.append(result)
        await asyncio.shield(pending.done)

    async def run(self, stop: asyncio.Event) -> None:
        """Flush digests when their window ends; flush all of them when `stop` is set."""
        while not stop.is_set():
            self._changed.clear()
            now = self._now()
            for channel in [c for c, o in self._open.items() if o.deadline <= now]:
                await self._flush_one(channel)
            next_deadline = min((o.deadline for o in self._open.values()), default=now + 1.0)
            waits = [
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(self._changed.wait()),
            ]
            try:
                await asyncio.wait(
                    waits, timeout=max(0.0, next_deadline - now), return_when="FIRST_COMPLETED"
                )
            finally:
                for waiter in waits:
                    waiter.cancel()
                await asyncio.gather(*waits, return_exceptions=True)
        self._closed = True
        for channel in list(self._open):
            await self._flush_one(channel)

    async def _flush_one(self, channel: str) -> None:
        pending = self._open.pop(channel)
        try:
            await self._flush(channel, pending.results)
        except Exception as exc:  # noqa: BLE001 - task boundary: every waiter gets the error
            pending.done.set_exception(exc)
        else:
            pending.done.set_result(None)
