"""Users' rules with generic actions (annotate, label): the sandbox and a real nats-server."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from nats.js import api

from medic.remediator.service import RemediatorService, create
from medic.remediator.settings import RemediatorSettings
from medic.runtime import subjects
from medic.runtime.bus import Bus
from medic.runtime.consumer import Delivery
from medic.runtime.kube import KubeClient
from medic.sandbox import KubeSandbox
from medic.schemas import MessageClass, Outcome, RemediationResult, decode_message
from medic.testing import objects
from medic.testing.factories import release_event

HR = "helm.toolkit.fluxcd.io/v2"
RULES = """apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: team-mark-failed}
spec:
  match:
    types: [medic.release]
    kinds: [HelmRelease]
    namespaces: ["app*"]
    classifications: [other]
  action:
    name: annotate
    params: {plural: helmreleases, values: {"medic.dev/seen": "{cluster}/{namespace}/{name}"}}
  limits: {maxAttempts: 1}
  verify: {timeout: 5s, interval: 0.1s}
  notify: [team-a]
---
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: team-label-failed}
spec:
  match: {types: [medic.release], kinds: [HelmRelease], names: ["pod*"], classifications: [other]}
  action:
    name: label
    params: {plural: helmreleases, values: {team: a}}
  verify: {timeout: 5s, interval: 0.1s}
"""


async def results(bus: Bus) -> list[RemediationResult]:
    sub = await bus.js.pull_subscribe(
        "medic.results.>", stream=subjects.RESULTS.name, config=api.ConsumerConfig()
    )
    found: list[Any] = []
    with contextlib.suppress(Exception):
        while True:
            found += [decode_message(m.data) for m in await sub.fetch(200, timeout=0.2)]
    await sub.unsubscribe()
    return found


async def test_user_rules_annotate_and_label_once_and_are_verified(
    bus: Bus, kube: tuple[KubeSandbox, KubeClient], tmp_path: Path
) -> None:
    sandbox, client = kube
    sandbox.store.put(objects.helmrelease("podinfo"))
    (tmp_path / "team.yaml").write_text(RULES)
    settings = RemediatorSettings(actor="test", rules=[tmp_path], builtin_rules=False)
    remediator: RemediatorService = await create(bus, client, settings, "test")
    event = release_event("podinfo", message="chart not found", classification=MessageClass.OTHER)
    delivery = Delivery(
        subject=f"medic.events.test.{event.subject_suffix()}",
        stream_sequence=1,
        num_delivered=1,
        is_last_attempt=False,
    )
    await remediator.handle(event, delivery)
    redelivered = Delivery(
        subject=delivery.subject, stream_sequence=1, num_delivered=2, is_last_attempt=False
    )
    await remediator.handle(event, redelivered)

    meta = (sandbox.store.get(HR, "HelmRelease", "podinfo", "apps") or {})["metadata"]
    assert meta["annotations"]["medic.dev/seen"] == "test/apps/podinfo"
    assert meta["labels"]["team"] == "a"
    found = await results(bus)
    succeeded = {r.data.rule: r for r in found if r.data.outcome is Outcome.SUCCEEDED}
    assert set(succeeded) == {"team-mark-failed", "team-label-failed"}
    assert [r.data.outcome for r in found].count(Outcome.SUCCEEDED) == 2  # redelivery: no repeat
    assert succeeded["team-mark-failed"].data.notify == ["team-a"]
