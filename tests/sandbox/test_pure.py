"""The sandbox's pure parts: patches, selectors, RBAC evaluation, store bookkeeping."""

from __future__ import annotations

import pytest

from medic.sandbox import ApiError, SandboxStore
from medic.sandbox.access import review
from medic.sandbox.memstore import field_matcher, label_matcher
from medic.sandbox.patches import apply_patch, merge_patch, strategic_merge_patch
from medic.sandbox.tables import human_duration, json_path


def test_merge_patch_removes_nulls_and_replaces_lists() -> None:
    target = {"a": {"b": 1, "c": 2}, "l": [1, 2]}
    assert merge_patch(target, {"a": {"b": None, "d": 3}, "l": [3]}) == {
        "a": {"c": 2, "d": 3},
        "l": [3],
    }


def test_strategic_merge_by_name_and_type_with_delete_directive() -> None:
    target = {
        "containers": [{"name": "app", "image": "a:1"}, {"name": "side", "image": "s:1"}],
        "conditions": [{"type": "Ready", "status": "False"}],
        "args": ["x"],
    }
    patch = {
        "containers": [{"name": "app", "image": "a:2"}, {"name": "side", "$patch": "delete"}],
        "conditions": [{"type": "Released", "status": "True"}],
        "args": ["y"],
        "$setElementOrder/containers": [{"name": "app"}],
    }
    assert strategic_merge_patch(target, patch) == {
        "containers": [{"name": "app", "image": "a:2"}],
        "conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "Released", "status": "True"},
        ],
        "args": ["y"],
    }


def test_json_patch_errors_are_422_and_unknown_types_415() -> None:
    with pytest.raises(ApiError) as exc:
        apply_patch("application/json-patch+json", {}, [{"op": "remove", "path": "/nope"}])
    assert exc.value.code == 422
    with pytest.raises(ApiError) as exc:
        apply_patch("text/plain", {}, {})
    assert exc.value.code == 415


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", True),
        ("app==web,tier!=db", True),
        ("app in (web, api)", True),
        ("app notin (web)", False),
        ("tier", False),
        ("!tier", True),
        ("app", True),
    ],
)
def test_label_selectors(selector: str, expected: bool) -> None:
    assert label_matcher(selector)({"app": "web"}) is expected


def test_field_selectors() -> None:
    secret = {"metadata": {"name": "s", "namespace": "apps"}, "type": "helm.sh/release.v1"}
    assert field_matcher("metadata.name=s,type=helm.sh/release.v1")(secret)
    assert not field_matcher("metadata.namespace!=apps")(secret)
    assert field_matcher("involvedObject.name=ignored")(secret)
    with pytest.raises(ApiError):
        label_matcher("a b c")


def test_rbac_review_cluster_role_and_groups() -> None:
    objects = {
        ("ClusterRole", None): [
            {
                "metadata": {"name": "reader"},
                "rules": [
                    {
                        "apiGroups": ["helm.toolkit.fluxcd.io"],
                        "resources": ["helmreleases"],
                        "verbs": ["get", "list", "watch"],
                    }
                ],
            }
        ],
        ("ClusterRoleBinding", None): [
            {
                "metadata": {"name": "readers"},
                "roleRef": {"kind": "ClusterRole", "name": "reader"},
                "subjects": [{"kind": "Group", "name": "system:serviceaccounts:medic"}],
            }
        ],
    }

    def lookup(kind: str, namespace: str | None) -> list[dict]:
        return objects.get((kind, None), []) if namespace is None else []

    attrs = {
        "verb": "watch",
        "group": "helm.toolkit.fluxcd.io",
        "resource": "helmreleases",
        "namespace": "apps",
    }
    assert review(lookup, "system:serviceaccount:medic:watcher", [], attrs, None)[0]
    assert not review(lookup, "system:serviceaccount:other:watcher", [], attrs, None)[0]
    assert not review(
        lookup, "system:serviceaccount:medic:watcher", [], {**attrs, "verb": "patch"}, None
    )[0]
    assert review(lookup, "sandbox", [], {**attrs, "verb": "patch"}, None)[0]


def test_store_bookkeeping() -> None:
    store = SandboxStore(history=3)
    hr = {
        "apiVersion": "helm.toolkit.fluxcd.io/v2beta2",
        "kind": "HelmRelease",
        "metadata": {"name": "a", "namespace": "apps"},
        "spec": {"x": 1},
    }
    created = store.put(hr)
    assert created["apiVersion"] == "helm.toolkit.fluxcd.io/v2beta2"
    assert created["metadata"]["generation"] == 1
    assert store.stored_version("helm.toolkit.fluxcd.io", "HelmRelease", "a", "apps") == "v2"
    same = store.put(hr)
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    meta_only = store.patch_merge(
        "helm.toolkit.fluxcd.io/v2",
        "HelmRelease",
        "a",
        "apps",
        {"metadata": {"labels": {"l": "1"}}},
    )
    assert meta_only["metadata"]["generation"] == 1
    spec = store.patch_merge(
        "helm.toolkit.fluxcd.io/v2", "HelmRelease", "a", "apps", {"spec": {"x": 2}}
    )
    assert spec["metadata"]["generation"] == 2
    assert store.get("v1", "Namespace", "apps") is not None  # created implicitly
    for i in range(5):
        store.put(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"c{i}", "namespace": "apps"},
            }
        )
    assert len(store.history) == 3
    assert store.history_floor > int(created["metadata"]["resourceVersion"])
    assert store.delete("v1", "ConfigMap", "c0", "apps")
    assert not store.delete("v1", "ConfigMap", "c0", "apps")
    with pytest.raises(ValueError, match="no version"):
        store.set_storage_version("helm.toolkit.fluxcd.io", "HelmRelease", "v3")


def test_a_write_that_changes_nothing_is_a_no_op() -> None:
    store = SandboxStore()
    calls: list[str] = []
    store.on_write("Etcd", lambda _s, change, _o: calls.append(change))
    etcd = {
        "apiVersion": "druid.gardener.cloud/v1alpha1",
        "kind": "Etcd",
        "metadata": {"name": "e", "namespace": "shoot", "annotations": {"op": "reconcile"}},
    }
    created = store.put(etcd)
    rt = store.objects[("druid.gardener.cloud", "etcds")][("shoot", "e")]
    from medic.sandbox.catalog import BY_KIND

    same = store.patch(
        BY_KIND[("druid.gardener.cloud", "Etcd")],
        "shoot",
        "e",
        "application/json-patch+json",
        [
            {"op": "remove", "path": "/metadata/annotations/op"},
            {"op": "add", "path": "/metadata/annotations/op", "value": "reconcile"},
        ],
        "v1alpha1",
        "medic",
    )
    assert same is rt
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert calls == ["ADDED"]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (45, "45s"),
        (119, "119s"),
        (312, "5m12s"),
        (600, "10m"),
        (10799, "179m"),
        (12000, "3h20m"),
        (28800, "8h"),
        (180000, "2d2h"),
        (691200, "8d"),
        (65664000, "2y30d"),
        (8 * 365 * 86400, "8y"),
    ],
)
def test_ages_read_as_kubectl_shows_them(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_printer_column_paths_find_the_ready_condition() -> None:
    obj = {"status": {"conditions": [{"type": "Released"}, {"type": "Ready", "status": "True"}]}}
    assert json_path(obj, '.status.conditions[?(@.type=="Ready")].status') == "True"
    assert json_path(obj, ".status.conditions[0].type") == "Released"
    assert json_path(obj, '.status.conditions[?(@.type=="Stalled")].status') is None
    assert json_path({}, ".metadata.creationTimestamp") is None
