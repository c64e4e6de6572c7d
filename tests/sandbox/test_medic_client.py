"""The sandbox with the real kubernetes_asyncio client and Medic's own client (these tests first
ran against the stop-gap medic.sandbox.lite; the one about storage versions lives in
test_client.py, since KubeSandbox stores at the CRD's storage version like the API server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from medic.runtime.kube import ConflictError, GoneError, KubeClient, ResourceType
from medic.runtime.settings import KubeSettings
from medic.sandbox import Fault, KubeSandbox
from medic.testing import objects

HR = ResourceType("helm.toolkit.fluxcd.io", "v2", "helmreleases", "HelmRelease")


@pytest.fixture
async def sandbox() -> AsyncIterator[KubeSandbox]:
    async with KubeSandbox.start(bookmark_interval=0.2) as sb:
        yield sb


@pytest.fixture
async def api(sandbox: KubeSandbox) -> AsyncIterator[client.ApiClient]:
    cfg = client.Configuration()
    await config.load_kube_config(
        config_file=str(sandbox.kubeconfig_path), client_configuration=cfg
    )
    async with client.ApiClient(cfg) as api_client:
        yield api_client


@pytest.fixture
async def kube(sandbox: KubeSandbox) -> AsyncIterator[KubeClient]:
    kube_client = await KubeClient.connect(KubeSettings(kubeconfig=sandbox.kubeconfig_path))
    try:
        yield kube_client
    finally:
        await kube_client.close()


async def test_list_pages_with_limit_and_continue(
    sandbox: KubeSandbox, api: client.ApiClient
) -> None:
    for i in range(7):
        sandbox.store.put(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"c{i}", "namespace": "apps"},
            }
        )
    core = client.CoreV1Api(api)
    first = await core.list_namespaced_config_map("apps", limit=3)
    second = await core.list_namespaced_config_map(
        "apps", limit=3, _continue=first.metadata._continue
    )
    assert len(first.items) == 3
    assert len(second.items) == 3
    assert {i.metadata.name for i in first.items}.isdisjoint(
        {i.metadata.name for i in second.items}
    )


async def test_stale_update_is_409_and_a_fresh_read_succeeds(
    kube: KubeClient, sandbox: KubeSandbox
) -> None:
    sandbox.store.put(objects.helmrelease("web"))
    read = await kube.get(HR, "web", "apps")
    sandbox.store.patch_merge(
        "helm.toolkit.fluxcd.io/v2", "HelmRelease", "web", "apps", {"spec": {"interval": "5m"}}
    )
    with pytest.raises(ConflictError):
        await kube.patch(
            HR,
            "web",
            "apps",
            {"metadata": {"labels": {"a": "b"}}},
            resource_version=read["metadata"]["resourceVersion"],
        )
    fresh = await kube.get(HR, "web", "apps")
    done = await kube.patch(
        HR,
        "web",
        "apps",
        {"metadata": {"labels": {"a": "b"}}},
        resource_version=fresh["metadata"]["resourceVersion"],
    )
    assert done["metadata"]["labels"]["a"] == "b"
    assert done["metadata"]["generation"] == 2


async def test_json_patch_and_status_subresource(kube: KubeClient, sandbox: KubeSandbox) -> None:
    sandbox.store.put(objects.gardener_etcd("etcd-main", "shoot"))
    etcds = ResourceType("druid.gardener.cloud", "v1alpha1", "etcds", "Etcd")
    patched = await kube.patch(
        etcds,
        "etcd-main",
        "shoot",
        [{"op": "remove", "path": "/metadata/annotations/gardener.cloud~1operation"}],
        "json",
    )
    assert patched["metadata"]["annotations"] == {}
    await kube.patch_status(etcds, "etcd-main", "shoot", {"status": {"ready": False}})
    assert (
        sandbox.store.get("druid.gardener.cloud/v1alpha1", "Etcd", "etcd-main", "shoot")["status"][
            "ready"
        ]
        is False
    )


async def test_watch_resumes_and_expired_history_is_410(
    kube: KubeClient, sandbox: KubeSandbox
) -> None:
    sandbox.store.put(objects.helmrelease("a"))
    _, version = await kube.list(HR)
    sandbox.store.put(objects.helmrelease("b"))
    seen = []
    async for kind, obj in kube.watch(HR, resource_version=version, timeout_seconds=1):
        if kind != "BOOKMARK":
            seen.append((kind, obj["metadata"]["name"]))
    assert seen == [("ADDED", "b")]
    sandbox.store.compact()
    with pytest.raises(GoneError):
        async for _ in kube.watch(HR, resource_version=version, timeout_seconds=1):
            pass


async def test_faults_are_seen_by_the_real_client(
    sandbox: KubeSandbox, api: client.ApiClient
) -> None:
    sandbox.store.inject(
        Fault(verb="list", resource="secrets", status=429, message="slow down", retry_after=2)
    )
    sandbox.store.inject(Fault(verb="list", resource="secrets", status=500))
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as throttled:
        await core.list_namespaced_secret("apps")
    assert throttled.value.status == 429
    assert throttled.value.headers["Retry-After"] == "2"
    with pytest.raises(ApiException) as etcd:
        await core.list_namespaced_secret("apps")
    assert "etcdserver: leader changed" in etcd.value.body
    assert (await core.list_namespaced_secret("apps")).items == []


async def test_medic_client_retries_injected_etcd_errors(
    kube: KubeClient, sandbox: KubeSandbox
) -> None:
    sandbox.store.put(objects.helmrelease("c"))
    sandbox.store.inject(Fault(verb="patch", resource="helmreleases", status=500, times=2))
    done = await kube.patch(HR, "c", "apps", {"metadata": {"annotations": {"k": "v"}}})
    assert done["metadata"]["annotations"] == {"k": "v"}


async def test_subject_access_review_follows_rbac(kube: KubeClient, sandbox: KubeSandbox) -> None:
    user = "system:serviceaccount:apps:deployer"
    assert not await kube.create_subject_access_review(user, "apps", "update", "secrets")
    sandbox.store.put(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "helm", "namespace": "apps"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "update"]}],
        }
    )
    sandbox.store.put(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "helm", "namespace": "apps"},
            "roleRef": {"kind": "Role", "name": "helm"},
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": "apps"}],
        }
    )
    assert await kube.create_subject_access_review(user, "apps", "update", "secrets")
    assert not await kube.create_subject_access_review(user, "apps", "delete", "secrets")


async def test_controller_hooks_play_the_controller(sandbox: KubeSandbox, kube: KubeClient) -> None:
    def helm_controller(store, change, obj):
        token = (obj["metadata"].get("annotations") or {}).get("reconcile.fluxcd.io/requestedAt")
        if (
            change == "MODIFIED"
            and token
            and (obj.get("status") or {}).get("lastHandledReconcileAt") != token
        ):
            store.patch_merge(
                obj["apiVersion"],
                "HelmRelease",
                obj["metadata"]["name"],
                obj["metadata"]["namespace"],
                {"status": {"lastHandledReconcileAt": token}},
                status=True,
                manager="helm-controller",
            )

    sandbox.store.on_write("HelmRelease", helm_controller)
    sandbox.store.put(objects.helmrelease("d"))
    await kube.patch(
        HR, "d", "apps", {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "t1"}}}
    )
    await asyncio.wait_for(
        sandbox.store.wait_for(
            lambda s: (
                (s.get("helm.toolkit.fluxcd.io/v2", "HelmRelease", "d", "apps") or {})
                .get("status", {})
                .get("lastHandledReconcileAt")
                == "t1"
            )
        ),
        5,
    )
