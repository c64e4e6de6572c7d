"""The sandbox against the real kubernetes_asyncio client, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.rest import ApiException
from kubernetes_asyncio.dynamic import DynamicClient

from medic.sandbox import Fault, KubeSandbox

HR = ("helm.toolkit.fluxcd.io", "v2", "helmreleases")


def helmrelease(name: str, namespace: str = "apps", version: str = "v2", **labels: str) -> dict:
    return {
        "apiVersion": f"helm.toolkit.fluxcd.io/{version}",
        "kind": "HelmRelease",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"interval": "5m", "chart": {"spec": {"chart": name}}},
    }


async def test_continue_resumes_after_the_last_key_returned(kube_sandbox: KubeSandbox, api) -> None:
    """As the API server: writes between pages neither skip nor repeat an object, and every
    page carries the version of the first (the watch that follows replays the writes)."""
    custom = client.CustomObjectsApi(api)
    for i in range(6):
        kube_sandbox.store.put(helmrelease(f"hr-{i}"))
    first = await custom.list_namespaced_custom_object(*HR[:2], "apps", HR[2], limit=3)
    listed_at = first["metadata"]["resourceVersion"]
    assert [i["metadata"]["name"] for i in first["items"]] == ["hr-0", "hr-1", "hr-2"]
    await custom.delete_namespaced_custom_object(*HR[:2], "apps", HR[2], "hr-0")
    kube_sandbox.store.put(helmrelease("hr-1a"))  # sorts into the page already returned
    kube_sandbox.store.put(helmrelease("hr-4a"))  # sorts into the page to come
    rest = await custom.list_namespaced_custom_object(
        *HR[:2], "apps", HR[2], limit=3, _continue=first["metadata"]["continue"]
    )
    assert [i["metadata"]["name"] for i in rest["items"]] == ["hr-3", "hr-4", "hr-4a"]
    assert rest["metadata"]["resourceVersion"] == listed_at
    assert rest["metadata"]["remainingItemCount"] == 1
    last = await custom.list_namespaced_custom_object(
        *HR[:2], "apps", HR[2], limit=3, _continue=rest["metadata"]["continue"]
    )
    assert [i["metadata"]["name"] for i in last["items"]] == ["hr-5"]
    assert not last["metadata"].get("continue")


async def test_discovery_and_version(kube_sandbox: KubeSandbox, api) -> None:
    info = await client.VersionApi(api).get_code()
    assert info.git_version == "v1.31.0"
    groups = await client.ApisApi(api).get_api_versions()
    helm = next(g for g in groups.groups if g.name == "helm.toolkit.fluxcd.io")
    assert helm.preferred_version.version == "v2"
    dyn = await DynamicClient(api)
    resource = await dyn.resources.get(api_version="helm.toolkit.fluxcd.io/v2", kind="HelmRelease")
    assert resource.namespaced
    assert resource.name == "helmreleases"
    kube_sandbox.store.put(helmrelease("podinfo"))
    found = await resource.get(name="podinfo", namespace="apps")
    assert found.spec.chart.spec.chart == "podinfo"
    crd = await client.ApiextensionsV1Api(api).read_custom_resource_definition(
        "helmreleases.helm.toolkit.fluxcd.io"
    )
    assert crd.spec.versions[-1].subresources.status == {}


async def test_create_get_list_with_paging_and_selectors(kube_sandbox: KubeSandbox, api) -> None:
    custom = client.CustomObjectsApi(api)
    for i in range(7):
        await custom.create_namespaced_custom_object(
            *HR[:2], "apps", HR[2], helmrelease(f"hr-{i}", tier="a" if i % 2 else "b")
        )
    kube_sandbox.store.put(helmrelease("other", namespace="infra"))
    with pytest.raises(ApiException) as exc:
        await custom.create_namespaced_custom_object(*HR[:2], "apps", HR[2], helmrelease("hr-0"))
    assert exc.value.status == 409
    assert json.loads(exc.value.body)["reason"] == "AlreadyExists"

    names, token = [], None
    while True:
        page = await custom.list_namespaced_custom_object(
            *HR[:2], "apps", HR[2], limit=3, _continue=token
        )
        names += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break
    assert names == [f"hr-{i}" for i in range(7)]
    everywhere = await custom.list_cluster_custom_object(*HR)
    assert len(everywhere["items"]) == 8
    assert int(everywhere["metadata"]["resourceVersion"]) == kube_sandbox.store.rv
    selected = await custom.list_cluster_custom_object(*HR, label_selector="tier in (a),tier!=b")
    assert [i["metadata"]["name"] for i in selected["items"]] == ["hr-1", "hr-3", "hr-5"]
    none = await custom.list_cluster_custom_object(*HR, label_selector="!tier")
    assert [i["metadata"]["name"] for i in none["items"]] == ["other"]
    by_field = await custom.list_cluster_custom_object(
        *HR, field_selector="metadata.namespace=infra"
    )
    assert [i["metadata"]["name"] for i in by_field["items"]] == ["other"]

    core = client.CoreV1Api(api)
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name="sh.helm.release.v1.podinfo.v1"),
        type="helm.sh/release.v1",
        data={"release": "e30="},
    )
    await core.create_namespaced_secret("apps", secret)
    listed = await core.list_secret_for_all_namespaces(field_selector="type=helm.sh/release.v1")
    assert [s.metadata.name for s in listed.items] == ["sh.helm.release.v1.podinfo.v1"]
    stored = await core.read_namespaced_secret("sh.helm.release.v1.podinfo.v1", "apps")
    assert stored.metadata.uid
    assert stored.metadata.managed_fields[0].manager
    namespaces = await core.list_namespace()
    assert {"apps", "infra", "default"} <= {n.metadata.name for n in namespaces.items}


async def test_three_patch_types_and_status_subresource(kube_sandbox: KubeSandbox, api) -> None:
    custom = client.CustomObjectsApi(api)
    created = await custom.create_namespaced_custom_object(
        *HR[:2], "apps", HR[2], helmrelease("podinfo")
    )
    assert created["metadata"]["generation"] == 1
    merged = await custom.patch_namespaced_custom_object(
        *HR[:2],
        "apps",
        HR[2],
        "podinfo",
        {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "now"}}},
        _content_type="application/merge-patch+json",
    )
    assert merged["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"] == "now"
    assert merged["metadata"]["generation"] == 1
    assert int(merged["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    jsonp = await custom.patch_namespaced_custom_object(
        *HR[:2],
        "apps",
        HR[2],
        "podinfo",
        [{"op": "replace", "path": "/spec/interval", "value": "1m"}],
        _content_type="application/json-patch+json",
    )
    assert jsonp["spec"]["interval"] == "1m"
    assert jsonp["metadata"]["generation"] == 2

    status = {"conditions": [{"type": "Ready", "status": "False", "reason": "InstallFailed"}]}
    after = await custom.patch_namespaced_custom_object_status(
        *HR[:2],
        "apps",
        HR[2],
        "podinfo",
        {"status": status},
        _content_type="application/merge-patch+json",
    )
    assert after["status"] == status
    assert after["metadata"]["generation"] == 2
    ignored = await custom.patch_namespaced_custom_object(
        *HR[:2],
        "apps",
        HR[2],
        "podinfo",
        {"status": {"conditions": []}},
        _content_type="application/merge-patch+json",
    )
    assert ignored["status"] == status  # status changes on the main resource are ignored
    strategic = await custom.patch_namespaced_custom_object_status(
        *HR[:2],
        "apps",
        HR[2],
        "podinfo",
        {"status": {"conditions": [{"type": "Released", "status": "True"}]}},
        _content_type="application/strategic-merge-patch+json",
    )
    assert [c["type"] for c in strategic["status"]["conditions"]] == ["Ready", "Released"]

    core = client.CoreV1Api(api)
    await core.create_namespaced_secret(
        "apps", client.V1Secret(metadata=client.V1ObjectMeta(name="s"), string_data={"a": "b"})
    )
    patched = await core.patch_namespaced_secret("s", "apps", {"metadata": {"labels": {"x": "y"}}})
    assert patched.metadata.labels == {"x": "y"}
    record = next(r for r in reversed(kube_sandbox.store.requests) if r.verb == "patch")
    assert record.resource == "secrets"
    assert record.content_type.startswith("application/strategic-merge-patch+json")
    assert record.body == {"metadata": {"labels": {"x": "y"}}}


async def test_conflict_on_stale_update_then_retry(kube_sandbox: KubeSandbox, api) -> None:
    custom = client.CustomObjectsApi(api)
    kube_sandbox.store.put(helmrelease("podinfo"))
    stale = await custom.get_namespaced_custom_object(*HR[:2], "apps", HR[2], "podinfo")
    kube_sandbox.store.patch_merge(
        "helm.toolkit.fluxcd.io/v2", "HelmRelease", "podinfo", "apps", {"spec": {"suspend": True}}
    )
    stale["metadata"].setdefault("annotations", {})["x"] = "1"
    with pytest.raises(ApiException) as exc:
        await custom.replace_namespaced_custom_object(*HR[:2], "apps", HR[2], "podinfo", stale)
    assert exc.value.status == 409
    assert json.loads(exc.value.body)["reason"] == "Conflict"
    fresh = await custom.get_namespaced_custom_object(*HR[:2], "apps", HR[2], "podinfo")
    fresh["metadata"].setdefault("annotations", {})["x"] = "1"
    done = await custom.replace_namespaced_custom_object(*HR[:2], "apps", HR[2], "podinfo", fresh)
    assert done["metadata"]["annotations"]["x"] == "1"
    assert done["spec"]["suspend"] is True

    with pytest.raises(ApiException) as exc:
        await custom.delete_namespaced_custom_object(
            *HR[:2],
            "apps",
            HR[2],
            "podinfo",
            body=client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version="1")),
        )
    assert exc.value.status == 409
    await custom.delete_namespaced_custom_object(*HR[:2], "apps", HR[2], "podinfo")
    with pytest.raises(ApiException) as exc:
        await custom.delete_namespaced_custom_object(*HR[:2], "apps", HR[2], "podinfo")
    assert exc.value.status == 404
    body = json.loads(exc.value.body)
    assert body["kind"] == "Status"
    assert body["details"] == {"name": "podinfo", "group": HR[0], "kind": "helmreleases"}


async def test_versions_and_storage_version(kube_sandbox: KubeSandbox, api) -> None:
    store = kube_sandbox.store
    store.set_storage_version("helm.toolkit.fluxcd.io", "HelmRelease", "v2beta1")
    store.put(helmrelease("podinfo", version="v2beta1"))
    custom = client.CustomObjectsApi(api)
    old = await custom.get_namespaced_custom_object(
        "helm.toolkit.fluxcd.io", "v2beta1", "apps", "helmreleases", "podinfo"
    )
    new = await custom.get_namespaced_custom_object(*HR[:2], "apps", HR[2], "podinfo")
    assert old["apiVersion"] == "helm.toolkit.fluxcd.io/v2beta1"
    assert new["apiVersion"] == "helm.toolkit.fluxcd.io/v2"
    assert old["metadata"]["uid"] == new["metadata"]["uid"]
    assert (
        store.stored_version("helm.toolkit.fluxcd.io", "HelmRelease", "podinfo", "apps")
        == "v2beta1"
    )
    store.set_storage_version("helm.toolkit.fluxcd.io", "HelmRelease", "v2")
    assert (
        store.stored_version("helm.toolkit.fluxcd.io", "HelmRelease", "podinfo", "apps")
        == "v2beta1"
    )
    await custom.patch_namespaced_custom_object(
        *HR[:2],
        "apps",
        HR[2],
        "podinfo",
        {"spec": {"interval": "1m"}},
        _content_type="application/merge-patch+json",
    )
    assert (
        store.stored_version("helm.toolkit.fluxcd.io/v2", "HelmRelease", "podinfo", "apps") == "v2"
    )
    crd = store.crds()[0]
    assert crd["status"]["storedVersions"] == ["v2", "v2beta1"]


async def test_watch_resume_after_drop_and_410_after_compact(
    kube_sandbox: KubeSandbox, api
) -> None:
    store = kube_sandbox.store
    custom = client.CustomObjectsApi(api)
    store.put(helmrelease("a"))
    seen: list[tuple[str, str]] = []
    last_rv = None

    async def consume(stream) -> None:
        nonlocal last_rv
        async for event in stream:
            seen.append((event["type"], event["object"]["metadata"]["name"]))
            last_rv = event["object"]["metadata"]["resourceVersion"]
            if len(seen) == 1:
                store.put(helmrelease("b"))
            elif len(seen) == 2:
                store.inject(Fault(verb="watch", resource="helmreleases", drop_watch=True))
                store.put(helmrelease("c"))  # may or may not arrive before the drop

    async with watch.Watch() as w:
        stream = w.stream(
            custom.list_namespaced_custom_object, *HR[:2], "apps", HR[2], timeout_seconds=10
        )
        with pytest.raises(aiohttp.ClientError):
            await consume(stream)
    assert seen[:2] == [("ADDED", "a"), ("ADDED", "b")]
    store.put(helmrelease("d"))
    async with watch.Watch() as w:
        stream = w.stream(
            custom.list_namespaced_custom_object,
            *HR[:2],
            "apps",
            HR[2],
            resource_version=last_rv,
            timeout_seconds=1,
        )
        resumed = [(e["type"], e["object"]["metadata"]["name"]) async for e in stream]
    assert seen[2:] + resumed == [("ADDED", "c"), ("ADDED", "d")]

    store.compact()
    store.put(helmrelease("e"))
    async with watch.Watch() as w:
        stream = w.stream(
            custom.list_namespaced_custom_object,
            *HR[:2],
            "apps",
            HR[2],
            resource_version=last_rv,
            timeout_seconds=1,
        )
        with pytest.raises(ApiException) as exc:
            async for _ in stream:
                pass
    assert exc.value.status == 410
    relisted = await custom.list_namespaced_custom_object(*HR[:2], "apps", HR[2])
    assert [i["metadata"]["name"] for i in relisted["items"]] == ["a", "b", "c", "d", "e"]


async def test_watch_bookmarks_selectors_and_deletes(kube_sandbox: KubeSandbox, api) -> None:
    store = kube_sandbox.store
    core = client.CoreV1Api(api)
    store.put(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s0", "namespace": "apps"}}
    )
    rv = str(store.rv)
    events: list[tuple[str, str]] = []
    async with watch.Watch() as w:
        stream = w.stream(
            core.list_namespaced_secret,
            "apps",
            resource_version=rv,
            allow_watch_bookmarks=True,
            label_selector="keep",
            timeout_seconds=2,
        )
        async for event in stream:
            if event["type"] == "BOOKMARK":
                events.append(("BOOKMARK", event["raw_object"]["metadata"]["resourceVersion"]))
                if len(events) == 1:
                    store.put(
                        {
                            "apiVersion": "v1",
                            "kind": "Secret",
                            "metadata": {"name": "s1", "namespace": "apps", "labels": {"keep": ""}},
                        }
                    )
                    store.put(
                        {
                            "apiVersion": "v1",
                            "kind": "Secret",
                            "metadata": {"name": "s2", "namespace": "apps"},
                        }
                    )
                    store.delete("v1", "Secret", "s1", "apps")
                    store.delete("v1", "Secret", "s0", "apps")
            else:
                events.append((event["type"], event["object"].metadata.name))
            if sum(e[0] == "BOOKMARK" for e in events) >= 2 and len(events) >= 4:
                w.stop()
    kinds = [e for e in events if e[0] != "BOOKMARK"]
    assert kinds == [("ADDED", "s1"), ("DELETED", "s1")]


async def test_subject_access_review_follows_rbac(kube_sandbox: KubeSandbox, api) -> None:
    authz = client.AuthorizationV1Api(api)
    user = "system:serviceaccount:apps:deployer"
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=user,
            resource_attributes=client.V1ResourceAttributes(
                namespace="apps", verb="update", resource="secrets", name="x"
            ),
        )
    )
    denied = await authz.create_subject_access_review(review)
    assert denied.status.allowed is False
    store = kube_sandbox.store
    store.add_rbac(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "secrets-writer", "namespace": "apps"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "update"]}],
        }
    )
    store.add_rbac(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "deployer", "namespace": "apps"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "secrets-writer",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": "apps"}],
        }
    )
    allowed = await authz.create_subject_access_review(review)
    assert allowed.status.allowed is True
    review.spec.resource_attributes.namespace = "other"
    assert (await authz.create_subject_access_review(review)).status.allowed is False
    me = await authz.create_self_subject_access_review(
        client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(verb="delete", resource="secrets")
            )
        )
    )
    assert me.status.allowed is True


async def test_faults_429_500_and_latency(kube_sandbox: KubeSandbox, api) -> None:
    store = kube_sandbox.store
    custom = client.CustomObjectsApi(api)
    store.put(helmrelease("podinfo"))
    store.inject(
        Fault(verb="get", resource="helmreleases", status=429, message="slow down", retry_after=2)
    )
    with pytest.raises(ApiException) as exc:
        await custom.get_namespaced_custom_object(*HR[:2], "apps", HR[2], "podinfo")
    assert exc.value.status == 429
    assert exc.value.headers["Retry-After"] == "2"
    body = json.loads(exc.value.body)
    assert (body["reason"], body["details"]["retryAfterSeconds"]) == ("TooManyRequests", 2)

    store.inject(Fault(verb="patch", resource="helmreleases", name="podinfo", times=2))
    for _ in range(2):
        with pytest.raises(ApiException) as exc:
            await custom.patch_namespaced_custom_object(
                *HR[:2],
                "apps",
                HR[2],
                "podinfo",
                {"spec": {"suspend": True}},
                _content_type="application/merge-patch+json",
            )
        assert exc.value.status == 500
        assert json.loads(exc.value.body)["message"] == "etcdserver: leader changed"
    await custom.patch_namespaced_custom_object(
        *HR[:2],
        "apps",
        HR[2],
        "podinfo",
        {"spec": {"suspend": True}},
        _content_type="application/merge-patch+json",
    )
    failed = [r.status for r in store.requests if r.verb == "patch"]
    assert failed == [500, 500, 200]

    store.inject(Fault(verb="list", resource="helmreleases", latency=0.3))
    started = time.monotonic()
    await custom.list_namespaced_custom_object(*HR[:2], "apps", HR[2])
    assert time.monotonic() - started >= 0.3


async def test_hooks_and_wait_for(kube_sandbox: KubeSandbox, api) -> None:
    store = kube_sandbox.store

    def helm_controller(store_, event_type, obj) -> None:
        if (
            event_type != "DELETED"
            and obj["metadata"]["annotations"].get("go")
            and "status" not in obj
        ):
            store_.patch_merge(
                obj["apiVersion"],
                "HelmRelease",
                obj["metadata"]["name"],
                obj["metadata"]["namespace"],
                {"status": {"observedGeneration": 1}},
            )

    store.on_write("HelmRelease", helm_controller)
    custom = client.CustomObjectsApi(api)
    body = helmrelease("podinfo")
    body["metadata"]["annotations"] = {"go": "yes"}
    await custom.create_namespaced_custom_object(*HR[:2], "apps", HR[2], body)
    await store.wait_for(
        lambda s: (
            (s.get("helm.toolkit.fluxcd.io/v2", "HelmRelease", "podinfo", "apps") or {}).get(
                "status"
            )
            == {"observedGeneration": 1}
        ),
        timeout=2,
    )
    with pytest.raises(TimeoutError):
        await store.wait_for(lambda s: False, timeout=0.1)


async def test_control_api(kube_sandbox: KubeSandbox) -> None:
    manifest = "\n---\n".join(json.dumps(helmrelease(n)) for n in ("x", "y"))
    async with aiohttp.ClientSession(kube_sandbox.url) as http:
        async with http.post("/sandbox/objects", data=manifest) as resp:
            assert resp.status == 201
        async with http.post("/sandbox/faults", json={"verb": "get", "status": 503}) as resp:
            assert resp.status == 201
        async with http.get(
            "/apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/helmreleases/x"
        ) as resp:
            assert resp.status == 503
        async with http.post("/sandbox/compact") as resp:
            assert resp.status == 200
        async with http.get("/sandbox/requests") as resp:
            log = await resp.json()
    assert [r["status"] for r in log] == [503]
    assert len(kube_sandbox.store.list("helm.toolkit.fluxcd.io/v2beta2", "HelmRelease")) == 2


async def test_many_objects_stay_fast(kube_sandbox: KubeSandbox, api) -> None:
    store = kube_sandbox.store
    started = time.monotonic()
    for i in range(2000):
        store.put(helmrelease(f"hr-{i:05d}", namespace=f"ns-{i % 10}"))
    assert time.monotonic() - started < 5
    custom = client.CustomObjectsApi(api)
    page = await custom.list_cluster_custom_object(*HR, limit=500)
    assert len(page["items"]) == 500
    assert page["metadata"]["remainingItemCount"] == 1500
    await asyncio.sleep(0)


async def test_delete_collection_with_selector(kube_sandbox: KubeSandbox, api) -> None:
    store = kube_sandbox.store
    for i in range(3):
        store.put(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"c{i}", "namespace": "apps", "labels": {"n": str(i)}},
            }
        )
    await client.CoreV1Api(api).delete_collection_namespaced_config_map(
        "apps", label_selector="n in (0,2)"
    )
    assert [c["metadata"]["name"] for c in store.list("v1", "ConfigMap", "apps")] == ["c1"]
