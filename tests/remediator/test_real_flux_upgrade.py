"""S2 on the real control plane: a real Flux upgrade of the HelmRelease CRD (helm-controller
v0.36.0 = Flux 2.1, v0.37.2 = Flux 2.2, v1.4.3 = Flux 2.7), the real API server's refusal, and
Medic doing what `flux migrate` does (flux2 cmd/flux/migrate.go): `{}` on every object at the
storage version, then `status.storedVersions` trimmed, after which Flux 2.7's CRD applies.

Each upgrade test has a control plane of its own: it changes the cluster-wide HelmRelease CRD.
How an object is stored is read from etcd itself (the API server only ever shows a conversion).
"""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from medic.remediator.service import RemediatorService, create
from medic.remediator.settings import RemediatorSettings
from medic.runtime.bus import Bus
from medic.runtime.kube import KubeClient
from medic.runtime.settings import KubeSettings
from medic.schemas import Outcome, ReleaseEvent, ReleaseProblem
from medic.testing import objects, upstream
from medic.testing.controlplane import ControlPlane
from medic.testing.remediation import handle, results, source_running
from medic.upstream import flux

pytestmark = [pytest.mark.timeout(240)]

CRD_PATH = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{flux.CRD_NAME}"
NS = "apps"
RELEASES = ("frontend", "backend", "worker")
RULE = "flux-migrate-old-api-version"


@pytest.fixture
def plane(control_plane: ControlPlane, tmp_path: Path) -> Iterator[ControlPlane]:
    """A control plane of this test's own, without CRDs (`control_plane` is asked for only so
    that an unavailable toolchain skips here, or fails in CI, the same way)."""
    with ControlPlane(base_dir=tmp_path / "plane") as own:
        yield own


