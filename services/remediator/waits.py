"""Waiting for a precondition that only another event can make true: etcd turning stable.

A rule's `for:` and a settling etcd have a known end, so the service naks with that exact
delay and JetStream hands the event back then. An unstable etcd has none: the end is the
watcher's `stable` event. A release event waiting on it parks (`Delivery.parked`, no worker
held) until this replica records an etcd change for the cluster, a later event about the same
object arrives (it may resolve the problem: the wait gives way to it), or a timer; then the
service decides again from the stored state. The timer covers a `stable` event handled by
another replica; `PARK_AT_MOST` hands a long wait back to JetStream so no event stays in one
process for long.

Not for: deciding whether to wait (the pure engine does), nor waits with a known end.
"""

from __future__ import annotations

import asyncio
import contextlib

from medic.remediator.rules.engine import ETCD_UNSTABLE

PARK_AT_MOST = 60.0  # seconds one delivery waits in this process before going back to the bus
__all__ = ["ETCD_UNSTABLE", "PARK_AT_MOST", "EtcdChanges"]


class EtcdChanges:
    """Per cluster: an event set (and replaced) each time this replica records etcd's state."""

    def __init__(self) -> None:
        self._changed: dict[str, asyncio.Event] = {}

    def recorded(self, cluster: str) -> None:
        changed = self._changed.pop(cluster, None)
        if changed is not None:
            changed.set()

    async def wait(self, cluster: str, timeout: float, *also: asyncio.Event | None) -> bool:
        """Until etcd's state changes here or one of `also` is set (True: a newer event about
        the object, the service stopping), or `timeout` (False)."""
        changed = self._changed.setdefault(cluster, asyncio.Event())
        waiting = [asyncio.ensure_future(changed.wait())]
        waiting += [asyncio.ensure_future(e.wait()) for e in also if e is not None]
        try:
            done, _ = await asyncio.wait(
                waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in waiting:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return bool(done)
