"""Discovery and versions: the preferred version the HelmRelease source watches, the resource
lists, one object read at every served version, and where it is stored (`storedVersions`)."""

from __future__ import annotations

from medic.remediator.actions.migrate_api_version import newest_write_versions
from medic.runtime.kube import ResourceType
from medic.testing.contract import HR, KubeApi, helmrelease
from medic.upstream import flux
from medic.watcher.sources.helmrelease import served_version

CRDS = ResourceType(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    "CustomResourceDefinition",
    namespaced=False,
)


async def test_discovery_names_groups_preferred_versions_and_resources(kube_api: KubeApi) -> None:
    kube = kube_api.kube
    version = await kube.request("GET", "/version")
    assert version["gitVersion"].startswith("v1.")
    assert await served_version(kube) == "v2"
    group = await kube.request("GET", f"/apis/{flux.GROUP}")
    assert group["kind"] == "APIGroup"
    assert group["preferredVersion"] == {"groupVersion": f"{flux.GROUP}/v2", "version": "v2"}
    assert {"v2", "v2beta2"} <= {v["version"] for v in group["versions"]}
    groups = await kube.request("GET", "/apis")
    listed = next(g for g in groups["groups"] if g["name"] == flux.GROUP)
    assert listed["preferredVersion"]["version"] == "v2"
    resources = await kube.request("GET", f"/apis/{flux.GROUP}/v2")
    by_name = {r["name"]: r for r in resources["resources"]}
    hr = by_name["helmreleases"]
    assert (hr["kind"], hr["namespaced"], hr["singularName"]) == (
        "HelmRelease",
        True,
        "helmrelease",
    )
    assert set(hr["verbs"]) >= {"get", "list", "watch", "create", "update", "patch", "delete"}
    assert "hr" in hr["shortNames"]
    assert set(by_name["helmreleases/status"]["verbs"]) == {"get", "patch", "update"}
    core = await kube.request("GET", "/api/v1")
    assert {"secrets", "configmaps", "namespaces", "events"} <= {
        r["name"] for r in core["resources"]
    }


async def test_one_object_at_every_served_version_stored_at_the_storage_version(
    kube_api: KubeApi,
) -> None:
    kube, ns = kube_api.kube, kube_api.namespace
    await kube.create(
        HR.at("v2beta2"), {**helmrelease("podinfo", ns), "apiVersion": f"{flux.GROUP}/v2beta2"}
    )
    for version in ("v2", "v2beta2"):
        read = await kube.get(HR.at(version), "podinfo", ns)
        assert read["apiVersion"] == f"{flux.GROUP}/{version}"
        assert read["spec"]["chart"]["spec"]["chart"] == "podinfo"
    listed, _ = await kube.list(HR.at("v2beta2"), ns)
    assert [i["apiVersion"] for i in listed] == [f"{flux.GROUP}/v2beta2"]
    crd = await kube.get(CRDS, "helmreleases.helm.toolkit.fluxcd.io")
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    assert versions["v2"]["storage"] is True
    assert versions["v2beta2"]["storage"] is False
    assert all(v["served"] for v in versions.values())
    assert versions["v2"]["subresources"] == {"status": {}}
    assert crd["status"]["storedVersions"] == ["v2"]
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"


async def test_a_write_through_the_target_version_is_seen_among_the_newest_writes(
    kube_api: KubeApi,
) -> None:
    """migrate-api-version verifies from managedFields: written through v2beta2 by one manager
    and through v2 by Medic within the same second, v2 must be among the newest writes even
    though the API server sorts that second's entries by manager, not by time."""
    kube, ns = kube_api.kube, kube_api.namespace
    old = {**helmrelease("legacy", ns), "apiVersion": f"{flux.GROUP}/v2beta2"}
    await kube.create(HR.at("v2beta2"), old)
    await kube.patch(
        HR.at("v2beta2"), "legacy", ns, {"spec": {"suspend": True}}, field_manager="zz-flux"
    )
    written = await kube.patch(
        HR, "legacy", ns, {"metadata": {"annotations": {flux.UPGRADE_TO: "v2"}}}
    )
    assert "v2" in newest_write_versions(written)
    before = {**helmrelease("fresh", ns), "apiVersion": f"{flux.GROUP}/v2beta2"}
    assert newest_write_versions(await kube.create(HR.at("v2beta2"), before)) == {"v2beta2"}
