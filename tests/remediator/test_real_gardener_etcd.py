"""S5 on the real control plane: the real Etcd CRD (etcd-druid v0.31.0), Medic's watcher source
and remediator, and etcd-druid played by the test the way druid's reconcile ends (both operation
keys removed, etcd-druid internal/controller/etcd/reconcile_complete.go).

The played druid answers a re-applied annotation only: the one that was stuck all along never
gets an answer, as in the incident.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from medic.notifier.render import render_result
from medic.notifier.templates import TemplateSet
from medic.remediator.service import create
from medic.remediator.settings import RemediatorSettings
from medic.runtime.bus import Bus
from medic.runtime.errors import Deferred
from medic.runtime.kube import KubeClient, ResourceType
from medic.runtime.settings import KubeSettings
from medic.schemas import Outcome, ReleaseEvent, ReleaseProblem
from medic.testing import objects
from medic.testing.controllers import follow, running
from medic.testing.controlplane import ControlPlane
from medic.testing.remediation import handle, results, source_running
from medic.upstream import gardener

pytestmark = [pytest.mark.timeout(120)]

ETCDS = ResourceType(gardener.GROUP, gardener.VERSION, gardener.PLURAL, gardener.KIND)
RULE = "gardener-reapply-stuck-operation"
QUICK_RULE = f"""\
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {{name: {RULE}}}
spec:
  match: {{types: [medic.release], problems: [operation_stuck], kinds: [Etcd]}}
  action: {{name: force-reconcile}}
  limits: {{maxAttempts: 1, backoff: 0s, cooldown: 30m}}
  verify: {{timeout: 4s, interval: 0.2s}}
  severity: critical
"""


def watching(namespace: str) -> dict[str, object]:
    """The source's settings for this test: its namespace only (the control plane is shared)."""
    return {"operation_after": 0, "filter": {"namespaces": [namespace]}}


