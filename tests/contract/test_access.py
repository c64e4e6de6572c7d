"""Authorization as Medic meets it: SubjectAccessReview (the clear-pending action asks whether
Helm's identity may write its storage Secrets) and 403 Forbidden for an identity without RBAC."""

from __future__ import annotations

from typing import Any

import pytest

from medic.runtime.kube import NAMESPACES, SECRETS, ForbiddenError, KubeClient, ResourceType
from medic.runtime.settings import KubeSettings
from medic.testing.contract import CONFIGMAPS, HR, KubeApi

RBAC = "rbac.authorization.k8s.io"
ROLES = ResourceType(RBAC, "v1", "roles", "Role")
ROLE_BINDINGS = ResourceType(RBAC, "v1", "rolebindings", "RoleBinding")


def _rbac(ns: str, sa: str) -> tuple[dict[str, Any], dict[str, Any]]:
    role = {
        "metadata": {"name": "secret-reader", "namespace": ns},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}],
    }
    binding = {
        "metadata": {"name": "secret-reader", "namespace": ns},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "secret-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
    }
    return role, binding


async def test_subject_access_review_answers_from_rbac(kube_api: KubeApi) -> None:
    kube, ns = kube_api.kube, kube_api.namespace
    role, binding = _rbac(ns, "helm")
    await kube.create(ROLES, role)
    await kube.create(ROLE_BINDINGS, binding)
    user = f"system:serviceaccount:{ns}:helm"
    assert await kube.create_subject_access_review(user, ns, "get", "secrets")
    assert await kube.create_subject_access_review(user, ns, "list", "secrets")
    assert not await kube.create_subject_access_review(user, ns, "delete", "secrets")
    assert not await kube.create_subject_access_review(user, "elsewhere", "get", "secrets")
    assert not await kube.create_subject_access_review("nobody", ns, "get", "secrets")


async def test_an_identity_without_rbac_gets_403_forbidden(kube_api: KubeApi) -> None:
    """Real: a TokenRequest token for the ServiceAccount; sandbox: a token it issued. Both are
    authorized by RBAC: the Role lets the account read Secrets, nothing else."""
    ns, admin = kube_api.namespace, kube_api.kube
    role, binding = _rbac(ns, "reader")
    await admin.create(ROLES, role)
    await admin.create(ROLE_BINDINGS, binding)
    server = kube_api.plane or kube_api.sandbox
    assert server is not None
    kube = await KubeClient.connect(
        KubeSettings(kubeconfig=server.serviceaccount_kubeconfig(ns, "reader"))
    )
    user = f"system:serviceaccount:{ns}:reader"
    try:
        secrets, _ = await kube.list(SECRETS, ns)
        assert secrets == []
        with pytest.raises(ForbiddenError) as forbidden:
            await kube.get(CONFIGMAPS, "c1", ns)
        with pytest.raises(ForbiddenError) as listing:
            await kube.list(HR, ns)
        with pytest.raises(ForbiddenError) as cluster:
            await kube.list(NAMESPACES)
    finally:
        await kube.close()
    body = forbidden.value.body
    assert (body["kind"], body["status"], body["code"], body["reason"]) == (
        "Status",
        "Failure",
        403,
        "Forbidden",
    )
    assert forbidden.value.message == (
        f'configmaps "c1" is forbidden: User "{user}" cannot get '
        f'resource "configmaps" in API group "" in the namespace "{ns}"'
    )
    assert body["details"] == {"name": "c1", "kind": "configmaps"}
    assert listing.value.message == (
        f'helmreleases.helm.toolkit.fluxcd.io is forbidden: User "{user}" cannot list resource '
        f'"helmreleases" in API group "helm.toolkit.fluxcd.io" in the namespace "{ns}"'
    )
    assert listing.value.body["details"] == {
        "group": "helm.toolkit.fluxcd.io",
        "kind": "helmreleases",
    }
    assert cluster.value.message == (
        f'namespaces is forbidden: User "{user}" cannot list resource "namespaces" in API group '
        '"" at the cluster scope'
    )
