"""S2 drift loop: `report-drift` names the fields another writer keeps changing (the release's
manifest against the live objects) and suggests spec.driftDetection.ignore entries; it writes
nothing and escalates. Pure helpers, then the built-in rule on the sandbox with nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml

from medic.remediator.actions.report_drift import (
    drifting_fields,
    ignore_entries,
    manifest_objects,
    plural_of,
)
from medic.remediator.service import create
from medic.remediator.settings import RemediatorSettings
from medic.runtime import subjects
from medic.runtime.bus import Bus
from medic.runtime.consumer import Delivery
from medic.runtime.kube import KubeClient
from medic.runtime.settings import KubeSettings
from medic.sandbox import KubeSandbox
from medic.schemas import Evidence, Outcome, ReleaseProblem, RemediationResult
from medic.testing import objects
from medic.testing.factories import release_event
from medic.testing.helm import release_secret
from medic.testing.notifier import stream_messages
from medic.upstream import flux

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "podinfo", "labels": {"app": "podinfo"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "podinfo"}},
        "template": {
            "metadata": {"labels": {"app": "podinfo"}},
            "spec": {"containers": [{"name": "podinfo", "image": "podinfo:6.5.4"}]},
        },
    },
}
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "podinfo-cfg"}}
MANIFEST = "---\n# Source: podinfo/templates/deployment.yaml\n" + yaml.safe_dump_all(
    [DEPLOYMENT, CONFIGMAP]
)
MESSAGE = (
    "Cluster state of release apps/podinfo.v1 has drifted from the desired state:\n"
    "Deployment/apps/podinfo changed (0 additions, 1 changes, 0 removals)\n"
    "ConfigMap/apps/podinfo-cfg removed"
)


def live(replicas: int, image: str = "podinfo:6.5.4") -> dict[str, Any]:
    obj = yaml.safe_load(yaml.safe_dump(DEPLOYMENT))
    obj["metadata"] |= {"namespace": "apps", "uid": "d-1", "labels": {"app": "podinfo", "x": "y"}}
    obj["spec"]["replicas"] = replicas
    obj["spec"]["template"]["spec"]["containers"][0]["image"] = image
    obj["spec"]["strategy"] = {"type": "RollingUpdate"}  # set by the cluster, not the chart
    obj["status"] = {"replicas": replicas}
    return obj


def test_only_fields_the_manifest_sets_are_compared() -> None:
    assert drifting_fields(DEPLOYMENT, live(2)) == []
    assert drifting_fields(DEPLOYMENT, live(5, "podinfo:evil")) == [
        ("/spec/replicas", 2, 5),
        ("/spec/template/spec/containers/0/image", "podinfo:6.5.4", "podinfo:evil"),
    ]
    assert drifting_fields({"metadata": {"annotations": {"a/b": "1"}}}, {"metadata": {}}) == [
        ("/metadata/annotations/a~1b", "1", None)
    ]


def test_manifest_objects_default_to_the_release_namespace_and_ignore_lists_group_by_target() -> (
    None
):
    found = manifest_objects({"namespace": "apps", "manifest": MANIFEST})
    assert set(found) == {("Deployment", "apps", "podinfo"), ("ConfigMap", "apps", "podinfo-cfg")}
    drifts = {("Deployment", "apps", "podinfo"): [("/spec/replicas", 2, 5)]}
    assert ignore_entries(drifts) == [
        {"paths": ["/spec/replicas"], "target": {"kind": "Deployment", "name": "podinfo"}}
    ]
    assert [plural_of(k) for k in ("Deployment", "Ingress", "NetworkPolicy", "ConfigMap")] == [
        "deployments",
        "ingresses",
        "networkpolicies",
        "configmaps",
    ]


@pytest.fixture
async def sandbox() -> AsyncIterator[KubeSandbox]:
    async with KubeSandbox.start() as started:
        yield started


async def test_a_drift_loop_is_escalated_naming_the_fields_and_the_ignore_entry(
    bus: Bus, sandbox: KubeSandbox
) -> None:
    release = objects.helmrelease("podinfo", status=objects.ready_status("podinfo", "apps"))
    release["spec"]["driftDetection"] = {"mode": "enabled"}
    sandbox.store.put(release)
    sandbox.store.put(release_secret("podinfo", manifest=MANIFEST))
    sandbox.store.put(live(5))  # an HPA scaled it; helm-controller scales it back, again and again
    event = release_event("podinfo", problem=ReleaseProblem.DRIFT_LOOP, message=MESSAGE)
    event = event.model_copy(
        update={
            "data": event.data.model_copy(
                update={"evidence": Evidence(reason=flux.DRIFT_DETECTED, message=MESSAGE)}
            )
        }
    )
    kube = await KubeClient.connect(KubeSettings(kubeconfig=sandbox.kubeconfig_path))
    try:
        remediator = await create(bus, kube, RemediatorSettings(actor="test"), "test")
        delivery = Delivery(
            subject=f"medic.events.test.{event.subject_suffix()}",
            stream_sequence=1,
            num_delivered=1,
            is_last_attempt=False,
        )
        await remediator.handle(event, delivery)
    finally:
        await kube.close()

    [result] = [
        r
        for r in await stream_messages(bus, subjects.RESULTS.name)
        if isinstance(r, RemediationResult)
    ]
    assert result.data.rule == "flux-report-drift-loop"
    assert result.data.outcome is Outcome.ESCALATED
    assert "Deployment/apps/podinfo /spec/replicas (chart: 2, live: 5)" in result.data.reason
    diagnosis = result.data.diagnosis
    assert diagnosis["drift_detection_mode"] == "enabled"
    assert yaml.safe_load(diagnosis["suggested_ignore"]) == {
        "spec": {
            "driftDetection": {
                "ignore": [
                    {
                        "paths": ["/spec/replicas"],
                        "target": {"kind": "Deployment", "name": "podinfo"},
                    }
                ]
            }
        }
    }
    assert "ConfigMap/apps/podinfo-cfg removed" in diagnosis["notes"]
    assert result.data.changes == []
    assert sandbox.store.get("apps/v1", "Deployment", "podinfo", "apps")["spec"]["replicas"] == 5
