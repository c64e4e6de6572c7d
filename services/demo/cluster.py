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
from medic.upstream import flux, gardener

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
    """The Fleet agent: a moved `forceSyncGeneration` redeploys: values Secret back, Ready."""

    healthy: bool = True
    handled: list[tuple[str, str, int]] = field(default_factory=list)

    def install(self, store: World) -> None:
        store.on_write("BundleDeployment", self.on_write)

    def on_write(self, store: World, change: str, obj: Obj) -> None:
        name, namespace = _meta(obj)
        options = (obj.get("spec") or {}).get("options") or {}
        generation = int(options.get("forceSyncGeneration") or 0)
        seen = [g for n, ns, g in self.handled if (ns, n) == (namespace, name)]
        if change != "MODIFIED" or generation == 0 or generation in seen:
            return
        self.handled.append((name, namespace, generation))
        if self.healthy:
            self.redeploy(store, name, namespace)

    @staticmethod
    def redeploy(store: World, name: str, namespace: str) -> None:
        """What the agent's next reconcile does: the values Secret again, and Ready."""
        store.put(objects.values_secret(name, namespace), manager="fleet-agent")
        ready = objects.bundledeployment(name, namespace)["status"]
        store.patch_merge(
            "fleet.cattle.io/v1alpha1",
            "BundleDeployment",
            name,
            namespace,
            {"status": {**ready, "conditions": None, "display": None}},
            status=True,
            manager="fleet-agent",
        )


@dataclass
class EtcdDruid:
    """etcd-druid: an operation annotation re-applied after a removal is handled, then removed."""

    healthy: bool = True
    removed: set[tuple[str, str]] = field(default_factory=set)
    handled: list[tuple[str, str]] = field(default_factory=list)

    def install(self, store: World) -> None:
        store.on_write(gardener.KIND, self.on_write)

    def on_write(self, store: World, change: str, obj: Obj) -> None:
        key = _meta(obj)
        present = gardener.OPERATION in _annotations(obj)
        if change != "MODIFIED":
            return
        if not present:
            self.removed.add(key)
            return
        if key not in self.removed:
            return  # the annotation that was stuck all along: druid never answers it
        self.removed.discard(key)
        self.handled.append(key)
        if self.healthy:
            name, namespace = key
            key_path = gardener.OPERATION
            store.patch_merge(
                gardener.API_VERSION,
                gardener.KIND,
                name,
                namespace,
                {"metadata": {"annotations": {key_path: None}}},
                manager="etcd-druid",
            )
