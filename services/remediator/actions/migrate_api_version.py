"""`migrate-api-version`: what `flux migrate` does for a CRD left behind by a Flux upgrade
(flux2 cmd/flux/migrate.go, v2.7.0): list every object at the storage version, patch each with an
empty merge patch `{}` (the API server re-encodes it at the storage version), then, when the rule
allows it (`trimStoredVersions`), set the CRD's `status.storedVersions` to `[storageVersion]`.

The event's object is the CRD (watcher source `flux_crds`). Verified when the CRD lists the storage
version alone; then the next Flux's CRD, which drops the old versions, applies. When the trim is
not allowed, or the API server refuses it (RBAC without `customresourcedefinitions/status`), the
objects are still re-stored and the result escalates, saying why the list was not trimmed. There
is no `fluxcd.io/upgradeTo` annotation in Flux; nothing is annotated.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medic.remediator.actions.base import ActionContext, Plan, fixed
from medic.runtime.kube import ForbiddenError, InvalidError, NotFoundError, ResourceType
from medic.schemas import Change, Event, ObjectRef
from medic.upstream import flux, kubernetes

CRDS = ResourceType(
    kubernetes.CRD_GROUP,
    kubernetes.CRD_VERSION,
    kubernetes.CRD_PLURAL,
    kubernetes.CRD_KIND,
    namespaced=False,
)


class MigrateParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    trim_stored_versions: bool = Field(
        default=True,
        alias="trimStoredVersions",
        description="After re-storing, set status.storedVersions to the storage version alone "
        "(needs customresourcedefinitions/status); false: re-store, then tell people.",
    )


def served_resource(crd: dict[str, Any], version: str) -> ResourceType:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    return ResourceType(
        str(spec.get("group", "")),
        version,
        str(names.get("plural", "")),
        str(names.get("kind", "")),
        spec.get("scope") != "Cluster",
    )


class MigrateApiVersionAction:
    name = "migrate-api-version"
    params_model: type[BaseModel] = MigrateParams
    rbac = (
        {
            "apiGroups": [kubernetes.CRD_GROUP],
            "resources": [kubernetes.CRD_PLURAL],
            "verbs": ["get"],
        },
        {
            "apiGroups": [kubernetes.CRD_GROUP],
            "resources": [f"{kubernetes.CRD_PLURAL}/status"],
            "verbs": ["patch"],
        },
        # the objects of the CRDs it migrates: listed and re-stored with `{}`
        *(
            {"apiGroups": [group], "resources": [plural], "verbs": ["list", "patch"]}
            for group, plural in flux.MIGRATED
        ),
    )
    example: dict[str, Any] = {
        "action": {"name": "migrate-api-version", "params": {"trimStoredVersions": True}}
    }

    async def plan(
        self, ctx: ActionContext, target: ObjectRef, params: BaseModel, event: Event
    ) -> Plan:
        assert isinstance(params, MigrateParams)
        if target.kind != kubernetes.CRD_KIND:
            return Plan(
                verdict="refuse",
                reason=f"migrate-api-version acts on a CustomResourceDefinition, not {target.kind}",
            )
        try:
            crd = await ctx.kube.get(CRDS, target.name)
        except NotFoundError:
            return fixed("crd-deleted")
        served = served_resource(crd, "")
        if (served.group, served.plural) not in flux.MIGRATED:
            return Plan(
                verdict="refuse",
                reason=f"migrate-api-version is granted only {flux.MIGRATED}, not {target.name}",
            )
        storage = kubernetes.storage_version(crd)
        stale = kubernetes.stale_stored_versions(crd)
        if not stale:
            return fixed("stored-versions-trimmed")
        rt = served_resource(crd, storage)
        items, _ = await ctx.kube.list(rt)
        objects = [
            ((i.get("metadata") or {}).get("namespace"), str((i.get("metadata") or {}).get("name")))
            for i in items
        ]
        stored = kubernetes.stored_versions(crd)
        changes = [
            Change(path=f"/{ns or '_'}/{name}", before="re-store", after=storage)
            for ns, name in objects
        ]
        if params.trim_stored_versions:
            changes.append(Change(path="/status/storedVersions", before=stored, after=[storage]))
        return Plan(
            verdict="act",
            rt=CRDS,
            name=target.name,
            resource_version=crd["metadata"]["resourceVersion"],
            changes=changes,
            diagnosis={
                "storageVersion": storage,
                "storedVersions": stored,
                "objects": len(objects),
            },
            extra={
                "objects": objects,
                "served": rt,
                "storage": storage,
                "trim": params.trim_stored_versions,
            },
        )

    async def apply(self, ctx: ActionContext, plan: Plan) -> Any:
        """The writes of `flux migrate`: `{}` per object, then the trimmed list (one status
        patch with the CRD's resourceVersion: a concurrent change of the CRD is a conflict)."""
        served: ResourceType = plan.extra["served"]
        restored = 0
        for namespace, name in plan.extra["objects"]:
            try:
                await ctx.kube.patch(served, name, namespace, {}, "merge")
            except NotFoundError:
                continue  # deleted since it was listed: nothing left to re-store
            restored += 1
        plan.diagnosis["restored"] = restored
        storage = plan.extra["storage"]
        if not plan.extra["trim"]:
            plan.escalation = (
                f"re-stored {restored} objects at {storage}; the rule does not allow trimming "
                f"status.storedVersions: set it to [{storage}] (or run `flux migrate`)"
            )
            return None
        try:
            return await ctx.kube.patch(
                CRDS,
                plan.name,
                None,
                {"status": {"storedVersions": [storage]}},
                "merge",
                resource_version=plan.resource_version,
                subresource="status",
            )
        except ForbiddenError as exc:
            plan.diagnosis["trimError"] = exc.message
            plan.escalation = (
                f"re-stored {restored} objects at {storage} but could not trim "
                f"status.storedVersions to [{storage}]: {exc.message}"
            )
        except InvalidError as exc:  # the API server's own refusal of the list
            plan.diagnosis["trimError"] = exc.message
            plan.escalation = f"the API server refused the trimmed list: {exc.message}"
        return None

    async def verify(self, ctx: ActionContext, plan: Plan) -> bool:
        crd = await ctx.kube.get(CRDS, plan.name)
        return not kubernetes.stale_stored_versions(crd)


ACTION = MigrateApiVersionAction()
