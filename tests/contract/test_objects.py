"""Writes Medic makes and the rules it relies on: CRUD, the status subresource, generation and
observedGeneration, resourceVersion preconditions (409), merge/JSON/strategic patches, the
error Status bodies and managedFields."""

from __future__ import annotations

from typing import Any

import pytest

from medic.runtime.kube import (
    ConflictError,
    InvalidError,
    KubeError,
    NotFoundError,
    PatchType,
)
from medic.testing.contract import CONFIGMAPS, HR, KubeApi, configmap, helmrelease

HR_V2BETA2 = HR.at("v2beta2")


async def test_create_get_replace_delete_round_trip(kube_api: KubeApi) -> None:
    kube, ns = kube_api.kube, kube_api.namespace
    created = await kube.create(CONFIGMAPS, configmap("c1", ns))
    meta = created["metadata"]
    assert meta["uid"]
    assert meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > 0
    assert await kube.get(CONFIGMAPS, "c1", ns) == created
    replaced = await kube.replace(CONFIGMAPS, {**created, "data": {"key": "other"}})
    assert replaced["data"] == {"key": "other"}
    assert int(replaced["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    assert replaced["metadata"]["uid"] == meta["uid"]
    await kube.delete(CONFIGMAPS, "c1", ns)
    with pytest.raises(NotFoundError):
        await kube.get(CONFIGMAPS, "c1", ns)


async def test_status_subresource_and_main_resource_ignore_each_others_part(
    kube_api: KubeApi,
) -> None:
    """The main resource drops status, /status drops everything but status. The real CRD
    defaults status.observedGeneration to -1; Medic reads a missing one as -1 too."""
    kube, ns = kube_api.kube, kube_api.namespace
    body = helmrelease("podinfo", ns)
    body["status"] = {"observedGeneration": 7}
    created = await kube.create(HR, body)
    assert (created.get("status") or {}).get("observedGeneration", -1) == -1
    status = {"observedGeneration": 1, "conditions": [_ready("False")]}
    patched = await kube.patch(
        HR,
        "podinfo",
        ns,
        {"spec": {"suspend": True}, "status": status},
        subresource="status",
    )
    assert patched["status"]["observedGeneration"] == 1
    assert "suspend" not in patched["spec"]
    main = await kube.patch(HR, "podinfo", ns, {"status": {"observedGeneration": 9}})
    assert main["status"]["observedGeneration"] == 1
    via_helper = await kube.patch_status(HR, "podinfo", ns, {"status": {"observedGeneration": 2}})
    assert via_helper["status"]["observedGeneration"] == 2


def _ready(status: str) -> dict[str, str]:
    return {
        "type": "Ready",
        "status": status,
        "reason": "InstallFailed",
        "message": "install failed",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


async def test_generation_moves_with_spec_only(kube_api: KubeApi) -> None:
    """Spec changes bump metadata.generation; metadata and status changes do not (the rule
    behind Medic's observedGeneration < generation staleness check)."""
    kube, ns = kube_api.kube, kube_api.namespace
    created = await kube.create(HR, helmrelease("podinfo", ns))
    assert created["metadata"]["generation"] == 1
    spec = await kube.patch(HR, "podinfo", ns, {"spec": {"interval": "10m"}})
    assert spec["metadata"]["generation"] == 2
    labelled = await kube.patch(HR, "podinfo", ns, {"metadata": {"labels": {"team": "a"}}})
    annotated = await kube.patch(
        HR, "podinfo", ns, {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "1"}}}
    )
    status = await kube.patch_status(HR, "podinfo", ns, {"status": {"observedGeneration": 2}})
    versions = [int(o["metadata"]["resourceVersion"]) for o in (spec, labelled, annotated, status)]
    assert versions == sorted(set(versions))  # every write moved the resourceVersion
    assert [o["metadata"]["generation"] for o in (labelled, annotated, status)] == [2, 2, 2]
    assert status["status"]["observedGeneration"] == status["metadata"]["generation"]


async def test_a_write_with_a_stale_resource_version_is_409(kube_api: KubeApi) -> None:
    """Medic writes with the resourceVersion it judged: PUT, merge patch, JSON patch and delete
    preconditions all answer 409 Conflict once someone else wrote, and succeed when fresh."""
    kube, ns = kube_api.kube, kube_api.namespace
    judged = await kube.create(HR, helmrelease("podinfo", ns))
    stale = judged["metadata"]["resourceVersion"]
    await kube.patch(HR, "podinfo", ns, {"metadata": {"labels": {"someone": "else"}}})
    with pytest.raises(ConflictError) as replaced:
        await kube.replace(HR, judged)
    assert replaced.value.reason == "Conflict"
    assert "the object has been modified" in replaced.value.message
    assert replaced.value.body["details"]["name"] == "podinfo"
    writes: list[tuple[PatchType, Any]] = [
        ("merge", {"spec": {"suspend": True}}),
        ("json", [{"op": "add", "path": "/spec/suspend", "value": True}]),
    ]
    for patch_type, body in writes:
        with pytest.raises(ConflictError):
            await kube.patch(HR, "podinfo", ns, body, patch_type, resource_version=stale)
    with pytest.raises(ConflictError):
        await kube.delete(HR, "podinfo", ns, resource_version=stale)
    fresh = (await kube.get(HR, "podinfo", ns))["metadata"]["resourceVersion"]
    written = await kube.patch(
        HR,
        "podinfo",
        ns,
        [{"op": "add", "path": "/spec/suspend", "value": True}],
        "json",
        resource_version=fresh,
    )
    assert written["spec"]["suspend"] is True
    fresh = written["metadata"]["resourceVersion"]
    written = await kube.patch(
        HR, "podinfo", ns, {"spec": {"suspend": False}}, resource_version=fresh
    )
    assert written["spec"]["suspend"] is False
    await kube.delete(HR, "podinfo", ns, resource_version=written["metadata"]["resourceVersion"])
    with pytest.raises(NotFoundError):
        await kube.get(HR, "podinfo", ns)


async def test_merge_json_and_strategic_patches(kube_api: KubeApi) -> None:
    kube, ns = kube_api.kube, kube_api.namespace
    await kube.create(CONFIGMAPS, configmap("c1", ns))
    merged = await kube.patch(CONFIGMAPS, "c1", ns, {"data": {"key": None, "added": "1"}})
    assert merged["data"] == {"added": "1"}
    operations = [
        {"op": "add", "path": "/data/second", "value": "2"},
        {"op": "replace", "path": "/data/added", "value": "one"},
        {"op": "remove", "path": "/data/second"},
    ]
    patched = await kube.patch(CONFIGMAPS, "c1", ns, operations, "json")
    assert patched["data"] == {"added": "one"}
    strategic = await kube.patch(CONFIGMAPS, "c1", ns, {"data": {"s": "3"}}, "strategic")
    assert strategic["data"] == {"added": "one", "s": "3"}
    with pytest.raises(InvalidError):  # a JSON patch that cannot apply is 422
        await kube.patch(CONFIGMAPS, "c1", ns, [{"op": "remove", "path": "/data/none"}], "json")
    await kube.create(HR, helmrelease("podinfo", ns))
    if not kube_api.real:  # sandbox LIMITS: strategic merge accepted for custom resources too
        return
    with pytest.raises(KubeError) as unsupported:  # no strategic merge for custom resources
        await kube.patch(HR, "podinfo", ns, {"spec": {"suspend": True}}, "strategic")
    assert unsupported.value.status == 415


async def test_error_status_bodies(kube_api: KubeApi) -> None:
    """404, 409 AlreadyExists and 422 carry a v1 Status with reason, code and details."""
    kube, ns = kube_api.kube, kube_api.namespace
    with pytest.raises(NotFoundError) as missing:
        await kube.get(CONFIGMAPS, "nope", ns)
    assert _status(missing.value) == (404, "NotFound", 'configmaps "nope" not found')
    assert missing.value.body["details"] == {"name": "nope", "kind": "configmaps"}
    with pytest.raises(NotFoundError) as missing_cr:
        await kube.get(HR, "nope", ns)
    assert _status(missing_cr.value) == (
        404,
        "NotFound",
        'helmreleases.helm.toolkit.fluxcd.io "nope" not found',
    )
    assert missing_cr.value.body["details"] == {
        "name": "nope",
        "group": "helm.toolkit.fluxcd.io",
        "kind": "helmreleases",
    }
    await kube.create(CONFIGMAPS, configmap("c1", ns))
    with pytest.raises(ConflictError) as exists:
        await kube.create(CONFIGMAPS, configmap("c1", ns))
    assert _status(exists.value) == (409, "AlreadyExists", 'configmaps "c1" already exists')
    assert exists.value.body["details"] == {"name": "c1", "kind": "configmaps"}
    with pytest.raises(InvalidError) as invalid:
        await kube.create(CONFIGMAPS, {"metadata": {"namespace": ns}, "data": {}})
    assert _status(invalid.value) == (
        422,
        "Invalid",
        'ConfigMap "" is invalid: metadata.name: Required value: name or generateName is required',
    )
    causes = invalid.value.body["details"]["causes"]
    assert [(c["field"], c["reason"]) for c in causes] == [("metadata.name", "FieldValueRequired")]


def _status(error: KubeError) -> tuple[int, str, str]:
    body = error.body
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == error.status
    return error.status, error.reason, error.message


async def test_managed_fields_name_manager_operation_version_and_subresource(
    kube_api: KubeApi,
) -> None:
    """Update entries are kept per manager, API version and subresource, and ordered by
    operation, time, manager, API version and subresource (apimachinery
    pkg/util/managedfields/internal/managedfields.go `BuildManagerIdentifier`,
    `sortEncodedManagedFields`): what Medic's migration and drift checks read."""
    kube, ns = kube_api.kube, kube_api.namespace
    await kube.create(HR, helmrelease("podinfo", ns))
    await kube.patch(HR_V2BETA2, "podinfo", ns, {"metadata": {"labels": {"a": "b"}}})
    await kube.patch_status(HR, "podinfo", ns, {"status": {"observedGeneration": 1}})
    await kube.patch(
        HR, "podinfo", ns, {"spec": {"suspend": True}}, field_manager="helm-controller"
    )
    entries = (await kube.get(HR, "podinfo", ns))["metadata"]["managedFields"]
    seen = {
        (e["manager"], e["operation"], e["apiVersion"], e.get("subresource", "")) for e in entries
    }
    assert seen == {
        ("medic", "Update", "helm.toolkit.fluxcd.io/v2", ""),
        ("medic", "Update", "helm.toolkit.fluxcd.io/v2beta2", ""),
        ("medic", "Update", "helm.toolkit.fluxcd.io/v2", "status"),
        ("helm-controller", "Update", "helm.toolkit.fluxcd.io/v2", ""),
    }
    assert all(e["fieldsType"] == "FieldsV1" and e["time"].endswith("Z") for e in entries)
    order = [
        (e["operation"], e["time"], e["manager"], e["apiVersion"], e.get("subresource", ""))
        for e in entries
    ]
    assert order == sorted(order)
