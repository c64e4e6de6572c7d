"""Remediator actions against the Kubernetes API sandbox and a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.js import api

from medic.remediator.service import RemediatorService, create
from medic.remediator.settings import RemediatorSettings
from medic.runtime import subjects
from medic.runtime.bus import Bus
from medic.runtime.consumer import Delivery
from medic.runtime.embedded_nats import EmbeddedNats
from medic.runtime.errors import Deferred
from medic.runtime.kube import KubeClient
from medic.runtime.settings import KubeSettings
from medic.sandbox import Fault, KubeSandbox
from medic.schemas import (
    AuditEntry,
    EtcdCondition,
    Outcome,
    ReleaseProblem,
    RemediationResult,
    decode_message,
)
from medic.testing import objects
from medic.testing.factories import etcd_event, release_event
from medic.testing.helm import release_secret
from medic.upstream import flux, helm

HR = "helm.toolkit.fluxcd.io/v2"


@pytest.fixture
async def sandbox() -> AsyncIterator[KubeSandbox]:
    async with KubeSandbox.start(bookmark_interval=0.2) as sb:
        yield sb


@pytest.fixture
async def kube(sandbox: KubeSandbox) -> AsyncIterator[KubeClient]:
    client = await KubeClient.connect(KubeSettings(kubeconfig=sandbox.kubeconfig_path))
    try:
        yield client
    finally:
        await client.close()


def rules_dir(tmp_path: Any, text: str) -> list[Any]:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return [path]


async def service(bus: Bus, kube: KubeClient, **overrides: Any) -> RemediatorService:
    settings = RemediatorSettings(actor="test", **overrides)
    return await create(bus, kube, settings, "test")


def delivery(event: Any) -> Delivery:
    return Delivery(
        subject=f"medic.events.test.{event.subject_suffix()}",
        stream_sequence=1,
        num_delivered=1,
        is_last_attempt=False,
    )


async def stream(bus: Bus, subject: str, stream_name: str) -> list[Any]:
    sub = await bus.js.pull_subscribe(subject, stream=stream_name, config=api.ConsumerConfig())
    found: list[Any] = []
    with contextlib.suppress(Exception):
        while True:
            found += [decode_message(m.data) for m in await sub.fetch(200, timeout=0.2)]
    await sub.unsubscribe()
    return found


async def results(bus: Bus) -> list[RemediationResult]:
    return await stream(bus, "medic.results.>", subjects.RESULTS.name)


def play_helm_controller(sandbox: KubeSandbox) -> None:
    """Flips a HelmRelease to Ready when a reconcile request appears, as helm-controller does
    (and records a reset or force handled when its token equals requestedAt: fluxcd/pkg
    HandleAnnotationRequest)."""

    def hook(store: Any, change: str, obj: dict[str, Any]) -> None:
        annotations = obj["metadata"].get("annotations") or {}
        token = annotations.get(flux.REQUESTED_AT)
        status = obj.get("status") or {}
        if change == "MODIFIED" and token and status.get("lastHandledReconcileAt") != token:
            name, ns = obj["metadata"]["name"], obj["metadata"]["namespace"]
            ready = {**objects.ready_status(name, ns), "lastHandledReconcileAt": token}
            for key, field in (
                (flux.RESET_AT, "lastHandledResetAt"),
                (flux.FORCE_AT, "lastHandledForceAt"),
            ):
                if annotations.get(key) == token:
                    ready[field] = token
            store.patch_merge(
                HR,
                "HelmRelease",
                name,
                ns,
                {"status": ready},
                status=True,
                manager="helm-controller",
            )

    sandbox.store.on_write("HelmRelease", hook)


def etcd_stable_long_ago(seq: int = 0) -> Any:
    """etcd reported stable since long ago: the S1 rule's `etcdStableFor` holds at once."""
    stable = etcd_event(EtcdCondition.STABLE, cluster="test", seq=seq)
    since = stable.time.replace(year=2025)
    return stable.model_copy(
        update={"data": stable.data.model_copy(update={"stable_since": since})}
    )


