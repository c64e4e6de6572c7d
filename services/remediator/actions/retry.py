"""`retry`: what `flux reconcile helmrelease NAME --reset` does: requestedAt and resetAt set to
one new token in one merge patch (flux2 cmd/flux/reconcile.go; fluxcd/pkg apis/meta
HandleAnnotationRequest: helm-controller resets only when resetAt equals requestedAt). Verified
when helm-controller handled that reset (`status.lastHandledResetAt` is the token) and Ready is
True, as the real helm-controller v1.4 writes it (tests/e2e/test_real_s1_helm_controller.py).
Planned from the watcher's event when it quotes Ready and the request annotations at the
version it names (`JudgesEvent`), else from a read of the object.
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
from medic.runtime.kube import NotFoundError
from medic.schemas import Event, ObjectRef, ProblemState, ReleaseEvent
from medic.upstream import flux


def is_ready(obj: dict[str, Any]) -> bool:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == flux.READY:
            return bool(condition.get("status") == "True")
    return False


class RetryAction:
    name = "retry"
    params_model: type[BaseModel] = NoParams
    # watch: the verification waits on the object's changes (medic.remediator.verification).
    rbac = (
        {"apiGroups": [flux.GROUP], "resources": [flux.PLURAL], "verbs": ["get", "patch", "watch"]},
    )
    example: dict[str, Any] = {"action": {"name": "retry"}}
    keys = (flux.REQUESTED_AT, flux.RESET_AT)

    async def plan(
        self, ctx: ActionContext, target: ObjectRef, params: BaseModel, event: Event
    ) -> Plan:
        rt = resource_type(target, flux.PLURAL)
        try:
            obj = await ctx.kube.get(rt, target.name, target.namespace)
        except NotFoundError:
            return fixed("object-deleted")
        if is_ready(obj):
            return fixed("already-ready")
        return self._request(target, obj)

    def plan_from_event(
        self, ctx: ActionContext, target: ObjectRef, params: BaseModel, event: Event
    ) -> Plan | None:
        """The same plan from the event, when the watcher quoted (helmrelease source) Ready's
        status and the request annotations at the resourceVersion the event names."""
        if not (
            isinstance(event, ReleaseEvent)
            and event.data.state is ProblemState.FIRING
            and event.data.object == target
            and target.resource_version
        ):
            return None
        quoted = event.data.evidence.fields
        if not all(key in quoted for key in ("ready", *self.keys)) or quoted["ready"] == "True":
            return None
        annotations = {k: str(quoted[k]) for k in self.keys if quoted[k] is not None}
        as_seen = {
            "metadata": {"annotations": annotations, "resourceVersion": target.resource_version}
        }
        return self._request(target, as_seen)

    def _request(self, target: ObjectRef, obj: dict[str, Any]) -> Plan:
        """A new reconcile request with reset, judged on `obj` (its version is the write's)."""
        value = token()
        wanted: dict[str, str | None] = dict.fromkeys(self.keys, value)
        return Plan(
            verdict="act",
            rt=resource_type(target, flux.PLURAL),
            name=target.name,
            namespace=target.namespace,
            patch={"metadata": {"annotations": wanted}},
            resource_version=obj["metadata"]["resourceVersion"],
            changes=annotation_changes(obj, wanted),
            token=value,
        )

    async def verify(self, ctx: ActionContext, plan: Plan) -> bool:
        assert plan.rt is not None
        return self.holds(plan, await ctx.kube.get(plan.rt, plan.name, plan.namespace))

    def holds(self, plan: Plan, obj: dict[str, Any] | None) -> bool:
        """helm-controller handled this very request (its token) and the release is Ready."""
        if obj is None:
            return False
        handled = (obj.get("status") or {}).get("lastHandledResetAt")
        return bool(handled == plan.token and is_ready(obj))


ACTION = RetryAction()
