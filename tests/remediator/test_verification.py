"""`wait_verified` without I/O: when a verification reads the object, and when the shared
watch's events (or its silence) already answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from medic.remediator import verification
from medic.remediator.verification import ObjectChanges, Subscription, wait_verified
from medic.runtime.kube import ResourceType

CONFIGMAPS = ResourceType("", "v1", "configmaps", "ConfigMap")


async def reads_until_deadline(*, live: bool, judge: Any) -> int:
    """How many times the check reads the object in 0.5 s of a fix that never verifies."""
    hub = ObjectChanges(kube=None)  # type: ignore[arg-type]  # no watch is started here
    key = (CONFIGMAPS, "ns")
    hub._live[key] = live
    reads = 0

    async def check() -> bool:
        nonlocal reads
        reads += 1
        return False

    verified = await wait_verified(
        check,
        Subscription(watched=key, hub=hub),
        deadline=asyncio.get_running_loop().time() + 0.5,
        interval=0.02,
        stopping=asyncio.Event(),
        judge=judge,
        checked=True,  # the written object was judged already
    )
    assert verified is False
    return reads


@pytest.fixture(autouse=True)
def fast_resync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verification, "RESYNC", 0.05)


async def test_a_live_watchs_silence_needs_no_resync_read_when_the_object_is_judged() -> None:
    """Issue 15: a burst's verifications waiting on a slow controller read nothing while the
    watch is live and silent; the deadline's own check is the one read."""
    assert await reads_until_deadline(live=True, judge=lambda obj: False) == 1


async def test_a_check_that_reads_more_than_the_object_still_resyncs() -> None:
    assert await reads_until_deadline(live=True, judge=None) >= 5


async def test_without_a_live_watch_the_object_is_read_every_interval() -> None:
    assert await reads_until_deadline(live=False, judge=lambda obj: False) >= 10
