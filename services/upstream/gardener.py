"""Gardener etcd-druid facts (gardener/etcd-druid api/core/v1alpha1/etcd.go, gardener constants).

`gardener.cloud/operation` (v1beta1constants.GardenerOperation) is set to `reconcile` by
gardenlet and removed by etcd-druid once the Etcd is reconciled.
"""

from __future__ import annotations

from typing import Final

GROUP: Final = "druid.gardener.cloud"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "Etcd"
PLURAL: Final = "etcds"

OPERATION: Final = "gardener.cloud/operation"
OPERATION_RECONCILE: Final = "reconcile"
