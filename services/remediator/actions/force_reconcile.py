"""`force-reconcile`, by kind:
- Flux HelmRelease: requestedAt + forceAt = one token (`flux reconcile hr --force`); verified
  when status.lastHandledReconcileAt equals it and Ready is True;
- Fleet BundleDeployment: `spec.options.forceSyncGeneration` + 1 (fleet bundledeployment_types.go);
  verified when the values Secret exists again and the deployment is not in error;
- Gardener Etcd: the operation annotation removed and re-applied (one write: the new value
  carries no stale state); verified when etcd-druid cleared the annotation.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from medic.remediator.actions.base import (
    ActionContext,
    NoParams,
    Plan,
    annotation_changes,
    fixed,
    resource_type,
    token,
)
from medic.remediator.actions.retry import is_ready
from medic.runtime.kube import SECRETS, NotFoundError
from medic.schemas import Change, Event, ObjectRef
from medic.upstream import fleet, flux, gardener


class ForceReconcileAction:
    name = "force-reconcile"
    params_model: type[BaseModel] = NoParams
    rbac = (
        {"apiGroups": [flux.GROUP], "resources": [flux.PLURAL], "verbs": ["get", "patch"]},
        {"apiGroups": [fleet.GROUP], "resources": [fleet.PLURAL], "verbs": ["get", "patch"]},
        {"apiGroups": [gardener.GROUP], "resources": [gardener.PLURAL], "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    )
    example: dict[str, Any] = {"action": {"name": "force-reconcile"}}

    async def plan(
        self, ctx: ActionContext, target: ObjectRef, params: BaseModel, event: Event
    ) -> Plan:
        plural = {flux.KIND: flux.PLURAL, fleet.KIND: fleet.PLURAL, gardener.KIND: gardener.PLURAL}
        if target.kind not in plural:
            return Plan(
                verdict="refuse", reason=f"force-reconcile does not know kind {target.kind}"
            )
        rt = resource_type(target, plural[target.kind])
        try:
            obj = await ctx.kube.get(rt, target.name, target.namespace)
        except NotFoundError:
            return fixed("object-deleted")
        base = Plan(
            verdict="act",
            rt=rt,
            name=target.name,
            namespace=target.namespace,
            resource_version=obj["metadata"]["resourceVersion"],
        )
        if target.kind == flux.KIND:
            return self._flux(obj, base)
        if target.kind == fleet.KIND:
            return await self._fleet(ctx, obj, base)
        return self._gardener(obj, base)

    def _flux(self, obj: dict[str, Any], plan: Plan) -> Plan:
        plan.token = token()
        wanted: dict[str, str | None] = {flux.REQUESTED_AT: plan.token, flux.FORCE_AT: plan.token}
        plan.patch = {"metadata": {"annotations": wanted}}
        plan.changes = annotation_changes(obj, wanted)
        plan.extra["kind"] = "flux"
        return plan

    async def _fleet(self, ctx: ActionContext, obj: dict[str, Any], plan: Plan) -> Plan:
        try:
            await ctx.kube.get(SECRETS, plan.name, plan.namespace)
        except NotFoundError:
            pass
        else:
            return fixed("values-secret-present")
        options = (obj.get("spec") or {}).get("options") or {}
        generation = int(options.get("forceSyncGeneration") or 0)
        plan.patch = {"spec": {"options": {"forceSyncGeneration": generation + 1}}}
        plan.changes = [
            Change(
                path="/spec/options/forceSyncGeneration", before=generation, after=generation + 1
            )
        ]
        plan.extra["kind"] = "fleet"
        return plan

    def _gardener(self, obj: dict[str, Any], plan: Plan) -> Plan:
        """Two writes: remove the annotation, then apply it again. One patch that removes and
        re-adds the same value changes nothing, so the API server sends no event and
        etcd-druid would never see a new request."""
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        current = annotations.get(gardener.OPERATION)
        if not current:
            return fixed("operation-cleared")
        key = gardener.OPERATION.replace("/", "~1")
        plan.patch = [{"op": "remove", "path": f"/metadata/annotations/{key}"}]
        plan.patch_type = "json"
        plan.extra["then_patch"] = {"metadata": {"annotations": {gardener.OPERATION: current}}}
        plan.changes = [
            Change(path=f"/metadata/annotations/{key}", before=current, after=None),
            Change(path=f"/metadata/annotations/{key}", before=None, after=current),
        ]
        plan.extra["kind"] = "gardener"
        return plan

    async def verify(self, ctx: ActionContext, plan: Plan) -> bool:
        assert plan.rt is not None
        obj = await ctx.kube.get(plan.rt, plan.name, plan.namespace)
        kind = plan.extra.get("kind")
        if kind == "flux":
            handled = (obj.get("status") or {}).get("lastHandledReconcileAt")
            return bool(handled == plan.token and is_ready(obj))
        if kind == "fleet":
            try:
                await ctx.kube.get(SECRETS, plan.name, plan.namespace)
            except NotFoundError:
                return False
            return True
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        return gardener.OPERATION not in annotations


ACTION = ForceReconcileAction()
