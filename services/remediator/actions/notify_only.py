"""`notify-only`: no write; the result (outcome no-op) carries the evidence to the channels."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from medic.remediator.actions.base import ActionContext, NoParams, Plan
from medic.schemas import Event, ObjectRef


class NotifyOnlyAction:
    name = "notify-only"
    params_model: type[BaseModel] = NoParams
    rbac: tuple[dict[str, Any], ...] = ()
    example: dict[str, Any] = {"action": {"name": "notify-only"}, "notify": ["platform"]}
    keeps_no_state: Literal[True] = True  # outcome no-op: no attempt or rule record is kept

    async def plan(
        self, ctx: ActionContext, target: ObjectRef, params: BaseModel, event: Event
    ) -> Plan:
        return Plan(verdict="act", reason="notify-only")

    async def verify(self, ctx: ActionContext, plan: Plan) -> bool:
        return True


ACTION = NotifyOnlyAction()
