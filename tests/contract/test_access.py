"""Authorization as Medic meets it: SubjectAccessReview (the clear-pending action asks whether
Helm's identity may write its storage Secrets) and 403 Forbidden for an identity without RBAC."""

from __future__ import annotations

from typing import Any

import pytest

from medic.runtime.kube import ForbiddenError, KubeClient, ResourceType
from medic.runtime.settings import KubeSettings
from medic.testing.contract import CONFIGMAPS, KubeApi

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
    if kube_api.plane is None:
        pytest.xfail("sandbox LIMITS: every request acts as the sandbox user; no 403")
    ns = kube_api.namespace
    kubeconfig = kube_api.plane.serviceaccount_kubeconfig(ns, "nobody")
    kube = await KubeClient.connect(KubeSettings(kubeconfig=kubeconfig))
    try:
        with pytest.raises(ForbiddenError) as forbidden:
            await kube.get(CONFIGMAPS, "c1", ns)
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
        f'configmaps "c1" is forbidden: User "system:serviceaccount:{ns}:nobody" cannot get '
        f'resource "configmaps" in API group "" in the namespace "{ns}"'
    )
    assert body["details"] == {"name": "c1", "kind": "configmaps"}
