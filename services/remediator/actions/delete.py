"""`delete` (guarded): deletes the event's object only when the rule names its kind in
`allowKinds`, never in a protected namespace, and with the judged resourceVersion as a
precondition. Verified when the object is gone (or replaced by a new one with another uid).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medic.remediator.actions.base import PLURAL_HELP, ActionContext, Plan, fixed, resource_type
from medic.runtime.kube import NotFoundError
from medic.schemas import Event, ObjectRef


class DeleteParams(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    allow_kinds: list[str] = Field(
        alias="allowKinds", min_length=1, description="Kinds it may delete; any other is refused."
    )
    protected_namespaces: list[str] = Field(
        default_factory=lambda: ["kube-system", "kube-public", "flux-system"],
        alias="protectedNamespaces",
        description="Namespaces it never deletes in.",
    )
    plural: str | None = Field(default=None, description=PLURAL_HELP)


class DeleteAction:
    name = "delete"
    params_model: type[BaseModel] = DeleteParams
    rbac: tuple[dict[str, Any], ...] = (
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "delete"]},
    )
    example: dict[str, Any] = {"action": {"name": "delete", "params": {"allowKinds": ["Pod"]}}}

    async def plan(
        self, ctx: ActionContext, target: ObjectRef, params: BaseModel, event: Event
    ) -> Plan:
        assert isinstance(params, DeleteParams)
        if target.kind not in params.allow_kinds:
            return Plan(verdict="refuse", reason=f"delete of {target.kind} not allowed by the rule")
        if target.namespace in params.protected_namespaces:
            return Plan(verdict="refuse", reason=f"namespace {target.namespace} is protected")
        rt = resource_type(target, params.plural)
        try:
            obj = await ctx.kube.get(rt, target.name, target.namespace)
        except NotFoundError:
            return fixed("already-deleted")
        if target.uid and obj["metadata"].get("uid") != target.uid:
            return fixed("replaced-by-a-new-object")
        return Plan(
            verdict="act",
            rt=rt,
            name=target.name,
            namespace=target.namespace,
            resource_version=obj["metadata"]["resourceVersion"],
            extra={"delete": True, "uid": obj["metadata"].get("uid")},
        )

    async def verify(self, ctx: ActionContext, plan: Plan) -> bool:
        assert plan.rt is not None
        try:
            obj = await ctx.kube.get(plan.rt, plan.name, plan.namespace)
        except NotFoundError:
            return True
        return bool(obj["metadata"].get("uid") != plan.extra["uid"])


ACTION = DeleteAction()
