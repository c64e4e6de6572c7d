"""`annotate` and `label`: set (or, with a null value, remove) metadata on the event's object.

Generic actions for users' rules; values may use `{name}`, `{namespace}`, `{cluster}`, `{kind}`.
Verified when the object carries the wanted metadata.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medic.remediator.actions.base import PLURAL_HELP, ActionContext, Plan, fixed, resource_type
from medic.runtime.kube import NotFoundError
from medic.schemas import Change, Event, ObjectRef


class MetadataParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    values: dict[str, str | None] = Field(description="Keys to set; null removes.")
    plural: str | None = Field(default=None, description=PLURAL_HELP)


def fill(value: str | None, target: ObjectRef, event: Event) -> str | None:
    if value is None:
        return None
    return value.format(
        name=target.name, namespace=target.namespace or "", cluster=event.cluster, kind=target.kind
    )


class MetadataAction:
    params_model: type[BaseModel] = MetadataParams

    def __init__(self, name: str, field: str) -> None:
        self.name = name
        self.field = field
        self.rbac: tuple[dict[str, Any], ...] = (
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "patch"]},
        )
        self.example: dict[str, Any] = {
            "action": {"name": name, "params": {"values": {"team": "a"}}}
        }

    async def plan(
        self, ctx: ActionContext, target: ObjectRef, params: BaseModel, event: Event
    ) -> Plan:
        assert isinstance(params, MetadataParams)
        rt = resource_type(target, params.plural)
        try:
            obj = await ctx.kube.get(rt, target.name, target.namespace)
        except NotFoundError:
            return fixed("object-deleted")
        wanted = {k: fill(v, target, event) for k, v in params.values.items()}
        current = (obj.get("metadata") or {}).get(self.field) or {}
        changes = [
            Change(
                path=f"/metadata/{self.field}/{k.replace('/', '~1')}",
                before=current.get(k),
                after=v,
            )
            for k, v in wanted.items()
            if current.get(k) != v
        ]
        if not changes:
            return fixed("already-set")
        return Plan(
            verdict="act",
            rt=rt,
            name=target.name,
            namespace=target.namespace,
            patch={"metadata": {self.field: wanted}},
            resource_version=obj["metadata"]["resourceVersion"],
            changes=changes,
            extra={"wanted": wanted},
        )

    async def verify(self, ctx: ActionContext, plan: Plan) -> bool:
        assert plan.rt is not None
        return self.holds(plan, await ctx.kube.get(plan.rt, plan.name, plan.namespace))

    def holds(self, plan: Plan, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        current = (obj.get("metadata") or {}).get(self.field) or {}
        return all(current.get(k) == v for k, v in plan.extra["wanted"].items())


ANNOTATE = MetadataAction("annotate", "annotations")
LABEL = MetadataAction("label", "labels")
