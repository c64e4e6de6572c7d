"""Kubernetes apiextensions facts: a CRD's storage version and `status.storedVersions`.

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
