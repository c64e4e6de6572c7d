"""The remediator's writes carry the resourceVersion it judged, on the real kube-apiserver.

Medic's watcher and remediator run as processes; their requests go through `ApiProxy`, which
forwards every request to the real server and lets the test write at the moment the
remediator's first PATCH is on its way. The refusals (409, and 422 for a JSON patch whose path
the other writer took) are kube-apiserver's own; the tests assert that Medic planned again from
what is there now instead of writing over it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from medic.demo.stack import Timings, tuned_rules
from medic.testing import e2e, objects
from medic.testing.apiproxy import ApiProxy
from medic.testing.controlplane import ControlPlane
from medic.testing.played import ApiWorld
from medic.testing.waiting import eventually
from medic.upstream import flux, gardener

pytestmark = [pytest.mark.e2e, pytest.mark.realcluster, pytest.mark.timeout(120)]
TIMINGS = Timings(operation_after=1.0)


class RacingWriter:
    """Makes `write` just before the first PATCH of `path` is forwarded to the server."""

    def __init__(self, path: str, write: Callable[[], dict[str, Any]]) -> None:
        self.path, self.write = path, write
        self.raced_at: str | None = None  # the resourceVersion the racing write produced

    async def before(self, method: str, path: str) -> None:
        if method != "PATCH" or path != self.path or self.raced_at is not None:
            return
        written = await asyncio.to_thread(self.write)
        self.raced_at = str(written["metadata"]["resourceVersion"])


def merge_patch_racer(  # noqa: PLR0917 - the object's coordinates and the patch
    world: ApiWorld,
    api_version: str,
    kind: str,
    name: str,
    namespace: str,
    patch: dict[str, Any],
    **options: Any,
) -> RacingWriter:
    """A racer that merge-patches this object (`options`: `manager`, `status`) just before
    Medic's first PATCH of it is forwarded."""
    path = world.resource(api_version, kind).path(namespace, name)
    write = functools.partial(
        world.patch_merge, api_version, kind, name, namespace, patch, **options
    )
    return RacingWriter(path, write)


async def test_a_json_patch_racing_druid_is_refused_and_judged_again_not_reapplied(
    control_plane: ControlPlane, real_namespace: str, tmp_path: Path
) -> None:
    """S5's reapply (a JSON patch): etcd-druid finishes and clears the annotation while Medic's
    remove is on its way. kube-apiserver applies a JSON patch to the object as it is now before
    it compares the resourceVersion, so the vanished path makes it 422 Invalid, not 409; Medic
    sees the resourceVersion moved, re-plans, finds it cleared and writes nothing: druid's state
    stands (no stale re-apply of the operation)."""
    ns, name = real_namespace, "etcd-raced"
    world = ApiWorld(control_plane)
    staged = world.put(objects.gardener_etcd(name, ns), manager="gardenlet")
    druid_finishes = {"metadata": {"annotations": dict.fromkeys(gardener.OPERATION_KEYS)}}
    racer = merge_patch_racer(
        world, gardener.API_VERSION, gardener.KIND, name, ns, druid_finishes, manager="etcd-druid"
    )
    path = racer.path
    async with ApiProxy(control_plane, before=racer.before) as proxy:
        kubeconfig = proxy.write_kubeconfig(tmp_path / "proxy.kubeconfig")
        async with e2e.on_cluster(
            tmp_path / "medic", kubeconfig, tuned_rules(TIMINGS), timings=TIMINGS, namespaces=[ns]
        ) as rig:
            result = await e2e.result_for(rig, name, ["skipped", "succeeded", "failed"])
            assert result.data.outcome.value == "skipped", result.data.reason
            assert result.data.reason == "already-fixed: operation-cleared"
            patches = [p for p in proxy.passed if p.method == "PATCH" and p.path == path]
            assert [p.status for p in patches] == [422]
            assert not [a for a in await rig.audit() if a.data.outcome == "written"]
            assert "write_conflict_rejudging" in rig.logs()["remediator"]
    e2e.assert_services_exited_cleanly(rig)
    now = world.get(gardener.API_VERSION, gardener.KIND, name, ns)
    assert now is not None
    assert now["metadata"]["resourceVersion"] == racer.raced_at
    assert not set(gardener.OPERATION_KEYS) & set(now["metadata"].get("annotations") or {})
    assert staged["metadata"]["resourceVersion"] != racer.raced_at


async def test_a_merge_patch_racing_another_writer_is_rewritten_at_the_new_version(
    control_plane: ControlPlane, real_namespace: str, tmp_path: Path
) -> None:
    """S2-stale's forced reconcile (a merge patch): another writer changes the spec while Medic's
    patch is on its way. 409 from the real server; Medic re-plans and writes at the new
    resourceVersion, and the other writer's change is still there."""
    ns, name = real_namespace, "frontend-raced"
    world = ApiWorld(control_plane)
    world.put(
        objects.helmrelease("backend-raced", ns, status=objects.ready_status("backend-raced", ns))
    )
    world.put(
        objects.helmrelease(
            name, ns, depends_on=["backend-raced"], status=objects.stale_status("backend-raced")
        ),
        manager="helm-controller",
    )
    kustomize_applies = {"spec": {"values": {"replicaCount": 3}}}
    racer = merge_patch_racer(
        world, flux.api_version("v2"), flux.KIND, name, ns, kustomize_applies,
        manager="kustomize-controller",
    )  # fmt: skip
    path = racer.path
    async with ApiProxy(control_plane, before=racer.before) as proxy:
        kubeconfig = proxy.write_kubeconfig(tmp_path / "proxy.kubeconfig")
        async with e2e.on_cluster(
            tmp_path / "medic", kubeconfig, tuned_rules(TIMINGS), timings=TIMINGS, namespaces=[ns]
        ) as rig:
            await e2e.result_for(rig, name, ["applied", "succeeded", "failed"])
            patches = [p for p in proxy.passed if p.method == "PATCH" and p.path == path]
            assert [p.status for p in patches] == [409, 200]
            [written] = [a for a in await rig.audit() if a.data.outcome == "written"]
            assert written.data.action == "force-reconcile"
            assert "write_conflict_rejudging" in rig.logs()["remediator"]
    e2e.assert_services_exited_cleanly(rig)
    now = world.get(flux.api_version("v2"), flux.KIND, name, ns)
    assert now is not None
    assert now["spec"]["values"] == {"replicaCount": 3}
    annotations = now["metadata"]["annotations"]
    assert annotations[flux.REQUESTED_AT] == annotations[flux.FORCE_AT]
    assert int(now["metadata"]["resourceVersion"]) > int(str(racer.raced_at))


