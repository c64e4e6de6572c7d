"""The watcher service as the CLI builds it: settings from MEDIC_WATCHER_*, sources from the
registry, the `kubernetes` readiness check, events on a real nats-server; and HelmRelease
version discovery against the sandbox."""

from __future__ import annotations

import asyncio
import json

import pytest
from nats.js.errors import NotFoundError

from medic.runtime.bus import Bus
from medic.runtime.health import HealthServer
from medic.runtime.kube import KubeClient
from medic.runtime.lifecycle import ServiceContext
from medic.runtime.settings import KubeSettings, RuntimeSettings
from medic.sandbox import KubeSandbox
from medic.schemas import EtcdCondition, EtcdEvent, ReleaseEvent, decode_message
from medic.testing.etcd import EtcdCluster
from medic.testing.helm import release_secret
from medic.testing.waiting import eventually
from medic.upstream import flux
from medic.watcher.service import build
from medic.watcher.settings import WatcherSettings
from medic.watcher.sources.helmrelease import served_version


async def test_build_runs_the_configured_sources(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIC_WATCHER_SOURCES", "helm_storage,fleet")
    monkeypatch.setenv(
        "MEDIC_WATCHER_CONFIG", json.dumps({"helm_storage": {"pending_after": 60, "tick": 0.1}})
    )
    async with KubeSandbox.start() as sandbox:
        sandbox.store.put(
            release_secret(
                "stuck", "default", revision=1, status="pending-install", modified_ago=600
            )
        )
        settings = RuntimeSettings(
            cluster="prod-eu", kube=KubeSettings(kubeconfig=sandbox.kubeconfig_path)
        )
        health = HealthServer("127.0.0.1", 0)
        stop = asyncio.Event()
        service = await build(ServiceContext(settings, bus, health, stop))
        assert [s.name for s in service.sources] == ["helm_storage", "fleet"]
        assert await health.checks["kubernetes"]()
        task = asyncio.create_task(service.run(stop))
        try:

            async def published() -> ReleaseEvent | None:
                info = await bus.js.stream_info("MEDIC_EVENTS")
                if not info.state.messages:
                    return None
                raw = await bus.js.get_msg("MEDIC_EVENTS", info.state.first_seq)
                message = decode_message(raw.data or b"")
                assert isinstance(message, ReleaseEvent)
                return message

            event = await eventually(published, timeout=10)
            assert event is not None
            assert event.cluster == "prod-eu"
            assert str(event.subject).endswith("sh.helm.release.v1.stuck.v1")
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)


async def test_helmrelease_version_is_discovered() -> None:
    async with KubeSandbox.start() as sandbox:
        kube = await KubeClient.connect(KubeSettings(kubeconfig=sandbox.kubeconfig_path))
        try:
            assert await served_version(kube) == "v2"
            assert "v2" in flux.VERSIONS
        finally:
            await kube.close()


def test_etcd_endpoints_alone_enable_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDIC_WATCHER_SOURCES", raising=False)
    monkeypatch.setenv(
        "MEDIC_WATCHER_CONFIG", json.dumps({"etcd_probe": {"endpoints": ["http://etcd-0:2379"]}})
    )
    assert WatcherSettings.load().sources[-1] == "etcd_probe"
    monkeypatch.setenv("MEDIC_WATCHER_SOURCES", "helm_storage")
    assert WatcherSettings.load().sources == ["helm_storage", "etcd_probe"]
    monkeypatch.setenv("MEDIC_WATCHER_CONFIG", "{}")
    assert "etcd_probe" not in WatcherSettings.load().sources


@pytest.mark.etcd
async def test_s1_etcd_gate_needs_only_the_endpoints(
    bus: Bus, etcd_cluster: EtcdCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the default sources and nothing but the endpoints, etcd's `stable` reaches the bus."""
    monkeypatch.delenv("MEDIC_WATCHER_SOURCES", raising=False)
    probe = {"endpoints": etcd_cluster.client_urls, "interval": 0.1, "stable_after": 0.5}
    monkeypatch.setenv("MEDIC_WATCHER_CONFIG", json.dumps({"etcd_probe": probe}))
    async with KubeSandbox.start() as sandbox:
        settings = RuntimeSettings(
            cluster="prod-eu", kube=KubeSettings(kubeconfig=sandbox.kubeconfig_path)
        )
        stop = asyncio.Event()
        service = await build(ServiceContext(settings, bus, HealthServer("127.0.0.1", 0), stop))
        assert "etcd_probe" in [s.name for s in service.sources]
        task = asyncio.create_task(service.run(stop))
        try:

            async def stable() -> EtcdEvent | None:
                subject = f"medic.events.prod-eu.etcd.{EtcdCondition.STABLE}"
                try:
                    raw = await bus.js.get_last_msg("MEDIC_EVENTS", subject)
                except NotFoundError:
                    return None
                event = decode_message(raw.data or b"")
                assert isinstance(event, EtcdEvent)
                return event

            event = await eventually(stable, timeout=15, interval=0.1)
            assert event is not None
            assert event.cluster == "prod-eu"
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
