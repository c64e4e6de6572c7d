"""Flux helm-controller facts (fluxcd/helm-controller api/v2, fluxcd/pkg apis/meta).

Not for talking to a cluster: only names and the reconcile-request protocol that
`flux reconcile helmrelease --reset/--force` uses
(flux2 cmd/flux/reconcile.go, helm-controller PR 823).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

GROUP: Final = "helm.toolkit.fluxcd.io"
KIND: Final = "HelmRelease"
PLURAL: Final = "helmreleases"
# Served versions, newest last
# (helm-controller config/crd/bases/helm.toolkit.fluxcd.io_helmreleases.yaml).
VERSIONS: Final = ("v2beta1", "v2beta2", "v2")
STORAGE_VERSION: Final = "v2"

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


# Drift detection (helm-controller internal/reconcile/atomic_release.go, correct_cluster_drift.go):
# a Warning Event `DriftDetected` "Cluster state of release <ns>/<name>.v<N> has drifted from the
# desired state:\n<summary>" on every reconcile that finds drift, then (mode `enabled`) a Normal
# Event `DriftCorrected`. Summary lines per internal/diff/summarize.go (SummarizeDiffSet):
# "<Kind>/<namespace>/<name> changed (1 additions, 2 changes, 0 removals)" | "... removed" |
# "... excluded". The Event names resources, never fields. Fields to leave alone go in
# `spec.driftDetection.ignore: [{paths: [JSON pointers], target: {kind, name, ...}}]`.
DRIFT_DETECTED: Final = "DriftDetected"
DRIFT_CORRECTED: Final = "DriftCorrected"
DRIFT_MESSAGE: Final = "has drifted from the desired state"
DRIFT_MODES: Final = ("enabled", "warn", "disabled")
_DRIFT_LINE: Final = re.compile(
    r"^(?P<kind>[A-Za-z0-9]+)/(?P<namespace>[^/\s]*)/(?P<name>[^\s]+)\s+"
    r"(?P<summary>changed(?: \(.*\))?|removed|excluded|unchanged)\s*$"
)


@dataclass(frozen=True)
class DriftedResource:
    """One line of helm-controller's drift summary."""

    kind: str
    namespace: str
    name: str
    summary: str  # "changed (0 additions, 1 changes, 0 removals)", "removed", ...

    @property
    def changed(self) -> bool:
        return self.summary.startswith("changed")

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


def drifted_resources(message: str) -> list[DriftedResource]:
    """The resources a DriftDetected message names (empty for any other message)."""
    found = []
    for line in message.splitlines():
        match = _DRIFT_LINE.match(line.strip())
        if match is not None and match["summary"] != "unchanged":
            found.append(DriftedResource(**match.groupdict()))
    return found


def api_version(version: str) -> str:
    return f"{GROUP}/{version}"
