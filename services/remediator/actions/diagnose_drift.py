"""`diagnose-drift`: a drift-correction loop is reported with the fields that drift, not fought.

helm-controller corrects drift (`spec.driftDetection.mode: enabled`) and another writer (an HPA
on `/spec/replicas`, a mutating webhook, an operator) sets the field back, so `DriftDetected`
repeats for ever. Forcing reconciles would only feed the loop (scenarios.md S2). For each object
the Event names as changed, this action compares the desired state (the manifest of the newest
deployed revision in Helm's storage) with the live object, lists the JSON paths that differ and
who else writes the object (managedFields), and refuses with that diagnosis and a ready
`spec.driftDetection.ignore` entry, so the rule escalates to people once instead of looping.
It writes nothing.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from medic.remediator.actions.base import ActionContext, Plan, fixed, resource_type
from medic.runtime.kube import SECRETS, KubeError, NotFoundError, ResourceType
from medic.schemas import Event, ObjectRef, ReleaseEvent
from medic.upstream import flux, helm

# Kinds a chart commonly renders whose drift can be read (get only); any other kind is reported
# as unreadable rather than granted a wildcard.
READABLE: dict[str, tuple[str, str]] = {
    "Deployment": ("apps", "deployments"),
    "StatefulSet": ("apps", "statefulsets"),
    "DaemonSet": ("apps", "daemonsets"),
    "Service": ("", "services"),
    "ConfigMap": ("", "configmaps"),
    "ServiceAccount": ("", "serviceaccounts"),
    "HorizontalPodAutoscaler": ("autoscaling", "horizontalpodautoscalers"),
    "Ingress": ("networking.k8s.io", "ingresses"),
    "Job": ("batch", "jobs"),
    "CronJob": ("batch", "cronjobs"),
}
OWN_MANAGERS = frozenset({"helm-controller", "helm"})


class DiagnoseDriftParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    max_paths: int = Field(default=20, ge=1, alias="maxPaths", description="Per object.")


def differing_paths(desired: Any, live: Any, path: str = "") -> list[str]:
    """RFC 6901 paths of the desired leaves whose live value differs (extra live fields, set
    by the API server or defaulting, are not drift)."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return [path or "/"]
        found: list[str] = []
        for key, value in desired.items():
            escaped = str(key).replace("~", "~0").replace("/", "~1")
            found.extend(differing_paths(value, live.get(key), f"{path}/{escaped}"))
        return found
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return [path]
        found = []
        for index, (want, have) in enumerate(zip(desired, live, strict=True)):
            found.extend(differing_paths(want, have, f"{path}/{index}"))
        return found
    return [] if desired == live else [path]


def other_writers(live: dict[str, Any]) -> list[str]:
    managers = (live.get("metadata") or {}).get("managedFields") or []
    return sorted({str(m.get("manager")) for m in managers} - OWN_MANAGERS - {"None"})


