"""The resource types the sandbox serves, and the Status errors it answers with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medic.upstream import flux

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str
    versions: tuple[str, ...]
    kind: str
    plural: str
    namespaced: bool
    storage: str = ""
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    status_subresource: bool = False
    crd: bool = False
    categories: tuple[str, ...] = field(default=())
    printer_columns: tuple[tuple[str, str, str], ...] = ()  # (name, type, jsonPath), as CRDs say

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def storage_version(self) -> str:
        return self.storage or self.versions[-1]

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"


_REVIEW = ("create",)
CATALOG: tuple[ResourceType, ...] = (
    ResourceType("", ("v1",), "Namespace", "namespaces", namespaced=False, short_names=("ns",)),
    ResourceType("", ("v1",), "Secret", "secrets", namespaced=True),
    ResourceType("", ("v1",), "ConfigMap", "configmaps", namespaced=True, short_names=("cm",)),
    ResourceType(
        "", ("v1",), "ServiceAccount", "serviceaccounts", namespaced=True, short_names=("sa",)
    ),
    ResourceType("", ("v1",), "Event", "events", namespaced=True, short_names=("ev",)),
    ResourceType("events.k8s.io", ("v1",), "Event", "events", namespaced=True, short_names=("ev",)),
    ResourceType("coordination.k8s.io", ("v1",), "Lease", "leases", namespaced=True),
    ResourceType(
        "apps", ("v1",), "Deployment", "deployments", namespaced=True, short_names=("deploy",)
    ),
    ResourceType(
        "apps", ("v1",), "StatefulSet", "statefulsets", namespaced=True, short_names=("sts",)
    ),
    ResourceType("rbac.authorization.k8s.io", ("v1",), "Role", "roles", namespaced=True),
    ResourceType(
        "rbac.authorization.k8s.io", ("v1",), "RoleBinding", "rolebindings", namespaced=True
    ),
    ResourceType(
        "rbac.authorization.k8s.io", ("v1",), "ClusterRole", "clusterroles", namespaced=False
    ),
    ResourceType(
        "rbac.authorization.k8s.io",
        ("v1",),
        "ClusterRoleBinding",
        "clusterrolebindings",
        namespaced=False,
    ),
    ResourceType(
        "authorization.k8s.io",
        ("v1",),
        "SubjectAccessReview",
        "subjectaccessreviews",
        namespaced=False,
        verbs=_REVIEW,
    ),
    ResourceType(
        "authorization.k8s.io",
        ("v1",),
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        namespaced=False,
        verbs=_REVIEW,
    ),
    ResourceType(
        "apiextensions.k8s.io",
        ("v1",),
        "CustomResourceDefinition",
        "customresourcedefinitions",
        namespaced=False,
        short_names=("crd", "crds"),
        verbs=("get", "list", "watch"),
    ),
    ResourceType(
        "helm.toolkit.fluxcd.io",
        ("v2beta1", "v2beta2", "v2"),
        "HelmRelease",
        "helmreleases",
        namespaced=True,
        storage="v2",
        short_names=("hr",),
        status_subresource=True,
        crd=True,
        categories=("all",),
        printer_columns=flux.PRINTER_COLUMNS,
    ),
    ResourceType(
        "fleet.cattle.io",
        ("v1alpha1",),
        "BundleDeployment",
        "bundledeployments",
        namespaced=True,
        status_subresource=True,
        crd=True,
    ),
    ResourceType(
        "druid.gardener.cloud",
        ("v1alpha1",),
        "Etcd",
        "etcds",
        namespaced=True,
        status_subresource=True,
        crd=True,
    ),
)

BY_PLURAL: dict[tuple[str, str], ResourceType] = {rt.key: rt for rt in CATALOG}
BY_KIND: dict[tuple[str, str], ResourceType] = {(rt.group, rt.kind): rt for rt in CATALOG}


def split_api_version(api_version: str) -> tuple[str, str]:
    """'helm.toolkit.fluxcd.io/v2' -> (group, version); 'v1' -> ('', 'v1'); a group -> (g, '')."""
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    if api_version.startswith("v") and api_version[1:2].isdigit():
        return "", api_version
    return api_version, ""


def resolve(api_version: str, kind: str) -> tuple[ResourceType, str]:
    group, version = split_api_version(api_version)
    rt = BY_KIND.get((group, kind))
    if rt is None:
        raise ApiError(404, "NotFound", f"the server doesn't have a resource type {kind!r}")
    if version and version not in rt.versions:
        raise ApiError(404, "NotFound", f"version {version!r} of {kind} is not served")
    return rt, version or rt.storage_version


class ApiError(Exception):
    """A Kubernetes `Status` failure."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        # kube-apiserver omits an empty group (metav1.StatusDetails `group,omitempty`)
        details = {k: v for k, v in self.details.items() if not (k == "group" and v == "")}
        if details:
            body["details"] = details
        return body


REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{rt.plural}{"." + rt.group if rt.group else ""} "{name}" not found',
        {"name": name, "group": rt.group, "kind": rt.plural},
    )


def crd_object(rt: ResourceType, stored_versions: list[str]) -> dict[str, Any]:
    """A CustomResourceDefinition describing one catalogue entry (schema: preserve unknown)."""
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": rt.crd_name, "resourceVersion": "1", "generation": 1},
        "spec": {
            "group": rt.group,
            "names": {
                "kind": rt.kind,
                "listKind": rt.kind + "List",
                "plural": rt.plural,
                "singular": rt.singular,
                "shortNames": list(rt.short_names),
            },
            "scope": "Namespaced" if rt.namespaced else "Cluster",
            "versions": [
                {
                    "name": v,
                    "served": True,
                    "storage": v == rt.storage_version,
                    "schema": schema,
                    "subresources": {"status": {}} if rt.status_subresource else {},
                    "additionalPrinterColumns": [
                        {"name": name, "type": kind, "jsonPath": path}
                        for name, kind, path in rt.printer_columns
                    ],
                }
                for v in rt.versions
            ],
        },
        "status": {
            "acceptedNames": {"kind": rt.kind, "plural": rt.plural},
            "storedVersions": stored_versions,
            "conditions": [{"type": "Established", "status": "True"}],
        },
    }