@pytest.fixture
async def admin(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    client = await KubeClient.connect(KubeSettings(kubeconfig=control_plane.kubeconfig))
    try:
        yield client
    finally:
        await client.close()


async def stage_etcd(kube: KubeClient, namespace: str, name: str, keys: tuple[str, ...]) -> None:
    """An Etcd druid reconciled (status written through the status subresource, as druid does)
    that still carries the operation annotation under `keys`."""
    obj = objects.gardener_etcd(name, namespace, operation=False)
    obj["metadata"]["annotations"] = dict.fromkeys(keys, gardener.OPERATION_RECONCILE)
    status = obj.pop("status")
    created = await kube.create(ETCDS, obj)
    status["observedGeneration"] = created["metadata"]["generation"]
    await kube.patch(ETCDS, name, namespace, {"status": status}, subresource="status")


async def played_druid(
    kube: KubeClient, namespace: str, name: str, answered: list[dict[str, str]], *, healthy: bool
) -> None:
    """Watch the Etcd; once its operation annotation was removed and is set again, end the
    reconcile as druid does: observedGeneration set, then both operation keys removed; unhealthy,
    the reconcile never completes (lastOperation Processing, the annotation stays)."""
    removed = False

    async def reconcile(obj: dict[str, Any]) -> None:
        nonlocal removed
        if obj["metadata"]["name"] != name:
            return
        present = gardener.operation_annotations(obj)
        if not present:
            removed = True
            return
        if not removed:
            return
        removed = False
        answered.append(present)
        if not healthy:
            status = {"lastOperation": {**obj["status"]["lastOperation"]}}
            status["lastOperation"].update(
                state="Processing",
                description="Waiting for etcd-backup-restore to report member status",
            )
            await kube.patch(ETCDS, name, namespace, {"status": status}, subresource="status")
            return
        generation = obj["metadata"]["generation"]
        await kube.patch(
            ETCDS, name, namespace, {"status": {"observedGeneration": generation}},
            subresource="status",
        )  # fmt: skip
        await kube.patch(
            ETCDS,
            name,
            namespace,
            {"metadata": {"annotations": dict.fromkeys(gardener.OPERATION_KEYS)}},
            field_manager="etcd-druid",
        )

    current = await kube.get(ETCDS, name, namespace)
    await follow(kube, ETCDS, namespace, reconcile, current["metadata"]["resourceVersion"])


@contextlib.asynccontextmanager
async def druid(
    kube: KubeClient, namespace: str, name: str, *, healthy: bool = True
) -> AsyncIterator[list[dict[str, str]]]:
    answered: list[dict[str, str]] = []
    async with running(played_druid(kube, namespace, name, answered, healthy=healthy)):
        yield answered


@pytest.mark.parametrize(
    "keys",
    [
        (gardener.GARDENER_OPERATION,),
        (gardener.DRUID_OPERATION,),
        (gardener.DRUID_OPERATION, gardener.GARDENER_OPERATION),
    ],
    ids=["gardener-key", "druid-key", "both-keys"],
)
async def test_stuck_operation_annotation_is_reapplied_and_druid_clears_it(
    control_plane: ControlPlane,
    real_namespace: str,
    admin: KubeClient,
    bus: Bus,
    keys: tuple[str, ...],
) -> None:
    await stage_etcd(admin, real_namespace, "etcd-main", keys)
    service = await create(bus, admin, RemediatorSettings(actor="test"), "test")
    async with (
        druid(admin, real_namespace, "etcd-main") as answered,
        source_running(admin, "gardener_etcd", watching(real_namespace)) as watched,
    ):
        event = await watched.first(lambda e: e.data.problem is ReleaseProblem.OPERATION_STUCK)
        assert event.data.evidence.annotations == dict.fromkeys(keys, "reconcile")
        await handle(service, event)
    assert answered == [dict.fromkeys(keys, "reconcile")]  # the key(s) that were there, re-applied
    etcd = await admin.get(ETCDS, "etcd-main", real_namespace)
    assert gardener.operation_annotations(etcd) == {}
    assert not gardener.not_done(etcd)
    assert [(r.data.rule, r.data.outcome) for r in await results(bus)] == [
        (RULE, Outcome.SUCCEEDED)
    ]


async def test_an_etcd_druid_is_still_reconciling_gets_no_event(
    control_plane: ControlPlane, real_namespace: str, admin: KubeClient
) -> None:
    """Not done by Gardener's check (AllMembersUpdated False): that annotation is not stuck. A
    stuck neighbour staged with it shows the source has judged both."""
    await stage_etcd(admin, real_namespace, "etcd-main", (gardener.DRUID_OPERATION,))
    await stage_etcd(admin, real_namespace, "etcd-events", (gardener.DRUID_OPERATION,))
    conditions = (await admin.get(ETCDS, "etcd-main", real_namespace))["status"]["conditions"]
    for condition in conditions:
        if condition["type"] == gardener.ALL_MEMBERS_UPDATED:
            condition["status"] = "False"
    await admin.patch(
        ETCDS, "etcd-main", real_namespace, {"status": {"conditions": conditions}},
        subresource="status",
    )  # fmt: skip
    async with source_running(admin, "gardener_etcd", watching(real_namespace)) as watched:
        await watched.first(lambda e: e.data.object.name == "etcd-events")
    assert {e.data.object.name for e in watched.events if isinstance(e, ReleaseEvent)} == {
        "etcd-events"
    }


async def test_annotation_druid_never_clears_escalates_with_what_druid_reported(
    control_plane: ControlPlane, real_namespace: str, admin: KubeClient, bus: Bus, tmp_path: Path
) -> None:
    await stage_etcd(admin, real_namespace, "etcd-main", (gardener.GARDENER_OPERATION,))
    rule = tmp_path / "quick.yaml"
    rule.write_text(QUICK_RULE)
    settings = RemediatorSettings(actor="test", rules=[rule])
    service = await create(bus, admin, settings, "test")
    async with (
        druid(admin, real_namespace, "etcd-main", healthy=False) as answered,
        source_running(admin, "gardener_etcd", watching(real_namespace)) as watched,
    ):
        event = await watched.first(lambda e: e.data.problem is ReleaseProblem.OPERATION_STUCK)
        with pytest.raises(Deferred):
            await handle(service, event)  # written, not verified: failed, retried after backoff
        # druid's status write is a new observation of the same problem: the next event says it
        later = await watched.first(
            lambda e: str(e.data.evidence.fields.get("lastOperation")).startswith(
                "Reconcile Processing"
            )
        )
        await handle(service, later, attempt=2)
    assert answered == [{gardener.GARDENER_OPERATION: "reconcile"}]
    etcd = await admin.get(ETCDS, "etcd-main", real_namespace)
    assert gardener.operation_annotations(etcd) == {gardener.GARDENER_OPERATION: "reconcile"}
    found = await results(bus)
    assert [r.data.outcome for r in found] == [Outcome.FAILED, Outcome.ESCALATED]
    failed, escalated = found
    assert failed.data.diagnosis["lastOperation"].startswith("Reconcile Processing")
    assert failed.data.diagnosis["lastErrors"] == "none"
    fields = escalated.data.evidence["fields"]
    assert fields["lastOperation"] == (
        "Reconcile Processing: Waiting for etcd-backup-restore to report member status"
    )
    assert fields["lastErrors"] == "none"
    told = render_result(escalated, TemplateSet()).text
    assert "lastOperation" in told
    assert "lastErrors" in told
