"""force-reconcile against the sandbox and a real nats-server: S2 (Flux --force on a stale
HelmRelease) and S5 (Gardener operation annotation re-applied), each verified."""

from __future__ import annotations

import contextlib
from typing import Any

from nats.js import api

from medic.remediator.service import create
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
    ReleaseEvent,
    ReleaseProblem,
    decode_message,
    stable_id,
)
from medic.testing import objects
from medic.testing.factories import release_event
from medic.upstream import flux, gardener

HR = "helm.toolkit.fluxcd.io/v2"


def event_for(ref: ObjectRef, problem: ReleaseProblem, message: str) -> ReleaseEvent:
    base = release_event(ref.name, ref.namespace or "", message=message)
    data = base.data.model_copy(
        update={"object": ref, "problem": problem, "classification": MessageClass.OTHER}
    )
    return base.model_copy(
        update={
            "id": stable_id(ref.uid, problem),
            "subject": f"{ref.kind}/{ref.namespace}/{ref.name}",
            "data": data,
        }
    )


async def handle(bus: Bus, client: KubeClient, event: ReleaseEvent) -> list[Any]:
    service = await create(bus, client, RemediatorSettings(actor="test"), "test")
    await service.handle(
        event,
        Delivery(
            subject=f"medic.events.test.{event.subject_suffix()}",
            stream_sequence=1,
            num_delivered=1,
            is_last_attempt=False,
        ),
    )
    sub = await bus.js.pull_subscribe(
        "medic.results.>", stream=subjects.RESULTS.name, config=api.ConsumerConfig()
    )
    found: list[Any] = []
    with contextlib.suppress(Exception):
        while True:
            found += [decode_message(m.data) for m in await sub.fetch(200, timeout=0.2)]
    await sub.unsubscribe()
    return found


async def test_s2_stale_helmrelease_is_force_reconciled_and_verified(
    bus: Bus, kube: tuple[KubeSandbox, KubeClient]
) -> None:
    sandbox, client = kube
    sandbox.store.put(objects.helmrelease("frontend", status=objects.stale_status("backend")))

    def helm_controller(store: Any, change: str, obj: dict[str, Any]) -> None:
        token = (obj["metadata"].get("annotations") or {}).get(flux.REQUESTED_AT)
        status = obj.get("status") or {}
        annotations = obj["metadata"].get("annotations") or {}
        if change == "MODIFIED" and token and status.get("lastHandledReconcileAt") != token:
            ready = {**objects.ready_status("frontend", "apps"), "lastHandledReconcileAt": token}
            if annotations.get(flux.FORCE_AT) == token:  # fluxcd/pkg HandleAnnotationRequest
                ready["lastHandledForceAt"] = token
            store.patch_merge(HR, "HelmRelease", "frontend", "apps", {"status": ready}, status=True)

    sandbox.store.on_write("HelmRelease", helm_controller)
    ref = ObjectRef(
        kind="HelmRelease",
        api_version=HR,
        namespace="apps",
        name="frontend",
        uid=stable_id("hr", "frontend"),
        resource_version="1",
    )
    found = await handle(
        bus, client, event_for(ref, ReleaseProblem.STALE_STATUS, "dependency not ready")
    )
    annotations = (sandbox.store.get(HR, "HelmRelease", "frontend", "apps") or {})["metadata"][
        "annotations"
    ]
    assert annotations[flux.REQUESTED_AT] == annotations[flux.FORCE_AT]
    assert [(r.data.rule, r.data.outcome) for r in found] == [
        ("flux-force-reconcile-stale-status", Outcome.SUCCEEDED)
    ]


async def test_s5_gardener_operation_is_reapplied_and_verified(
    bus: Bus, kube: tuple[KubeSandbox, KubeClient]
) -> None:
    sandbox, client = kube
    ns = "shoot--dev--a"
    sandbox.store.put(objects.gardener_etcd("etcd-main", ns))
    writes: list[str | None] = []

    def druid(store: Any, change: str, obj: dict[str, Any]) -> None:
        annotations = obj["metadata"].get("annotations") or {}
        if change == "MODIFIED" and gardener.GARDENER_OPERATION in annotations:
            writes.append(annotations[gardener.GARDENER_OPERATION])
            store.put({**obj, "metadata": {**obj["metadata"], "annotations": {}}})

    sandbox.store.on_write(gardener.KIND, druid)
    ref = ObjectRef(
        kind=gardener.KIND,
        api_version=gardener.API_VERSION,
        namespace=ns,
        name="etcd-main",
        uid=stable_id("etcd", "etcd-main"),
        resource_version="1",
    )
    found = await handle(bus, client, event_for(ref, ReleaseProblem.OPERATION_STUCK, "stuck"))
    assert writes == [gardener.OPERATION_RECONCILE]
    assert [(r.data.rule, r.data.outcome) for r in found] == [
        ("gardener-reapply-stuck-operation", Outcome.SUCCEEDED)
    ]
