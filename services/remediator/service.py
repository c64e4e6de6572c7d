"""The remediator service: events in, decisions (pure engine), actions, results out. Wiring.

Verifications wait parked (`Delivery.parked`, woken by a watch of the object, ended by a
timer), so a fix that takes minutes to verify holds its event and its object's later events,
not a worker: other objects' fixes go on meanwhile (issue 17).

Results convention: every decision publishes one RemediationResult (id derived from the event,
rule, outcome and attempt, so a redelivery re-publishes the same id and JetStream stores it
once). `skipped` results with reason `resolved-within-grace` are never notified (the notifier
drops them), so a problem that heals during its grace period produces no message. Waits
with a known end (`for:`, a settling etcd, backoff) are JetStream redeliveries at that exact
moment: the handler raises `Deferred` (a TransientError logged at info) with the delay, the
message is not acked, and no state is held in memory. A wait on an unstable etcd, or on one no
probe has reported yet, has no known end: it parks until this replica records etcd's next
state (`medic.remediator.waits`).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import structlog
from nats.js.kv import KeyValue

from medic.remediator import metrics
from medic.remediator.actions import default_registry
from medic.remediator.actions.base import ActionContext, ActionRegistry, Plan
from medic.remediator.backup import BackupStore
from medic.remediator.rules.engine import Decision, Verdict, decide, matching, problem_key
from medic.remediator.rules.index import RuleSet
from medic.remediator.rules.loader import LoadResult, load_builtin, load_bytes, load_paths
from medic.remediator.rules.model import ActionParams
from medic.remediator.runner import Runner, now
from medic.remediator.settings import RemediatorSettings
from medic.remediator.state import StateStore
from medic.remediator.verification import ObjectChanges, plan_of, verification_record
from medic.remediator.waits import ON_ETCD, PARK_AT_MOST, EtcdChanges, any_set
from medic.runtime import subjects
from medic.runtime.bus import Bus
from medic.runtime.consumer import Consumer, ConsumerSpec, Delivery
from medic.runtime.errors import Deferred, TransientError
from medic.runtime.kube import KubeClient, KubeError
from medic.runtime.lifecycle import ServiceContext
from medic.schemas import (
    EtcdCondition,
    EtcdEvent,
    Message,
    Outcome,
    ProblemState,
    ReleaseEvent,
    RemediationResult,
    ResultData,
    stable_id,
)

log = structlog.get_logger(__name__)


RESUMED = "applied by a previous owner that stopped before verifying; not applied again"
# A previous owner wrote the fix and stopped while verifying: this owner ran the same check
# until the same deadline (the claim records both); the result says what the check found.
RESUMED_WRITE = "written by a previous owner that stopped while writing; found in place"


def result_id(
    event_id: str, rule: str, outcome: Outcome, attempt: int, *, interim: bool = False
) -> str:
    """One id for the final result of (event, rule), whatever it says: an owner that stopped
    after publishing but before recording it, followed by one that reports what it finds,
    publishes the same id, and JetStream stores the first. A `failed` attempt (retried later)
    has its own, and so has the escalation of a refusal that is re-checked (`interim`)."""
    if interim:
        return stable_id(event_id, rule, "refused")
    if outcome is Outcome.FAILED:
        return stable_id(event_id, rule, outcome.value, attempt)
    return stable_id(event_id, rule, "final")


class RuleBook:
    """The rules in force: files + built-ins at start, KV entries hot-reloaded; a bad rule is
    reported (file:line field) and the rules already loaded stay in force."""

    def __init__(self, base: LoadResult, actions: ActionParams | None = None) -> None:
        self.base = base
        self.actions = actions  # pushed rules' actions are checked against these
        self.pushed: dict[str, LoadResult] = {}
        self.ruleset = RuleSet.build(base.rules)
        for error in base.errors:
            log.error("rule_rejected", error=str(error))

    def push(self, key: str, text: str | bytes) -> LoadResult:
        data = text.encode() if isinstance(text, str) else text
        loaded = load_bytes(data, f"kv:{key}", self.actions)
        for error in loaded.errors:
            log.error("rule_rejected", error=str(error))
        if loaded.errors:
            return loaded
        self.pushed[key] = loaded
        self._rebuild()
        return loaded

    def drop(self, key: str) -> None:
        self.pushed.pop(key, None)
        self._rebuild()

    def _rebuild(self) -> None:
        rules = {r.name: r for r in self.base.rules}
        for loaded in self.pushed.values():
            rules.update({r.name: r for r in loaded.rules})
        self.ruleset = RuleSet.build(rules.values())
        log.info("rules_loaded", rules=len(self.ruleset.rules))


class RemediatorService:
    name = "remediator"

    def __init__(  # noqa: PLR0917 - the collaborators, wired once by create()
        self,
        bus: Bus,
        settings: RemediatorSettings,
        rules: RuleBook,
        state: StateStore,
        runner: Runner,
        rules_kv: KeyValue | None = None,
        kube: KubeClient | None = None,
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.rules = rules
        self.state = state
        self.runner = runner
        self.rules_kv = rules_kv
        self.kube = kube
        self.etcd_changes = EtcdChanges()
        self.stateless = runner.actions.stateless()  # their rules' snapshots read no records

    def summary(self) -> list[str]:
        """The rules in force and where each comes from, for `medic run`'s start-up summary."""
        shipped = {r.name: r for r in load_builtin().rules} if self.settings.builtin_rules else {}
        in_force = [compiled.rule for compiled in self.rules.ruleset.rules]
        mode = ", dry-run: plans only, writes nothing" if self.settings.dry_run else ""
        lines = [f"remediator: {len(in_force)} rule(s) in force{mode}"]
        for rule in in_force:
            origin = "built-in"
            if shipped.get(rule.name) != rule:
                origin = "custom, replaces the built-in" if rule.name in shipped else "custom"
            lines.append(f"  {rule.name} ({origin}): {rule.spec.action.name}")
        lines += [f"  rejected, not in force: {error}" for error in self.rules.base.errors]
        lines.append(f"  and the rules pushed to the KV bucket {self.settings.rules_bucket} (live)")
        return lines

    def consumer(self) -> Consumer:
        spec = ConsumerSpec(
            stream=subjects.EVENTS,
            durable=self.settings.durable,
            filter_subjects=tuple(self.settings.filter_subjects),
            max_deliver=self.settings.max_deliver,
            ack_wait=self.settings.ack_wait,
            nak_delays=(1.0, 2.0, 5.0, 10.0, 30.0),
            concurrency=self.settings.concurrency,
            handler_timeout=1800.0,
        )
        return Consumer(self.bus, spec, self.handle)

    async def run(self, stop: asyncio.Event) -> None:
        async def relay_stop() -> None:
            await stop.wait()
            self.runner.stop()

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(relay_stop())
                if self.runner.changes is not None:
                    tg.create_task(self.runner.changes.run(stop))
                consumer = self.consumer()
                await consumer.setup()  # the durable exists from the start; nothing fetched yet
                if self.rules_kv is not None:
                    # Events are fetched only once the pushed rules are in force: one fetched
                    # before would find no rule of theirs, be acked, and never be judged.
                    pushed_loaded = asyncio.Event()
                    tg.create_task(self.watch_rules(stop, pushed_loaded))
                    await any_set(None, pushed_loaded, stop)
                tg.create_task(consumer.run(stop))
        finally:
            if self.kube is not None:
                await self.kube.close()

    async def watch_rules(self, stop: asyncio.Event, loaded: asyncio.Event) -> None:
        """Follow the pushed rules; `loaded` is set once those already in the bucket are in
        force (the watch's end-of-initial-values marker, also for an empty bucket)."""
        assert self.rules_kv is not None
        watcher = await self.rules_kv.watchall()
        try:
            while not stop.is_set():
                try:
                    entry = await watcher.updates(timeout=1.0)  # type: ignore[no-untyped-call]
                except TimeoutError:
                    continue
                if entry is None:
                    loaded.set()
                    continue
                if entry.operation in {"DEL", "PURGE"} or not entry.value:
                    self.rules.drop(entry.key)
                else:
                    self.rules.push(entry.key, entry.value)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]

    async def handle(self, message: Message, delivery: Delivery) -> None:
        if not isinstance(message, ReleaseEvent | EtcdEvent) and not message.type.startswith(
            "custom."
        ):
            return
        event: Any = message
        key = problem_key(event)
        recorded = await self._observe(event, key)
        matched_against = self.rules.ruleset
        candidates = matching(event, delivery.subject, matched_against)
        if not candidates:
            return
        parked_until = time.monotonic() + PARK_AT_MOST
        while True:
            etcd_marker = self.etcd_changes.marker(event.cluster)
            waits, on_etcd = await self._decide(
                event, key, (matched_against, candidates), delivery, recorded
            )
            recorded = None  # after a wait, read the problem again: a newer event may have come
            if not waits:
                return
            delay = max(0.2, min(*waits, 30.0))
            left = parked_until - time.monotonic()
            if not on_etcd or left <= 0:  # a known end: JetStream hands the event back then
                raise Deferred("waiting", delay=delay)
            # Only etcd's next event ends this wait: park until it (or a newer event about this
            # object, or the timer) and decide again from the stored state.
            stopping = self.runner.stopping
            async with delivery.parked():
                await any_set(min(delay, left), etcd_marker, delivery.newer, stopping)
            if stopping.is_set() or (delivery.newer is not None and delivery.newer.is_set()):
                raise Deferred("waiting; back to the bus (newer event, or stopping)", delay=delay)

    async def _decide(
        self,
        event: Any,
        key: str,
        matched: tuple[RuleSet, list[Any]],
        delivery: Delivery,
        recorded: dict[str, Any] | None,
    ) -> tuple[list[float], bool]:
        """Carry out what the engine decides now; the waits left, and whether every one of
        them waits on etcd's next record (an end only an event can bring). `recorded`: the
        problem's record as this handler just wrote it (not read again). `matched`: the rules
        in force when the event was matched, and its candidates among them."""
        matched_against, candidates = matched
        snapshot = await self.state.snapshot(
            event.cluster, key, candidates, recorded, self.stateless
        )
        waits: list[float] = []
        on_etcd = True
        ruleset = self.rules.ruleset
        # Not matched again unless the rules were reloaded since (a wait can outlast a reload).
        known = candidates if ruleset is matched_against else None
        for decision in decide(event, delivery.subject, ruleset, snapshot, now(), matched=known):
            bound = log.bind(event_id=event.id, rule=decision.name, subject=event.subject)
            metrics.record_decision(decision)
            if decision.verdict is Verdict.WAIT:
                bound.info("decision_wait", reason=decision.reason, delay=round(decision.delay, 2))
                waits.append(decision.delay)
                on_etcd = on_etcd and decision.reason in ON_ETCD
                continue
            outcome, recheck = await self._carry_out(decision, event, key, delivery, bound)
            if recheck is not None:  # a refusal re-planned later: a known end
                waits.append(recheck)
                on_etcd = False
            if outcome is Outcome.FAILED:
                # Come back after the backoff: the engine decides the next attempt or escalates.
                waits.append(
                    decision.rule.rule.spec.limits.backoff * 2 ** max(0, decision.attempt - 1)
                )
                on_etcd = False
        return waits, on_etcd and bool(waits)

    async def _observe(self, event: Any, key: str) -> dict[str, Any] | None:
        """Record what the event says; the problem's record as it is now (None: no problem)."""
        if isinstance(event, EtcdEvent):
            await self.state.record_etcd(
                event.cluster, event.data.condition, event.data.stable_since, event.time
            )
            self.etcd_changes.recorded(event.cluster)  # wakes events parked on etcd here
        elif isinstance(event, ReleaseEvent):
            firing = event.data.state is ProblemState.FIRING
            return await self.state.record_problem(key, firing, event.time)
        return None

    async def _claim(self, decision: Decision, event: Any) -> str:
        """The claim on this decision; none for a rule whose action keeps no state
        (`stateless`): its result is all it produces, and the results stream stores one per
        id (`subjects.result_slot`), so a redelivery, a copy of the event re-emitted after the
        dedup window, or another replica handling the same event publishes nothing new."""
        if decision.rule.rule.spec.action.name in self.stateless:
            return "stateless"
        step = f"{decision.name}:{decision.verdict.value}:{decision.attempt}"
        return await self.state.claim(
            event.id, decision.name, step, self.settings.actor, self.settings.lease_seconds
        )

    async def _carry_out(
        self,
        decision: Decision,
        event: Any,
        key: str,
        delivery: Delivery,
        bound: Any,
    ) -> tuple[Outcome | None, float | None]:
        """Claim, act (or escalate/skip), record and publish one decision; returns its outcome
        and, for a refusal to be re-checked, the delay until the next plan. A decision of a
        rule whose action keeps no state takes no claim (`_claim`)."""
        claim = await self._claim(decision, event)
        if claim == "done":
            bound.info("decision_already_done")
            return None, None
        if claim == "busy":
            raise TransientError("another replica holds this decision", delay=2.0)
        started = now()
        clock = time.perf_counter()
        if claim == "resumed":
            # Written by an owner that stopped before reporting: never write twice; verify what
            # it wrote when it recorded what to check (older claims: report it as applied).
            outcome, reason, plan = await self._resume(decision, event, delivery)
        elif decision.verdict is Verdict.ACT or claim == "resumed-writing":
            outcome, reason, plan = await self._act(decision, event, delivery, claim)
        elif decision.verdict is Verdict.ESCALATE:
            outcome, reason, plan = Outcome.ESCALATED, decision.reason, None
        else:
            outcome, reason, plan = Outcome.SKIPPED, decision.reason, None
        if outcome in {Outcome.SUCCEEDED, Outcome.FAILED, Outcome.APPLIED}:
            await self._record_attempt(decision, key, outcome, started, bound)
        if outcome is Outcome.ESCALATED and plan is not None and plan.recheck_after:
            await self._refused_for_now(decision, event, key, (reason, plan, started, clock), bound)
            return outcome, plan.recheck_after
        if outcome is Outcome.ESCALATED:
            await self.state.record_escalation(decision.name, key)
        metrics.record_outcome(decision, outcome, time.perf_counter() - clock)
        await self._publish(decision, event, key, outcome, reason, plan, started, clock)
        # `failed` is retried after the backoff (a new step of the same claim); the rest is final.
        final = outcome is not Outcome.FAILED
        if claim != "stateless":
            await self.state.finish(event.id, decision.name, outcome.value, final=final)
        bound.info("decision_done", outcome=outcome.value, reason=reason, attempt=decision.attempt)
        return outcome, None

    async def _record_attempt(
        self, decision: Decision, key: str, outcome: Outcome, started: datetime, bound: Any
    ) -> None:
        await self.state.record_attempt(decision.name, key, outcome.value, started)
        try:
            if await self.state.record_rule_run(decision.rule, outcome is Outcome.FAILED, started):
                bound.warning("circuit_breaker_opened")
        except RuntimeError as exc:  # rule statistics must not undo a decision that acted
            bound.warning("rule_statistics_not_recorded", error=str(exc))

    async def _refused_for_now(
        self,
        decision: Decision,
        event: Any,
        key: str,
        judged: tuple[str, Any, datetime, float],
        bound: Any,
    ) -> None:
        """The action refused for a cause a person can remove (e.g. missing RBAC): tell people
        once, write nothing, and let the same event be planned again later (the claim is
        released, as nothing was written; the problem is not marked escalated)."""
        reason, plan, started, clock = judged
        if await self.state.mark_refused(decision.name, key):
            metrics.record_outcome(decision, Outcome.ESCALATED, time.perf_counter() - clock)
            await self._publish(
                decision, event, key, Outcome.ESCALATED, reason, plan, started, clock, interim=True
            )
        await self.state.release(event.id, decision.name)
        bound.info("decision_refused_recheck", reason=reason, recheck_after=plan.recheck_after)

    async def _resume(
        self, decision: Decision, event: Any, delivery: Delivery
    ) -> tuple[Outcome, str, Any]:
        record = self.state.held(event.id, decision.name).get("verify")
        if not record:
            return Outcome.APPLIED, RESUMED, None
        plan, until = plan_of(record)
        result = await self.runner.verify(decision, plan, until, delivery.parked)
        return result.outcome, result.reason, result.plan

    async def _act(
        self, decision: Decision, event: Any, delivery: Delivery, claim: str
    ) -> tuple[Outcome, str, Any]:
        async def writing() -> None:
            await self.state.mark_writing(event.id, decision.name)

        async def applied(plan: Plan, until: datetime) -> None:
            record = verification_record(plan, until)
            await self.state.mark_applied(event.id, decision.name, record)

        try:
            result = await self.runner.execute(
                decision, event, delivery.parked, applied, on_writing=writing
            )
        except KubeError as error:
            if 400 <= error.status < 500:  # the server answered and refused: nothing was written
                await self.state.mark_not_written(event.id, decision.name)
            raise
        if (
            claim == "resumed-writing"
            and result.outcome is Outcome.SKIPPED
            and result.reason.startswith("already-fixed")
        ):
            # The owner that stopped mid-write did write: the fix is its, report and audit it.
            await self.runner.audit_found(decision, event, result.plan)
            return Outcome.APPLIED, RESUMED_WRITE, result.plan
        return result.outcome, result.reason, result.plan

    async def _publish(  # noqa: PLR0917 - internal, two call sites
        self,
        decision: Decision,
        event: Any,
        key: str,
        outcome: Outcome,
        reason: str,
        plan: Any,
        started: datetime,
        clock: float,
        *,
        interim: bool = False,
    ) -> None:
        spec = decision.rule.rule.spec
        target = self.runner.target_of(event)
        evidence = (
            event.data.evidence.model_dump(mode="json") if isinstance(event, ReleaseEvent) else {}
        )
        result = RemediationResult(
            id=result_id(event.id, decision.name, outcome, decision.attempt, interim=interim),
            source=f"medic/remediator/{event.cluster}",
            cluster=event.cluster,
            subject=event.subject,
            data=ResultData(
                event_id=event.id,
                problem_key=key,
                rule=decision.name,
                action=spec.action.name,
                outcome=outcome,
                reason=reason,
                object=target,
                attempt=decision.attempt,
                max_attempts=spec.limits.max_attempts,
                dry_run=self.settings.dry_run or spec.dry_run,
                severity=spec.severity,
                changes=plan.changes if plan is not None else [],
                diagnosis=plan.diagnosis if plan is not None else {},
                evidence=evidence,
                notify=spec.notify,
                started_at=started,
                duration_ms=(time.perf_counter() - clock) * 1000,
            ),
        )
        await self.bus.publish(result)


