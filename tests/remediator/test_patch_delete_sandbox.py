"""Users' rules with `patch` (templated merge) and guarded `delete` against the sandbox and a real
nats-server."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from nats.js import api

from medic.remediator.service import create
from medic.remediator.settings import RemediatorSettings
from medic.runtime import subjects
from medic.runtime.bus import Bus
from medic.runtime.consumer import Delivery
from medic.runtime.kube import KubeClient
from medic.sandbox import KubeSandbox
from medic.schemas import MessageClass, Outcome, ReleaseEvent, decode_message
from medic.testing import objects
from medic.testing.factories import release_event

HR = "helm.toolkit.fluxcd.io/v2"
PATCH = """apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: team-suspend}
spec:
  match: {kinds: [HelmRelease], classifications: [other]}
  action:
    name: patch
    params:
      plural: helmreleases
      body: {spec: {suspend: true}, metadata: {annotations: {"team/why": "medic {cluster}/{name}"}}}
  verify: {timeout: 5s, interval: 0.1s}
"""
DELETE = """apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: team-delete}
spec:
  match: {kinds: [HelmRelease], classifications: [other]}
  action:
    name: delete
    params: {plural: helmreleases, allowKinds: [HelmRelease]}
  verify: {timeout: 5s, interval: 0.1s}
"""


async def run(bus: Bus, client: KubeClient, rules: Path, event: ReleaseEvent) -> list[Any]:
    settings = RemediatorSettings(actor="test", rules=[rules], builtin_rules=False)
    service = await create(bus, client, settings, "test")
    with contextlib.suppress(Exception):
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


def with_uid(event: ReleaseEvent, uid: str) -> ReleaseEvent:
    ref = event.data.object.model_copy(update={"uid": uid})
    return event.model_copy(update={"data": event.data.model_copy(update={"object": ref})})


async def purge(bus: Bus) -> None:
    await bus.js.purge_stream(subjects.RESULTS.name)


async def test_templated_merge_patch_is_applied_and_verified(
    bus: Bus, kube: tuple[KubeSandbox, KubeClient], tmp_path: Path
) -> None:
    sandbox, client = kube
    sandbox.store.put(objects.helmrelease("podinfo"))
    (tmp_path / "patch.yaml").write_text(PATCH)
    event = release_event("podinfo", message="boom", classification=MessageClass.OTHER)
    found = await run(bus, client, tmp_path / "patch.yaml", event)
    hr = sandbox.store.get(HR, "HelmRelease", "podinfo", "apps") or {}
    assert hr["spec"]["suspend"] is True
    assert hr["metadata"]["annotations"]["team/why"] == "medic test/podinfo"
    assert [r.data.outcome for r in found] == [Outcome.SUCCEEDED]


async def test_guarded_delete_deletes_allowed_kinds_only_outside_protected_namespaces(
    bus: Bus, kube: tuple[KubeSandbox, KubeClient], tmp_path: Path
) -> None:
    sandbox, client = kube
    sandbox.store.put(objects.helmrelease("doomed"))
    sandbox.store.put(objects.helmrelease("infra", "flux-system"))
    (tmp_path / "delete.yaml").write_text(DELETE)
    stale = release_event("doomed", message="old", classification=MessageClass.OTHER)
    await run(bus, client, tmp_path / "delete.yaml", stale)  # about an older object (uid)
    assert sandbox.store.get(HR, "HelmRelease", "doomed", "apps") is not None
    await purge(bus)

    uid = (sandbox.store.get(HR, "HelmRelease", "doomed", "apps") or {})["metadata"]["uid"]
    event = with_uid(
        release_event("doomed", message="boom", classification=MessageClass.OTHER), uid
    )
    found = await run(bus, client, tmp_path / "delete.yaml", event)
    assert sandbox.store.get(HR, "HelmRelease", "doomed", "apps") is None
    assert [r.data.outcome for r in found] == [Outcome.SUCCEEDED]

    uid = (sandbox.store.get(HR, "HelmRelease", "infra", "flux-system") or {})["metadata"]["uid"]
    protected = with_uid(
        release_event("infra", "flux-system", message="boom", classification=MessageClass.OTHER),
        uid,
    )
    found = await run(bus, client, tmp_path / "delete.yaml", protected)
    assert sandbox.store.get(HR, "HelmRelease", "infra", "flux-system") is not None
    assert Outcome.SUCCEEDED not in [r.data.outcome for r in found if r.data.object.name == "infra"]
