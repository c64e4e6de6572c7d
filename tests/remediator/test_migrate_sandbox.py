"""S2 migration against the sandbox and a real nats-server: a HelmRelease last written through
v2beta1 is re-stored through v2 with the upgrade annotation, and verified."""

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
from medic.schemas import MessageClass, Outcome, ReleaseProblem, decode_message
from medic.testing import objects
from medic.testing.factories import release_event
from medic.upstream import flux

OLD = "helm.toolkit.fluxcd.io/v2beta1"


async def test_old_api_version_is_restored_through_the_target_and_verified(
    bus: Bus, kube: tuple[KubeSandbox, KubeClient]
) -> None:
    sandbox, client = kube
    # Stored at v2beta1 by an older Flux, whose upgrade then made v2 the storage version.
    sandbox.store.set_storage_version(flux.GROUP, "HelmRelease", "v2beta1")
    sandbox.store.put({**objects.helmrelease("legacy"), "apiVersion": OLD})
    sandbox.store.set_storage_version(flux.GROUP, "HelmRelease", "v2")
    assert sandbox.store.stored_version(OLD, "HelmRelease", "legacy", "apps") == "v2beta1"
    uid = (sandbox.store.get(OLD, "HelmRelease", "legacy", "apps") or {})["metadata"]["uid"]
    base = release_event("legacy", message="stored at v2beta1", classification=MessageClass.OTHER)
    ref = base.data.object.model_copy(update={"api_version": OLD, "uid": uid})
    event = base.model_copy(
        update={
            "data": base.data.model_copy(
                update={"object": ref, "problem": ReleaseProblem.OLD_API_VERSION}
            )
        }
    )
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
    stored = sandbox.store.get(OLD, "HelmRelease", "legacy", "apps") or {}
    assert stored["metadata"]["annotations"][flux.UPGRADE_TO] == "v2"
    # (not managedFields[-1]: the API server orders entries of the same second by manager)
    written = {(e["manager"], e["apiVersion"]) for e in stored["metadata"]["managedFields"]}
    assert ("medic", "helm.toolkit.fluxcd.io/v2") in written
    assert sandbox.store.stored_version(OLD, "HelmRelease", "legacy", "apps") == "v2"
    sub = await bus.js.pull_subscribe(
        "medic.results.>", stream=subjects.RESULTS.name, config=api.ConsumerConfig()
    )
    found: list[Any] = []
    with contextlib.suppress(Exception):
        found += [decode_message(m.data) for m in await sub.fetch(200, timeout=0.2)]
    await sub.unsubscribe()
    assert [(r.data.rule, r.data.outcome) for r in found] == [
        ("flux-migrate-old-api-version", Outcome.SUCCEEDED)
    ]