async def test_a_retry_planned_from_the_watchers_quote_is_refused_when_the_release_moved_on(
    control_plane: ControlPlane, real_namespace: str, tmp_path: Path
) -> None:
    """S1's retry is planned from what the watcher's event quotes of the release (Ready, the
    request annotations) at the resourceVersion it names, with no read first. helm-controller
    makes the release Ready while Medic's reset is on its way: the real server refuses the
    write at the quoted version (409), Medic reads the release, finds it Ready and writes
    nothing, so helm-controller's own recovery stands."""
    ns, name = real_namespace, "podinfo-recovered"
    world = ApiWorld(control_plane)
    world.put(
        objects.helmrelease(name, ns, status=objects.etcd_failed_status(name, ns)),
        manager="helm-controller",
    )
    recovers = {"status": objects.ready_status(name, ns)}
    racer = merge_patch_racer(
        world, flux.api_version("v2"), flux.KIND, name, ns, recovers,
        status=True, manager="helm-controller",
    )  # fmt: skip
    path = racer.path
    async with ApiProxy(control_plane, before=racer.before) as proxy:
        kubeconfig = proxy.write_kubeconfig(tmp_path / "proxy.kubeconfig")
        async with e2e.on_cluster(
            tmp_path / "medic", kubeconfig, tuned_rules(TIMINGS), timings=TIMINGS,
            etcd_endpoints=control_plane.etcd.client_urls, namespaces=[ns],
        ) as rig:  # fmt: skip
            result = await e2e.result_for(
                rig, name, ["skipped", "applied", "succeeded", "failed"], timeout=60
            )
            assert result.data.outcome.value == "skipped", result.data.reason
            assert result.data.reason == "already-fixed: already-ready"
            about = [(p.method, p.status) for p in proxy.passed if p.path == path]
            assert about == [("PATCH", 409), ("GET", 200)], about
            assert not [a for a in await rig.audit() if a.data.object.name == name]
    e2e.assert_services_exited_cleanly(rig)
    now = world.get(flux.api_version("v2"), flux.KIND, name, ns)
    assert now is not None
    assert flux.REQUESTED_AT not in (now["metadata"].get("annotations") or {})


def read_only_medic(plane: ControlPlane, namespace: str) -> Path:
    """A kubeconfig for a ServiceAccount that may read everything and write nothing."""
    rbac = "rbac.authorization.k8s.io"
    role = f"medic-reads-{namespace}"
    plane.ensure(
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}],
        },
        f"/apis/{rbac}/v1/clusterroles",
    )
    plane.ensure(
        {
            "apiVersion": f"{rbac}/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role},
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "medic", "namespace": namespace}],
        },
        f"/apis/{rbac}/v1/clusterrolebindings",
    )
    return plane.serviceaccount_kubeconfig(namespace, "medic")


async def test_a_refused_write_is_not_reported_as_medics_when_someone_else_fixes_it(
    control_plane: ControlPlane, real_namespace: str, tmp_path: Path
) -> None:
    """The remediator may not patch Etcds: the real authorizer refuses its write (403) and the
    event is retried. etcd-druid clears the annotation meanwhile. Nothing was written, so Medic
    must not take druid's fix for its own ('found in place', an audit entry of a write it never
    made): the retry judges afresh and finds it already fixed."""
    ns, name = real_namespace, "etcd-refused"
    world = ApiWorld(control_plane)
    world.put(objects.gardener_etcd(name, ns), manager="gardenlet")
    kubeconfig = read_only_medic(control_plane, ns)
    async with e2e.on_cluster(
        tmp_path / "medic", kubeconfig, tuned_rules(TIMINGS), timings=TIMINGS, namespaces=[ns]
    ) as rig:

        async def refused() -> bool:
            return "403 Forbidden" in rig.logs()["remediator"]

        await eventually(refused, timeout=30.0, interval=0.2)
        world.patch_merge(
            gardener.API_VERSION,
            gardener.KIND,
            name,
            ns,
            {"metadata": {"annotations": dict.fromkeys(gardener.OPERATION_KEYS)}},
            manager="etcd-druid",
        )
        result = await e2e.result_for(rig, name, ["skipped", "applied", "succeeded", "failed"])
        assert result.data.outcome.value == "skipped", result.data.reason
        assert result.data.reason.startswith("already-fixed"), result.data.reason
        assert not [a for a in await rig.audit() if a.data.object.name == name]
    e2e.assert_services_exited_cleanly(rig)
