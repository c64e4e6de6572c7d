"""The watcher, as a process, keeps watching through what happens to a real control plane.

On kube-apiserver 1.34 over a three-member etcd 3.6: kube-apiserver restarts; kube-apiserver is
down while a HelmRelease fails (the failure is written through another kube-apiserver on the
same etcd, as in an HA control plane) and etcd's history is compacted, so the watcher's resume
is answered 410 Gone and it must re-list; an etcd member (the leader) is killed and restarted
under kube-apiserver. After each, a failure is reported: no problem is lost.

kube-apiserver is (re)started on the test's own thread: its parent-death signal follows the
thread that started it (`ControlPlane`'s die_with_parent), and a to_thread worker ends early.
"""

from __future__ import annotations

import base64
import contextlib
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from medic.demo.stack import Timings, tuned_rules
from medic.runtime.embedded_nats import free_port
from medic.schemas import ProblemState, ReleaseEvent
from medic.testing import e2e, objects
from medic.testing.controlplane import ControlPlane
from medic.testing.notifier import stream_messages
from medic.testing.played import ApiWorld, WorldError
from medic.testing.waiting import eventually
from medic.upstream import etcd, flux

pytestmark = [pytest.mark.e2e, pytest.mark.realcluster, pytest.mark.timeout(150)]
HR_V2 = flux.api_version("v2")


def compact(plane: ControlPlane) -> int:
    """Compact etcd's history up to its current revision (etcd's JSON gateway); returns it."""
    url = plane.etcd.client_urls[0]
    for member in plane.etcd.members:
        if member.running:
            url = member.client_url
            break

    def post(path: str, body: dict[str, object]) -> dict[str, object]:
        request = urllib.request.Request(
            f"{url}{path}", data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            return dict(json.loads(reply.read()))

    header = post("/v3/kv/range", {"key": base64.b64encode(b"/").decode()})["header"]
    revision = int(header["revision"])  # type: ignore[index]
    post("/v3/kv/compaction", {"revision": revision, "physical": True})
    return revision


@contextlib.contextmanager
def medics_apiserver_down(plane: ControlPlane) -> Iterator[None]:
    """Medic's kube-apiserver is stopped; another one on the same etcd (another port) serves
    `plane.request` meanwhile; then Medic's comes back on its own port."""
    port = plane.port
    plane.stop_apiserver()
    plane.port = free_port()
    plane.start_apiserver()
    try:
        yield
    finally:
        plane.stop_apiserver()
        plane.port = port
        plane.start_apiserver()


def fail(world: ApiWorld, name: str, namespace: str) -> None:
    """helm-controller's write when an install failed on a transient etcd error."""
    failed = objects.etcd_failed_status(name, namespace, error=etcd.LEADER_CHANGED)
    world.patch_merge(HR_V2, flux.KIND, name, namespace, {"status": failed}, status=True,
                      manager="helm-controller")  # fmt: skip


async def written(world: ApiWorld, name: str, namespace: str) -> None:
    """`fail`, repeated while kube-apiserver answers an etcd error (its client may have been
    on the member just killed)."""

    async def done() -> bool:
        try:
            fail(world, name, namespace)
        except WorldError as error:
            return error.status < 500
        return True

    await eventually(done, timeout=20.0, interval=0.2)


async def reported(rig: e2e.ClusterRig, name: str, namespace: str, timeout: float = 40.0) -> None:
    async def firing() -> bool:
        events = await stream_messages(rig.bus, "MEDIC_EVENTS")
        return any(
            isinstance(e, ReleaseEvent)
            and e.data.object.name == name
            and e.data.object.namespace == namespace
            and e.data.state is ProblemState.FIRING
            for e in events
        )

    try:
        await eventually(firing, timeout=timeout, interval=0.2)
    except AssertionError as error:
        raise AssertionError(
            f"{namespace}/{name} never reported:\n{rig.logs()['watcher'][-4000:]}"
        ) from error


@pytest.fixture
def releases(etcd3_control_plane: ControlPlane) -> tuple[ApiWorld, str, list[str]]:
    """Ready HelmReleases in a fresh namespace, one per disturbance."""
    world = ApiWorld(etcd3_control_plane)
    namespace = f"restarts-{free_port()}"
    names = ["baseline", "after-restart", "while-down", "member-down", "member-back"]
    for name in names:
        ready = objects.ready_status(name, namespace)
        world.put(objects.helmrelease(name, namespace, status=ready), manager="helm-controller")
    return world, namespace, names


async def test_watcher_resumes_after_kube_apiserver_restarts_and_relists_on_410(
    etcd3_control_plane: ControlPlane,
    releases: tuple[ApiWorld, str, list[str]],
    tmp_path: Path,
) -> None:
    plane, (world, ns, _) = etcd3_control_plane, releases
    timings = Timings()
    async with e2e.on_cluster(
        tmp_path, plane.kubeconfig, tuned_rules(timings), timings=timings, names=("watcher",)
    ) as rig:
        fail(world, "baseline", ns)
        await reported(rig, "baseline", ns)

        plane.restart_apiserver()
        fail(world, "after-restart", ns)
        await reported(rig, "after-restart", ns)

        with medics_apiserver_down(plane):
            fail(world, "while-down", ns)  # through the other kube-apiserver
            compact(plane)
        await reported(rig, "while-down", ns)
        assert rig.processes["watcher"].running
        assert "watch_expired_relisting" in rig.logs()["watcher"]
    e2e.assert_services_exited_cleanly(rig)


async def test_watcher_keeps_reporting_through_an_etcd_leader_restart_under_kube_apiserver(
    etcd3_control_plane: ControlPlane,
    releases: tuple[ApiWorld, str, list[str]],
    tmp_path: Path,
) -> None:
    plane, (world, ns, _) = etcd3_control_plane, releases
    timings = Timings()
    async with e2e.on_cluster(
        tmp_path, plane.kubeconfig, tuned_rules(timings), timings=timings, names=("watcher",)
    ) as rig:
        leader = await plane.etcd.wait_leader()
        plane.etcd.kill(leader)
        await written(world, "member-down", ns)  # two of three members: still a quorum
        await reported(rig, "member-down", ns)
        await plane.etcd.restart(leader)
        await plane.etcd.wait_leader()
        fail(world, "member-back", ns)
        await reported(rig, "member-back", ns)
        assert rig.processes["watcher"].running
    e2e.assert_services_exited_cleanly(rig)