async def decided_once_etcd_is_stable(bus: Bus, kube: KubeClient, event: Any) -> Any:
    """The remediator's one result for `event`, handled after etcd was reported stable."""
    remediator = await service(bus, kube)
    stable = etcd_stable_long_ago()
    await remediator.handle(stable, delivery(stable))
    await remediator.handle(event, delivery(event))
    [result] = await results(bus)
    return result


async def test_s1_retry_waits_for_etcd_then_resets_and_is_verified(
    bus: Bus, kube: KubeClient, sandbox: KubeSandbox
) -> None:
    play_helm_controller(sandbox)
    sandbox.store.put(
        objects.helmrelease("podinfo", status=objects.etcd_failed_status("podinfo", "apps"))
    )
    remediator = await service(bus, kube)
    leader = etcd_event(EtcdCondition.LEADER_CHANGED, cluster="test")
    await remediator.handle(leader, delivery(leader))
    event = release_event("podinfo", cluster="test", problem=ReleaseProblem.STALLED)
    # etcd unstable: the event parks (no known end) until etcd's next state is recorded
    parked = asyncio.create_task(remediator.handle(event, delivery(event)))
    await asyncio.sleep(0.5)
    assert not parked.done()
    assert (sandbox.store.get(HR, "HelmRelease", "podinfo", "apps") or {})["metadata"].get(
        "annotations"
    ) is None
    stable = etcd_stable_long_ago(seq=1)
    await remediator.handle(stable, delivery(stable))
    await asyncio.wait_for(parked, 10)  # woken by the recorded state: acts and verifies
    hr = sandbox.store.get(HR, "HelmRelease", "podinfo", "apps") or {}
    annotations = hr["metadata"]["annotations"]
    assert annotations[flux.REQUESTED_AT] == annotations[flux.RESET_AT]
    assert hr["status"]["lastHandledReconcileAt"] == annotations[flux.REQUESTED_AT]
    [result] = await results(bus)
    assert result.data.outcome is Outcome.SUCCEEDED
    audits = await stream(bus, "medic.audit.>", subjects.AUDIT.name)
    assert [a.data.outcome for a in audits if isinstance(a, AuditEntry)] == ["written"]


def quoting_event(name: str, stored: dict[str, Any]) -> Any:
    """The stalled event as the helmrelease source emits it: the object's resourceVersion and
    what `retry` judges (Ready, the request annotations) quoted as of that version."""
    event = release_event(
        name,
        cluster="test",
        problem=ReleaseProblem.STALLED,
        fields={"ready": "False", flux.REQUESTED_AT: "earlier", flux.RESET_AT: None,
                flux.FORCE_AT: None},
    )  # fmt: skip
    version = stored["metadata"]["resourceVersion"]
    ref = event.data.object.model_copy(update={"resource_version": version})
    return event.model_copy(update={"data": event.data.model_copy(update={"object": ref})})


def requests_about(sandbox: KubeSandbox, name: str) -> list[tuple[str, int]]:
    return [
        (r.verb, r.status)
        for r in sandbox.store.requests
        if r.name == name and r.resource == "helmreleases"
    ]


async def test_s1_retry_plans_from_what_the_event_quotes_and_writes_without_reading_first(
    bus: Bus, kube: KubeClient, sandbox: KubeSandbox
) -> None:
    """One request per fix: the write is judged on the event's quote at its resourceVersion,
    which the write carries; the audit's `before` is the quoted annotation."""
    play_helm_controller(sandbox)
    release = objects.helmrelease("quoted", status=objects.etcd_failed_status("quoted", "apps"))
    release["metadata"]["annotations"] = {flux.REQUESTED_AT: "earlier"}
    stored = sandbox.store.put(release)
    result = await decided_once_etcd_is_stable(bus, kube, quoting_event("quoted", stored))
    assert result.data.outcome is Outcome.SUCCEEDED, result.data.reason
    # The first request is the write (a GET after it is the verification's own check).
    assert requests_about(sandbox, "quoted")[0] == ("patch", 200)
    [written] = [a for a in await stream(bus, "medic.audit.>", subjects.AUDIT.name)
                 if isinstance(a, AuditEntry) and a.data.outcome == "written"]  # fmt: skip
    assert written.data.before is not None
    before = {c["path"]: c["before"] for c in written.data.before["changes"]}
    assert before == {
        "/metadata/annotations/reconcile.fluxcd.io~1requestedAt": "earlier",
        "/metadata/annotations/reconcile.fluxcd.io~1resetAt": None,
    }


