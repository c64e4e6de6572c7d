"""Every Kubernetes source against the API sandbox, publishing to a real nats-server.

Objects staged in the sandbox give exactly the expected events (nothing for healthy objects),
a problem that clears gives a resolved event, and HelmReleases are found at the served version.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from medic.runtime.backoff import Backoff
from medic.runtime.bus import Bus
from medic.runtime.kube import KubeClient
from medic.runtime.settings import KubeSettings
from medic.sandbox import Fault, KubeSandbox
from medic.schemas import Event, ReleaseEvent, decode_message
from medic.testing import objects
from medic.testing.helm import corrupt_release_secret, release_secret
from medic.testing.waiting import eventually
from medic.upstream import etcd, flux
from medic.watcher.sources import default_registry
from medic.watcher.sources.base import SourceContext

Seen = tuple[str, str, str, str]  # (kind, name, problem, state)


@pytest.fixture
async def sandbox() -> AsyncIterator[KubeSandbox]:
    async with KubeSandbox.start() as sb:
        for ns in ("apps", "fleet-ns", "shoot--a"):
            sb.store.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        yield sb


@pytest.fixture
async def kube(sandbox: KubeSandbox) -> AsyncIterator[KubeClient]:
    client = await KubeClient.connect(KubeSettings(kubeconfig=sandbox.kubeconfig_path))
    client.backoff = Backoff(base=0.01, cap=0.05)
    try:
        yield client
    finally:
        await client.close()


class Running:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, kube: KubeClient, name: str, config: dict[str, Any]) -> None:
        plugin = default_registry(entry_points=False).get(name)
        settings = plugin.settings_model.model_validate({"tick": 0.1, **config})
        source = plugin.create(settings, SourceContext(cluster="sb", kube=kube))

        async def emit(event: Event) -> None:
            await self.bus.publish(event)

        self.tasks.append(asyncio.create_task(source.run(emit, self.stop)))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 10)


@pytest.fixture
async def running(bus: Bus) -> AsyncIterator[Running]:
    run = Running(bus)
    try:
        yield run
    finally:
        await run.close()


async def stored(bus: Bus) -> list[ReleaseEvent]:
    info = await bus.js.stream_info("MEDIC_EVENTS")
    events = []
    if info.state.messages:
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            raw = await bus.js.get_msg("MEDIC_EVENTS", seq)
            message = decode_message(raw.data or b"")
            assert isinstance(message, ReleaseEvent)
            events.append(message)
    return events


def seen(events: list[ReleaseEvent]) -> set[Seen]:
    return {
        (e.data.object.kind, e.data.object.name, e.data.problem.value, e.data.state.value)
        for e in events
    }


async def settle(bus: Bus, expected: set[Seen]) -> list[ReleaseEvent]:
    """Wait for the expected events, then a few ticks more: nothing else may appear."""

    async def arrived() -> bool:
        return expected <= seen(await stored(bus))

    try:
        await eventually(arrived, timeout=10)
    except AssertionError:
        pytest.fail(f"expected {sorted(expected)}, stored {sorted(seen(await stored(bus)))}")
    await asyncio.sleep(0.4)
    events = await stored(bus)
    assert seen(events) == expected
    assert len(events) == len(expected), [e.id for e in events]
    return events


async def test_helmrelease_failed_stalled_and_resolved(
    sandbox: KubeSandbox, kube: KubeClient, running: Running, bus: Bus
) -> None:
    store = sandbox.store
    store.put(objects.helmrelease("ok", status=objects.ready_status("ok", "apps")))
    store.put(objects.helmrelease("broken", status=objects.etcd_failed_status("broken", "apps")))
    store.put(
        objects.helmrelease(
            "legacy", version="v2beta1", status=objects.ready_status("legacy", "apps")
        )
    )
    await running.start(kube, "helmrelease", {})  # "legacy": written via v2beta1, stored at v2
    events = await settle(
        bus,
        {
            ("HelmRelease", "broken", "failed", "firing"),
            ("HelmRelease", "broken", "stalled", "firing"),
        },
    )
    failed = next(e for e in events if e.data.problem.value == "failed")
    assert failed.cluster == "sb"
    assert failed.data.etcd_error == etcd.LEADER_CHANGED
    assert failed.data.object.api_version == flux.api_version(flux.STORAGE_VERSION)

    store.patch_merge(
        flux.api_version(flux.STORAGE_VERSION),
        flux.KIND,
        "broken",
        "apps",
        {"status": objects.ready_status("broken", "apps")},
        status=True,
    )
    await settle(
        bus,
        {
            ("HelmRelease", "broken", "failed", "firing"),
            ("HelmRelease", "broken", "stalled", "firing"),
            ("HelmRelease", "broken", "failed", "resolved"),
            ("HelmRelease", "broken", "stalled", "resolved"),
        },
    )


async def test_flux_crd_stored_versions_fire_and_resolve_when_trimmed(
    sandbox: KubeSandbox, kube: KubeClient, running: Running, bus: Bus
) -> None:
    store = sandbox.store
    store.set_storage_version(flux.GROUP, flux.KIND, "v2beta1")  # an older Flux stored it
    store.put(objects.helmrelease("legacy", version="v2beta1"))
    store.set_storage_version(flux.GROUP, flux.KIND, "v2")  # the upgrade
    await running.start(kube, "flux_crds", {})
    (event,) = await settle(
        bus, {("CustomResourceDefinition", flux.CRD_NAME, "old_api_version", "firing")}
    )
    assert event.data.object.namespace is None
    assert event.data.evidence.fields["staleVersions"] == "v2beta1"
    store.set_stored_versions(flux.CRD_NAME, ["v2"])
    await settle(
        bus,
        {
            ("CustomResourceDefinition", flux.CRD_NAME, "old_api_version", "firing"),
            ("CustomResourceDefinition", flux.CRD_NAME, "old_api_version", "resolved"),
        },
    )


async def test_helm_storage_pending_and_corrupt(
    sandbox: KubeSandbox, kube: KubeClient, running: Running, bus: Bus
) -> None:
    store = sandbox.store
    store.put(release_secret("ok", revision=1))
    store.put(release_secret("stuck", revision=3, status="pending-upgrade", modified_ago=900))
    store.put(corrupt_release_secret("bad", revision=1))
    store.put(objects.values_secret("not-helm", "apps"))
    await running.start(kube, "helm_storage", {"pending_after": 300})
    events = await settle(
        bus,
        {
            ("Secret", "sh.helm.release.v1.stuck.v3", "pending", "firing"),
            ("Secret", "sh.helm.release.v1.bad.v1", "decode_error", "firing"),
        },
    )
    pending = next(e for e in events if e.data.problem.value == "pending")
    assert pending.data.evidence.fields["chart"] == "podinfo"
    assert pending.data.evidence.fields["revision"] == 3


async def test_fleet_error_and_missing_values_secret(
    sandbox: KubeSandbox, kube: KubeClient, running: Running, bus: Bus
) -> None:
    store = sandbox.store
    store.put(objects.bundledeployment("fine", "fleet-ns"))
    store.put(objects.values_secret("fine", "fleet-ns"))
    store.put(objects.bundledeployment("erring", "fleet-ns", error="helm install failed: boom"))
    store.put(objects.values_secret("erring", "fleet-ns"))
    store.put(objects.bundledeployment("orphan", "fleet-ns"))
    await running.start(kube, "fleet", {})
    events = await settle(
        bus,
        {
            ("BundleDeployment", "erring", "bundle_error", "firing"),
            ("BundleDeployment", "orphan", "values_missing", "firing"),
        },
    )
    missing = next(e for e in events if e.data.object.name == "orphan")
    assert missing.data.evidence.since is not None
    # the Secret appears: resolved
    store.put(objects.values_secret("orphan", "fleet-ns"))

    async def resolved() -> bool:
        return ("BundleDeployment", "orphan", "values_missing", "resolved") in seen(
            await stored(bus)
        )

    await eventually(resolved, timeout=10)


async def test_gardener_operation_stuck(
    sandbox: KubeSandbox, kube: KubeClient, running: Running, bus: Bus
) -> None:
    store = sandbox.store
    store.put(objects.gardener_etcd("etcd-main", "shoot--a"))
    store.put(objects.gardener_etcd("etcd-events", "shoot--a", operation=False))
    await running.start(kube, "gardener_etcd", {"operation_after": 0})
    await settle(bus, {("Etcd", "etcd-main", "operation_stuck", "firing")})


async def test_kube_events_with_etcd_errors_are_attributed(
    sandbox: KubeSandbox, kube: KubeClient, running: Running, bus: Bus
) -> None:
    store = sandbox.store

    def event(name: str, message: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": "apps"},
            "involvedObject": {
                "apiVersion": flux.api_version(flux.STORAGE_VERSION),
                "kind": "HelmRelease",
                "name": "podinfo",
                "namespace": "apps",
                "uid": "hr-uid",
            },
            "reason": "InstallFailed",
            "message": message,
            "type": "Warning",
        }

    store.put(event("e1", "Helm install failed: etcdserver: leader changed"))
    store.put(event("e2", "Helm upgrade succeeded"))
    await running.start(kube, "kube_events", {})
    events = await settle(bus, {("HelmRelease", "podinfo", "transient_etcd_error", "firing")})
    assert events[0].data.object.uid == "hr-uid"


async def test_a_repeating_drift_detected_event_is_one_drift_loop(
    sandbox: KubeSandbox, kube: KubeClient, running: Running, bus: Bus
) -> None:
    message = (
        "Cluster state of release apps/podinfo.v1 has drifted from the desired state:\n"
        "Deployment/apps/podinfo changed (0 additions, 1 changes, 0 removals)"
    )

    def drift(count: int) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "podinfo.drift", "namespace": "apps"},
            "involvedObject": {"kind": "HelmRelease", "name": "podinfo", "namespace": "apps"},
            "reason": flux.DRIFT_DETECTED,
            "message": message,
            "type": "Warning",
            "count": count,
        }

    sandbox.store.put(drift(1))
    await running.start(kube, "kube_events", {"drift_loop_after": 3})
    sandbox.store.put(drift(2))
    sandbox.store.put(drift(3))  # the recorder counts repeats on the same Event
    sandbox.store.put(drift(4))
    [loop] = await settle(bus, {("HelmRelease", "podinfo", "drift_loop", "firing")})
    assert loop.data.evidence.fields["drifted"] == "Deployment/apps/podinfo changed"


async def test_sources_survive_sandbox_faults(bus: Bus) -> None:
    """Watches end every second; while one is closed: a change, compaction, then a burst of 500s
    with etcd errors and 429s, a dropped watch and a 410 (re-list). Nothing is missed."""
    async with KubeSandbox.start(bookmark_interval=60) as sandbox:
        store = sandbox.store
        client = await KubeClient.connect(KubeSettings(kubeconfig=sandbox.kubeconfig_path))
        client.backoff = Backoff(base=0.01, cap=0.05)
        running = Running(bus)
        try:
            store.put(objects.gardener_etcd("etcd-main", "shoot--a"))
            config = {"operation_after": 0, "watch": {"timeout_seconds": 1}}
            await running.start(client, "gardener_etcd", config)
            await settle(bus, {("Etcd", "etcd-main", "operation_stuck", "firing")})
            watches = sum(r.verb == "watch" for r in store.requests)
            # all at once, before the next watch: a change, history compacted, faults queued
            store.put(objects.gardener_etcd("etcd-late", "shoot--a"))
            store.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
            store.compact()
            for message in (etcd.LEADER_CHANGED, "etcdserver: request timed out"):
                store.inject(Fault(resource="etcds", status=500, message=message, times=2))
            store.inject(Fault(resource="etcds", status=429, message="slow", retry_after=0))
            store.inject(Fault(resource="etcds", drop_watch=True))
            # the bookmark that ends each watch would carry the compacted revision: ask for 410
            store.inject(Fault(verb="watch", resource="etcds", status=410, message="too old"))
            lists = sum(r.verb == "list" for r in store.requests)
            await settle(
                bus,
                {
                    ("Etcd", "etcd-main", "operation_stuck", "firing"),
                    ("Etcd", "etcd-late", "operation_stuck", "firing"),
                },
            )

            async def recovered() -> bool:
                return (
                    all(f.times == 0 for f in store.faults)
                    and sum(r.verb == "watch" for r in store.requests) > watches + 1
                    # 410: the informer re-lists; the list follows the expiry asynchronously
                    and sum(r.verb == "list" for r in store.requests) > lists
                )

            await eventually(recovered, timeout=15)
        finally:
            await running.close()
            await client.close()


async def _true(value: bool) -> bool:
    return value


async def test_namespace_filters(
    sandbox: KubeSandbox, kube: KubeClient, running: Running, bus: Bus
) -> None:
    store = sandbox.store
    for name, labels in (("team-a", {"medic": "on"}), ("team-b", {}), ("team-c", {"medic": "on"})):
        store.put(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        )
        store.put(objects.gardener_etcd(f"etcd-{name}", name))
    config = {
        "operation_after": 0,
        "filter": {"namespace_selector": "medic=on", "exclude_namespaces": ["team-c"]},
    }
    await running.start(kube, "gardener_etcd", config)
    events = await settle(bus, {("Etcd", "etcd-team-a", "operation_stuck", "firing")})
    assert events[0].data.object.namespace == "team-a"


async def test_restart_stores_no_duplicates(
    sandbox: KubeSandbox, kube: KubeClient, bus: Bus
) -> None:
    store = sandbox.store
    store.put(objects.helmrelease("broken", status=objects.etcd_failed_status("broken", "apps")))
    store.put(objects.gardener_etcd("etcd-main", "shoot--a"))
    expected = {
        ("HelmRelease", "broken", "failed", "firing"),
        ("HelmRelease", "broken", "stalled", "firing"),
        ("Etcd", "etcd-main", "operation_stuck", "firing"),
    }
    for round_ in (1, 2):  # the second run re-lists the same problems: JetStream dedups them
        run = Running(bus)
        try:
            await run.start(kube, "helmrelease", {})
            await run.start(kube, "gardener_etcd", {"operation_after": 0})

            async def listed(n: int = round_) -> bool:
                return bool(sum(r.verb == "watch" for r in store.requests) >= 2 * n)

            await eventually(listed, timeout=10)
            await settle(bus, expected)
        finally:
            await run.close()
