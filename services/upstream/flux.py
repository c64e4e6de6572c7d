"""Flux helm-controller facts (fluxcd/helm-controller api/v2, fluxcd/pkg apis/meta).

Not for talking to a cluster: only names and the reconcile-request protocol that
`flux reconcile helmrelease --reset/--force` uses
(flux2 cmd/flux/reconcile.go, helm-controller PR 823).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

GROUP: Final = "helm.toolkit.fluxcd.io"
KIND: Final = "HelmRelease"
PLURAL: Final = "helmreleases"
# Served versions, newest last
# (helm-controller config/crd/bases/helm.toolkit.fluxcd.io_helmreleases.yaml).
VERSIONS: Final = ("v2beta1", "v2beta2", "v2")
STORAGE_VERSION: Final = "v2"
# `kubectl get hr` columns, the same for every served version (helm-controller
# config/crd/bases/helm.toolkit.fluxcd.io_helmreleases.yaml, additionalPrinterColumns):
# (name, type, jsonPath).
PRINTER_COLUMNS: Final = (
    ("Age", "date", ".metadata.creationTimestamp"),
    ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
    ("Status", "string", '.status.conditions[?(@.type=="Ready")].message'),
)

# fluxcd/pkg apis/meta/annotations.go
REQUESTED_AT: Final = "reconcile.fluxcd.io/requestedAt"
FORCE_AT: Final = "reconcile.fluxcd.io/forceAt"
RESET_AT: Final = "reconcile.fluxcd.io/resetAt"
# Seen in the Flux 2.1 -> 2.2 incident write-up (scenarios.md S2); not a helm-controller API.
UPGRADE_TO: Final = "fluxcd.io/upgradeTo"

# Condition types (fluxcd/pkg apis/meta/conditions.go, helm-controller api/v2/condition_types.go).
READY: Final = "Ready"
RELEASED: Final = "Released"
REMEDIATED: Final = "Remediated"
STALLED: Final = "Stalled"
RECONCILING: Final = "Reconciling"
TEST_SUCCESS: Final = "TestSuccess"

# Reasons (helm-controller api/v2/condition_types.go, v2beta1/v2beta2 reasons).
INSTALL_FAILED: Final = "InstallFailed"
UPGRADE_FAILED: Final = "UpgradeFailed"
ROLLBACK_FAILED: Final = "RollbackFailed"
UNINSTALL_FAILED: Final = "UninstallFailed"
ARTIFACT_FAILED: Final = "ArtifactFailed"
INIT_FAILED: Final = "InitFailed"
GET_LAST_RELEASE_FAILED: Final = "GetLastReleaseFailed"
RETRIES_EXCEEDED: Final = "RetriesExceeded"
DEPENDENCY_NOT_READY: Final = "DependencyNotReady"
RECONCILIATION_FAILED: Final = "ReconciliationFailed"
FAILED_REASONS: Final = frozenset(
    {
        INSTALL_FAILED,
        UPGRADE_FAILED,
        ROLLBACK_FAILED,
        UNINSTALL_FAILED,
        ARTIFACT_FAILED,
        INIT_FAILED,
        GET_LAST_RELEASE_FAILED,
        RETRIES_EXCEEDED,
        RECONCILIATION_FAILED,
    }
)

# Message formats written by helm-controller before v2 (v0.3x): "Helm upgrade succeeded",
# "Helm install succeeded"; v2 writes e.g. "Helm upgrade succeeded for release ns/name.v3 ...".
OLD_SUCCESS_MESSAGES: Final = ("Helm install succeeded", "Helm upgrade succeeded")
DEPENDENCY_NOT_READY_TEXT: Final = "is not ready"


def api_version(version: str) -> str:
    return f"{GROUP}/{version}"


# --------------------------------------------------------------------------- drift detection
# helm-controller internal/reconcile/atomic_release.go emits, on every reconcile that finds the
# cluster changed, a Warning Event `DriftDetected` "Cluster state of release <ns>/<name>.v<N>
# has drifted from the desired state:\n<summary>", one summary line per object
# (internal/diff/summarize.go): "Deployment/tenant-y/touched-me changed (1 additions, 3 changes,
# 2 removals)", "Secret/ns/naughty removed", "ClusterIssuer/letsencrypt excluded". With
# `spec.driftDetection.mode: enabled` it then corrects the drift (`DriftCorrected`), and a
# controller that changes the field back (an HPA on /spec/replicas) makes that a loop, which
# `spec.driftDetection.ignore: [{paths: [...], target: {kind, name}}]` ends.
DRIFT_DETECTED: Final = "DriftDetected"
DRIFT_CORRECTED: Final = "DriftCorrected"
DRIFT_HEADER: Final = "has drifted from the desired state"
DRIFT_IGNORE_PATH: Final = ("spec", "driftDetection", "ignore")
_DRIFT_LINE: Final = re.compile(
    r"^(?P<kind>[A-Za-z0-9]+)/(?:(?P<namespace>[^/\s]+)/)?(?P<name>[^/\s]+) "
    r"(?P<change>changed|removed|excluded|unchanged)\b"
)


@dataclass(frozen=True)
class DriftedObject:
    kind: str
    namespace: str | None
    name: str
    change: str  # changed | removed | excluded | unchanged

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{where}{self.name} {self.change}"


def drifted_objects(message: str) -> list[DriftedObject]:
    """The objects a `DriftDetected` message names (its summary lines), in order."""
    found: list[DriftedObject] = []
    for line in message.splitlines():
        match = _DRIFT_LINE.match(line.strip())
        if match:
            found.append(
                DriftedObject(match["kind"], match["namespace"], match["name"], match["change"])
            )
    return found


def release_name(helmrelease: dict[str, Any]) -> tuple[str, str]:
    """(Helm release name, storage namespace) of a HelmRelease, as helm-controller derives them
    (api/v2 helmrelease_types.go GetReleaseName / GetStorageNamespace; names over 53
    characters, which v2 shortens with a hash, are not handled)."""
    metadata = helmrelease.get("metadata") or {}
    spec = helmrelease.get("spec") or {}
    name = str(metadata.get("name", ""))
    namespace = str(metadata.get("namespace", ""))
    target = spec.get("targetNamespace")
    release = spec.get("releaseName") or (f"{target}-{name}" if target else name)
    return str(release), str(spec.get("storageNamespace") or namespace)
