"""Realistic objects of the five scenarios, as their controllers write them.

A Flux HelmRelease as `flux create helmrelease` makes it, with the status helm-controller writes
(helm-controller api/v2 HelmReleaseStatus); a Fleet BundleDeployment (fleet v1alpha1); a Gardener
Etcd (etcd-druid v1alpha1). Used by the end-to-end tests, the benchmarks and `medic demo`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from medic.upstream import etcd, fleet, flux, gardener


def timestamp(at: datetime | None = None, ago: float = 0.0) -> str:
    moment = (at or datetime.now(UTC)) - timedelta(seconds=ago)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    kind: str, status: str, reason: str, message: str, *, generation: int = 1, ago: float = 0.0
) -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": timestamp(ago=ago),
        "observedGeneration": generation,
    }


def druid_condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
    """etcd-druid's Condition: `lastUpdateTime` required, no observedGeneration
    (etcd-druid api/core/v1alpha1 types_common.go, Condition)."""
    found = condition(kind, status, reason, message)
    del found["observedGeneration"]
    return {**found, "lastUpdateTime": found["lastTransitionTime"]}


def helmrelease(
    name: str,
    namespace: str = "apps",
    *,
    version: str = flux.STORAGE_VERSION,
    chart: str = "podinfo",
    chart_version: str = "6.5.4",
    depends_on: list[str] | None = None,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A HelmRelease as `flux create helmrelease` writes it (spec only unless status given)."""
    spec: dict[str, Any] = {
        "interval": "10m",
        "releaseName": name,
        "chart": {
            "spec": {
                "chart": chart,
                "version": chart_version,
                "sourceRef": {"kind": "HelmRepository", "name": chart, "namespace": "flux-system"},
                "interval": "1m",
            }
        },
        "install": {"remediation": {"retries": 0}},
        "upgrade": {"remediation": {"retries": 0}},
        "values": {"replicaCount": 2},
    }
    if depends_on:
        spec["dependsOn"] = [{"name": dep} for dep in depends_on]
    obj: dict[str, Any] = {
        "apiVersion": flux.api_version(version),
        "kind": flux.KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "kustomize.toolkit.fluxcd.io/name": "apps",
                "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
            },
            "finalizers": ["finalizers.fluxcd.io"],
        },
        "spec": spec,
    }
    if status is not None:
        obj["status"] = status
    return obj


def ready_status(name: str, namespace: str, chart_version: str = "6.5.4") -> dict[str, Any]:
    message = (
        f"Helm install succeeded for release {namespace}/{name}.v1 "
        f"with chart podinfo@{chart_version}"
    )
    return {
        "observedGeneration": 1,
        "conditions": [
            condition(flux.READY, "True", "InstallSucceeded", message),
            condition(flux.RELEASED, "True", "InstallSucceeded", message),
        ],
        "lastAttemptedRevision": chart_version,
        "lastAttemptedConfigDigest": "sha256:" + "0" * 64,
        "helmChart": f"flux-system/{namespace}-{name}",
    }


def etcd_failed_status(
    name: str, namespace: str, error: str = etcd.LEADER_CHANGED, chart_version: str = "6.5.4"
) -> dict[str, Any]:
    """S1: install failed on a transient etcd error; retries (0) exhausted, so Flux stalls."""
    message = (
        f"Helm install failed for release {namespace}/{name} with chart "
        f"podinfo@{chart_version}: {error}"
    )
    return {
        "observedGeneration": 1,
        "conditions": [
            condition(flux.READY, "False", flux.INSTALL_FAILED, message),
            condition(flux.RELEASED, "False", flux.INSTALL_FAILED, message),
            condition(
                flux.STALLED, "True", flux.RETRIES_EXCEEDED, "Failed to install after 1 attempt(s)"
            ),
        ],
        "failures": 1,
        "installFailures": 1,
        "lastAttemptedRevision": chart_version,
        "helmChart": f"flux-system/{namespace}-{name}",
    }


def stale_status(dependency: str) -> dict[str, Any]:
    """S2: after a Flux upgrade: old message format and a phantom dependency error."""
    return {
        "observedGeneration": 1,
        "conditions": [
            condition(
                flux.READY,
                "False",
                flux.DEPENDENCY_NOT_READY,
                f"dependency '{dependency}' is not ready",
                ago=900,
            ),
            condition(flux.RELEASED, "True", "UpgradeSucceeded", "Helm upgrade succeeded", ago=900),
        ],
        "lastAppliedRevision": "6.5.3",
        "lastAttemptedRevision": "6.5.3",
    }


