"""`report-drift`: explain a drift loop instead of joining it (scenarios.md S2).

helm-controller's DriftDetected Event names the resources that drifted, never the fields. This
action reads what Helm last applied (the manifest in the release record, from Helm's storage
Secrets) and the live objects, names the fields whose live value differs from the manifest,
and suggests `spec.driftDetection.ignore` entries for them. It never writes: the plan is
refused, so the result is `escalated` with the drift in its reason and diagnosis, and a person
decides who is right, the other writer (an HPA on /spec/replicas, a mutating webhook) or the
chart. Not a general diff: only fields the manifest sets are compared, as helm-controller's
dry-run apply does.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from medic.remediator.actions.base import (
    KNOWN_PLURALS,
    ActionContext,
    Plan,
    fixed,
    resource_type,
)
from medic.runtime.kube import SECRETS, ForbiddenError, NotFoundError, ResourceType
from medic.schemas import Event, ObjectRef, ReleaseEvent
from medic.upstream import flux, helm

Drift = tuple[str, Any, Any]  # (JSON pointer, in the manifest, live)
Key = tuple[str, str, str]  # (kind, namespace, name)
READABLE = (  # what drift is usually found on; other kinds are reported as unreadable
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"]},
    {"apiGroups": [""], "resources": ["services", "configmaps", "serviceaccounts"]},
)


class ReportDriftParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    max_fields: int = Field(default=10, ge=1, alias="maxFields", description="Per resource.")


def pointer(path: str, key: str) -> str:
    """RFC 6901, as `spec.driftDetection.ignore[].paths` expects."""
    return f"{path}/{key.replace('~', '~0').replace('/', '~1')}"


def drifting_fields(desired: Any, live: Any, path: str = "") -> list[Drift]:
    """Fields the manifest sets whose live value differs (fields only the cluster sets are fine)."""
    if desired in ({}, [], None) and live in ({}, [], None):
        return []
    if isinstance(desired, dict) and (live is None or isinstance(live, dict)):
        found: list[Drift] = []  # a missing map: each field the chart sets in it is missing
        for key, value in desired.items():
            if not (path == "" and key == "status"):
                found += drifting_fields(value, (live or {}).get(key), pointer(path, str(key)))
        return found
    if isinstance(desired, list) and isinstance(live, list) and len(desired) == len(live):
        found = []
        for index, (want, have) in enumerate(zip(desired, live, strict=True)):
            found += drifting_fields(want, have, f"{path}/{index}")
        return found
    return [] if desired == live else [(path or "/", desired, live)]


def manifest_objects(record: dict[str, Any]) -> dict[Key, dict[str, Any]]:
    """The objects Helm applied, by (kind, namespace, name); no namespace = the release's."""
    found: dict[Key, dict[str, Any]] = {}
    for doc in yaml.safe_load_all(str(record.get("manifest") or "")):
        if isinstance(doc, dict) and doc.get("kind") and (doc.get("metadata") or {}).get("name"):
            meta = doc["metadata"]
            namespace = str(meta.get("namespace") or record.get("namespace") or "")
            found[(str(doc["kind"]), namespace, str(meta["name"]))] = doc
    return found


def plural_of(kind: str) -> str:
    """The resource name of a built-in kind (Ingress -> ingresses, NetworkPolicy -> ...ies)."""
    if kind in KNOWN_PLURALS:
        return KNOWN_PLURALS[kind]
    lower = kind.lower()
    if lower.endswith(("s", "x", "ch", "sh")):
        return lower + "es"
    if lower.endswith("y") and lower[-2:-1] not in set("aeiou"):
        return lower[:-1] + "ies"
    return lower + "s"


def live_type(desired: dict[str, Any], namespaced: bool) -> ResourceType:
    api = str(desired.get("apiVersion", "v1"))
    group, version = api.split("/", 1) if "/" in api else ("", api)
    kind = str(desired["kind"])
    return ResourceType(group, version, plural_of(kind), kind, namespaced)


def ignore_entries(drifts: dict[Key, list[Drift]]) -> list[dict[str, Any]]:
    return [
        {"paths": [path for path, _, _ in found], "target": {"kind": kind, "name": name}}
        for (kind, _, name), found in drifts.items()
        if found
    ]


