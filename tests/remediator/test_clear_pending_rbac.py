"""S3's RBAC diagnosis on the sandbox (RBAC objects + SubjectAccessReview): who deployed is not
guessed. With the rule's `identity` unset, the identities bound in the namespace are checked and
those that may write its Secrets are named; with it set, that one identity is checked."""

from __future__ import annotations

from typing import Any

from medic.remediator.actions.base import ActionContext, Plan
from medic.remediator.actions.clear_pending import ACTION, ClearPendingParams
from medic.runtime.kube import KubeClient
from medic.sandbox import Fault, KubeSandbox
from medic.schemas import ObjectRef, ReleaseProblem
from medic.testing.factories import release_event
from medic.testing.helm import release_secret
from medic.upstream import helm

NS = "shop"
SECRET = helm.secret_name("checkout", 1)
ALL = ["get", "list", "create", "update", "patch", "delete"]


def role(name: str, verbs: list[str], *, cluster: bool = False) -> dict[str, Any]:
    meta = {"name": name} if cluster else {"name": name, "namespace": NS}
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole" if cluster else "Role",
        "metadata": meta,
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": verbs}],
    }


def binding(name: str, role_name: str, *subjects: dict[str, str], cluster: bool = False) -> Any:
    meta = {"name": name} if cluster else {"name": name, "namespace": NS}
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding" if cluster else "RoleBinding",
        "metadata": meta,
        "roleRef": {"kind": "ClusterRole" if cluster else "Role", "name": role_name},
        "subjects": list(subjects),
    }


def sa(name: str, namespace: str = NS) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def stage_pending(sandbox: KubeSandbox, *objects: dict[str, Any]) -> None:
    sandbox.store.put(release_secret("checkout", NS, status="pending-install", modified_ago=900))
    for obj in objects:
        sandbox.store.put(obj)


async def plan(client: KubeClient, **params: Any) -> Plan:
    target = ObjectRef(api_version="v1", kind="Secret", namespace=NS, name=SECRET)
    event = release_event(SECRET, NS, problem=ReleaseProblem.PENDING)
    context = ActionContext(kube=client, cluster="test", actor="test")
    return await ACTION.plan(context, target, ClearPendingParams(**params), event)


async def test_unset_identity_names_the_ci_deployer_that_may_write_not_default(
    kube: tuple[KubeSandbox, KubeClient],
) -> None:
    """The incident's deployer is a CI ServiceAccount, not `default`: it is found and named."""
    sandbox, client = kube
    stage_pending(
        sandbox,
        role("deployer", ALL),
        binding("ci", "deployer", sa("ci-deployer")),
        role("reader", ["get", "list"]),
        binding("readers", "reader", sa("viewer"), {"kind": "Group", "name": "devs"}),
    )
    planned = await plan(client)
    assert planned.verdict == "act", planned.reason
    ci, viewer = f"system:serviceaccount:{NS}:ci-deployer", f"system:serviceaccount:{NS}:viewer"
    assert planned.diagnosis["identity"] is None
    assert planned.diagnosis["writers"] == [ci]
    assert set(planned.diagnosis["checked"]) == {ci, viewer}
    assert planned.diagnosis["checked"][viewer] == {
        "get": True,
        "list": True,
        "create": False,
        "update": False,
    }
    assert f"system:serviceaccount:{NS}:default" not in planned.diagnosis["checked"]


async def test_when_no_bound_identity_may_write_the_lock_is_left_and_they_are_named(
    kube: tuple[KubeSandbox, KubeClient],
) -> None:
    """S3's cause: the CI ServiceAccount may create its release Secret but not update it."""
    sandbox, client = kube
    stage_pending(
        sandbox,
        role("deployer", ["get", "list", "create"]),
        binding("ci", "deployer", sa("ci-deployer")),
    )
    planned = await plan(client)
    assert planned.verdict == "refuse"
    assert planned.diagnosis["writers"] == []
    assert planned.diagnosis["allowed"]["update"] is False
    assert planned.reason == (
        f"no identity bound in {NS} may write its Secrets "
        f"(checked: system:serviceaccount:{NS}:ci-deployer)"
    )


async def test_cluster_wide_deployers_count_and_the_control_plane_is_left_out(
    kube: tuple[KubeSandbox, KubeClient],
) -> None:
    sandbox, client = kube
    stage_pending(
        sandbox,
        role("secrets-admin", ALL, cluster=True),
        binding(
            "flux",
            "secrets-admin",
            sa("helm-controller", "flux-system"),
            sa("namespace-controller", "kube-system"),
            {"kind": "User", "name": "system:kube-controller-manager"},
            {"kind": "User", "name": "alice@example.com"},
            cluster=True,
        ),
    )
    planned = await plan(client)
    assert planned.verdict == "act"
    assert planned.diagnosis["writers"] == [
        "system:serviceaccount:flux-system:helm-controller",
        "alice@example.com",
    ]


async def test_a_given_identity_is_the_only_one_checked(
    kube: tuple[KubeSandbox, KubeClient],
) -> None:
    sandbox, client = kube
    stage_pending(sandbox, role("deployer", ALL), binding("ci", "deployer", sa("ci-deployer")))
    refused = await plan(client, identity="system:serviceaccount:{namespace}:default")
    assert refused.verdict == "refuse"
    assert refused.diagnosis["identity"] == f"system:serviceaccount:{NS}:default"
    assert refused.reason == (
        f"system:serviceaccount:{NS}:default may not get/list/create/update Secrets in {NS}"
    )
    allowed = await plan(client, identity="system:serviceaccount:{namespace}:ci-deployer")
    assert allowed.verdict == "act"
    assert all(allowed.diagnosis["allowed"].values())


async def test_rolebindings_that_cannot_be_read_leave_the_lock_and_say_why(
    kube: tuple[KubeSandbox, KubeClient],
) -> None:
    sandbox, client = kube
    stage_pending(sandbox, role("deployer", ALL), binding("ci", "deployer", sa("ci-deployer")))
    sandbox.store.inject(
        Fault(verb="list", resource="rolebindings", status=403, message="forbidden")
    )
    planned = await plan(client)
    assert planned.verdict == "refuse"
    assert planned.reason.startswith(f"cannot tell who may write Secrets in {NS}: ")
