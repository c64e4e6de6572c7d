"""`migrate-api-version`: re-store an object through the target API version.

The general Kubernetes mechanism (kube-storage-version-migrator): a write through the served
version makes the API server store the object at the current storage version. The write also
sets the annotation from the Flux 2.1 -> 2.2 incident write-up (`fluxcd.io/upgradeTo`), so the
migration is visible on the object. Verified when the newest managedFields entry was written
through the target version.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medic.remediator.actions.base import (
    ActionContext,
    Plan,
    annotation_changes,
    fixed,
    resource_type,
)
from medic.runtime.kube import NotFoundError
from medic.schemas import Event, ObjectRef
from medic.upstream import flux


class MigrateParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    target_version: str = Field(
        default=flux.STORAGE_VERSION,
        alias="targetVersion",
        description="The API version to write through (the object's group).",
    )


def newest_write_versions(obj: dict[str, Any]) -> set[str]:
    """The API versions of the newest writes. managedFields times have one-second resolution,
    and the API server orders entries of the same second by manager and API version, not by
    when they were written (apimachinery pkg/util/managedfields/internal/managedfields.go
    `sortEncodedManagedFields`), so every entry of the newest second counts."""
    entries = (obj.get("metadata") or {}).get("managedFields") or []
    newest = max((str(entry.get("time", "")) for entry in entries), default="")
    return {
        str(entry.get("apiVersion", "")).rpartition("/")[2]
        for entry in entries
        if str(entry.get("time", "")) == newest
    }


class MigrateApiVersionAction:
    name = "migrate-api-version"
    params_model: type[BaseModel] = MigrateParams
    rbac = ({"apiGroups": [flux.GROUP], "resources": [flux.PLURAL], "verbs": ["get", "patch"]},)
    example: dict[str, Any] = {
        "action": {"name": "migrate-api-version", "params": {"targetVersion": "v2"}}
    }

    async def plan(
        self, ctx: ActionContext, target: ObjectRef, params: BaseModel, event: Event
    ) -> Plan:
        assert isinstance(params, MigrateParams)
        rt = resource_type(target).at(params.target_version)
        try:
            obj = await ctx.kube.get(rt, target.name, target.namespace)
        except NotFoundError:
            return fixed("object-deleted")
        if params.target_version in newest_write_versions(obj):
            return fixed("already-migrated")
        wanted: dict[str, str | None] = {flux.UPGRADE_TO: params.target_version}
        return Plan(
            verdict="act",
            rt=rt,
            name=target.name,
            namespace=target.namespace,
            patch={"metadata": {"annotations": wanted}},
            resource_version=obj["metadata"]["resourceVersion"],
            changes=annotation_changes(obj, wanted),
            token=params.target_version,
        )

    async def verify(self, ctx: ActionContext, plan: Plan) -> bool:
        assert plan.rt is not None
        obj = await ctx.kube.get(plan.rt, plan.name, plan.namespace)
        return plan.token in newest_write_versions(obj)


ACTION = MigrateApiVersionAction()
