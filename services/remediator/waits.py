"""Waiting for a precondition that only another event can make true: etcd turning stable.

A rule's `for:` and a settling etcd have a known end, so the service naks with that exact
delay and JetStream hands the event back then. An unstable etcd has none: the end is the
watcher's `stable` event; nor does an etcd no probe has reported yet (its grace is an upper
bound: the probe's first event, often handled beside the release event, ends it sooner). A
release event waiting on either parks (`Delivery.parked`, no worker
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

from medic.remediator.rules.engine import ETCD_UNSTABLE, UNKNOWN_ETCD_GRACE

PARK_AT_MOST = 60.0  # seconds one delivery waits in this process before going back to the bus
ON_ETCD = frozenset({ETCD_UNSTABLE, UNKNOWN_ETCD_GRACE})  # waits that etcd's next record ends
__all__ = ["ON_ETCD", "PARK_AT_MOST", "EtcdChanges", "any_set"]


class EtcdChanges:
    """Per cluster: an event set (and replaced) each time this replica records etcd's state."""

    def __init__(self) -> None:
        self._changed: dict[str, asyncio.Event] = {}

    def recorded(self, cluster: str) -> None:
        changed = self._changed.pop(cluster, None)
        if changed is not None:
            changed.set()

    def marker(self, cluster: str) -> asyncio.Event:
        """Set by the next record for `cluster`: take it before reading the state a wait is
        decided on, so a record landing between that read and the wait is not missed."""
        return self._changed.setdefault(cluster, asyncio.Event())


async def any_set(timeout: float | None, *events: asyncio.Event | None) -> bool:
    """Until one of `events` is set (True) or `timeout` passes (False; None: no timer).
    Parks on an etcd `marker`, a newer event about the object, the service stopping, or the
    pushed rules being in force."""
    waiting = [asyncio.ensure_future(e.wait()) for e in events if e is not None]
    try:
        done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waiting:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return bool(done)
