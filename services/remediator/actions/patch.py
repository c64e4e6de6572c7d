"""`patch`: a merge or JSON patch from the rule, strings templated with the event's facts.

Templates use `{name}`, `{namespace}`, `{cluster}`, `{kind}` (str.format on strings only, so a
patch can never inject structure). Verified when a re-read shows the patched fields (merge) or
the write succeeded (JSON patch, whose `test` ops are the rule author's verification).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from medic.remediator.actions.base import PLURAL_HELP, ActionContext, Plan, fixed, resource_type
from medic.remediator.actions.metadata import fill
from medic.runtime.kube import NotFoundError
from medic.schemas import Event, ObjectRef


class PatchParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["merge", "json"] = Field(
        default="merge", description="merge: a JSON merge patch; json: a list of JSON patch ops."
    )
    body: Any = Field(
        description="The patch; strings may use {name}, {namespace}, {cluster}, {kind}."
    )
    plural: str | None = Field(default=None, description=PLURAL_HELP)


def render(value: Any, target: ObjectRef, event: Event) -> Any:
    if isinstance(value, str):
        return fill(value, target, event)
    if isinstance(value, list):
        return [render(v, target, event) for v in value]
    if isinstance(value, dict):
        return {k: render(v, target, event) for k, v in value.items()}
    return value


def contains(obj: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        return isinstance(obj, dict) and all(
            (v is None and k not in obj) or (k in obj and contains(obj[k], v))
            for k, v in wanted.items()
        )
    return bool(obj == wanted)


class PatchAction:
    name = "patch"
    params_model: type[BaseModel] = PatchParams
    rbac: tuple[dict[str, Any], ...] = (
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "patch"]},
    )
    example: dict[str, Any] = {
        "action": {
            "name": "patch",
            "params": {"type": "merge", "body": {"spec": {"suspend": False}}},
        }
    }

    async def plan(
        self, ctx: ActionContext, target: ObjectRef, params: BaseModel, event: Event
    ) -> Plan:
        assert isinstance(params, PatchParams)
        rt = resource_type(target, params.plural)
        try:
            obj = await ctx.kube.get(rt, target.name, target.namespace)
        except NotFoundError:
            return fixed("object-deleted")
        body = render(params.body, target, event)
        if params.type == "merge" and contains(obj, body):
            return fixed("already-patched")
        return Plan(
            verdict="act",
            rt=rt,
            name=target.name,
            namespace=target.namespace,
            patch=body,
            patch_type=params.type,
            resource_version=obj["metadata"]["resourceVersion"],
            extra={"body": body, "type": params.type},
        )

    async def verify(self, ctx: ActionContext, plan: Plan) -> bool:
        assert plan.rt is not None
        return self.holds(plan, await ctx.kube.get(plan.rt, plan.name, plan.namespace))

    def holds(self, plan: Plan, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        return plan.extra["type"] == "json" or contains(obj, plan.extra["body"])


ACTION = PatchAction()
