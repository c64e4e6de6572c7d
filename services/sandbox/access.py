"""RBAC evaluation for SubjectAccessReview / SelfSubjectAccessReview from the stored RBAC objects.

Rules are matched like the RBAC authorizer: verbs, apiGroups, resources (`res` or
`res/subresource`, `*`), resourceNames, nonResourceURLs; bindings match a User by name, a Group
(including system:authenticated, system:serviceaccounts, system:serviceaccounts:<ns>), or a
ServiceAccount as `system:serviceaccount:<ns>:<name>`. Aggregated ClusterRoles are not expanded.
The sandbox user and the group system:masters may do everything. Requests carrying a token
from `SandboxStore.issue_token` are authorized the same way (`forbidden` builds the 403).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

SANDBOX_USER = "sandbox"
RBAC = "rbac.authorization.k8s.io"
Lookup = Callable[[str, str | None], Iterable[dict[str, Any]]]


def _groups(user: str, groups: list[str]) -> set[str]:
    out = set(groups) | {"system:authenticated"}
    if user.startswith("system:serviceaccount:"):
        parts = user.split(":")
        if len(parts) == 4:
            out |= {"system:serviceaccounts", f"system:serviceaccounts:{parts[2]}"}
    return out


def _subject_matches(subject: dict[str, Any], user: str, groups: set[str], ns: str) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        return bool(subject.get("name") == user)
    if kind == "Group":
        return subject.get("name") in groups
    if kind == "ServiceAccount":
        sa_ns = subject.get("namespace") or ns
        return user == f"system:serviceaccount:{sa_ns}:{subject.get('name')}"
    return False


def _rule_allows(rule: dict[str, Any], attrs: dict[str, Any], non_resource: bool) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and attrs.get("verb") not in verbs:
        return False
    if non_resource:
        urls = rule.get("nonResourceURLs") or []
        path = attrs.get("path", "")
        return any(u in ("*", path) or (u.endswith("*") and path.startswith(u[:-1])) for u in urls)
    if rule.get("nonResourceURLs") and not rule.get("resources"):
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attrs.get("group", "") not in groups:
        return False
    resource = attrs.get("resource", "")
    if attrs.get("subresource"):
        resource = f"{resource}/{attrs['subresource']}"
    resources = rule.get("resources") or []
    if "*" not in resources and resource not in resources:
        base = resource.split("/")[0]
        if f"{base}/*" not in resources and f"*/{attrs.get('subresource', '')}" not in resources:
            return False
    names = rule.get("resourceNames") or []
    return not names or attrs.get("name") in names


def review(
    lookup: Lookup, user: str, groups: list[str], attrs: dict[str, Any] | None, nra: Any
) -> tuple[bool, str]:
    """(allowed, reason) for `user` doing `attrs` (resourceAttributes) or `nra` (non-resource)."""
    all_groups = _groups(user, groups)
    if user == SANDBOX_USER or "system:masters" in all_groups:
        return True, "the sandbox user may do everything"
    non_resource = attrs is None and isinstance(nra, dict)
    attributes: dict[str, Any] = attrs if attrs is not None else (nra or {})
    ns = attributes.get("namespace") or ""
    bindings: list[tuple[dict[str, Any], str]] = [
        (b, "") for b in lookup("ClusterRoleBinding", None)
    ]
    if ns and not non_resource:
        bindings += [(b, ns) for b in lookup("RoleBinding", ns)]
    for binding, bns in bindings:
        if not any(
            _subject_matches(s, user, all_groups, bns) for s in binding.get("subjects") or []
        ):
            continue
        ref = binding.get("roleRef") or {}
        role = None
        if ref.get("kind") == "ClusterRole":
            role = next(
                (
                    r
                    for r in lookup("ClusterRole", None)
                    if r["metadata"]["name"] == ref.get("name")
                ),
                None,
            )
        elif ref.get("kind") == "Role" and bns:
            role = next(
                (r for r in lookup("Role", bns) if r["metadata"]["name"] == ref.get("name")), None
            )
        if role is None:
            continue
        for rule in role.get("rules") or []:
            if _rule_allows(rule, attributes, non_resource):
                where = f"RoleBinding {bns}/" if bns else "ClusterRoleBinding "
                role_name = f"{ref.get('kind')} {ref.get('name')}"
                return True, f"allowed by {where}{binding['metadata']['name']} of {role_name}"
    return False, "no RBAC rule allows it"


def forbidden_message(user: str, attrs: dict[str, Any]) -> str:
    """kube-apiserver's wording (apiserver pkg/endpoints/handlers/responsewriters/errors.go)."""
    group, resource, name = attrs.get("group", ""), attrs.get("resource", ""), attrs.get("name")
    qualified = f"{resource}.{group}" if group else resource
    if attrs.get("subresource"):
        resource = f"{resource}/{attrs['subresource']}"
    subject = f'{qualified} "{name}"' if name else qualified
    namespace = attrs.get("namespace")
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    return (
        f'{subject} is forbidden: User "{user}" cannot {attrs.get("verb")} resource '
        f'"{resource}" in API group "{group}" {scope}'
    )
