"""Gardener etcd-druid facts (gardener/etcd-druid api/core/v1alpha1, gardener pkg/component/etcd).

A reconcile request is the value `reconcile` under either operation annotation: the preferred
`druid.gardener.cloud/operation` (since druid v0.28.0) or the deprecated `gardener.cloud/operation`
(still honoured; gardenlet still writes it, with `gardener.cloud/timestamp`); druid removes BOTH
keys at the end of a successful reconcile, right after setting `status.observedGeneration`
(api/core/v1alpha1/constants.go, helper.go; internal/controller/etcd/reconcile_complete.go).
"""

from __future__ import annotations

from typing import Any, Final

GROUP: Final = "druid.gardener.cloud"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "Etcd"
PLURAL: Final = "etcds"

# api/core/v1alpha1/constants.go GardenerOperationAnnotation, DruidOperationAnnotation
GARDENER_OPERATION: Final = "gardener.cloud/operation"
DRUID_OPERATION: Final = "druid.gardener.cloud/operation"
OPERATION_KEYS: Final = (DRUID_OPERATION, GARDENER_OPERATION)
OPERATION_RECONCILE: Final = "reconcile"

# api/core/v1alpha1/etcd.go ConditionTypeAllMembersUpdated
ALL_MEMBERS_UPDATED: Final = "AllMembersUpdated"


def operation_annotations(obj: dict[str, Any]) -> dict[str, str]:
    """The operation annotations the Etcd carries (either key, both when both are there)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return {key: str(annotations[key]) for key in OPERATION_KEYS if key in annotations}


def not_done(obj: dict[str, Any]) -> list[str]:
    """Why Gardener would not call this Etcd done, ignoring the operation annotation; empty when it
    would (gardener pkg/component/etcd/etcd/waiter.go CheckEtcdObject: no lastErrors,
    observedGeneration == generation, AllMembersUpdated True when replicas > 0, ready)."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    reasons: list[str] = []
    if status.get("lastErrors"):
        reasons.append("status.lastErrors is not empty")
    if status.get("observedGeneration") != metadata.get("generation"):
        reasons.append("observedGeneration differs from generation")
    if int(spec.get("replicas") or 0) > 0:
        updated = [
            c
            for c in status.get("conditions") or []
            if isinstance(c, dict) and c.get("type") == ALL_MEMBERS_UPDATED
        ]
        if not updated or updated[0].get("status") != "True":
            reasons.append(f"condition {ALL_MEMBERS_UPDATED} is not True")
    if status.get("ready") is not True:
        reasons.append("status.ready is not true")
    return reasons


def druid_report(obj: dict[str, Any]) -> dict[str, str]:
    """What druid reported in status, as text: lastErrors and lastOperation (etcd.go LastError,
    LastOperation)."""
    status = obj.get("status") or {}
    errors = "; ".join(
        f"{e.get('code', '')}: {e.get('description', '')}".strip(": ")
        for e in status.get("lastErrors") or []
        if isinstance(e, dict)
    )
    operation = status.get("lastOperation") or {}
    last = ""
    if isinstance(operation, dict) and operation:
        last = " ".join(str(operation.get(k, "")) for k in ("type", "state") if operation.get(k))
        if operation.get("description"):
            last += f": {operation['description']}"
    return {"lastErrors": errors or "none", "lastOperation": last or "none"}