def crd_document(source: str) -> dict[str, Any]:
    import yaml

    (path,) = upstream.crd_files(source)
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def apply_crd(plane: ControlPlane, source: str) -> tuple[int, Any]:
    """Apply one Flux release's HelmRelease CRD over the current one, as `flux install` would."""
    reply = plane.ensure(
        crd_document(source), "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    )
    return reply.status, reply.body


def stored_api_version(plane: ControlPlane, namespace: str, name: str) -> str:
    """The apiVersion the object is encoded with in etcd (the v3 JSON gateway of the member)."""
    key = f"/registry/{flux.GROUP}/{flux.PLURAL}/{namespace}/{name}".encode()
    body = json.dumps({"key": base64.b64encode(key).decode()}).encode()
    request = urllib.request.Request(
        f"{plane.etcd.client_urls[0]}/v3/kv/range", data=body, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        (kv,) = json.loads(reply.read())["kvs"]
    return str(json.loads(base64.b64decode(kv["value"]))["apiVersion"])


def stage_flux_21_then_22(plane: ControlPlane) -> None:
    """Flux 2.1's CRD, releases created at v2beta1, then the upgrade to Flux 2.2's CRD."""
    plane.install_crds(upstream.crd_files("flux-2.1"))
    plane.ensure_namespace(NS)
    for name in RELEASES:
        reply = plane.request(
            "POST",
            f"/apis/{flux.GROUP}/v2beta1/namespaces/{NS}/{flux.PLURAL}",
            objects.helmrelease(name, NS, version="v2beta1"),
        )
        assert reply.ok, reply.body
    plane.install_crds(upstream.crd_files("flux-2.2"))


async def connect(kubeconfig: Path) -> KubeClient:
    return await KubeClient.connect(KubeSettings(kubeconfig=kubeconfig))


@pytest.fixture
async def admin(plane: ControlPlane) -> AsyncIterator[KubeClient]:
    client = await connect(plane.kubeconfig)
    try:
        yield client
    finally:
        await client.close()


async def detected(kube: KubeClient) -> ReleaseEvent:
    async with source_running(kube, "flux_crds") as watched:
        return await watched.first(lambda e: e.data.problem is ReleaseProblem.OLD_API_VERSION)


def crd_status(plane: ControlPlane) -> dict[str, Any]:
    status: dict[str, Any] = plane.request("GET", CRD_PATH).body["status"]
    return status


async def test_flux_21_to_27_upgrade_refused_until_medic_migrates_as_flux_migrate_does(
    plane: ControlPlane, admin: KubeClient, bus: Bus
) -> None:
    stage_flux_21_then_22(plane)
    assert crd_status(plane)["storedVersions"] == ["v2beta1", "v2beta2"]
    assert {stored_api_version(plane, NS, n) for n in RELEASES} == {flux.api_version("v2beta1")}
    status, body = apply_crd(plane, "flux-2.7")
    assert status == 422
    assert (
        'status.storedVersions[0]: Invalid value: "v2beta1": missing from spec.versions'
        in (body["message"])
    )

    event = await detected(admin)
    assert event.data.object.kind == "CustomResourceDefinition"
    assert event.data.object.name == flux.CRD_NAME
    assert event.data.evidence.fields["staleVersions"] == "v2beta1"
    assert event.data.evidence.fields["storageVersion"] == "v2beta2"
    service = await create(bus, admin, RemediatorSettings(actor="test"), "test")
    await handle(service, event)

    found = await results(bus)
    assert [(r.data.rule, r.data.outcome) for r in found] == [(RULE, Outcome.SUCCEEDED)]
    assert found[0].data.diagnosis["restored"] == len(RELEASES)
    assert {stored_api_version(plane, NS, n) for n in RELEASES} == {flux.api_version("v2beta2")}
    assert crd_status(plane)["storedVersions"] == ["v2beta2"]
    status, body = apply_crd(plane, "flux-2.7")
    assert status == 200, body
    assert crd_status(plane)["storedVersions"] == ["v2beta2", "v2"]  # the API server adds v2

    # Flux 2.8 drops v2beta2: the same migration again, now to v2 (a later, separate problem:
    # a remediator with fresh state, past the first one's cooldown).
    again = await detected(admin)
    assert again.data.evidence.fields["staleVersions"] == "v2beta2"
    later = await create(bus, admin, RemediatorSettings(actor="test", state_bucket="later"), "test")
    await handle(later, again)
    assert {stored_api_version(plane, NS, n) for n in RELEASES} == {flux.api_version("v2")}
    assert crd_status(plane)["storedVersions"] == ["v2"]


async def test_without_rights_on_crd_status_medic_restores_and_escalates_with_the_real_403(
    plane: ControlPlane, bus: Bus
) -> None:
    stage_flux_21_then_22(plane)
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "medic-remediator"},
        "rules": [
            {
                "apiGroups": ["apiextensions.k8s.io"],
                "resources": ["customresourcedefinitions"],
                "verbs": ["get", "list", "watch"],
            },
            {"apiGroups": [flux.GROUP], "resources": ["*"], "verbs": ["get", "list", "patch"]},
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "medic-remediator"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "medic-remediator",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "medic", "namespace": "medic"}],
    }
    assert plane.ensure(role, "/apis/rbac.authorization.k8s.io/v1/clusterroles").ok
    assert plane.ensure(binding, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings").ok
    medic = await connect(plane.serviceaccount_kubeconfig("medic", "medic"))
    try:
        event = await detected(medic)
        service: RemediatorService = await create(
            bus, medic, RemediatorSettings(actor="test"), "test"
        )
        await handle(service, event)
    finally:
        await medic.close()

    (result,) = await results(bus)
    assert result.data.outcome is Outcome.ESCALATED
    assert result.data.reason.startswith(
        "re-stored 3 objects at v2beta2 but could not trim status.storedVersions to [v2beta2]: "
    )
    assert (
        'User "system:serviceaccount:medic:medic" cannot patch resource '
        '"customresourcedefinitions/status" in API group "apiextensions.k8s.io"'
    ) in result.data.reason
    assert {stored_api_version(plane, NS, n) for n in RELEASES} == {flux.api_version("v2beta2")}
    assert crd_status(plane)["storedVersions"] == ["v2beta1", "v2beta2"]
    assert apply_crd(plane, "flux-2.7")[0] == 422  # still blocked until someone trims
