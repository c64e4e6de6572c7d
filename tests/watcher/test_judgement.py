"""The sources' judgement, without I/O: objects in, findings out; the tracker's ids."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from medic.demo.scenarios import drift_event
from medic.schemas import MessageClass, ProblemState, ReleaseProblem
from medic.testing import objects
from medic.testing.helm import corrupt_release_secret, release_secret
from medic.upstream import etcd, flux, gardener
from medic.watcher.problems import ProblemTracker, object_ref
from medic.watcher.sources import (
    fleet,
    flux_crds,
    gardener_etcd,
    helm_storage,
    helmrelease,
    kube_events,
)
from medic.watcher.sources.conditions import classify
from medic.watcher.sources.kubernetes import ObjectSource, Tracked

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def source_of(module: Any, items: list[dict[str, Any]]) -> ObjectSource[Any]:
    src: ObjectSource[Any] = ObjectSource(
        name="t",
        cluster="test",
        kube=None,  # type: ignore[arg-type]
        rt=None,  # type: ignore[arg-type]
        project=module.project,
        judge=None,  # type: ignore[arg-type]
    )
    for obj in items:
        obj.setdefault("metadata", {}).setdefault("uid", obj["metadata"]["name"])
        projection = module.project(obj)
        if projection is not None:
            src.track(obj["metadata"]["uid"], Tracked(object_ref(obj), projection, NOW))
    return src


def test_messages_are_classified() -> None:
    assert classify("install failed: etcdserver: leader changed") == (
        MessageClass.TRANSIENT_ETCD,
        etcd.LEADER_CHANGED,
    )
    assert classify("dependency 'apps/redis' is not ready")[0] is MessageClass.DEPENDENCY_NOT_READY
    assert classify("context deadline exceeded")[0] is MessageClass.TIMEOUT
    assert classify("another operation (install/upgrade/rollback) is in progress")[0] is (
        MessageClass.OPERATION_IN_PROGRESS
    )
    assert classify("chart not found")[0] is MessageClass.OTHER


def test_helmrelease_failed_on_etcd_is_failed_and_stalled() -> None:
    obj = objects.helmrelease("podinfo", status=objects.etcd_failed_status("podinfo", "apps"))
    src = source_of(helmrelease, [obj])
    item = next(iter(src.tracked.values()))
    findings = helmrelease.judge(item, NOW, src, helmrelease.HelmReleaseSettings())
    problems = {f.problem: f for f in findings}
    assert set(problems) == {ReleaseProblem.FAILED, ReleaseProblem.STALLED}
    assert problems[ReleaseProblem.FAILED].classification is MessageClass.TRANSIENT_ETCD
    assert problems[ReleaseProblem.FAILED].etcd_error == etcd.LEADER_CHANGED


def test_healthy_helmrelease_has_no_findings() -> None:
    obj = objects.helmrelease("ok", status=objects.ready_status("ok", "apps"))
    src = source_of(helmrelease, [obj])
    item = next(iter(src.tracked.values()))
    assert helmrelease.judge(item, NOW, src, helmrelease.HelmReleaseSettings()) == []


def test_phantom_dependency_is_stale_only_when_every_dependency_is_ready() -> None:
    redis = objects.helmrelease("redis", status=objects.ready_status("redis", "apps"))
    app = objects.helmrelease(
        "web", depends_on=["redis"], status=objects.stale_status("apps/redis")
    )
    src = source_of(helmrelease, [redis, app])
    item = src.tracked["web"]
    findings = helmrelease.judge(item, NOW, src, helmrelease.HelmReleaseSettings())
    stale = [f for f in findings if f.problem is ReleaseProblem.STALE_STATUS]
    assert stale
    assert "dependency-ready" in stale[0].fingerprint
    assert "old-message-format" in stale[0].fingerprint
    redis["status"] = objects.etcd_failed_status("redis", "apps")
    src = source_of(helmrelease, [redis, app])
    findings = helmrelease.judge(src.tracked["web"], NOW, src, helmrelease.HelmReleaseSettings())
    stale = [f for f in findings if f.problem is ReleaseProblem.STALE_STATUS]
    assert "dependency-ready" not in stale[0].fingerprint


def test_helmrelease_written_through_an_old_version_is_not_a_migration_problem() -> None:
    """managedFields' apiVersion is the version a writer used, not how the object is stored
    (upstream-facts: Kubernetes); the CRD's storedVersions is the signal (flux_crds)."""
    obj = objects.helmrelease("old", status=objects.ready_status("old", "apps"))
    obj["metadata"]["managedFields"] = [
        {
            "manager": "helm-controller",
            "apiVersion": "helm.toolkit.fluxcd.io/v2beta1",
            "time": "2026-11-23T11:00:00Z",
            "operation": "Update",
        }
    ]
    src = source_of(helmrelease, [obj])
    findings = helmrelease.judge(src.tracked["old"], NOW, src, helmrelease.HelmReleaseSettings())
    assert findings == []


