"""S4 against the sandbox and a real nats-server: Fleet force sync after the grace period (on the
owning Bundle, never the BundleDeployment), and nothing at all when the options Secret comes back
within it."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nats.js import api

from medic.remediator.service import RemediatorService, create
from medic.remediator.settings import RemediatorSettings
from medic.runtime import subjects
from medic.runtime.bus import Bus
from medic.runtime.consumer import Delivery
from medic.runtime.kube import KubeClient
from medic.sandbox import KubeSandbox
from medic.schemas import (
    MessageClass,
    ObjectRef,
    Outcome,
    ProblemState,
    ReleaseEvent,
    ReleaseProblem,
    decode_message,
    stable_id,
)
from medic.testing import objects
from medic.testing.factories import release_event
from medic.upstream import fleet

NS = "cattle-fleet-local"


def values_missing(name: str, since: datetime, state: ProblemState) -> ReleaseEvent:
    base = release_event(name, NS, message=f'secrets "{name}" not found')
    ref = ObjectRef(
        kind=fleet.KIND,
        api_version=fleet.API_VERSION,
        namespace=NS,
        name=name,
        uid=stable_id("bd", name),
        resource_version="1",
    )
    data = base.data.model_copy(
        update={
            "object": ref,
            "problem": ReleaseProblem.VALUES_MISSING,
            "state": state,
            "classification": MessageClass.OTHER,
            "evidence": base.data.evidence.model_copy(update={"since": since}),
        }
    )
    return base.model_copy(
        update={
            "id": stable_id(ref.uid, "values_missing", state),
            "subject": f"{fleet.KIND}/{NS}/{name}",
            "data": data,
        }
    )


def delivery(event: ReleaseEvent, attempt: int = 1) -> Delivery:
    return Delivery(
        subject=f"medic.events.test.{event.subject_suffix()}",
        stream_sequence=attempt,
        num_delivered=attempt,
        is_last_attempt=False,
    )


async def results(bus: Bus) -> list[Any]:
    sub = await bus.js.pull_subscribe(
        "medic.results.>", stream=subjects.RESULTS.name, config=api.ConsumerConfig()
    )
    found: list[Any] = []
    with contextlib.suppress(Exception):
        while True:
            found += [decode_message(m.data) for m in await sub.fetch(200, timeout=0.2)]
    await sub.unsubscribe()
    return found


async def remediator(bus: Bus, client: KubeClient) -> RemediatorService:
    return await create(bus, client, RemediatorSettings(actor="test"), "test")


BUNDLES = "fleet-default"


def generation(sandbox: KubeSandbox, name: str) -> int:
    bundle = sandbox.store.get(fleet.API_VERSION, "Bundle", name, BUNDLES) or {}
    return int(bundle["spec"].get("forceSyncGeneration") or 0)


def stage(sandbox: KubeSandbox, name: str) -> None:
    sandbox.store.put(objects.bundle(name, BUNDLES))
    sandbox.store.put(
        objects.bundledeployment(
            name, NS, error=f'secrets "{name}" not found', bundle_namespace=BUNDLES
        )
    )


async def test_s4_force_sync_after_grace_and_verified(
    bus: Bus, kube: tuple[KubeSandbox, KubeClient]
) -> None:
    sandbox, client = kube
    stage(sandbox, "web")
    bd_before = sandbox.store.get(fleet.API_VERSION, fleet.KIND, "web", NS) or {}
    untouched: list[bool] = []

    def controller(store: Any, change: str, obj: dict[str, Any]) -> None:
        """Fleet's controller copies the bump into the BundleDeployment; the Secret returns;
        the agent deploys and records status.syncGeneration."""
        synced = change == "MODIFIED" and obj["spec"].get("forceSyncGeneration")
        if synced and store.get("v1", "Secret", "web", NS) is None:
            bd = store.get(fleet.API_VERSION, fleet.KIND, "web", NS)
            rv = bd_before["metadata"]["resourceVersion"]
            untouched.append(bd["metadata"]["resourceVersion"] == rv)  # nothing wrote it yet
            store.put(objects.values_secret("web", NS))
            bd["spec"].setdefault("options", {})["forceSyncGeneration"] = synced
            bd["status"] = {"ready": True, "syncGeneration": synced}
            store.put(bd, manager="fleetcontroller")

    sandbox.store.on_write("Bundle", controller)
    service = await remediator(bus, client)
    event = values_missing("web", datetime.now(UTC) - timedelta(minutes=5), ProblemState.FIRING)
    await service.handle(event, delivery(event))
    assert generation(sandbox, "web") == 1
    assert untouched == [True]
    bd_after = sandbox.store.get(fleet.API_VERSION, fleet.KIND, "web", NS) or {}
    managers = {m.get("manager") for m in bd_after["metadata"].get("managedFields") or []}
    assert "medic" not in managers, managers  # Medic never wrote the BundleDeployment
    found = await results(bus)
    assert [r.data.outcome for r in found] == [Outcome.SUCCEEDED]


async def test_s4_secret_back_within_grace_means_no_action_and_no_notification(
    bus: Bus, kube: tuple[KubeSandbox, KubeClient]
) -> None:
    sandbox, client = kube
    stage(sandbox, "api")
    service = await remediator(bus, client)
    firing = values_missing("api", datetime.now(UTC), ProblemState.FIRING)
    with pytest.raises(Exception, match="wait"):
        await service.handle(firing, delivery(firing))
    resolved = values_missing("api", datetime.now(UTC), ProblemState.RESOLVED)
    await service.handle(resolved, delivery(resolved))
    with contextlib.suppress(Exception):
        await service.handle(firing, delivery(firing, attempt=2))
    assert generation(sandbox, "api") == 0
    for result in await results(bus):
        assert result.data.outcome is Outcome.SKIPPED
        assert result.data.reason in {"resolved-within-grace", "already-fixed"}
