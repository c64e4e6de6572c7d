"""Rancher Fleet facts (rancher/fleet pkg/apis/fleet.cattle.io/v1alpha1/bundledeployment_types.go).

The values Secret of a BundleDeployment has the BundleDeployment's name, in its namespace
(fleet internal/cmd/controller/.../bundledeployment: `bundle.Values` moved to a Secret in 0.10).
Force redeploy: `spec.options.forceSyncGeneration` (and `spec.stagedOptions`), per
bundledeployment_types.go `BundleDeploymentOptions.ForceSyncGeneration` (*verified* field path).
"""

from __future__ import annotations

from typing import Final

GROUP: Final = "fleet.cattle.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "BundleDeployment"
PLURAL: Final = "bundledeployments"

FORCE_SYNC_GENERATION_PATH: Final = ("spec", "options", "forceSyncGeneration")
# Secret type fleet uses for BundleDeployment values (fleet pkg/apis/.../secret types).
VALUES_SECRET_TYPE: Final = "fleet.cattle.io/bundle-values/v1alpha1"
# Condition written by the agent when deploying fails (fleet: "Ready"/"Deployed"/"Installed").
READY: Final = "Ready"
DEPLOYED: Final = "Deployed"
MISSING_SECRET_TEXT: Final = "secret"  # messages read e.g. `secrets "<name>" not found`
