"""A rule's own success condition (`verify.condition`, CEL over the re-read object) decides
succeeded vs failed, on the Kubernetes API sandbox with a real nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from medic.remediator.service import create
from medic.remediator.settings import RemediatorSettings
from medic.runtime import subjects
from medic.runtime.bus import Bus
from medic.runtime.consumer import Delivery
from medic.runtime.errors import Deferred
from medic.runtime.kube import KubeClient
from medic.runtime.settings import KubeSettings
from medic.sandbox import KubeSandbox
from medic.schemas import MessageClass, Outcome, RemediationResult
from medic.testing import objects
from medic.testing.factories import release_event
from medic.testing.notifier import stream_messages

HR = "helm.toolkit.fluxcd.io/v2"
RESTART = "example.com/restartedAt"
READY = 'object.status.conditions.exists(c, c.type == "Ready" && c.status == "True")'
RULE = f"""apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {{name: team-restart}}
spec:
  match: {{types: [medic.release], kinds: [HelmRelease], classifications: [other]}}
  action:
    name: annotate
    params: {{plural: helmreleases, values: {{"{RESTART}": "now"}}}}
  limits: {{maxAttempts: 1}}
  verify:
    timeout: 1s
    interval: 0.05s
    condition: '{READY}'
"""


@pytest.fixture
async def sandbox() -> AsyncIterator[KubeSandbox]:
    async with KubeSandbox.start() as started:
        yield started


def play_controller(sandbox: KubeSandbox, answers: set[str]) -> None:
    """Turns Ready when the restart annotation appears, for the releases named in `answers`."""

    def hook(store: Any, change: str, obj: dict[str, Any]) -> None:
        name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
        annotated = RESTART in (obj["metadata"].get("annotations") or {})
        if change == "MODIFIED" and annotated and name in answers and "status" not in obj:
            status = objects.ready_status(name, namespace)
            store.patch_merge(HR, "HelmRelease", name, namespace, {"status": status}, status=True)

    sandbox.store.on_write("HelmRelease", hook)


async def test_the_rules_condition_decides_succeeded_or_failed(
    bus: Bus, sandbox: KubeSandbox, tmp_path: Path
) -> None:
    play_controller(sandbox, answers={"podinfo"})
    for name in ("podinfo", "stuck"):
        sandbox.store.put(objects.helmrelease(name))
    (tmp_path / "rule.yaml").write_text(RULE)
    settings = RemediatorSettings(actor="test", rules=[tmp_path], builtin_rules=False)
    kube = await KubeClient.connect(KubeSettings(kubeconfig=sandbox.kubeconfig_path))
    try:
        remediator = await create(bus, kube, settings, "test")
        for name in ("podinfo", "stuck"):
            event = release_event(name, message="chart pull", classification=MessageClass.OTHER)
            delivery = Delivery(
                subject=f"medic.events.test.{event.subject_suffix()}",
                stream_sequence=1,
                num_delivered=1,
                is_last_attempt=False,
            )
            if name == "stuck":  # a failed attempt comes back after the backoff
                with pytest.raises(Deferred):
                    await remediator.handle(event, delivery)
            else:
                await remediator.handle(event, delivery)
    finally:
        await kube.close()

    found = await stream_messages(bus, subjects.RESULTS.name)
    outcomes = {
        r.data.object.name: r.data for r in found if isinstance(r, RemediationResult)
    }  # both were annotated, so the action's own check passed for both: the condition decided
    assert outcomes["podinfo"].outcome is Outcome.SUCCEEDED
    assert outcomes["stuck"].outcome is Outcome.FAILED
    assert READY in outcomes["stuck"].reason
    stuck = sandbox.store.get(HR, "HelmRelease", "stuck", "apps")
    assert stuck["metadata"]["annotations"][RESTART] == "now"
