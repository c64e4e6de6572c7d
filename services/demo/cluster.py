"""The cluster's side of the scenarios: controllers played on the sandbox's write hooks.

A real cluster answers Medic's writes: helm-controller reconciles when `requestedAt` changes, the
Fleet agent redeploys when `forceSyncGeneration` moves, etcd-druid handles a (re-)applied
operation annotation. Each `Controller` does the same on the sandbox, or deliberately does not
(`healthy=False`) so that verification fails and Medic escalates. Hooks run inside the write
(sandbox LIMITS), so they only record a wish and apply it with their own write. On a real
kube-apiserver the same controllers are fed by watches (`medic.testing.played.ApiWorld`), so
their decisions live here only, for both servers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medic.demo.world import World
from medic.testing import objects
from medic.upstream import fleet, flux, gardener

Obj = dict[str, Any]


def _meta(obj: Obj) -> tuple[str, str]:
    return obj["metadata"]["name"], obj["metadata"].get("namespace", "")


def _annotations(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


@dataclass
class HelmController:
    """helm-controller: a new `requestedAt` token is handled; `healthy`: the release gets Ready."""

    healthy: bool = True
    only: set[tuple[str, str]] | None = None  # (namespace, name) it answers for; None = all
    handled: list[tuple[str, str, str]] = field(default_factory=list)

    def install(self, store: World) -> None:
        store.on_write(flux.KIND, self.on_write)

    def on_write(self, store: World, change: str, obj: Obj) -> None:
        name, namespace = _meta(obj)
        if change != "MODIFIED" or (self.only is not None and (namespace, name) not in self.only):
            return
        annotations = _annotations(obj)
        token = annotations.get(flux.REQUESTED_AT)
        status = obj.get("status") or {}
        if not token or status.get("lastHandledReconcileAt") == token:
            return
        self.handled.append((namespace, name, token))
        if self.healthy:
            new_status = objects.ready_status(name, namespace)
        else:  # the reconcile ran and failed again
            new_status = objects.etcd_failed_status(name, namespace)
        new_status["lastHandledReconcileAt"] = token
        if annotations.get(flux.FORCE_AT) == token:
            new_status["lastHandledForceAt"] = token
        if annotations.get(flux.RESET_AT) == token:
            new_status["lastHandledResetAt"] = token
        api_version = obj["apiVersion"]
        store.patch_merge(
            api_version,
            flux.KIND,
            name,
            namespace,
            {"status": {**new_status, "conditions": new_status["conditions"]}},
            status=True,
            manager="helm-controller",
        )


@dataclass
class FleetAgent:
    """Fleet's controller and agent: a moved `forceSyncGeneration` on a Bundle is copied into its
    BundleDeployments' `spec.options` (as the controller does, fleet options/calculate.go); the
    agent then redeploys (`healthy`): options Secret back, waitingForValues cleared, Ready, and
    `status.syncGeneration` recorded (fleet agent monitor/updatestatus.go)."""

    healthy: bool = True
    handled: list[tuple[str, str, int]] = field(default_factory=list)

    def install(self, store: World) -> None:
        store.on_write("Bundle", self.on_write)

    def on_write(self, store: World, change: str, obj: Obj) -> None:
        name, namespace = _meta(obj)
        generation = int((obj.get("spec") or {}).get("forceSyncGeneration") or 0)
        seen = [g for n, ns, g in self.handled if (ns, n) == (namespace, name)]
        if change != "MODIFIED" or generation == 0 or generation in seen:
            return
        self.handled.append((name, namespace, generation))
        for bd in store.list(fleet.API_VERSION, fleet.KIND):
            labels = bd["metadata"].get("labels") or {}
            if (labels.get(fleet.BUNDLE_LABEL), labels.get(fleet.BUNDLE_NAMESPACE_LABEL)) != (
                name,
                namespace,
            ):
                continue
            bd_name, bd_namespace = _meta(bd)
            store.patch_merge(
                fleet.API_VERSION,
                fleet.KIND,
                bd_name,
                bd_namespace,
                {"spec": {"options": {"forceSyncGeneration": generation}}},
                manager="fleetcontroller",
            )
            if self.healthy:
                self.redeploy(store, bd_name, bd_namespace, generation)

    @staticmethod
    def redeploy(store: World, name: str, namespace: str, generation: int = 0) -> None:
        """What the controller and agent do next: the options Secret again, and Ready."""
        store.put(objects.values_secret(name, namespace), manager="fleetcontroller")
        store.patch_merge(
            fleet.API_VERSION,
            fleet.KIND,
            name,
            namespace,
            {"spec": {"waitingForValues": None}},
            manager="fleetcontroller",
        )
        ready = objects.bundledeployment(name, namespace)["status"]
        if generation:
            ready["syncGeneration"] = generation
        store.patch_merge(
            fleet.API_VERSION,
            fleet.KIND,
            name,
            namespace,
            {"status": {**ready, "conditions": None, "display": None}},
            status=True,
            manager="fleet-agent",
        )


@dataclass
class EtcdDruid:
    """etcd-druid: an operation annotation re-applied after a removal is handled; at the end of
    the reconcile druid sets observedGeneration and removes BOTH operation keys
    (etcd-druid internal/controller/etcd/reconcile_complete.go). Unhealthy: the reconcile never
    completes (backup-restore does not report, as in the S5 incident): lastOperation stays
    Processing and the annotation stays."""

    healthy: bool = True
    removed: set[tuple[str, str]] = field(default_factory=set)
    handled: list[tuple[str, str]] = field(default_factory=list)

    def install(self, store: World) -> None:
        store.on_write(gardener.KIND, self.on_write)

    def on_write(self, store: World, change: str, obj: Obj) -> None:
        key = _meta(obj)
        present = gardener.operation_annotations(obj)
        if change != "MODIFIED":
            return
        if not present:
            self.removed.add(key)
            return
        if key not in self.removed:
            return  # the annotation that was stuck all along: druid never answers it
        self.removed.discard(key)
        self.handled.append(key)
        name, namespace = key
        if not self.healthy:
            store.patch_merge(
                gardener.API_VERSION,
                gardener.KIND,
                name,
                namespace,
                {"status": {"lastOperation": unfinished_reconcile()}},
                status=True,
                manager="etcd-druid",
            )
            return
        store.patch_merge(
            gardener.API_VERSION,
            gardener.KIND,
            name,
            namespace,
            {"metadata": {"annotations": dict.fromkeys(gardener.OPERATION_KEYS)}},
            manager="etcd-druid",
        )


def unfinished_reconcile() -> Obj:
    """The lastOperation of a reconcile druid started and never finished (etcd.go LastOperation)."""
    return {
        "type": "Reconcile",
        "state": "Processing",
        "description": "Waiting for etcd-backup-restore to report the member status",
        "runID": "6a0b1f0e-0000-4000-8000-000000000002",
        "lastUpdateTime": objects.timestamp(),
    }