def crd(stored: list[str], storage: str = "v2", group: str = flux.GROUP) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"helmreleases.{group}", "uid": "crd-uid"},
        "spec": {
            "group": group,
            "names": {"kind": "HelmRelease", "plural": "helmreleases"},
            "versions": [{"name": v, "storage": v == storage} for v in flux.VERSIONS],
        },
        "status": {"storedVersions": stored},
    }


def test_flux_crd_with_stored_versions_besides_the_storage_version_is_reported() -> None:
    groups = frozenset({flux.GROUP})
    view = flux_crds.project(crd(["v2beta1", "v2"]), groups)
    assert view is not None
    item = Tracked(object_ref(crd(["v2beta1", "v2"])), view, NOW)
    (finding,) = flux_crds.judge(item, NOW, None)  # type: ignore[arg-type]
    assert finding.problem is ReleaseProblem.OLD_API_VERSION
    assert finding.evidence.fields["staleVersions"] == "v2beta1"
    assert finding.evidence.fields["storageVersion"] == "v2"
    trimmed = flux_crds.project(crd(["v2"]), groups)
    assert trimmed is not None
    assert flux_crds.judge(Tracked(item.obj_ref, trimmed, NOW), NOW, None) == []  # type: ignore[arg-type]
    assert flux_crds.project(crd(["v1", "v2"], group="example.com"), groups) is None


def test_pending_release_is_reported_only_after_the_threshold() -> None:
    young = release_secret("young", status="pending-install", modified_ago=10)
    settings = helm_storage.HelmStorageSettings(pending_after=60)
    src = source_of(helm_storage, [young])
    now = datetime.now(UTC)
    assert helm_storage.judge(next(iter(src.tracked.values())), now, src, settings) == []
    later = now + timedelta(seconds=120)
    findings = helm_storage.judge(next(iter(src.tracked.values())), later, src, settings)
    assert findings[0].problem is ReleaseProblem.PENDING
    assert findings[0].evidence.fields["revision"] == 1
    assert findings[0].evidence.fields["status"] == "pending-install"


def test_pending_revision_superseded_by_a_newer_one_is_not_stuck() -> None:
    old = release_secret("app", status="pending-upgrade", revision=1, modified_ago=900)
    new = release_secret("app", status="deployed", revision=2)
    src = source_of(helm_storage, [old, new])
    settings = helm_storage.HelmStorageSettings(pending_after=60)
    assert helm_storage.judge(src.tracked[old["metadata"]["name"]], NOW, src, settings) == []


def test_corrupt_release_secret_is_a_decode_error_finding() -> None:
    src = source_of(helm_storage, [corrupt_release_secret("bad")])
    settings = helm_storage.HelmStorageSettings()
    findings = helm_storage.judge(next(iter(src.tracked.values())), NOW, src, settings)
    assert findings[0].problem is ReleaseProblem.DECODE_ERROR


