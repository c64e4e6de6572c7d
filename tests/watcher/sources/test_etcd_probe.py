"""The etcd probe against a real three-member etcd cluster: stage, break, observe the events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from medic.runtime.bus import Bus
from medic.runtime.subjects import EVENTS
from medic.schemas import EtcdCondition, EtcdEvent, Event, decode_message
from medic.testing.etcd import EtcdCluster
from medic.testing.waiting import eventually
from medic.watcher.sources.base import Emit, SourceContext
from medic.watcher.sources.etcd_probe import PLUGIN, EtcdProbe, EtcdProbeSettings

pytestmark = pytest.mark.etcd


def probe_for(cluster: EtcdCluster, **overrides: float) -> EtcdProbe:
    values = {"interval": 0.05, "timeout": 0.5, "stable_after": 1.0, **overrides}
    settings = EtcdProbeSettings(endpoints=cluster.client_urls, **values)
    source = PLUGIN.create(settings, SourceContext(cluster="test"))
    assert isinstance(source, EtcdProbe)
    return source


@asynccontextmanager
async def running(probe: EtcdProbe, emit: Emit) -> AsyncIterator[None]:
    """Run the probe in the background until the block ends; wait for its baseline first."""
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        group.create_task(probe.run(emit, stop))
        try:
            await eventually(lambda: _observed(probe), timeout=10)
            yield
        finally:
            stop.set()


async def _observed(probe: EtcdProbe) -> bool:
    return probe.state.observed


class Recorder:
    """The `emit` a test gives the probe: keeps every event, in order."""

    def __init__(self) -> None:
        self.events: list[EtcdEvent] = []

    async def __call__(self, event: Event) -> None:
        assert isinstance(event, EtcdEvent)
        self.events.append(event)

    def of(self, condition: EtcdCondition, endpoint: str | None = None) -> list[EtcdEvent]:
        return [
            e
            for e in self.events
            if e.data.condition is condition and (endpoint is None or e.data.endpoint == endpoint)
        ]

    def waiter(self, condition: EtcdCondition, endpoint: str | None = None, after: int = 0):
        async def probe() -> list[EtcdEvent]:
            return [e for e in self.of(condition, endpoint) if self.events.index(e) >= after]

        return probe


async def test_settled_cluster_is_announced_stable_without_a_leader_change(
    etcd_cluster: EtcdCluster,
):
    recorder = Recorder()
    async with running(probe_for(etcd_cluster), recorder):
        (stable,) = await eventually(recorder.waiter(EtcdCondition.STABLE), timeout=10)
    assert stable.data.stable_since is not None
    assert stable.time >= stable.data.stable_since
    assert (stable.time - stable.data.stable_since).total_seconds() >= 1.0
    assert {m.endpoint for m in stable.data.members} == set(etcd_cluster.client_urls)
    assert all(m.has_leader for m in stable.data.members)
    assert sum(bool(m.is_leader) for m in stable.data.members) == 1
    assert recorder.of(EtcdCondition.LEADER_CHANGED) == []


async def test_moving_the_leader_is_a_leader_change(etcd_cluster: EtcdCluster):
    recorder = Recorder()
    leader = await etcd_cluster.wait_leader()
    target = next(m for m in etcd_cluster.members if m is not leader)
    async with running(probe_for(etcd_cluster), recorder):
        await etcd_cluster.move_leader(target)
        changes = await eventually(recorder.waiter(EtcdCondition.LEADER_CHANGED), timeout=10)
        await eventually(recorder.waiter(EtcdCondition.STABLE), timeout=10)
    assert {e.data.endpoint for e in changes} <= {target.client_url, None}
    # One transition, one event: all three members' counters moved, yet the ids are distinct.
    assert len({e.id for e in recorder.events}) == len(recorder.events)


async def test_killing_the_leader_is_reported_as_unhealthy_and_as_a_leader_change(
    etcd_cluster: EtcdCluster,
):
    recorder = Recorder()
    leader = await etcd_cluster.wait_leader()
    async with running(probe_for(etcd_cluster), recorder):
        etcd_cluster.kill(leader)
        await eventually(recorder.waiter(EtcdCondition.UNHEALTHY, leader.client_url), timeout=10)
        changes = await eventually(recorder.waiter(EtcdCondition.LEADER_CHANGED), timeout=10)
        (stable,) = await eventually(recorder.waiter(EtcdCondition.STABLE), timeout=10)
    successor = await etcd_cluster.wait_leader()
    assert successor is not leader
    assert {e.data.endpoint for e in changes} <= {successor.client_url, None}
    assert next(m for m in stable.data.members if m.is_leader).endpoint == successor.client_url
    dead = next(m for m in stable.data.members if m.endpoint == leader.client_url)
    assert not dead.healthy
    assert dead.error


async def test_killed_follower_is_unhealthy_once_and_back_without_a_leader_change(
    etcd_cluster: EtcdCluster,
):
    recorder = Recorder()
    leader = await etcd_cluster.wait_leader()
    follower = next(m for m in etcd_cluster.members if m is not leader)
    async with running(probe_for(etcd_cluster), recorder):
        etcd_cluster.kill(follower)
        await eventually(recorder.waiter(EtcdCondition.UNHEALTHY, follower.client_url), timeout=10)
        await etcd_cluster.restart(follower)
        mark = len(recorder.events)
        await eventually(recorder.waiter(EtcdCondition.STABLE, after=mark), timeout=10)
    assert len(recorder.of(EtcdCondition.UNHEALTHY, follower.client_url)) == 1
    assert recorder.of(EtcdCondition.LEADER_CHANGED) == []


async def test_frozen_member_is_reported_as_timing_out(etcd_cluster: EtcdCluster):
    recorder = Recorder()
    leader = await etcd_cluster.wait_leader()
    follower = next(m for m in etcd_cluster.members if m is not leader)
    async with running(probe_for(etcd_cluster, timeout=0.3), recorder):
        etcd_cluster.pause(follower)
        try:
            await eventually(
                recorder.waiter(EtcdCondition.TIMEOUT, follower.client_url), timeout=10
            )
        finally:
            etcd_cluster.resume(follower)
    (event,) = recorder.of(EtcdCondition.TIMEOUT)
    assert "0.3" in event.data.detail


async def test_probe_events_land_in_the_events_stream_under_the_etcd_subject(
    etcd_cluster: EtcdCluster, bus: Bus
):
    async def publish(event: Event) -> None:
        await bus.publish(event)

    recorder = Recorder()

    async def both(event: Event) -> None:
        await recorder(event)
        await publish(event)

    leader = await etcd_cluster.wait_leader()
    target = next(m for m in etcd_cluster.members if m is not leader)
    async with running(probe_for(etcd_cluster), both):
        await etcd_cluster.move_leader(target)
        await eventually(recorder.waiter(EtcdCondition.LEADER_CHANGED), timeout=10)
        await eventually(recorder.waiter(EtcdCondition.STABLE), timeout=10)

    for condition in (EtcdCondition.LEADER_CHANGED, EtcdCondition.STABLE):
        stored = await bus.js.get_last_msg(EVENTS.name, f"medic.events.test.etcd.{condition}")
        event = decode_message(stored.data or b"")
        assert isinstance(event, EtcdEvent)
        assert event.data.condition is condition
        assert event.id == recorder.of(condition)[-1].id
    info = await bus.js.stream_info(EVENTS.name)
    assert info.state.messages == len(recorder.events)
