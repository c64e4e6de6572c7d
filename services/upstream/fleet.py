"""Rancher Fleet facts (rancher/fleet v0.15, pkg/apis/fleet.cattle.io/v1alpha1).

The options Secret of a BundleDeployment has its name and namespace, type
`fleet.cattle.io/bundle-deployment/v1alpha1`, keys `values`/`stagedValues`, and is needed only when
`spec.valuesHash` is set (bundledeployment_types.go SecretTypeBundleDeploymentOptions;
internal/helmvalues/hash.go; internal/cmd/controller/target/builder.go). While it is missing the
controller sets `spec.waitingForValues` (>= v0.15) and the agent skips the deployment; the bundle
reconciler then does not write the options Secret either (reconciler/bundle_controller.go: "skip
writing the secret so we don't overwrite it with empty values"), so a Secret that is really gone
may not come back from a redeploy request, and Medic's verification then escalates.
`forceSyncGeneration` is read from the Bundle (or its GitRepo / HelmOp) and copied by the
controller into the BundleDeployment's `spec.options` (controller options/calculate.go);
the controller owns the BundleDeployment spec, so a redeploy is requested on the owner.
"""

from __future__ import annotations

from typing import Any, Final

GROUP: Final = "fleet.cattle.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "BundleDeployment"
PLURAL: Final = "bundledeployments"

# gitrepo_types.go RepoLabel / BundleLabel / BundleNamespaceLabel; helmop_types.go HelmOpLabel
BUNDLE_LABEL: Final = "fleet.cattle.io/bundle-name"
BUNDLE_NAMESPACE_LABEL: Final = "fleet.cattle.io/bundle-namespace"
REPO_LABEL: Final = "fleet.cattle.io/repo-name"
HELMOP_LABEL: Final = "fleet.cattle.io/fleet-helm-name"

# The objects whose `spec.forceSyncGeneration` Fleet reads (kind -> plural).
OWNER_PLURALS: Final = {"Bundle": "bundles", "GitRepo": "gitrepos", "HelmOp": "helmops"}
FORCE_SYNC_GENERATION: Final = "forceSyncGeneration"

# bundledeployment_types.go SecretTypeBundleDeploymentOptions; internal/helmvalues/hash.go
OPTIONS_SECRET_TYPE: Final = "fleet.cattle.io/bundle-deployment/v1alpha1"
VALUES_KEY: Final = "values"
STAGED_VALUES_KEY: Final = "stagedValues"
# The per-Bundle values Secret: a different Secret (bundle_types.go), not the one S4 is about.
BUNDLE_VALUES_SECRET_TYPE: Final = "fleet.cattle.io/bundle-values/v1alpha1"

READY: Final = "Ready"
DEPLOYED: Final = "Deployed"


def owner_of(bundledeployment: dict[str, Any]) -> tuple[str, str, str] | None:
    """(kind, namespace, name) of the object whose forceSyncGeneration feeds this
    BundleDeployment: its GitRepo or HelmOp when the Bundle came from one (their controllers
    overwrite the Bundle's field), else the Bundle; None without Fleet's labels."""
    labels = (bundledeployment.get("metadata") or {}).get("labels") or {}
    namespace = labels.get(BUNDLE_NAMESPACE_LABEL)
    if not namespace:
        return None
    if labels.get(REPO_LABEL):
        return "GitRepo", str(namespace), str(labels[REPO_LABEL])
    if labels.get(HELMOP_LABEL):
        return "HelmOp", str(namespace), str(labels[HELMOP_LABEL])
    if labels.get(BUNDLE_LABEL):
        return "Bundle", str(namespace), str(labels[BUNDLE_LABEL])
    return None


def needs_options_secret(bundledeployment: dict[str, Any]) -> bool:
    return bool((bundledeployment.get("spec") or {}).get("valuesHash"))


def waiting_for_values(bundledeployment: dict[str, Any]) -> bool:
    return bool((bundledeployment.get("spec") or {}).get("waitingForValues"))


def sync_generation(bundledeployment: dict[str, Any]) -> int:
    """The forceSyncGeneration the agent last deployed: it copies
    `spec.options.forceSyncGeneration` into `status.syncGeneration` after each deployment
    (agent deployer/monitor/updatestatus.go), so it proves the redeploy, not just the request."""
    value = (bundledeployment.get("status") or {}).get("syncGeneration")
    return int(value) if isinstance(value, int) else 0
