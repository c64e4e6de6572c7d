"""The watcher against the Kubernetes API sandbox and a real nats-server: staged objects in,
exactly the expected events on the bus out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.js import api

from medic.runtime import subjects
from medic.runtime.bus import Bus
from medic.runtime.kube import KubeClient
from medic.runtime.settings import KubeSettings
from medic.sandbox import Fault, KubeSandbox
from medic.schemas import ProblemState, ReleaseEvent, decode_message
from medic.testing import objects
from medic.testing.helm import corrupt_release_secret, release_secret
from medic.testing.waiting import eventually
from medic.watcher.service import build_sources
from medic.watcher.settings import WatcherSettings
from medic.watcher.sources import default_registry
from medic.watcher.sources.base import SourceContext

FAST = {"tick": 0.2}


@pytest.fixture
async def sandbox() -> AsyncIterator[KubeSandbox]:
    async with KubeSandbox.start(bookmark_interval=0.2) as sb:
        yield sb


@contextlib.asynccontextmanager
async def watching(
    bus: Bus, sandbox: KubeSandbox, sources: list[str], config: dict[str, Any]
) -> AsyncIterator[None]:
    kube = await KubeClient.connect(KubeSettings(kubeconfig=sandbox.kubeconfig_path))
    settings = WatcherSettings(sources=sources, config=config)
    built = build_sources(
        settings, SourceContext(cluster="test", kube=kube), default_registry(entry_points=False)
    )
    stop = asyncio.Event()

    async def emit(event: Any) -> None:
        await bus.publish(event)

    tasks = [asyncio.create_task(source.run(emit, stop)) for source in built]
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        await kube.close()


async def events(bus: Bus) -> list[ReleaseEvent]:
    sub = await bus.js.pull_subscribe(
        "medic.events.>", stream=subjects.EVENTS.name, config=api.ConsumerConfig()
    )
    found: list[ReleaseEvent] = []
    with contextlib.suppress(Exception):
        while True:
            for msg in await sub.fetch(200, timeout=0.2):
                message = decode_message(msg.data)
                if isinstance(message, ReleaseEvent):
                    found.append(message)
    await sub.unsubscribe()
    return found


def summary(found: list[ReleaseEvent]) -> set[tuple[str, str, str]]:
    return {(e.data.object.name, e.data.problem.value, e.data.state.value) for e in found}


async def has(bus: Bus, *wanted: tuple[str, str, str]) -> list[ReleaseEvent]:
    found = await events(bus)
    return found if set(wanted) <= summary(found) else []


async def test_failed_helmrelease_produces_events_and_a_healthy_one_none(
    bus: Bus, sandbox: KubeSandbox
) -> None:
    sandbox.store.put(
        objects.helmrelease("broken", status=objects.etcd_failed_status("broken", "apps"))
    )
    sandbox.store.put(objects.helmrelease("fine", status=objects.ready_status("fine", "apps")))
    async with watching(bus, sandbox, ["helmrelease"], {"helmrelease": FAST}):
        found = await eventually(
            lambda: has(bus, ("broken", "failed", "firing"), ("broken", "stalled", "firing"))
        )
        failed = next(e for e in found if e.data.problem.value == "failed")
        assert failed.data.etcd_error == "etcdserver: leader changed"
        assert failed.subject == "HelmRelease/apps/broken"
        sandbox.store.patch_merge(
            "helm.toolkit.fluxcd.io/v2",
            "HelmRelease",
            "broken",
            "apps",
            {"status": objects.ready_status("broken", "apps")},
            status=True,
        )
        await eventually(
            lambda: has(bus, ("broken", "failed", "resolved"), ("broken", "stalled", "resolved"))
        )
    assert not [e for e in await events(bus) if e.data.object.name == "fine"]


async def test_restart_stores_no_duplicate_events(bus: Bus, sandbox: KubeSandbox) -> None:
    sandbox.store.put(
        objects.helmrelease("broken", status=objects.etcd_failed_status("broken", "apps"))
    )
    async with watching(bus, sandbox, ["helmrelease"], {"helmrelease": FAST}):
        await eventually(lambda: has(bus, ("broken", "stalled", "firing")))
    before = (await bus.js.stream_info(subjects.EVENTS.name)).state.messages
    watches = sum(r.verb == "watch" for r in sandbox.store.requests)
    async with watching(bus, sandbox, ["helmrelease"], {"helmrelease": FAST}):
        # The restarted watcher has listed and published its view once it is watching again.
        await eventually(
            lambda: asyncio.sleep(
                0, result=sum(r.verb == "watch" for r in sandbox.store.requests) > watches
            )
        )
    after = (await bus.js.stream_info(subjects.EVENTS.name)).state.messages
    assert after == before == 2


async def test_faults_410_and_dropped_watches_miss_no_change(
    bus: Bus, sandbox: KubeSandbox
) -> None:
    sandbox.store.inject(
        Fault(verb="list", resource="helmreleases", status=429, retry_after=1, message="slow")
    )
    sandbox.store.inject(Fault(verb="list", resource="helmreleases", status=500, times=2))
    sandbox.store.inject(Fault(verb="watch", resource="helmreleases", drop_watch=True, times=2))
    async with watching(bus, sandbox, ["helmrelease"], {"helmrelease": FAST}):
        sandbox.store.put(
            objects.helmrelease("one", status=objects.etcd_failed_status("one", "apps"))
        )
        await eventually(lambda: has(bus, ("one", "failed", "firing")), timeout=20)
        sandbox.store.compact()
        sandbox.store.inject(Fault(verb="watch", resource="helmreleases", drop_watch=True))
        sandbox.store.put(
            objects.helmrelease("two", status=objects.etcd_failed_status("two", "apps"))
        )
        await eventually(lambda: has(bus, ("two", "failed", "firing")), timeout=20)


async def test_pending_helm_release_and_corrupt_record(bus: Bus, sandbox: KubeSandbox) -> None:
    sandbox.store.put(release_secret("stuck", "apps", status="pending-install", modified_ago=600))
    sandbox.store.put(release_secret("young", "apps", status="pending-install", modified_ago=0))
    sandbox.store.put(release_secret("ok", "apps"))
    sandbox.store.put(corrupt_release_secret("bad", "apps"))
    config = {"helm_storage": {"pending_after": 300, **FAST}}
    async with watching(bus, sandbox, ["helm_storage"], config):
        found = await eventually(
            lambda: has(
                bus,
                ("sh.helm.release.v1.stuck.v1", "pending", "firing"),
                ("sh.helm.release.v1.bad.v1", "decode_error", "firing"),
            )
        )
    names = {e.data.object.name for e in found}
    assert "sh.helm.release.v1.young.v1" not in names
    assert "sh.helm.release.v1.ok.v1" not in names
    pending = next(e for e in found if e.data.problem.value == "pending")
    assert pending.data.evidence.fields["status"] == "pending-install"
    assert "s3cr3t" not in pending.model_dump_json()


async def test_fleet_values_secret_missing_then_back(bus: Bus, sandbox: KubeSandbox) -> None:
    sandbox.store.put(objects.bundledeployment("bd", "fleet-ns"))
    async with watching(bus, sandbox, ["fleet"], {"fleet": FAST}):
        await eventually(lambda: has(bus, ("bd", "values_missing", "firing")))
        sandbox.store.put(objects.values_secret("bd", "fleet-ns"))
        found = await eventually(lambda: has(bus, ("bd", "values_missing", "resolved")))
    assert [e.data.state for e in found if e.data.object.name == "bd"] == [
        ProblemState.FIRING,
        ProblemState.RESOLVED,
    ]


async def test_gardener_operation_annotation_stuck(bus: Bus, sandbox: KubeSandbox) -> None:
    sandbox.store.put(objects.gardener_etcd("etcd-main", "shoot--a"))
    sandbox.store.put(objects.gardener_etcd("etcd-events", "shoot--a", operation=False))
    config = {"gardener_etcd": {"operation_after": 0.3, **FAST}}
    async with watching(bus, sandbox, ["gardener_etcd"], config):
        found = await eventually(lambda: has(bus, ("etcd-main", "operation_stuck", "firing")))
    assert {e.data.object.name for e in found} == {"etcd-main"}


async def test_kubernetes_event_with_etcd_error_is_attributed(
    bus: Bus, sandbox: KubeSandbox
) -> None:
    sandbox.store.put(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "e1", "namespace": "apps"},
            "involvedObject": {
                "kind": "HelmRelease",
                "apiVersion": "helm.toolkit.fluxcd.io/v2",
                "name": "podinfo",
                "namespace": "apps",
                "uid": "u-1",
            },
            "reason": "InstallFailed",
            "message": "Helm install failed: etcdserver: request timed out",
        }
    )
    async with watching(bus, sandbox, ["kube_events"], {"kube_events": FAST}):
        found = await eventually(lambda: has(bus, ("podinfo", "transient_etcd_error", "firing")))
    assert found[0].data.object.kind == "HelmRelease"
