"""`force-reconcile`, by kind:
- Flux HelmRelease: requestedAt + forceAt = one token in one merge patch (`flux reconcile hr
  --force`, flux2 cmd/flux/reconcile.go); verified when helm-controller handled it:
  `status.lastHandledForceAt` equals the token (fluxcd/pkg apis/meta HandleAnnotationRequest);
- Fleet BundleDeployment: `spec.forceSyncGeneration` + 1 on the object Fleet reads it from, the
  owning GitRepo / HelmOp / Bundle (found by the BundleDeployment's labels; the controller copies
  it into the BundleDeployment, whose spec it owns: `medic.upstream.fleet`); never the
  BundleDeployment, never a delete; verified when the options Secret is back, the
  BundleDeployment no longer waits for values and its agent deployed the new generation
  (`status.syncGeneration`, agent monitor/updatestatus.go);
- Gardener Etcd: the operation annotation(s) present removed, then re-applied (two writes: a
  patch that removes and re-adds the same value changes nothing); verified when etcd-druid
  removed both keys (`medic.upstream.gardener`). Results carry what druid reported.
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
from medic.runtime.kube import SECRETS, NotFoundError, ResourceType
from medic.schemas import Change, Event, ObjectRef
from medic.upstream import fleet, flux, gardener

FLEET_OWNERS = {
    kind: ResourceType(fleet.GROUP, fleet.VERSION, plural, kind)
    for kind, plural in fleet.OWNER_PLURALS.items()
}


class ForceReconcileAction:
    name = "force-reconcile"
    params_model: type[BaseModel] = NoParams
    # watch: the verification waits on the written object's changes, as the controller that
    # owns it answers (medic.remediator.verification).
    rbac = (
        {"apiGroups": [flux.GROUP], "resources": [flux.PLURAL], "verbs": ["get", "patch", "watch"]},
        {"apiGroups": [fleet.GROUP], "resources": [fleet.PLURAL], "verbs": ["get", "watch"]},
        {
            "apiGroups": [fleet.GROUP],
            "resources": sorted(fleet.OWNER_PLURALS.values()),
            "verbs": ["get", "patch"],
        },
        {
            "apiGroups": [gardener.GROUP],
            "resources": [gardener.PLURAL],
            "verbs": ["get", "patch", "watch"],
        },
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

    async def _fleet(self, ctx: ActionContext, bd: dict[str, Any], plan: Plan) -> Plan:
        if not await _waiting(ctx, bd):
            return fixed("options-secret-present")
        owner = fleet.owner_of(bd)
        if owner is None:
            labels = f"{fleet.BUNDLE_LABEL}/{fleet.BUNDLE_NAMESPACE_LABEL}"
            return Plan(
                verdict="refuse",
                reason=f"BundleDeployment has no {labels} labels: cannot find its Bundle",
            )
        kind, namespace, name = owner
        rt = FLEET_OWNERS[kind]
        try:
            obj = await ctx.kube.get(rt, name, namespace)
        except NotFoundError:
            return Plan(
                verdict="refuse",
                reason=f"{kind} {namespace}/{name} (owner of the BundleDeployment) not found",
            )
        generation = int((obj.get("spec") or {}).get(fleet.FORCE_SYNC_GENERATION) or 0)
        after = generation + 1
        return Plan(
            verdict="act",
            rt=rt,
            name=name,
            namespace=namespace,
            patch={"spec": {fleet.FORCE_SYNC_GENERATION: after}},
            resource_version=obj["metadata"]["resourceVersion"],
            changes=[Change(path="/spec/forceSyncGeneration", before=generation, after=after)],
            diagnosis={"owner": f"{kind} {namespace}/{name}", "forceSyncGeneration": after},
            extra={
                "kind": "fleet",
                "bundledeployment": (plan.namespace, plan.name),
                # what verify reads: Fleet answers on the BundleDeployment, not on the owner
                "verify_watch": (
                    fleet.GROUP,
                    fleet.VERSION,
                    fleet.PLURAL,
                    fleet.KIND,
                    plan.namespace,
                    plan.name,
                ),
                "generation": after,
            },
        )

    def _gardener(self, obj: dict[str, Any], plan: Plan) -> Plan:
        """Two writes: remove the annotation(s), then apply them again. One patch that removes
        and re-adds the same value changes nothing, so the API server sends no event and
        etcd-druid would never see a new request."""
        present = gardener.operation_annotations(obj)
        plan.diagnosis = gardener.druid_report(obj)
        if not present:
            return fixed("operation-cleared")
        pending = gardener.not_done(obj)
        if pending:  # druid is still at work (or failing): not the stuck annotation of S5
            plan.verdict = "skip"
            plan.reason = "etcd not done by Gardener's check: " + "; ".join(pending)
            return plan
        escaped = {key: key.replace("/", "~1") for key in present}
        plan.patch = [
            {"op": "remove", "path": f"/metadata/annotations/{escaped[key]}"} for key in present
        ]
        plan.patch_type = "json"
        plan.extra["then_patch"] = {"metadata": {"annotations": present}}
        plan.changes = [
            change
            for key, value in present.items()
            for change in (
                Change(path=f"/metadata/annotations/{escaped[key]}", before=value, after=None),
                Change(path=f"/metadata/annotations/{escaped[key]}", before=None, after=value),
            )
        ]
        plan.extra["kind"] = "gardener"
        return plan

    async def verify(self, ctx: ActionContext, plan: Plan) -> bool:
        assert plan.rt is not None
        kind = plan.extra.get("kind")
        if kind == "fleet":
            namespace, name = plan.extra["bundledeployment"]
            rt = ResourceType(fleet.GROUP, fleet.VERSION, fleet.PLURAL, fleet.KIND)
            try:
                bd = await ctx.kube.get(rt, name, namespace)
            except NotFoundError:
                return False
            if await _waiting(ctx, bd):
                return False
            return fleet.sync_generation(bd) >= int(plan.extra["generation"])
        obj = await ctx.kube.get(plan.rt, plan.name, plan.namespace)
        if kind == "flux":
            handled = (obj.get("status") or {}).get("lastHandledForceAt")
            return bool(handled == plan.token)
        plan.diagnosis = gardener.druid_report(obj)
        return not gardener.operation_annotations(obj)


async def _waiting(ctx: ActionContext, bd: dict[str, Any]) -> bool:
    """Whether the BundleDeployment still lacks its options Secret (of Fleet's type) or waits
    for values."""
    if fleet.waiting_for_values(bd):
        return True
    if not fleet.needs_options_secret(bd):
        return False
    metadata = bd.get("metadata") or {}
    try:
        secret = await ctx.kube.get(SECRETS, metadata.get("name", ""), metadata.get("namespace"))
    except NotFoundError:
        return True
    return bool(secret.get("type") != fleet.OPTIONS_SECRET_TYPE)


ACTION = ForceReconcileAction()