async def test_s1_retry_from_a_stale_quote_is_refused_and_judged_again_from_a_read(
    bus: Bus, kube: KubeClient, sandbox: KubeSandbox
) -> None:
    """helm-controller made the release Ready after the watcher quoted it: the write at the
    quoted version is refused (409), the release is read, and nothing is written."""
    stored = sandbox.store.put(
        objects.helmrelease("moved", status=objects.etcd_failed_status("moved", "apps"))
    )
    event = quoting_event("moved", stored)
    sandbox.store.patch_merge(
        HR, "HelmRelease", "moved", "apps", {"status": objects.ready_status("moved", "apps")},
        status=True, manager="helm-controller",
    )  # fmt: skip
    result = await decided_once_etcd_is_stable(bus, kube, event)
    assert result.data.outcome is Outcome.SKIPPED
    assert result.data.reason == "already-fixed: already-ready"
    assert requests_about(sandbox, "moved") == [("patch", 409), ("get", 200)]
    assert (
        "annotations"
        not in (sandbox.store.get(HR, "HelmRelease", "moved", "apps") or {})["metadata"]
    )


async def test_s1_retry_from_a_quote_of_a_release_deleted_since_is_judged_again_not_retried(
    bus: Bus, kube: KubeClient, sandbox: KubeSandbox
) -> None:
    """The release was deleted after the watcher quoted it: the write finds nothing (404), the
    release is read, and the decision ends `object-deleted` instead of failing until it is
    dead-lettered."""
    stored = sandbox.store.put(
        objects.helmrelease("gone", status=objects.etcd_failed_status("gone", "apps"))
    )
    event = quoting_event("gone", stored)
    sandbox.store.delete(HR, "HelmRelease", "gone", "apps")
    result = await decided_once_etcd_is_stable(bus, kube, event)
    assert result.data.outcome is Outcome.SKIPPED
    assert result.data.reason == "already-fixed: object-deleted"
    assert requests_about(sandbox, "gone") == [("patch", 404), ("get", 404)]


async def test_problem_cleared_before_action_is_skipped(
    bus: Bus, kube: KubeClient, sandbox: KubeSandbox
) -> None:
    sandbox.store.put(objects.helmrelease("healed", status=objects.ready_status("healed", "apps")))
    event = release_event("healed", cluster="test", problem=ReleaseProblem.STALLED)
    result = await decided_once_etcd_is_stable(bus, kube, event)
    assert result.data.outcome is Outcome.SKIPPED
    assert result.data.reason.startswith("already-fixed")
    assert (
        "annotations"
        not in (sandbox.store.get(HR, "HelmRelease", "healed", "apps") or {})["metadata"]
    )


async def test_conflict_is_rejudged_and_written_once(
    bus: Bus, kube: KubeClient, sandbox: KubeSandbox, tmp_path: Any
) -> None:
    sandbox.store.put(objects.helmrelease("web", status=objects.etcd_failed_status("web", "apps")))
    rule = """apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: label-it}
spec:
  match: {problems: [failed]}
  action: {name: label, params: {values: {medic.dev/seen: "yes"}}}
"""
    remediator = await service(bus, kube, builtin_rules=False, rules=rules_dir(tmp_path, rule))
    sandbox.store.inject(
        Fault(
            verb="patch",
            resource="helmreleases",
            status=409,
            message="the object has been modified",
        )
    )
    event = release_event("web", cluster="test")
    await remediator.handle(event, delivery(event))
    hr = sandbox.store.get(HR, "HelmRelease", "web", "apps") or {}
    assert hr["metadata"]["labels"]["medic.dev/seen"] == "yes"
    patches = [r for r in sandbox.store.requests if r.verb == "patch"]
    assert len(patches) == 2
    [result] = await results(bus)
    assert result.data.outcome is Outcome.SUCCEEDED


