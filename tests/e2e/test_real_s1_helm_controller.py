"""S1 (and S3's Flux-owned case) with Flux's real helm-controller on the real control plane.

helm-controller v1.4 talks to kube-apiserver through a fault-injecting proxy that answers the
install's ConfigMap create the way kube-apiserver does when etcd falters (500, `etcdserver:
leader changed`); the API server runs on a real three-member etcd 3.6, whose leader the test
kills while Medic's etcd probe watches it. What helm-controller then writes is what Medic must
recognise (recorded in tests/watcher/fixtures/); Medic waits until etcd has been stable for the
rule's time and writes requestedAt = resetAt in one patch, as `flux reconcile hr --reset` does;
the real helm-controller resets and installs.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from medic.demo.stack import Timings, tuned_rules
from medic.schemas import EtcdCondition, EtcdEvent
from medic.testing import e2e, upstream
from medic.testing.controlplane import ControlPlane, ControlPlaneError
from medic.testing.helmcli import small_chart
from medic.testing.helmcontroller import (
    ChartServer,
    Fault,
    helm_controller,
    package_chart,
    publish_chart,
)
from medic.testing.notifier import stream_messages
from medic.testing.waiting import eventually
from medic.upstream import etcd, flux, helm

pytestmark = [pytest.mark.e2e, pytest.mark.realcluster, pytest.mark.timeout(240)]
HR_API = "/apis/helm.toolkit.fluxcd.io/v2"
TIMINGS = Timings(pending_after=1.0)


@pytest.fixture(scope="module")
def flux_plane(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """A control plane of its own on a three-member etcd (the test kills its leader)."""
    plane = ControlPlane(
        base_dir=tmp_path_factory.mktemp("flux-plane"), etcd_members=3, crds=("flux",)
    )
    try:
        plane.start()
    except (ControlPlaneError, upstream.UpstreamUnavailableError) as error:
        pytest.fail(f"three-member control plane did not start: {error}")
    try:
        yield plane
    finally:
        plane.stop()


@dataclass
class Flux:
    plane: ControlPlane
    namespace: str
    chart: str = "settings"

    def helmrelease(self, name: str, **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"interval": "10m", "chartRef": {"kind": "HelmChart", "name": self.chart}}
            | spec,
        }  # fmt: skip
        created = self.plane.request(
            "POST", f"{HR_API}/namespaces/{self.namespace}/helmreleases", body
        )
        assert created.ok, created.body
        return dict(created.body)

    def get(self, name: str) -> dict[str, Any]:
        return dict(
            self.plane.request(
                "GET", f"{HR_API}/namespaces/{self.namespace}/helmreleases/{name}"
            ).body
        )

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        conditions = (self.get(name).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == kind), {})

    async def until_status(self, name: str, field: str, value: str, timeout: float = 30.0) -> None:
        async def reached() -> bool:
            return (self.get(name).get("status") or {}).get(field) == value

        await eventually(reached, timeout=timeout, interval=0.2)

    async def until_settled(self, name: str, timeout: float = 60.0) -> None:
        """Ready and the reconcile that made it so finished: helm-controller patches
        observedGeneration only when a reconcile ends without a requeue
        (helmrelease_controller.go, WithStatusObservedGeneration), so nothing of its own is
        in flight that would find what the test stages next."""

        async def reached() -> bool:
            hr = self.get(name)
            ready = self.condition(name, flux.READY).get("status") == "True"
            observed = (hr.get("status") or {}).get("observedGeneration")
            return ready and observed == hr["metadata"]["generation"]

        await eventually(reached, timeout=timeout, interval=0.2)

    async def until(
        self, name: str, kind: str, status: str, timeout: float = 60.0
    ) -> dict[str, Any]:
        async def reached() -> bool:
            return self.condition(name, kind).get("status") == status

        await eventually(reached, timeout=timeout, interval=0.2)
        return self.get(name)


@pytest.fixture
async def releases(
    flux_plane: ControlPlane, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Flux]:
    namespace = f"s1-{abs(hash(request.node.name)) % 10**8}"
    flux_plane.ensure_namespace(namespace)
    server = ChartServer(tmp_path / "artifacts")
    tarball = package_chart(small_chart(tmp_path / "chart"), server.directory)
    await server.start()
    try:
        publish_chart(flux_plane, namespace, "settings", tarball, server)
        yield Flux(flux_plane, namespace)
    finally:
        await server.stop()


async def test_s1_a_stalled_release_is_reset_once_etcd_is_stable_and_one_that_retries_is_left_alone(
    releases: Flux, tmp_path: Path
) -> None:
    plane, ns = releases.plane, releases.namespace
    # Each release's first ConfigMap create fails as when etcd loses its leader.
    faults = [
        Fault(
            "POST", rf"/api/v1/namespaces/{ns}/configmaps$", times=2, message=etcd.LEADER_CHANGED
        ),
    ]
    async with helm_controller(plane, tmp_path / "hc", faults) as (controller, _proxy):
        releases.helmrelease("podinfo")  # install retries: 0 (the default) -> Stalled
        stalled = await releases.until("podinfo", flux.STALLED, "True")
        conditions = {c["type"]: c for c in stalled["status"]["conditions"]}
        assert stalled["status"]["installFailures"] == 1
        assert conditions[flux.STALLED]["reason"] == "RetriesExceeded"
        assert conditions[flux.READY]["reason"] == flux.INSTALL_FAILED
        assert etcd.LEADER_CHANGED in conditions[flux.READY]["message"]
        releases.helmrelease("retrying", install={"remediation": {"retries": 3}})  # retries itself

        leader = await plane.etcd.wait_leader()
        async with e2e.on_cluster(
            tmp_path / "medic", plane.kubeconfig, tuned_rules(TIMINGS), timings=TIMINGS,
            etcd_endpoints=plane.etcd.client_urls,
        ) as rig:  # fmt: skip
            plane.etcd.kill(leader)
            done = await e2e.result_for(
                rig, "podinfo", ["succeeded", "failed", "escalated"], timeout=90
            )
            assert done.data.outcome.value == "succeeded", (
                done.data.reason,
                controller.logs()[-3000:],
            )
            healed = await releases.until("podinfo", flux.READY, "True")
            annotations = healed["metadata"]["annotations"]
            token = annotations[flux.REQUESTED_AT]
            assert annotations[flux.RESET_AT] == token
            assert healed["status"]["lastHandledResetAt"] == token
            # Written by the reconcile's closing patch, which can come after Ready=True.
            await releases.until_status("podinfo", "lastHandledReconcileAt", token)
            assert healed["status"].get("installFailures", 0) == 0

            written = [a for a in await rig.audit() if a.data.outcome == "written"]
            assert [(a.data.object.name, a.data.action) for a in written] == [("podinfo", "retry")]
            events = await stream_messages(rig.bus, "MEDIC_EVENTS")
            probed = [m for m in events if isinstance(m, EtcdEvent)]
            changes = [e for e in probed if e.data.condition is EtcdCondition.LEADER_CHANGED]
            assert changes, "the etcd probe saw no leader change"
            stable = [
                e for e in probed
                if e.data.condition is EtcdCondition.STABLE and e.time > changes[-1].time
            ]  # fmt: skip
            assert stable, "etcd was never reported stable after the leader change"
            since = stable[0].data.stable_since
            assert since is not None
            assert written[0].time >= since + timedelta(seconds=TIMINGS.etcd_stable_for)

            await releases.until("retrying", flux.READY, "True")  # helm-controller retried it
            about = [
                r for r in await rig.results() if r.data.object and r.data.object.name == "retrying"
            ]
            assert not about, about
        await plane.etcd.restart(leader)
    e2e.assert_services_exited_cleanly(rig)


def pending_revision(plane: ControlPlane, namespace: str, release: str) -> dict[str, Any]:
    """Revision 2 left `pending-upgrade`, as when helm-controller dies mid-upgrade (its lock
    10 minutes old); written as Helm's Secrets driver writes a new revision."""
    path = f"/api/v1/namespaces/{namespace}/secrets"
    first = plane.request("GET", f"{path}/{helm.secret_name(release, 1)}").body
    record = helm.decode_secret_data(first["data"][helm.DATA_KEY])
    pending = helm.with_status(
        {**record, "version": 2}, helm.ReleaseStatus.PENDING_UPGRADE, "Preparing upgrade"
    )
    modified = int(time.time()) - 600
    labels = helm.updated_labels({}, pending, modified)
    secret = {
        "apiVersion": "v1", "kind": "Secret", "type": helm.SECRET_TYPE,
        "metadata": {"name": helm.secret_name(release, 2), "namespace": namespace}
        | {"labels": labels},
        "data": {helm.DATA_KEY: helm.encode_secret_data(pending)},
    }  # fmt: skip
    created = plane.request("POST", path, secret)
    assert created.ok, created.body
    return dict(created.body)


