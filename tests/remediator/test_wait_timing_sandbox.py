"""Waits end when their condition holds, not on the next ~30 s redelivery (issue 16, item 14).

On the sandbox and a real nats-server with the remediator service: a rule's `for:` acts within
a couple of seconds of the moment the problem has lasted that long, and `etcdStableFor` acts
within a couple of seconds of the moment etcd has been stable that long (the `stable` event's
`stable_since` plus the duration), however long etcd was unstable before, and at once when the
`stable` event arrives after that moment (a probe whose own `stable_after` is the longer), also
when the release event was decided before any etcd event was recorded (the two are handled
side by side: the grace for an unreported etcd ends at etcd's first record, not on its timer).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from medic.remediator.service import create
from medic.remediator.settings import RemediatorSettings
from medic.runtime.bus import Bus
from medic.runtime.kube import KubeClient
from medic.runtime.settings import KubeSettings
from medic.sandbox import KubeSandbox
from medic.schemas import EtcdCondition, EtcdEvent, EtcdEventData
from medic.testing import objects
from medic.testing.factories import etcd_event, release_event
from medic.testing.waiting import eventually

pytestmark = pytest.mark.timeout(90)
SLACK = 2.0  # "within a couple of seconds"
RULE = """apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: waits}
spec:
  match: {kinds: [HelmRelease]}
  action: {name: retry}
  %s
  verify: {timeout: 1s, interval: 0.2s}
"""


async def first_patch(sandbox: KubeSandbox, name: str) -> float:
    """Wall time of the remediator's first PATCH of `name` (the sandbox's request log)."""

    async def patched() -> float | None:
        for record in sandbox.store.requests:
            if record.verb == "patch" and record.name == name:
                return record.time
        return None

    return await eventually(patched, timeout=60.0, interval=0.05)


async def remediating(
    bus: Bus, tmp_path: Path, sandbox: KubeSandbox, wait: str
) -> AsyncIterator[None]:
    (tmp_path / "rule.yaml").write_text(RULE % wait)
    sandbox.store.put(
        objects.helmrelease("podinfo", status=objects.etcd_failed_status("podinfo", "apps"))
    )
    kube = await KubeClient.connect(KubeSettings(kubeconfig=sandbox.kubeconfig_path))
    settings = RemediatorSettings(actor="test", rules=[tmp_path], builtin_rules=False)
    service = await create(bus, kube, settings, "test")
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15.0)


@pytest.fixture
async def sandbox() -> AsyncIterator[KubeSandbox]:
    async with KubeSandbox.start() as started:
        yield started


@pytest.mark.parametrize("duration", [7.0, 20.0])
async def test_a_for_duration_acts_when_the_problem_has_lasted_that_long(
    bus: Bus, tmp_path: Path, sandbox: KubeSandbox, duration: float
) -> None:
    async for _ in remediating(bus, tmp_path, sandbox, f"for: {duration:.0f}s"):
        event = release_event("podinfo")
        await bus.publish(event)
        acted = await first_patch(sandbox, "podinfo")
    late = acted - event.time.timestamp() - duration
    assert 0.0 <= late < SLACK, f"acted {late:+.1f}s after the for: duration ended"


async def test_etcd_stable_for_acts_when_etcd_has_been_stable_that_long(
    bus: Bus, tmp_path: Path, sandbox: KubeSandbox
) -> None:
    stable_for = 8.0
    wait = f"preconditions: {{etcdStableFor: {stable_for:.0f}s}}"
    async for _ in remediating(bus, tmp_path, sandbox, wait):
        await bus.publish(etcd_event(EtcdCondition.LEADER_CHANGED))
        await bus.publish(release_event("podinfo"))
        await asyncio.sleep(3.3)  # unstable for a while: the release waits on etcd
        assert [r for r in sandbox.store.requests if r.verb == "patch"] == []
        since = datetime.now(UTC)
        started = time.monotonic()
        stable = etcd_event(EtcdCondition.STABLE, seq=1)
        stable = EtcdEvent(
            id=stable.id,
            source=stable.source,
            cluster=stable.cluster,
            data=EtcdEventData(condition=EtcdCondition.STABLE, stable_since=since),
        )
        await bus.publish(stable)
        acted = await first_patch(sandbox, "podinfo")
        assert time.monotonic() - started < stable_for + SLACK + 5
    late = acted - since.timestamp() - stable_for
    assert 0.0 <= late < SLACK, f"acted {late:+.1f}s after etcd had been stable {stable_for}s"


def long_stable(seq: int) -> EtcdEvent:
    """A `stable` event as a probe sends it 30 s after the quiet began (its default
    stable_after): by then the rules' 5 s have long passed."""
    template = etcd_event(EtcdCondition.STABLE, seq=seq)
    since = datetime.now(UTC) - timedelta(seconds=30)
    return EtcdEvent(
        id=template.id,
        source=template.source,
        cluster=template.cluster,
        data=EtcdEventData(condition=EtcdCondition.STABLE, stable_since=since),
    )


@pytest.mark.parametrize("etcd_first", [True, False], ids=["unstable-etcd", "unreported-etcd"])
async def test_etcd_stable_for_acts_at_once_when_the_stable_event_comes_late(
    bus: Bus, tmp_path: Path, sandbox: KubeSandbox, etcd_first: bool
) -> None:
    stable_for = 5.0
    wait = f"preconditions: {{etcdStableFor: {stable_for:.0f}s}}"
    async for _ in remediating(bus, tmp_path, sandbox, wait):
        if etcd_first:
            await bus.publish(etcd_event(EtcdCondition.LEADER_CHANGED))
        await bus.publish(release_event("podinfo"))
        # The release waits on etcd: unstable (no known end), or not reported yet (a grace of
        # the rule's 5 s that etcd's first record ends sooner).
        await asyncio.sleep(1.0)
        assert [r for r in sandbox.store.requests if r.verb == "patch"] == []
        await bus.publish(long_stable(seq=2))
        announced = time.time()
        acted = await first_patch(sandbox, "podinfo")
    late = acted - announced
    assert late < 1.0, f"acted {late:.1f}s after the stable event"
