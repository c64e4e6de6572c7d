"""Who may do what in a namespace, asked of the API server (RBAC objects + SubjectAccessReview).

For diagnoses that must name people or pipelines, e.g. `clear-pending`: when a rule does not say
who deploys, the identities that could are the subjects of the namespace's RoleBindings, and of
the ClusterRoleBindings that name a ServiceAccount or a (non-system) user; each is then checked
with a SubjectAccessReview, so the API server's own authorizer answers (aggregated ClusterRoles,
wildcards, group bindings included). Not an RBAC evaluator: it never interprets a Role itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from medic.runtime.kube import KubeClient, ResourceType
from medic.upstream import kubernetes as k8s

ROLE_BINDINGS: Final = ResourceType(k8s.RBAC_GROUP, "v1", "rolebindings", "RoleBinding")
CLUSTER_ROLE_BINDINGS: Final = ResourceType(
    k8s.RBAC_GROUP, "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False
)
MAX_CANDIDATES: Final = 20  # each costs one SubjectAccessReview per verb


def _subjects(bindings: Iterable[dict[str, Any]]) -> Iterable[tuple[str, str, str | None]]:
    for binding in bindings:
        for subject in binding.get("subjects") or []:
            yield str(subject.get("kind")), str(subject.get("name", "")), subject.get("namespace")


def namespace_subjects(bindings: Iterable[dict[str, Any]], namespace: str) -> list[str]:
    """Users and ServiceAccounts bound in the namespace. Groups are left out: a request is made
    by a user, and a group's members cannot be listed."""
    found: list[str] = []
    for kind, name, home in _subjects(bindings):
        if kind == "ServiceAccount":
            found.append(k8s.service_account_user(home or namespace, name))
        elif kind == "User":
            found.append(name)
    return found


def cluster_subjects(bindings: Iterable[dict[str, Any]]) -> list[str]:
    """ServiceAccounts and users bound cluster-wide, but not the control plane's own (kube-system's
    controllers, system:kube-* users): they may write every Secret, yet never deploy a release,
    and naming them would bury the candidates that do."""
    found: list[str] = []
    for kind, name, home in _subjects(bindings):
        if kind == "ServiceAccount" and home and home != k8s.SYSTEM_NAMESPACE:
            found.append(k8s.service_account_user(home, name))
        elif kind == "User" and not name.startswith(k8s.SYSTEM_USER_PREFIX):
            found.append(name)
    return found


@dataclass(frozen=True)
class Access:
    """What each identity may do to one resource in one namespace."""

    namespace: str
    resource: str
    verbs: tuple[str, ...]
    allowed: dict[str, dict[str, bool]]  # identity -> verb -> allowed
    unchecked: int = 0  # candidates beyond MAX_CANDIDATES

    @property
    def able(self) -> list[str]:
        """The identities allowed every verb."""
        return [who for who, verbs in self.allowed.items() if all(verbs.values())]


async def may(
    kube: KubeClient, user: str, namespace: str, resource: str, verbs: Sequence[str]
) -> dict[str, bool]:
    """One SubjectAccessReview per verb, with the groups the authenticator would give `user`."""
    groups = k8s.groups_of(user)
    return {
        verb: await kube.create_subject_access_review(
            user, namespace, verb, resource, groups=groups
        )
        for verb in verbs
    }


async def candidates(kube: KubeClient, namespace: str) -> list[str]:
    """Identities that could act in `namespace`: its RoleBindings' first, then cluster-wide."""
    local, _ = await kube.list(ROLE_BINDINGS, namespace)
    cluster, _ = await kube.list(CLUSTER_ROLE_BINDINGS)
    found = namespace_subjects(local, namespace) + cluster_subjects(cluster)
    return list(dict.fromkeys(found))


async def who_may(kube: KubeClient, namespace: str, resource: str, verbs: Sequence[str]) -> Access:
    """Every candidate identity of the namespace, checked for `verbs` on `resource`."""
    found = await candidates(kube, namespace)
    checked = found[:MAX_CANDIDATES]
    allowed = {user: await may(kube, user, namespace, resource, verbs) for user in checked}
    return Access(namespace, resource, tuple(verbs), allowed, len(found) - len(checked))
