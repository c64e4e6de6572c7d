"""Lists as the watcher makes them: label and field selectors, and pages with continue tokens
(the watcher lists 10,000 objects 500 at a time)."""

from __future__ import annotations

from typing import Any

from medic.runtime.kube import SECRETS
from medic.testing.contract import CONFIGMAPS, HR, KubeApi, configmap, helmrelease

HELM_SECRET_TYPE = "helm.sh/release.v1"


def _names(items: list[dict[str, Any]]) -> list[str]:
    return [i["metadata"]["name"] for i in items]


async def test_label_selectors(kube_api: KubeApi) -> None:
    kube, ns = kube_api.kube, kube_api.namespace
    for name, tier in (("a", "web"), ("b", "db"), ("c", "web")):
        await kube.create(HR, helmrelease(name, ns, tier=tier))
    await kube.create(HR, helmrelease("d", ns))
    web, _ = await kube.list(HR, ns, label_selector="tier=web")
    assert _names(web) == ["a", "c"]
    other, _ = await kube.list(HR, ns, label_selector="tier!=web")
    assert _names(other) == ["b", "d"]
    some, _ = await kube.list(HR, ns, label_selector="tier in (db,web),tier notin (web)")
    assert _names(some) == ["b"]
    labelled, _ = await kube.list(HR, ns, label_selector="tier")
    assert _names(labelled) == ["a", "b", "c"]
    unlabelled, _ = await kube.list(HR, ns, label_selector="!tier")
    assert _names(unlabelled) == ["d"]


async def test_field_selectors_on_name_namespace_and_secret_type(kube_api: KubeApi) -> None:
    """The Helm storage source lists Secrets with fieldSelector type=helm.sh/release.v1."""
    kube, ns = kube_api.kube, kube_api.namespace
    for name, kind in (("sh.helm.release.v1.app.v1", HELM_SECRET_TYPE), ("plain", "Opaque")):
        secret = {"metadata": {"name": name, "namespace": ns}, "type": kind, "data": {}}
        await kube.create(SECRETS, secret)
    helm, _ = await kube.list(SECRETS, ns, field_selector=f"type={HELM_SECRET_TYPE}")
    assert _names(helm) == ["sh.helm.release.v1.app.v1"]
    named, _ = await kube.list(
        SECRETS, None, field_selector=f"metadata.name=plain,metadata.namespace={ns}"
    )
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in named] == [(ns, "plain")]
    others, _ = await kube.list(SECRETS, ns, field_selector="metadata.name!=plain")
    assert "plain" not in _names(others)


async def test_pages_with_continue_tokens(kube_api: KubeApi) -> None:
    """limit/continue: every object once, in name order, remainingItemCount on each page
    but the last, and the list's resourceVersion (which the watch starts from) at the end."""
    kube, ns = kube_api.kube, kube_api.namespace
    for i in range(7):
        await kube.create(CONFIGMAPS, configmap(f"c{i}", ns))
    first = await kube.request("GET", CONFIGMAPS.path(ns), query={"limit": "3"})
    assert _names(first["items"]) == ["c0", "c1", "c2"]
    assert first["metadata"]["remainingItemCount"] == 4
    token = first["metadata"]["continue"]
    await kube.create(CONFIGMAPS, configmap("c1a", ns))  # lands on a page already returned
    second = await kube.request("GET", CONFIGMAPS.path(ns), query={"limit": "3", "continue": token})
    assert _names(second["items"]) == ["c3", "c4", "c5"]
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    pages = [
        (_names(items), version) async for items, version in kube.pages(CONFIGMAPS, ns, limit=3)
    ]
    assert [names for names, _ in pages] == [["c0", "c1", "c1a"], ["c2", "c3", "c4"], ["c5", "c6"]]
    assert [bool(version) for _, version in pages] == [False, False, True]
    items, listed = await kube.list(CONFIGMAPS, ns, limit=2)
    assert len(items) == 8
    assert int(listed) >= int(pages[-1][1])