async def test_s3_a_release_a_helmrelease_owns_is_unlocked_by_helm_controller_not_by_medic(
    releases: Flux, tmp_path: Path
) -> None:
    plane, ns = releases.plane, releases.namespace
    async with helm_controller(plane, tmp_path / "hc") as (controller, _proxy):
        releases.helmrelease("web")
        await releases.until_settled("web")
        pending_revision(plane, ns, "web")
        async with e2e.on_cluster(
            tmp_path / "medic", plane.kubeconfig, tuned_rules(TIMINGS), timings=TIMINGS
        ) as rig:
            done = await e2e.result_for(
                rig, helm.secret_name("web", 2), ["succeeded", "failed", "escalated"]
            )
            assert done.data.outcome.value == "succeeded", (
                done.data.reason,
                controller.logs()[-3000:],
            )
            assert done.data.diagnosis["owner"] == f"HelmRelease {ns}/web"
            written = [a for a in await rig.audit() if a.data.outcome == "written"]
            assert [(a.data.object.kind, a.data.object.name) for a in written] == [
                ("HelmRelease", "web")
            ]
            assert not written[0].data.backup_id  # Helm storage untouched: nothing to back up
        unlocked = plane.request(
            "GET", f"/api/v1/namespaces/{ns}/secrets/{helm.secret_name('web', 2)}"
        ).body
        record = helm.decode_secret_data(unlocked["data"][helm.DATA_KEY])
        assert record["info"]["status"] in {"failed", "superseded"}
        assert (
            record["info"]["description"] == "Release unlocked from stale 'pending-upgrade' state"
        )
        hr = releases.get("web")
        await releases.until_status(
            "web", "lastHandledReconcileAt", hr["metadata"]["annotations"][flux.REQUESTED_AT]
        )
