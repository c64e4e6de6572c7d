"""S4 on the real control plane: the real Fleet v0.15.0 CRDs, Medic's fleet source and remediator,
and Fleet's controller + agent played by the test the way Fleet's code does it: a Bundle's (or
GitRepo's) forceSyncGeneration is copied into the BundleDeployment's spec.options
(fleet internal/cmd/controller/options/calculate.go), the options Secret is written with Fleet's
type and keys, owned by the BundleDeployment (reconciler/bundle_controller.go), waitingForValues is
cleared (target/builder.go) and the agent records status.syncGeneration
(agent deployer/monitor/updatestatus.go).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from medic.remediator.service import RemediatorService, create
from medic.remediator.settings import RemediatorSettings
from medic.runtime.bus import Bus
from medic.runtime.kube import SECRETS, KubeClient, ResourceType
from medic.runtime.settings import KubeSettings
from medic.schemas import Outcome, ReleaseEvent, ReleaseProblem
from medic.testing import objects
from medic.testing.controllers import follow, running
from medic.testing.controlplane import ControlPlane
from medic.testing.remediation import handle, results, source_running
from medic.upstream import fleet

pytestmark = [pytest.mark.timeout(120)]

RULE = "fleet-force-sync-missing-values"
BDS = ResourceType(fleet.GROUP, fleet.VERSION, fleet.PLURAL, fleet.KIND)
OWNERS = {
    kind: ResourceType(fleet.GROUP, fleet.VERSION, plural, kind)
    for kind, plural in fleet.OWNER_PLURALS.items()
}
QUICK_RULE = f"""\
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {{name: {RULE}}}
spec:
  match: {{types: [medic.release], problems: [values_missing], kinds: [BundleDeployment]}}
  action: {{name: force-reconcile}}
  limits: {{maxAttempts: 2, backoff: 1s}}
  verify: {{timeout: 20s, interval: 0.2s}}
  severity: warning
