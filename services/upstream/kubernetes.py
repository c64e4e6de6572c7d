"""Kubernetes facts: the user names and groups the API server gives ServiceAccounts, and a
CRD's storage version and `status.storedVersions`.

k8s.io/apiserver pkg/authentication/serviceaccount/util.go (ServiceAccountUsernamePrefix,
ServiceAccountGroupPrefix, AllServiceAccountsGroup, MakeUsername) and pkg/authentication/user/
user.go (AllAuthenticated). A SubjectAccessReview is judged with the groups it is given, not the
ones the authenticator would add, so a caller asking about a ServiceAccount passes them itself.

k8s.io/apiextensions-apiserver pkg/apis/apiextensions/v1/types.go: exactly one version has
`storage: true`; `status.storedVersions` lists every version objects were ever persisted at (the
API server adds the storage version, never removes one); a CRD update that drops a version still
listed there is refused (validation/validation.go, "must appear in spec.versions"). Re-storing
every object at the storage version and then trimming the list through the `status`
subresource is the migration (kube-storage-version-migrator, flux2 cmd/flux/migrate.go).
managedFields' apiVersion only says which version a writer used, not how it is stored.
"""

from __future__ import annotations

from typing import Any, Final

RBAC_GROUP: Final = "rbac.authorization.k8s.io"
SERVICE_ACCOUNT_PREFIX: Final = "system:serviceaccount:"
SERVICE_ACCOUNT_GROUP_PREFIX: Final = "system:serviceaccounts:"
ALL_SERVICE_ACCOUNTS: Final = "system:serviceaccounts"
ALL_AUTHENTICATED: Final = "system:authenticated"
# Control-plane users (system:kube-controller-manager, ...) and kube-system's controllers.
SYSTEM_USER_PREFIX: Final = "system:"
SYSTEM_NAMESPACE: Final = "kube-system"


def service_account_user(namespace: str, name: str) -> str:
    """MakeUsername: `system:serviceaccount:<namespace>:<name>`."""
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


def groups_of(user: str) -> list[str]:
    """The groups the authenticator gives `user`: a ServiceAccount's three, else authenticated."""
    parts = user.split(":")
    if user.startswith(SERVICE_ACCOUNT_PREFIX) and len(parts) == 4:
        return [
            ALL_SERVICE_ACCOUNTS,
            f"{SERVICE_ACCOUNT_GROUP_PREFIX}{parts[2]}",
            ALL_AUTHENTICATED,
        ]
    return [ALL_AUTHENTICATED]


CRD_GROUP: Final = "apiextensions.k8s.io"
CRD_VERSION: Final = "v1"
CRD_API_VERSION: Final = f"{CRD_GROUP}/{CRD_VERSION}"
CRD_KIND: Final = "CustomResourceDefinition"
CRD_PLURAL: Final = "customresourcedefinitions"


def storage_version(crd: dict[str, Any]) -> str:
    """The version marked `storage: true` ("" when none is, which the API server refuses)."""
    for version in (crd.get("spec") or {}).get("versions") or []:
        if isinstance(version, dict) and version.get("storage"):
            return str(version.get("name", ""))
    return ""


def stored_versions(crd: dict[str, Any]) -> list[str]:
    return [str(v) for v in (crd.get("status") or {}).get("storedVersions") or []]


def stale_stored_versions(crd: dict[str, Any]) -> list[str]:
    """Versions objects may still be stored at besides the storage version."""
    storage = storage_version(crd)
    return [v for v in stored_versions(crd) if v != storage]
