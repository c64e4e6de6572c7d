"""The etcd probe against a real three-member etcd cluster: stage, break, observe the events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from pydantic import ValidationError

from medic.runtime.bus import Bus
from medic.runtime.subjects import EVENTS
from medic.schemas import EtcdCondition, EtcdEvent, Event, decode_message
from medic.testing.certs import make_pki, openssl_available
from medic.testing.etcd import EtcdCluster
from medic.testing.etcd import etcd_cluster as start_etcd_cluster
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
    # A watcher started afterwards takes the counters as its baseline: no change to report.
    restarted = Recorder()
    async with running(probe_for(etcd_cluster, stable_after=0.2), restarted):
        await eventually(restarted.waiter(EtcdCondition.STABLE), timeout=10)
    assert restarted.of(EtcdCondition.LEADER_CHANGED) == []


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


@pytest.mark.skipif(not openssl_available(), reason="needs the openssl command")
async def test_probe_speaks_tls_with_a_client_certificate(tmp_path: Path):
    pki = make_pki(tmp_path / "pki")
    async with start_etcd_cluster(size=1, base_dir=tmp_path / "etcd", pki=pki) as cluster:
        assert cluster.client_urls[0].startswith("https://")
        settings = EtcdProbeSettings(
            endpoints=cluster.client_urls,
            interval=0.05,
            timeout=1.0,
            stable_after=0.2,
            tls_ca_file=pki.ca_file,
            tls_cert_file=pki.client_cert,
            tls_key_file=pki.client_key,
        )
        with_cert, without_cert = Recorder(), Recorder()
        anonymous = settings.model_copy(update={"tls_cert_file": None, "tls_key_file": None})
        async with (
            running(EtcdProbe(settings, cluster="test"), with_cert),
            running(EtcdProbe(anonymous, cluster="test"), without_cert),
        ):
            await eventually(with_cert.waiter(EtcdCondition.STABLE), timeout=10)
            await eventually(without_cert.waiter(EtcdCondition.UNHEALTHY), timeout=10)
    assert with_cert.of(EtcdCondition.UNHEALTHY) == []
    assert without_cert.of(EtcdCondition.STABLE) == []


def test_plugin_declares_its_settings_and_a_valid_example():
    assert PLUGIN.name == "etcd_probe"
    assert PLUGIN.rbac == ()
    example = EtcdProbeSettings.model_validate(PLUGIN.example)
    assert example.tls_ca_file is not None
    settings = EtcdProbeSettings(endpoints=["http://127.0.0.1:2379/"])
    assert settings.endpoints == ["http://127.0.0.1:2379"]
    assert settings.ssl_context() is None
    with pytest.raises(ValidationError):
        EtcdProbeSettings(endpoints=[])
    with pytest.raises(ValidationError):
        EtcdProbeSettings(endpoints=["http://a:2379"], interval=0)