"""


@pytest.fixture
async def admin(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    client = await KubeClient.connect(KubeSettings(kubeconfig=control_plane.kubeconfig))
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def remediator(bus: Bus, admin: KubeClient, tmp_path: Path) -> RemediatorService:
    rule = tmp_path / "quick.yaml"
    rule.write_text(QUICK_RULE)  # the built-in's grace period (2m) is judged in tests/remediator
    return await create(bus, admin, RemediatorSettings(actor="test", rules=[rule]), "test")


def watching(namespace: str) -> dict[str, Any]:
    return {"missing_after": 0, "filter": {"namespaces": [namespace]}}


async def stage(
    kube: KubeClient, cluster_ns: str, fleet_ns: str, name: str, owner: str = "Bundle"
) -> dict[str, Any]:
    """A re-created BundleDeployment whose options Secret is gone: the controller flags it
    waitingForValues (Fleet >= 0.15). Its owner chain as Fleet labels it."""
    await kube.create(OWNERS["Bundle"], objects.bundle(name, fleet_ns))
    bd = objects.bundledeployment(
        name, cluster_ns, bundle_namespace=fleet_ns, waiting_for_values=True
    )
    if owner == "GitRepo":
        gitrepo = {
            "apiVersion": fleet.API_VERSION,
            "kind": "GitRepo",
            "metadata": {"name": "shop", "namespace": fleet_ns},
            "spec": {"repo": "https://git.example/shop.git", "paths": [name]},
        }
        await kube.create(OWNERS["GitRepo"], gitrepo)
        bd["metadata"]["labels"][fleet.REPO_LABEL] = "shop"
    status = bd.pop("status")
    created: dict[str, Any] = await kube.create(BDS, bd)
    await kube.patch(BDS, name, cluster_ns, {"status": status}, subresource="status")
    return created


async def played_fleet(kube: KubeClient, owner: ResourceType, fleet_ns: str, bd: Any) -> None:
    """Fleet's controller and agent for one BundleDeployment: a moved forceSyncGeneration on the
    owner is copied into the BundleDeployment; then the options Secret, Ready, syncGeneration."""
    name, namespace = bd["metadata"]["name"], bd["metadata"]["namespace"]
    handled = 0

    async def reconcile(obj: dict[str, Any]) -> None:
        nonlocal handled
        generation = int((obj.get("spec") or {}).get(fleet.FORCE_SYNC_GENERATION) or 0)
        if generation <= handled:
            return
        handled = generation
        options = {"options": {fleet.FORCE_SYNC_GENERATION: generation}, "waitingForValues": None}
        await kube.patch(BDS, name, namespace, {"spec": options}, field_manager="fleetcontroller")
        secret = objects.values_secret(name, namespace)
        secret["metadata"]["ownerReferences"] = [
            {
                "apiVersion": fleet.API_VERSION,
                "kind": fleet.KIND,
                "name": name,
                "uid": bd["metadata"]["uid"],
                "controller": True,
            }
        ]
        await kube.create(SECRETS, secret)
        status = {"ready": True, "syncGeneration": generation, "conditions": None}
        await kube.patch(
            BDS, name, namespace, {"status": status}, subresource="status",
            field_manager="fleet-agent",
        )  # fmt: skip

    await follow(kube, owner, fleet_ns, reconcile)


def missing(event: ReleaseEvent) -> bool:
    return event.data.problem is ReleaseProblem.VALUES_MISSING


def written_by_medic(obj: dict[str, Any]) -> list[Any]:
    """The fields the `medic` field manager owns (the test stages objects through Medic's client,
    so that entry exists; what matters is that the remediator added nothing to it)."""
    return [
        m.get("fieldsV1")
        for m in obj["metadata"].get("managedFields") or []
        if m.get("manager") == "medic"
    ]


@pytest.mark.parametrize("owner", ["Bundle", "GitRepo"])
async def test_redeploy_bumps_the_owners_force_sync_generation_never_the_bundledeployment(  # noqa: PLR0917
    control_plane: ControlPlane,
    admin: KubeClient,
    remediator: RemediatorService,
    bus: Bus,
    owner: str,
    real_namespace: str,
) -> None:
    fleet_ns = f"{real_namespace}-fleet"
    control_plane.ensure_namespace(fleet_ns)
    bd = await stage(admin, real_namespace, fleet_ns, "cart", owner)
    staged = written_by_medic(await admin.get(BDS, "cart", real_namespace))
    async with (
        running(played_fleet(admin, OWNERS[owner], fleet_ns, bd)),
        source_running(admin, "fleet", watching(real_namespace)) as watched,
    ):
        event = await watched.first(missing)
        fields = event.data.evidence.fields
        assert fields["waitingForValues"] is True
        assert fields["secretMissing"] is True
        assert fields["secretType"] == fleet.OPTIONS_SECRET_TYPE
        await handle(remediator, event)
    owner_name = "shop" if owner == "GitRepo" else "cart"
    bumped = await admin.get(OWNERS[owner], owner_name, fleet_ns)
    assert bumped["spec"][fleet.FORCE_SYNC_GENERATION] == 1
    if owner == "GitRepo":  # gitjob overwrites the Bundle's field from the GitRepo's
        untouched = await admin.get(OWNERS["Bundle"], "cart", fleet_ns)
        assert fleet.FORCE_SYNC_GENERATION not in untouched["spec"]
    after = await admin.get(BDS, "cart", real_namespace)
    assert after["metadata"]["uid"] == bd["metadata"]["uid"]  # never deleted
    # the controller's spec, never Medic's: nothing the remediator wrote is owned by it
    assert "f:forceSyncGeneration" not in str(written_by_medic(after))
    assert "f:forceSyncGeneration" not in str(staged)
    assert after["spec"]["options"][fleet.FORCE_SYNC_GENERATION] == 1
    assert not fleet.waiting_for_values(after)
    assert after["status"]["syncGeneration"] == 1
    secret = await admin.get(SECRETS, "cart", real_namespace)
    assert secret["type"] == fleet.OPTIONS_SECRET_TYPE
    assert set(secret["data"]) == {fleet.VALUES_KEY, fleet.STAGED_VALUES_KEY}
    found = await results(bus)
    assert [(r.data.rule, r.data.outcome) for r in found] == [(RULE, Outcome.SUCCEEDED)]
    assert found[0].data.diagnosis["owner"] == f"{owner} {fleet_ns}/{owner_name}"


async def test_waiting_for_values_is_a_signal_and_a_secret_of_another_type_is_not_the_options(
    control_plane: ControlPlane, admin: KubeClient, real_namespace: str
) -> None:
    fleet_ns = f"{real_namespace}-fleet"
    control_plane.ensure_namespace(fleet_ns)
    await stage(admin, real_namespace, fleet_ns, "waiting")  # Secret there, still waiting
    await admin.create(SECRETS, objects.values_secret("waiting", real_namespace))
    await stage(admin, real_namespace, fleet_ns, "wrong-type")  # a per-Bundle values Secret
    other = objects.values_secret("wrong-type", real_namespace)
    other["type"] = fleet.BUNDLE_VALUES_SECRET_TYPE
    await admin.create(SECRETS, other)
    await admin.patch(BDS, "wrong-type", real_namespace, {"spec": {"waitingForValues": None}})
    async with source_running(admin, "fleet", watching(real_namespace)) as watched:
        waiting = await watched.first(lambda e: missing(e) and e.data.object.name == "waiting")
        wrong = await watched.first(lambda e: missing(e) and e.data.object.name == "wrong-type")
    assert waiting.data.evidence.fields["secretMissing"] is False
    assert waiting.data.evidence.fields["waitingForValues"] is True
    assert wrong.data.evidence.fields["secretMissing"] is True
    assert wrong.data.evidence.fields["waitingForValues"] is False