def test_gardener_operation_stuck_after_threshold_only_when_done() -> None:
    """ "Done" is Gardener's CheckEtcdObject (no lastErrors, observedGeneration == generation,
    AllMembersUpdated True when replicas > 0, ready), not readyReplicas == replicas."""
    obj = objects.gardener_etcd("etcd-main", "shoot--a")
    obj["metadata"]["generation"] = 1
    obj["metadata"]["managedFields"] = [{"time": "2026-11-23T11:00:00Z", "apiVersion": "x"}]
    src = source_of(gardener_etcd, [obj])
    settings = gardener_etcd.GardenerEtcdSettings(operation_after=300)
    findings = gardener_etcd.judge(src.tracked["etcd-main"], NOW, src, settings)
    assert [f.problem for f in findings] == [ReleaseProblem.OPERATION_STUCK]
    assert findings[0].evidence.fields["lastOperation"] == (
        "Reconcile Succeeded: Reconciliation succeeded"
    )
    not_done: list[Callable[[dict[str, Any]], None]] = [
        lambda o: o["status"]["conditions"][2].update(status="False"),  # AllMembersUpdated
        lambda o: o["status"].update(observedGeneration=0),
        lambda o: o["status"].update(ready=False),
        lambda o: o["status"].update(
            lastErrors=[{"code": "ERR", "description": "boom", "observedAt": "x"}]
        ),
    ]
    for spoil in not_done:
        spoilt = copy.deepcopy(obj)
        spoil(spoilt)
        src = source_of(gardener_etcd, [spoilt])
        problems = [
            f.problem for f in gardener_etcd.judge(src.tracked["etcd-main"], NOW, src, settings)
        ]
        assert ReleaseProblem.OPERATION_STUCK not in problems
    obj["status"]["readyReplicas"] = 2  # not part of Gardener's check
    src = source_of(gardener_etcd, [obj])
    assert gardener_etcd.judge(src.tracked["etcd-main"], NOW, src, settings)


def test_gardener_operation_stuck_under_druids_own_key() -> None:
    obj = objects.gardener_etcd("etcd-main", "shoot--a", key=gardener.DRUID_OPERATION)
    obj["metadata"]["generation"] = 1
    src = source_of(gardener_etcd, [obj])
    settings = gardener_etcd.GardenerEtcdSettings(operation_after=0)
    findings = gardener_etcd.judge(src.tracked["etcd-main"], NOW, src, settings)
    assert [f.problem for f in findings] == [ReleaseProblem.OPERATION_STUCK]
    assert findings[0].evidence.annotations == {gardener.DRUID_OPERATION: "reconcile"}


def test_fleet_bundle_error_is_reported() -> None:
    view = fleet.project(objects.bundledeployment("bd", "fleet-ns", error='secrets "bd" not found'))
    assert view.error


def test_kube_event_with_etcd_error_is_attributed() -> None:
    event = {
        "message": "Helm install failed: etcdserver: request timed out",
        "reason": "Failed",
        "metadata": {"uid": "e1"},
    }
    view = kube_events.project(event)
    assert view is not None
    item = Tracked(None, view, NOW)
    findings = kube_events.judge(item, NOW, None)
    assert findings[0].problem is ReleaseProblem.TRANSIENT_ETCD_ERROR
    assert kube_events.project({"message": "Pulled image", "metadata": {"uid": "e2"}}) is None


def test_repeated_drift_detected_event_is_a_drift_loop_from_the_threshold_on() -> None:
    release = objects.helmrelease("api", status=objects.ready_status("api", "apps"))
    summary = "Deployment/apps/api changed (0 additions, 1 changes, 0 removals)"
    for count, loops in ((1, False), (2, False), (3, True), (7, True)):
        event = drift_event(release, count, summary)
        event["metadata"]["uid"] = "drift-1"
        view = kube_events.project(event)
        assert view is not None
        findings = kube_events.judge(Tracked(None, view, NOW), NOW, None, drift_loop_after=3)
        assert bool(findings) is loops, count
        if loops:
            (finding,) = findings
            assert finding.problem is ReleaseProblem.DRIFT_LOOP
            assert finding.evidence.fields["drifted"] == "Deployment/apps/api changed"
            assert finding.evidence.fields["count"] == count