def bundledeployment(
    name: str,
    namespace: str,
    *,
    error: str | None = None,
    bundle_namespace: str = "fleet-default",
    waiting_for_values: bool = False,
    force_sync_generation: int = 0,
) -> dict[str, Any]:
    """S4: a Fleet BundleDeployment as the controller writes it: named after its Bundle, in the
    cluster's namespace, labelled with the Bundle's name and namespace, its values in the
    options Secret (`valuesHash`); with `error`, the agent reports it in Ready=False."""
    status: dict[str, Any] = {"ready": error is None, "nonModified": True}
    if error is not None:
        status["conditions"] = [condition(fleet.READY, "False", "Error", error)]
        status["display"] = {"state": "ErrApplied", "message": error}
    spec: dict[str, Any] = {
        "deploymentID": f"s-{name}:0123456789abcdef",
        "valuesHash": "0" * 64,
        "options": {"helm": {"releaseName": name}},
    }
    if force_sync_generation:
        spec["options"]["forceSyncGeneration"] = force_sync_generation
    if waiting_for_values:
        spec["waitingForValues"] = True
    return {
        "apiVersion": fleet.API_VERSION,
        "kind": fleet.KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {fleet.BUNDLE_LABEL: name, fleet.BUNDLE_NAMESPACE_LABEL: bundle_namespace},
        },
        "spec": spec,
        "status": status,
    }


def bundle(name: str, namespace: str = "fleet-default") -> dict[str, Any]:
    """S4: the Fleet Bundle a BundleDeployment is generated from (its forceSyncGeneration)."""
    return {
        "apiVersion": fleet.API_VERSION,
        "kind": "Bundle",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "helm": {"releaseName": name},
            "resources": [{"name": "cm.yaml", "content": "kind: ConfigMap\n"}],
            "targets": [{"clusterGroup": "default"}],
        },
    }


def values_secret(name: str, namespace: str) -> dict[str, Any]:
    """S4: the BundleDeployment's options Secret, as the Fleet controller creates it."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": fleet.OPTIONS_SECRET_TYPE,
        "data": {
            fleet.VALUES_KEY: "eyJyZXBsaWNhQ291bnQiOjJ9",  # {"replicaCount":2}
            fleet.STAGED_VALUES_KEY: "eyJyZXBsaWNhQ291bnQiOjJ9",
        },
    }


def gardener_etcd(
    name: str,
    namespace: str,
    *,
    operation: bool = True,
    key: str = gardener.GARDENER_OPERATION,
) -> dict[str, Any]:
    """S5: an Etcd druid has reconciled (done by Gardener's check), still carrying the operation
    annotation under `key`; fields as the real Etcd CRD (etcd-druid v0.31) requires them."""
    annotations = {key: gardener.OPERATION_RECONCILE} if operation else {}
    return {
        "apiVersion": gardener.API_VERSION,
        "kind": gardener.KIND,
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {
            "replicas": 3,
            # Required by etcd-druid's CRD (api core/v1alpha1 EtcdSpec.Labels); gardenlet's values.
            "labels": {"app": "etcd-statefulset", "gardener.cloud/role": "controlplane"},
            "etcd": {"quota": "8Gi"},
            "backup": {"store": {"prefix": name}},
        },
        "status": {
            "observedGeneration": 1,
            "ready": True,
            "replicas": 3,
            "readyReplicas": 3,
            "currentReplicas": 3,
            "conditions": [
                druid_condition(
                    "Ready", "True", "Quorate", "The majority of ETCD members is ready"
                ),
                druid_condition(
                    "AllMembersReady", "True", "AllMembersReady", "All members are ready"
                ),
                druid_condition(
                    gardener.ALL_MEMBERS_UPDATED, "True", "AllMembersUpdated", "All members updated"
                ),
            ],
            "lastOperation": {
                "type": "Reconcile",
                "state": "Succeeded",
                "description": "Reconciliation succeeded",
                "runID": "6a0b1f0e-0000-4000-8000-000000000001",
                "lastUpdateTime": timestamp(),
            },
        },
    }