class ReportDriftAction:
    name = "report-drift"
    params_model: type[BaseModel] = ReportDriftParams
    rbac = (
        {"apiGroups": [flux.GROUP], "resources": [flux.PLURAL], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]},
        *({**rule, "verbs": ["get"]} for rule in READABLE),
    )
    example: dict[str, Any] = {"action": {"name": "report-drift", "params": {"maxFields": 10}}}

    async def plan(
        self, ctx: ActionContext, target: ObjectRef, params: BaseModel, event: Event
    ) -> Plan:
        assert isinstance(params, ReportDriftParams)
        try:
            release = await ctx.kube.get(
                resource_type(target, flux.PLURAL), target.name, target.namespace
            )
        except NotFoundError:
            return fixed("object-deleted")
        evidence = event.data.evidence if isinstance(event, ReleaseEvent) else None
        drifted = flux.drifted_resources(evidence.message if evidence else "")
        if not drifted:
            return Plan(verdict="skip", reason="no drift summary in the event")
        record, notes = await self._record(ctx, release, target)
        manifest = manifest_objects(record) if record else {}
        drifts: dict[Key, list[Drift]] = {}
        for resource in drifted:
            key = (resource.kind, resource.namespace, resource.name)
            if not resource.changed:
                notes.append(f"{resource} {resource.summary}")
            elif key not in manifest:
                notes.append(f"{resource}: not in the release manifest")
            else:
                drifts[key] = await self._compare(ctx, manifest[key], key, notes)
                drifts[key] = drifts[key][: params.max_fields]
        return self._report(release, drifts, notes, evidence.fields if evidence else {})

    async def _record(
        self, ctx: ActionContext, release: dict[str, Any], target: ObjectRef
    ) -> tuple[dict[str, Any] | None, list[str]]:
        """The newest deployed release record (helm-controller: spec.releaseName, else
        [targetNamespace-]name, stored in spec.storageNamespace, else the HelmRelease's)."""
        spec = release.get("spec") or {}
        name = spec.get("releaseName") or "-".join(
            part for part in (spec.get("targetNamespace"), target.name) if part
        )
        namespace = spec.get("storageNamespace") or target.namespace
        selector = f"{helm.LABEL_NAME}={name},{helm.LABEL_OWNER}={helm.OWNER}"
        try:
            secrets, _ = await ctx.kube.list(SECRETS, namespace, label_selector=selector)
        except ForbiddenError:
            return None, [f"cannot list Helm release Secrets in {namespace} (RBAC)"]

        def rank(secret: dict[str, Any]) -> tuple[bool, int]:
            labels = (secret.get("metadata") or {}).get("labels") or {}
            version = str(labels.get(helm.LABEL_VERSION, "0"))
            deployed = labels.get(helm.LABEL_STATUS) == helm.ReleaseStatus.DEPLOYED
            return deployed, int(version) if version.isdigit() else 0

        if not secrets:
            return None, [f"no Helm release {namespace}/{name} in storage"]
        newest = max(secrets, key=rank)
        try:
            return helm.decode_secret_data(str(newest["data"][helm.DATA_KEY])), []
        except (KeyError, helm.ReleaseDecodeError) as exc:
            return None, [f"release record unreadable: {exc}"]

    async def _compare(
        self, ctx: ActionContext, desired: dict[str, Any], key: Key, notes: list[str]
    ) -> list[Drift]:
        kind, namespace, name = key
        rt = live_type(desired, namespaced=bool(namespace))
        try:
            live = await ctx.kube.get(rt, name, namespace or None)
        except NotFoundError:
            notes.append(f"{kind}/{namespace}/{name}: deleted from the cluster")
            return []
        except ForbiddenError:
            notes.append(f"{kind}/{namespace}/{name}: cannot read it (RBAC)")
            return []
        return drifting_fields(desired, live)

    def _report(
        self,
        release: dict[str, Any],
        drifts: dict[Key, list[Drift]],
        notes: list[str],
        fields: dict[str, Any],
    ) -> Plan:
        mode = ((release.get("spec") or {}).get("driftDetection") or {}).get("mode", "disabled")
        named = [
            f"{kind}/{namespace}/{name} {path} (chart: {_show(want)}, live: {_show(have)})"
            for (kind, namespace, name), found in drifts.items()
            for path, want, have in found
        ]
        ignore = ignore_entries(drifts)
        # strings, so every channel prints them as they are
        diagnosis: dict[str, Any] = {"drift_detection_mode": mode}
        if named:
            diagnosis["drifting_fields"] = "; ".join(named)
        if ignore:
            suggestion = {"spec": {"driftDetection": {"ignore": ignore}}}
            diagnosis["suggested_ignore"] = yaml.safe_dump(
                suggestion, default_flow_style=None, sort_keys=False
            ).strip()
        if notes:
            diagnosis["notes"] = "; ".join(notes)
        if "count" in fields:
            diagnosis["drift_detected_count"] = fields["count"]
        paths = "; ".join(named) or "; ".join(notes) or "fields unknown"
        reason = (
            f"drift loop: {paths}. Something else keeps changing what the chart sets; add the "
            "fields to spec.driftDetection.ignore or stop the other writer"
        )
        return Plan(verdict="refuse", reason=reason, diagnosis=diagnosis)

    async def verify(self, ctx: ActionContext, plan: Plan) -> bool:
        return False  # never reached: the plan is always refused, nothing is written


def _show(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    text = text.removesuffix("...").strip()
    return text if len(text) <= 60 else text[:57] + "..."


ACTION = ReportDriftAction()
