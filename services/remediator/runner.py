"""Carries out one decision: claim -> plan -> (dry-run | backup, apply) -> verify -> result.

Safe by construction: the claim (KV create-if-absent) makes a redelivered event or a second
replica a no-op; `plan` re-reads the object (or judges what the event quotes of it, for an
action that `JudgesEvent`) and acts only if the problem still holds; the write carries the
judged resourceVersion, and a 409 means "someone changed it": re-plan from a read (at most
three times); every write and planned write is audited; verification checks the rule's success
condition when the object changes, until its timeout (`medic.remediator.verification`), parked:
it holds no worker of the consumer meanwhile. Every decision ends in exactly one published
result.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

import structlog
from pydantic import ValidationError

from medic.remediator import audit
from medic.remediator.actions.base import (
    Action,
    ActionContext,
    ActionRegistry,
    AppliesItself,
    JudgesEvent,
    JudgesObject,
    Plan,
    resource_type,
)
from medic.remediator.rules.engine import Decision
from medic.remediator.rules.index import CompiledRule
from medic.remediator.rules.loader import action_problems, describe
from medic.remediator.verification import (
    Judge,
    ObjectChanges,
    Subscription,
    check_holds,
    wait_verified,
)
from medic.runtime.bus import Bus
from medic.runtime.errors import PermanentError
from medic.runtime.kube import (
    ConflictError,
    InvalidError,
    KubeError,
    NotFoundError,
    ResourceType,
)
from medic.schemas import Event, ObjectRef, Outcome, ReleaseEvent

log = structlog.get_logger(__name__)
Publish = Callable[..., Awaitable[None]]
Park = Callable[[], AbstractAsyncContextManager[None]]
Applied = Callable[[Plan, datetime], Awaitable[None]]  # the plan written, verify deadline


REJUDGE: Final = object()  # the write lost a race: plan again from the object as it is now
INTERRUPTED = "applied; verification interrupted by shutdown"


@dataclass(frozen=True)
class RunOutcome:
    outcome: Outcome
    reason: str = ""
    plan: Plan | None = None


def verified_outcome(verified: bool | None, plan: Plan, condition: str | None = None) -> RunOutcome:
    if verified is None:
        return RunOutcome(Outcome.APPLIED, INTERRUPTED, plan)
    if verified:
        return RunOutcome(Outcome.SUCCEEDED, "", plan)
    unmet = f" (verify condition: {condition})" if condition else ""
    return RunOutcome(Outcome.FAILED, f"not verified in time{unmet}", plan)


def judged(plan: Plan) -> RunOutcome | None:
    """The outcome a plan settles without writing; None when it has something to write."""
    if plan.verdict == "fixed":
        return RunOutcome(Outcome.SKIPPED, f"already-fixed: {plan.reason}", plan)
    if plan.verdict == "skip":
        return RunOutcome(Outcome.SKIPPED, plan.reason, plan)
    if plan.verdict == "refuse":
        return RunOutcome(Outcome.ESCALATED, plan.reason, plan)
    if plan.rt is None:  # nothing to write (notify-only)
        return RunOutcome(Outcome.NO_OP, plan.reason, plan)
    return None


def target_of(event: Event) -> ObjectRef | None:
    if isinstance(event, ReleaseEvent):
        return event.data.object
    return getattr(event, "object", None)


class Runner:
    def __init__(
        self,
        bus: Bus,
        actions: ActionRegistry,
        context: ActionContext,
        *,
        dry_run: bool = False,
        changes: ObjectChanges | None = None,
    ) -> None:
        self.bus = bus
        self.actions = actions
        self.context = context
        self.dry_run = dry_run
        self.changes = changes
        # Set when the service stops: a verification in progress ends at once (the write is
        # done and audited; the result says `applied`, not verified) instead of holding the
        # shutdown for up to the rule's verify timeout until the process is killed.
        self.stopping = asyncio.Event()
        self._waiting: set[Subscription] = set()

    def stop(self) -> None:
        self.stopping.set()
        for subscription in self._waiting:
            subscription.changed.set()

    def target_of(self, event: Event) -> ObjectRef | None:
        return target_of(event)

    async def execute(
        self,
        decision: Decision,
        event: Event,
        park: Park,
        on_applied: Applied | None = None,
        *,
        on_writing: Callable[[], Awaitable[None]] | None = None,
    ) -> RunOutcome:
        spec = decision.rule.rule.spec
        try:
            action = self.actions.get(spec.action.name)
            params = action.params_model.model_validate(spec.action.params)
        except (KeyError, ValidationError) as exc:  # a rule loaded without its actions checked
            problems = describe(action_problems(spec.action, self.actions.params_models()))
            raise PermanentError(f"rule {decision.name}: {problems}", field="spec.action") from exc
        target = self.target_of(event)
        if target is None:
            return RunOutcome(Outcome.SKIPPED, "event names no object")
        dry_run = self.dry_run or spec.dry_run
        for attempt in range(3):
            plan = await self._plan(action, target, params, event, read=attempt > 0)
            judgement = judged(plan)
            if judgement is not None:
                return judgement
            if dry_run:
                await self._audit(decision, event, target, plan, "dry-run")
                return RunOutcome(Outcome.PLANNED, "dry-run", plan)
            sent_at = asyncio.get_running_loop().time()
            after = await self._write_or_rejudge(decision, plan, on_writing)
            if after is REJUDGE:
                log.info("write_conflict_rejudging", rule=decision.name, event_id=event.id)
                continue
            until = now() + timedelta(seconds=spec.verify.timeout)
            if on_applied is not None:
                await on_applied(plan, until)
            await self._audit(decision, event, target, plan, "written", after=after)
            if plan.escalation:  # part of the work was refused: people must finish it
                return RunOutcome(Outcome.ESCALATED, plan.escalation, plan)
            return await self.verify(decision, plan, until, park, written=after, sent_at=sent_at)
        return RunOutcome(Outcome.FAILED, "kept conflicting with other writers", None)

    async def _plan(
        self, action: Action, target: ObjectRef, params: Any, event: Event, *, read: bool
    ) -> Plan:
        """The action's plan; from what the event quotes when the action can judge that and
        `read` is false (after a lost race the object is read)."""
        if not read and judges_event(type(action)):
            plan = cast("JudgesEvent", action).plan_from_event(self.context, target, params, event)
            if plan is not None:
                return plan
        return await action.plan(self.context, target, params, event)

    async def verify(
        self,
        decision: Decision,
        plan: Plan,
        until: datetime,
        park: Park,
        *,
        written: Any = None,
        sent_at: float | None = None,
    ) -> RunOutcome:
        """Wait, parked, until the rule's success condition holds or `until` passes; also what
        an owner taking over after a crash runs for a fix its predecessor wrote. `sent_at`:
        the loop time before this process sent the write (`written` is its answer)."""
        spec = decision.rule.rule.spec
        action = self.actions.get(spec.action.name)
        check = functools.partial(self._check, action, plan, decision.rule)
        judge = judge_of(action, plan, decision.rule)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, (until - now()).total_seconds())
        version = ""
        if isinstance(written, dict):
            version = str((written.get("metadata") or {}).get("resourceVersion") or "")
        # Most fixes verify at once: no watch for them. With the written version known, a watch
        # opened after this check still misses nothing since the write. A check of the written
        # object alone judges the write's answer (the object as written) instead of a GET.
        checked = bool(version)
        if version and (judge(written) if judge is not None else await check_holds(check)):
            return RunOutcome(Outcome.SUCCEEDED, "", plan)
        async with self._changes_of(plan, version, sent_at) as subscription, park():
            self._waiting.add(subscription)
            try:
                verified = await wait_verified(
                    check,
                    subscription,
                    deadline=deadline,
                    interval=spec.verify.interval,
                    stopping=self.stopping,
                    judge=judge if subscription.watched is not None else None,
                    checked=checked and not subscription.joined_blind,
                )
            finally:
                self._waiting.discard(subscription)
        return verified_outcome(verified, plan, spec.verify.condition)

    @contextlib.asynccontextmanager
    async def _changes_of(
        self, plan: Plan, version: str, sent_at: float | None
    ) -> AsyncIterator[Subscription]:
        """Changes of what the check reads: the written object, or the one the action names in
        `extra["verify_watch"]` (group, version, plural, kind, namespace, name) when its check
        reads another (Fleet copies a Bundle's field into the BundleDeployment it checks)."""
        watched = plan.extra.get("verify_watch")
        if watched is not None:
            group, api, plural, kind, namespace, name = watched
            rt: ResourceType | None = ResourceType(group, api, plural, kind)
            version, sent_at = "", None  # another object's history: from now (just checked)
        else:
            rt, namespace, name = plan.rt, plan.namespace, plan.name
        if self.changes is None or rt is None or not name:
            yield Subscription()
            return
        async with self.changes.subscribe(rt, namespace, name, version, sent_at) as sub:
            yield sub

    async def _write_or_rejudge(
        self,
        decision: Decision,
        plan: Plan,
        on_writing: Callable[[], Awaitable[None]] | None,
    ) -> Any:
        """The written object, or REJUDGE when another writer got there first (or deleted it)."""
        try:
            if on_writing is not None:
                await on_writing()
            return await self._write(decision, plan)
        except (ConflictError, NotFoundError):
            # 404: deleted since it was judged (a plan from the event's quote did not read it)
            return REJUDGE
        except InvalidError:
            # A JSON patch is applied to the object as it is now before its resourceVersion
            # is compared: when a concurrent write took the path it removes, kube-apiserver
            # answers 422, not 409. A moved resourceVersion says it was the race.
            if not await self._moved(plan):
                raise
            return REJUDGE

    async def _moved(self, plan: Plan) -> bool:
        """Whether the object changed (or went) since `plan` judged it."""
        if plan.rt is None or not plan.resource_version:
            return False
        try:
            current = await self.context.kube.get(plan.rt, plan.name, plan.namespace)
        except NotFoundError:
            return True
        return bool(current["metadata"]["resourceVersion"] != plan.resource_version)

    async def _write(self, decision: Decision, plan: Plan) -> Any:
        kube = self.context.kube
        assert plan.rt is not None
        if plan.backup is not None and self.context.backups is not None:
            plan.extra["backup_id"] = await self.context.backups.save(
                plan.backup, plan.rt, decision.name
            )
        action = self.actions.get(decision.rule.rule.spec.action.name)
        if isinstance(action, AppliesItself):
            return await action.apply(self.context, plan)
        if plan.extra.get("delete"):
            return await kube.delete(plan.rt, plan.name, plan.namespace, plan.resource_version)
        if plan.replace is not None:
            return await kube.replace(plan.rt, plan.replace)
        written = await kube.patch(
            plan.rt,
            plan.name,
            plan.namespace,
            plan.patch,
            plan.patch_type,
            resource_version=plan.resource_version,
        )
        follow_up = plan.extra.get("then_patch")
        if follow_up is not None:  # a second write the action needs (e.g. re-apply after remove)
            written = await kube.patch(plan.rt, plan.name, plan.namespace, follow_up, "merge")
        return written

    async def _check(self, action: Action, plan: Plan, rule: CompiledRule) -> bool:
        """The rule's success condition: the action's own check (unless `actionCheck: false`)
        and `verify.condition` over the object as it is now (null once deleted)."""
        if rule.rule.spec.verify.action_check and not await action.verify(self.context, plan):
            return False
        if rule.verify is None:
            return True
        assert plan.rt is not None
        try:
            obj = await self.context.kube.get(plan.rt, plan.name, plan.namespace)
        except NotFoundError:
            obj = None
        return rule.verify.evaluate(object=obj, token=plan.token)

    async def audit_found(self, decision: Decision, event: Event, plan: Plan | None) -> None:
        """Audit a write found in place after its owner stopped mid-write (it had no entry)."""
        target = self.target_of(event)
        if target is None:
            return
        found = plan or Plan(verdict="fixed", reason="found in place")
        after: Any = None
        with contextlib.suppress(KubeError, ValueError):
            after = await self.context.kube.get(
                resource_type(target), target.name, target.namespace
            )
        await self._audit(decision, event, target, found, "written", after=after)

    async def _audit(  # noqa: PLR0917 - internal, called twice
        self,
        decision: Decision,
        event: Event,
        target: ObjectRef,
        plan: Plan,
        outcome: str,
        after: Any = None,
    ) -> None:
        target = written_ref(target, plan)
        await audit.record(
            self.bus,
            cluster=event.cluster,
            actor=self.context.actor,
            rule=decision.name,
            action=decision.rule.rule.spec.action.name,
            event_id=event.id,
            target=target,
            plan=plan,
            outcome=outcome,
            after=after if isinstance(after, dict) else None,
            backup_id=plan.extra.get("backup_id"),
        )


@functools.cache
def judges_event(kind: type) -> bool:
    """Whether actions of this class plan from the event (`JudgesEvent`); once per class, as a
    runtime protocol check costs microseconds and runs for every decision."""
    return issubclass(kind, JudgesEvent)


def judge_of(action: Action, plan: Plan, rule: CompiledRule) -> Judge | None:
    """The rule's success condition as a function of the written object alone, when it is one:
    the action's check reads only that object (`JudgesObject`, or `actionCheck: false`) and
    `verify.condition` reads `object` and `token`; None when the check reads another object
    (`verify_watch`, fleet's BundleDeployment) or the action has no such check."""
    if plan.rt is None or plan.extra.get("verify_watch") is not None:
        return None
    action_check = rule.rule.spec.verify.action_check
    if action_check and not isinstance(action, JudgesObject):
        return None

    def judge(obj: Any) -> bool:
        found = obj if isinstance(obj, dict) else None
        if action_check and not cast("JudgesObject", action).holds(plan, found):
            return False
        return rule.verify is None or bool(rule.verify.evaluate(object=found, token=plan.token))

    return judge


def written_ref(target: ObjectRef, plan: Plan) -> ObjectRef:
    """The object the plan writes: the event's target, or another one an action chose (the
    HelmRelease that owns a pending release, the Bundle that owns a BundleDeployment). The
    audit trail names what was written, not what was observed."""
    rt = plan.rt
    if rt is None or (rt.kind, plan.name, plan.namespace) == (
        target.kind,
        target.name,
        target.namespace,
    ):
        return target
    return ObjectRef(
        kind=rt.kind, api_version=rt.api_version, namespace=plan.namespace, name=plan.name
    )


def now() -> datetime:
    return datetime.now(UTC)