class DiagnoseDriftAction:
    name = "diagnose-drift"
    params_model: type[BaseModel] = DiagnoseDriftParams
    rbac = (
        {"apiGroups": [flux.GROUP], "resources": [flux.PLURAL], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]},
        *(
            {"apiGroups": [group], "resources": [plural], "verbs": ["get"]}
            for group, plural in READABLE.values()
        ),
    )
    example: dict[str, Any] = {"action": {"name": "diagnose-drift"}, "notify": ["platform"]}

    async def plan(
        self, ctx: ActionContext, target: ObjectRef, params: BaseModel, event: Event
    ) -> Plan:
        assert isinstance(params, DiagnoseDriftParams)
        try:
            release = await ctx.kube.get(
                resource_type(target, flux.PLURAL), target.name, target.namespace
            )
        except NotFoundError:
            return fixed("helmrelease-deleted")
        message = event.data.evidence.message if isinstance(event, ReleaseEvent) else ""
        changed = [d for d in flux.drifted_objects(message) if d.change == "changed"]
        manifest = await self._manifest(ctx, release)
        drifting = [await self._diagnose(ctx, d, manifest, release, params) for d in changed]
        ignore = [
            {"paths": d["paths"], "target": {"kind": d["kind"], "name": d["name"]}}
            for d in drifting
            if d.get("paths")
        ]
        summary = "; ".join(
            f"{d['kind']}/{d['name']}: {', '.join(d.get('paths') or ['?'])}"
            + (f" (also written by {', '.join(d['writers'])})" if d.get("writers") else "")
            for d in drifting
        )
        count = event.data.evidence.fields.get("count") if isinstance(event, ReleaseEvent) else None
        return Plan(
            verdict="refuse",
            reason=f"drift-correction loop, not retried: {summary or 'no changed object named'}",
            diagnosis={
                "driftDetectedCount": count,
                "driftDetection": (release.get("spec") or {}).get("driftDetection") or {},
                "drifting": drifting,
                "suggestion": (
                    "stop the other writer, or let helm-controller ignore these paths: "
                    "merge `suggestedPatch` into the HelmRelease"
                ),
                "suggestedPatch": {"spec": {"driftDetection": {"ignore": ignore}}},
            },
        )

    async def _manifest(self, ctx: ActionContext, release: dict[str, Any]) -> list[dict[str, Any]]:
        """The objects of the newest deployed revision, from Helm's storage."""
        name, namespace = flux.release_name(release)
        items, _ = await ctx.kube.list(
            SECRETS, namespace, label_selector=f"{helm.LABEL_NAME}={name},owner=helm"
        )
        deployed = [
            i
            for i in items
            if ((i.get("metadata") or {}).get("labels") or {}).get(helm.LABEL_STATUS) == "deployed"
        ]
        if not deployed:
            return []
        newest = max(
            deployed, key=lambda i: int(i["metadata"]["labels"].get(helm.LABEL_VERSION, 0))
        )
        try:
            record = helm.decode_secret_data(str(newest["data"][helm.DATA_KEY]))
            return [d for d in yaml.safe_load_all(str(record.get("manifest", ""))) if d]
        except (KeyError, helm.ReleaseDecodeError, yaml.YAMLError):
            return []

    async def _diagnose(
        self,
        ctx: ActionContext,
        drifted: flux.DriftedObject,
        manifest: list[dict[str, Any]],
        release: dict[str, Any],
        params: DiagnoseDriftParams,
    ) -> dict[str, Any]:
        spec = release.get("spec") or {}
        namespace = (
            drifted.namespace or spec.get("targetNamespace") or release["metadata"].get("namespace")
        )
        found: dict[str, Any] = {"kind": drifted.kind, "namespace": namespace, "name": drifted.name}
        desired = next(
            (
                d
                for d in manifest
                if d.get("kind") == drifted.kind
                and (d.get("metadata") or {}).get("name") == drifted.name
            ),
            None,
        )
        if desired is None:
            found["error"] = "not in the deployed release manifest"
            return found
        group, plural = READABLE.get(drifted.kind, ("", ""))
        if not plural:
            found["error"] = f"Medic is not granted to read {drifted.kind}"
            return found
        version = str(desired.get("apiVersion", "v1")).rpartition("/")[2]
        rt = ResourceType(group, version, plural, drifted.kind)
        try:
            live = await ctx.kube.get(rt, drifted.name, namespace)
        except KubeError as exc:
            found["error"] = f"cannot read it: {exc}"[:300]
            return found
        desired_body = {k: v for k, v in desired.items() if k not in {"apiVersion", "kind"}}
        desired_body.get("metadata", {}).pop("namespace", None)
        found["paths"] = differing_paths(desired_body, live)[: params.max_paths]
        found["writers"] = other_writers(live)
        return found

    async def verify(self, ctx: ActionContext, plan: Plan) -> bool:
        return True  # never reached: the plan always refuses (nothing is written)


ACTION = DiagnoseDriftAction()
