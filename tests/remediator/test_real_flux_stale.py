"""S2's stale status on the real control plane (Flux 2.7's HelmRelease CRD): DependencyNotReady
while the dependency is Ready, repaired by `flux reconcile hr --force`'s one merge patch
(requestedAt = forceAt) and verified by status.lastHandledForceAt.

helm-controller's side is played by the test exactly as fluxcd/pkg apis/meta/annotations.go
HandleAnnotationRequest decides it: a request is handled when requestedAt differs from
status.lastHandledReconcileAt, and a force only when forceAt equals that requestedAt; the
controller then records lastHandledReconcileAt and lastHandledForceAt (helm-controller
api/v2/helmrelease_types.go). The real helm-controller is run for S1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from medic.remediator.service import create
from medic.remediator.settings import RemediatorSettings
from medic.runtime.bus import Bus
from medic.runtime.kube import KubeClient, ResourceType
from medic.runtime.settings import KubeSettings
from medic.schemas import Outcome, ReleaseProblem
from medic.testing import objects
from medic.testing.controllers import follow, running
from medic.testing.controlplane import ControlPlane
from medic.testing.remediation import handle, results, source_running
from medic.upstream import flux

pytestmark = [pytest.mark.timeout(120)]

HRS = ResourceType(flux.GROUP, flux.STORAGE_VERSION, flux.PLURAL, flux.KIND)


def handle_request(obj: dict[str, Any]) -> dict[str, str] | None:
    """The status fields helm-controller writes for the object's reconcile request, or None
    when there is no new request (HandleAnnotationRequest)."""
    annotations = obj["metadata"].get("annotations") or {}
    status = obj.get("status") or {}
    requested = annotations.get(flux.REQUESTED_AT)
    if not requested or requested == status.get("lastHandledReconcileAt"):
        return None
    handled = {"lastHandledReconcileAt": requested}
    if annotations.get(flux.FORCE_AT) == requested:
        handled["lastHandledForceAt"] = requested
    if annotations.get(flux.RESET_AT) == requested:
        handled["lastHandledResetAt"] = requested
    return handled


async def played_helm_controller(kube: KubeClient, namespace: str) -> None:
    async def reconcile(obj: dict[str, Any]) -> None:
        handled = handle_request(obj)
        if not handled:
            return
        name = obj["metadata"]["name"]
        status = {**objects.ready_status(name, namespace), **handled}
        await kube.patch(
            HRS, name, namespace, {"status": status}, subresource="status",
            field_manager="helm-controller",
        )  # fmt: skip

    await follow(kube, HRS, namespace, reconcile)


@pytest.fixture
async def admin(control_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    client = await KubeClient.connect(KubeSettings(kubeconfig=control_plane.kubeconfig))
    try:
        yield client
    finally:
        await client.close()


async def put_release(kube: KubeClient, obj: dict[str, Any]) -> None:
    status = obj.pop("status")
    await kube.create(HRS, obj)
    meta = obj["metadata"]
    await kube.patch(HRS, meta["name"], meta["namespace"], {"status": status}, subresource="status")


def test_the_played_controller_follows_handle_annotation_request() -> None:
    base = objects.helmrelease("x", "apps", status={"lastHandledReconcileAt": "t0"})
    ann = base["metadata"].setdefault("annotations", {})
    assert handle_request(base) is None
    ann[flux.REQUESTED_AT] = "t0"
    assert handle_request(base) is None  # already handled
    ann.update({flux.REQUESTED_AT: "t1", flux.FORCE_AT: "t0"})
    assert handle_request(base) == {"lastHandledReconcileAt": "t1"}  # a stale force is no force
    ann[flux.FORCE_AT] = "t1"
    assert handle_request(base) == {"lastHandledReconcileAt": "t1", "lastHandledForceAt": "t1"}


async def test_dependency_not_ready_while_ready_is_force_reconciled_and_verified(
    control_plane: ControlPlane, real_namespace: str, admin: KubeClient, bus: Bus
) -> None:
    ns = real_namespace
    await put_release(
        admin, objects.helmrelease("backend", ns, status=objects.ready_status("backend", ns))
    )
    await put_release(
        admin,
        objects.helmrelease(
            "frontend", ns, depends_on=["backend"], status=objects.stale_status("backend")
        ),
    )
    service = await create(bus, admin, RemediatorSettings(actor="test"), "test")
    async with (
        running(played_helm_controller(admin, ns)),
        source_running(admin, "helmrelease", {"filter": {"namespaces": [ns]}}) as watched,
    ):
        event = await watched.first(lambda e: e.data.problem is ReleaseProblem.STALE_STATUS)
        assert event.data.object.name == "frontend"
        assert "dependency-ready" in str(event.data.evidence.fields["stale"])
        await handle(service, event)
    frontend = await admin.get(HRS, "frontend", ns)
    annotations = frontend["metadata"]["annotations"]
    token = annotations[flux.REQUESTED_AT]
    assert annotations[flux.FORCE_AT] == token  # one patch, one token (flux reconcile --force)
    assert flux.RESET_AT not in annotations
    assert frontend["status"]["lastHandledForceAt"] == token
    assert frontend["status"]["lastHandledReconcileAt"] == token
    found = await results(bus)
    assert [(r.data.rule, r.data.outcome) for r in found] == [
        ("flux-force-reconcile-stale-status", Outcome.SUCCEEDED)
    ]
    (written,) = [c for c in found[0].data.changes if c.path.endswith("forceAt")]
    assert written.after == token