async def test_clear_pending_backs_up_refuses_on_rbac_and_restores(
    bus: Bus, kube: KubeClient, sandbox: KubeSandbox, nats_server: EmbeddedNats, tmp_path: Any
) -> None:
    secret = release_secret("app", "apps", status="pending-install", modified_ago=900)
    sandbox.store.put(secret)
    name = helm.secret_name("app", 1)
    event = release_event(name, "apps", cluster="test").model_copy()
    event = event.model_copy(
        update={
            "data": event.data.model_copy(
                update={
                    "problem": ReleaseProblem.PENDING,
                    "object": event.data.object.model_copy(
                        update={"kind": "Secret", "api_version": "v1"}
                    ),
                }
            )
        }
    )
    remediator = await service(bus, kube)
    with pytest.raises(Deferred) as deferred:  # re-planned later: the RBAC may get fixed
        await remediator.handle(event, delivery(event))
    assert deferred.value.delay == 30.0
    [refused] = await results(bus)
    assert refused.data.outcome is Outcome.ESCALATED
    assert refused.data.diagnosis["allowed"]["update"] is False
    with pytest.raises(Deferred):  # still broken: planned again, nothing written, nobody re-told
        await remediator.handle(event, delivery(event))
    assert [r.data.outcome for r in await results(bus)] == [Outcome.ESCALATED]
    assert not [r for r in sandbox.store.requests if r.verb in {"update", "patch"}]
    sandbox.store.put(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "helm", "namespace": "apps"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}],
        }
    )
    sandbox.store.put(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "helm", "namespace": "apps"},
            "roleRef": {"kind": "Role", "name": "helm"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "apps"}],
        }
    )
    await remediator.handle(event, delivery(event))  # the same event, once the RBAC is fixed
    stored = sandbox.store.get("v1", "Secret", name, "apps") or {}
    assert stored["metadata"]["labels"]["status"] == "failed"
    assert helm.decode_secret_data(stored["data"]["release"])["info"]["status"] == "failed"
    found = await results(bus)
    cleared = [r for r in found if r.data.outcome is Outcome.SUCCEEDED]
    assert cleared
    audits = [
        a
        for a in await stream(bus, "medic.audit.>", subjects.AUDIT.name)
        if isinstance(a, AuditEntry)
    ]
    backup_id = audits[-1].data.backup_id
    assert backup_id
    env = {
        **os.environ,
        "MEDIC_NATS__URLS": nats_server.url,
        "MEDIC_KUBE__KUBECONFIG": str(sandbox.kubeconfig_path),
        "MEDIC_LOG_FORMAT": "json",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "medic.cli",
        "backup",
        "restore",
        backup_id,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()
    restored = sandbox.store.get("v1", "Secret", name, "apps") or {}
    assert restored["metadata"]["labels"]["status"] == "pending-install"


async def test_attempt_limit_escalates_and_circuit_breaker_opens(
    bus: Bus, kube: KubeClient, sandbox: KubeSandbox, tmp_path: Any
) -> None:
    rule = """apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: never-works}
spec:
  match: {problems: [failed]}
  action: {name: retry}
  limits: {maxAttempts: 1, backoff: 0s, circuitBreaker: {failures: 2, window: 10m, pause: 1h}}
  verify: {timeout: 0.3s, interval: 0.1s}
"""
    remediator = await service(bus, kube, builtin_rules=False, rules=rules_dir(tmp_path, rule))
    for name in ("a", "b", "c"):
        sandbox.store.put(
            objects.helmrelease(name, status=objects.etcd_failed_status(name, "apps"))
        )
    for name in ("a", "b"):
        event = release_event(name, cluster="test")
        with pytest.raises(Exception, match="waiting"):
            await remediator.handle(event, delivery(event))
        await remediator.handle(event, delivery(event))
    third = release_event("c", cluster="test")
    await remediator.handle(third, delivery(third))
    outcomes = [
        (r.data.object.name, r.data.outcome.value, r.data.reason) for r in await results(bus)
    ]
    assert ("a", "failed", "not verified in time") in outcomes
    assert ("a", "escalated", "1 attempts did not fix it") in outcomes
    assert ("c", "skipped", "circuit-open") in outcomes
    assert (
        "annotations" not in (sandbox.store.get(HR, "HelmRelease", "c", "apps") or {})["metadata"]
    )