def load_rules(settings: RemediatorSettings, actions: ActionParams | None = None) -> LoadResult:
    """Built-ins, then the configured files; a file's rule replaces a built-in of the same name.

    That is how a team tunes a shipped rule (a shorter grace period, dry-run, other limits)
    without disabling the whole pack. Actions are checked against `actions` (default: the
    default registry's).
    """
    actions = default_registry().params_models() if actions is None else actions
    builtin = load_builtin(actions) if settings.builtin_rules else LoadResult()
    extra = load_paths(settings.rules, actions)
    rules = {rule.name: rule for rule in builtin.rules}
    for rule in extra.rules:
        if rule.name in rules:
            log.info("rule_overrides_builtin", rule=rule.name)
        rules[rule.name] = rule
    return LoadResult(rules=list(rules.values()), errors=[*builtin.errors, *extra.errors])


async def create(
    bus: Bus,
    kube: KubeClient,
    settings: RemediatorSettings,
    cluster: str,
    registry: ActionRegistry | None = None,
) -> RemediatorService:
    kv = await bus.kv(settings.state_bucket, history=1)
    state = StateStore(kv, bus.kv_ops(settings.state_bucket))
    backups = BackupStore(await bus.kv(settings.backups_bucket, history=1))
    rules_kv = await bus.kv(settings.rules_bucket, history=5)
    context = ActionContext(kube=kube, cluster=cluster, actor=settings.actor, backups=backups)
    registry = registry or default_registry()
    runner = Runner(bus, registry, context, dry_run=settings.dry_run, changes=ObjectChanges(kube))
    actions = registry.params_models()
    rules = RuleBook(load_rules(settings, actions), actions)
    return RemediatorService(bus, settings, rules, state, runner, rules_kv, kube)


async def build(ctx: ServiceContext) -> RemediatorService:
    settings = RemediatorSettings.load()
    assert isinstance(settings, RemediatorSettings)
    kube = await KubeClient.connect(ctx.settings.kube)
    ctx.health.add_check("kubernetes", kube.reachable)
    return await create(ctx.bus, kube, settings, ctx.settings.cluster)


__all__ = ["EtcdCondition", "RemediatorService", "RuleBook", "build", "create"]