def test_tracker_emits_once_per_state_and_a_resolved_event() -> None:
    obj = objects.helmrelease("podinfo", status=objects.etcd_failed_status("podinfo", "apps"))
    obj["metadata"]["uid"] = "u1"
    src = source_of(helmrelease, [obj])
    item = src.tracked["u1"]
    settings = helmrelease.HelmReleaseSettings()
    tracker = ProblemTracker("test", "helmrelease")
    first = tracker.update(item.obj_ref, helmrelease.judge(item, NOW, src, settings), NOW)
    again = tracker.update(item.obj_ref, helmrelease.judge(item, NOW, src, settings), NOW)
    assert len(first) == 2
    assert again == []
    restarted = ProblemTracker("test", "helmrelease")
    replay = restarted.update(item.obj_ref, helmrelease.judge(item, NOW, src, settings), NOW)
    assert {e.id for e in replay} == {e.id for e in first}
    cleared = tracker.update(item.obj_ref, [], NOW)
    assert {e.data.state for e in cleared} == {ProblemState.RESOLVED}
    assert {e.id for e in cleared}.isdisjoint({e.id for e in first})


def test_a_failure_after_a_recovery_is_a_new_event() -> None:
    """Same reason and message, later transition: not swallowed by JetStream's dedup window."""
    settings = helmrelease.HelmReleaseSettings()
    ids = []
    for ago in (600.0, 60.0):
        status = objects.etcd_failed_status("podinfo", "apps")
        for condition in status["conditions"]:
            condition["lastTransitionTime"] = objects.timestamp(NOW, ago=ago)
        obj = objects.helmrelease("podinfo", status=status)
        obj["metadata"]["uid"] = "u1"
        src = source_of(helmrelease, [obj])
        item = src.tracked["u1"]
        events = ProblemTracker("test", "helmrelease").update(
            item.obj_ref, helmrelease.judge(item, NOW, src, settings), NOW
        )
        ids.append({e.id for e in events})
    assert len(ids[0]) == 2
    assert ids[0].isdisjoint(ids[1])


def test_what_the_real_helm_controller_writes_after_leader_changed_is_a_stalled_etcd_failure() -> (
    None
):
    """Recorded from helm-controller v1.4.3 on the real control plane (tests/e2e/
    test_real_s1_helm_controller.py): the install's ConfigMap create answered `etcdserver: leader
    changed`; with install retries 0 it stalls (RetriesExceeded) and Ready carries the error."""
    recorded = json.loads(
        (
            Path(__file__).parent / "fixtures" / "helmrelease-s1-stalled-on-leader-changed.json"
        ).read_text()
    )
    src = source_of(helmrelease, [recorded])
    item = next(iter(src.tracked.values()))
    findings = {
        f.problem: f for f in helmrelease.judge(item, NOW, src, helmrelease.HelmReleaseSettings())
    }
    assert set(findings) == {ReleaseProblem.FAILED, ReleaseProblem.STALLED}
    stalled = findings[ReleaseProblem.STALLED]
    assert stalled.classification is MessageClass.TRANSIENT_ETCD
    assert stalled.etcd_error == etcd.LEADER_CHANGED
    assert stalled.evidence.reason == "RetriesExceeded"


def test_a_failure_quotes_ready_and_the_reconcile_requests_as_of_the_judged_version() -> None:
    """What `retry` plans from without reading the release again: Ready's status and each
    request annotation (None: not on the object), as of the resourceVersion the event names."""
    obj = objects.helmrelease("podinfo", status=objects.etcd_failed_status("podinfo", "apps"))
    obj["metadata"]["annotations"] = {flux.REQUESTED_AT: "earlier", "unrelated": "x"}
    src = source_of(helmrelease, [obj])
    item = next(iter(src.tracked.values()))
    findings = helmrelease.judge(item, NOW, src, helmrelease.HelmReleaseSettings())
    assert len(findings) == 2
    for finding in findings:
        assert finding.evidence.fields == {
            "ready": "False",
            flux.REQUESTED_AT: "earlier",
            flux.RESET_AT: None,
            flux.FORCE_AT: None,
        }
