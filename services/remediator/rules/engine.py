"""The decision: (event, rule set, state snapshot, now) -> decisions. Pure: no I/O, no clock.

For every rule that matches the event it returns one decision:
- `act`: run the rule's action now (attempt n);
- `wait`: not yet (the `for:` duration, a precondition such as "etcd stable for 60s", backoff,
  the rule's rate limit); the service re-checks after `delay` seconds;
- `skip`: nothing to do (problem already resolved, cooldown after a success, circuit open);
  `resolved-within-grace` marks a problem that healed during its `for:` period: never notified;
- `escalate`: the attempt limit is reached: people must act (decided once per problem).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from medic.remediator.rules.index import CompiledRule, RuleSet
from medic.schemas import CustomEvent, EtcdCondition, EtcdEvent, Event, ReleaseEvent

RESOLVED_WITHIN_GRACE = "resolved-within-grace"
UNKNOWN_ETCD_GRACE = "etcd-state-unknown"
ETCD_UNSTABLE = "etcd-unstable"  # a wait with no known end: until etcd's `stable` event


class Verdict(StrEnum):
    ACT = "act"
    WAIT = "wait"
    SKIP = "skip"
    ESCALATE = "escalate"


@dataclass(frozen=True)
class Decision:
    rule: CompiledRule
    verdict: Verdict
    reason: str = ""
    delay: float = 0.0
    attempt: int = 0

    @property
    def name(self) -> str:
        return self.rule.rule.name


@dataclass(frozen=True)
class ObjectState:
    """Per (rule, problem): what Medic already did."""

    attempts: int = 0
    last_attempt: datetime | None = None
    last_outcome: str = ""
    escalated: bool = False


@dataclass(frozen=True)
class ProblemState:
    """Per problem (object + problem kind), independent of rules."""

    firing_since: datetime | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True)
class RuleState:
    actions: tuple[datetime, ...] = ()
    failures: tuple[datetime, ...] = ()
    paused_until: datetime | None = None


@dataclass(frozen=True)
class EtcdState:
    condition: EtcdCondition
    stable_since: datetime | None
    at: datetime


@dataclass(frozen=True)
class Snapshot:
    objects: dict[tuple[str, str], ObjectState] = field(default_factory=dict)
    problems: dict[str, ProblemState] = field(default_factory=dict)
    rules: dict[str, RuleState] = field(default_factory=dict)
    etcd: dict[str, EtcdState] = field(default_factory=dict)


def problem_key(event: Event) -> str:
    """One problem: the object and what is wrong with it (threads its whole story)."""
    if isinstance(event, ReleaseEvent):
        ref = event.data.object
        return f"{event.cluster}/{ref.kind}/{ref.namespace or '_'}/{ref.name}/{event.data.problem}"
    if isinstance(event, EtcdEvent):
        return f"{event.cluster}/etcd/{event.data.endpoint or '_'}/{event.data.condition}"
    custom = event.object
    name = (
        f"{custom.kind}/{custom.namespace or '_'}/{custom.name}"
        if custom
        else event.subject or event.id
    )
    return f"{event.cluster}/{name}/{event.type}"


def view_of(event: Event) -> tuple[dict[str, Any], str, str]:
    """Flat facts rules match on, plus the (problem, kind) index keys."""
    view: dict[str, Any] = {
        "cluster": event.cluster,
        "namespace": "",
        "name": "",
        "kind": "",
        "state": "firing",
        "reason": "",
        "classification": "",
        "etcd_condition": "",
        "message": "",
        "labels": {},
        "fields": {},
    }
    problem = ""
    if isinstance(event, ReleaseEvent):
        data = event.data
        view |= {
            "namespace": data.object.namespace or "",
            "name": data.object.name,
            "kind": data.object.kind,
            "state": data.state.value,
            "reason": data.evidence.reason,
            "classification": data.classification.value,
            "message": data.evidence.message,
            "labels": data.evidence.labels,
            "fields": data.evidence.fields,
        }
        problem = data.problem.value
    elif isinstance(event, EtcdEvent):
        view |= {"etcd_condition": event.data.condition.value, "message": event.data.detail}
        problem = event.data.condition.value
    elif isinstance(event, CustomEvent) and event.object is not None:
        view |= {
            "namespace": event.object.namespace or "",
            "name": event.object.name,
            "kind": event.object.kind,
        }
    return view, problem, view["kind"]


def matching(event: Event, subject: str, rules: RuleSet) -> list[CompiledRule]:
    view, problem, kind = view_of(event)
    candidates = rules.candidates(event.type, problem, kind)
    if not candidates:
        return []
    # The event as a document only for `when:` expressions (its dump is most of a match's cost).
    raw = event.model_dump(mode="json", by_alias=True) if any(r.when for r in candidates) else {}
    return [rule for rule in candidates if rule.matches(view, subject, raw)]


def decide(
    event: Event,
    subject: str,
    rules: RuleSet,
    state: Snapshot,
    now: datetime,
    *,
    matched: list[CompiledRule] | None = None,
) -> list[Decision]:
    """`matched`: `matching(event, subject, rules)` when the caller has it already."""
    key = problem_key(event)
    if matched is None:
        matched = matching(event, subject, rules)
    return [_decide_one(rule, event, key, state, now) for rule in matched]


def _decide_one(
    compiled: CompiledRule, event: Event, key: str, state: Snapshot, now: datetime
) -> Decision:
    stopped = _guards(compiled, event, key, state, now)
    if stopped is not None:
        return stopped
    obj = state.objects.get((compiled.rule.name, key), ObjectState())
    waiting = _waits(compiled, event, key, state, now, obj=obj)
    return waiting or Decision(compiled, Verdict.ACT, "", attempt=obj.attempts + 1)


def _guards(
    compiled: CompiledRule, event: Event, key: str, state: Snapshot, now: datetime
) -> Decision | None:
    """Reasons not to act at all: healed, circuit open, limit reached, cooling down."""
    spec = compiled.rule.spec
    problem = state.problems.get(key, ProblemState())
    obj = state.objects.get((compiled.rule.name, key), ObjectState())
    rule_state = state.rules.get(compiled.rule.name, RuleState())
    verdict: tuple[Verdict, str] | None = None
    if problem.resolved_at is not None and problem.resolved_at >= event.time:
        verdict = (Verdict.SKIP, RESOLVED_WITHIN_GRACE if spec.for_ > 0 else "already-fixed")
    elif rule_state.paused_until is not None and now < rule_state.paused_until:
        verdict = (Verdict.SKIP, "circuit-open")
    elif obj.attempts >= spec.limits.max_attempts and obj.last_outcome != "succeeded":
        verdict = (
            (Verdict.SKIP, "escalated-already")
            if obj.escalated
            else (Verdict.ESCALATE, f"{obj.attempts} attempts did not fix it")
        )
    elif (
        obj.last_attempt is not None
        and obj.last_outcome == "succeeded"
        and (now - obj.last_attempt).total_seconds() < spec.limits.cooldown
    ):
        verdict = (Verdict.SKIP, "cooldown")
    if verdict is None:
        return None
    return Decision(compiled, verdict[0], verdict[1], attempt=obj.attempts)


def _waits(
    compiled: CompiledRule,
    event: Event,
    key: str,
    state: Snapshot,
    now: datetime,
    *,
    obj: ObjectState,
) -> Decision | None:
    """Reasons to act later: backoff, `for:`, preconditions, the rule's rate limit."""
    spec = compiled.rule.spec
    waits: list[tuple[str, float | None]] = []
    if obj.last_attempt is not None and obj.last_outcome != "succeeded":
        backoff = spec.limits.backoff * 2 ** max(0, obj.attempts - 1)
        left = backoff - (now - obj.last_attempt).total_seconds()
        waits.append(("backoff", left if left > 0 else None))
    waits.append(("for", _wait_for(spec.for_, state.problems.get(key, ProblemState()), event, now)))
    etcd_wait = _etcd_wait(spec.preconditions.etcd_stable_for, event, state, now)
    if etcd_wait is not None:
        waits.append(etcd_wait)
    rule_state = state.rules.get(compiled.rule.name, RuleState())
    recent = [t for t in rule_state.actions if (now - t).total_seconds() < 60]
    if len(recent) >= spec.limits.rate_per_minute:
        waits.append(("rate-limit", 60 - (now - min(recent)).total_seconds()))
    for reason, delay in waits:
        if delay is not None:
            return Decision(compiled, Verdict.WAIT, reason, delay)
    return None


def _wait_for(duration: float, problem: ProblemState, event: Event, now: datetime) -> float | None:
    if duration <= 0:
        return None
    since = problem.firing_since or event.time
    if isinstance(event, ReleaseEvent) and event.data.evidence.since is not None:
        since = min(since, event.data.evidence.since)
    remaining = duration - (now - since).total_seconds()
    return remaining if remaining > 0 else None


def _etcd_wait(
    stable_for: float | None, event: Event, state: Snapshot, now: datetime
) -> tuple[str, float] | None:
    if stable_for is None:
        return None
    etcd = state.etcd.get(event.cluster)
    if etcd is None:
        # No probe has reported: give etcd the same time from the event on, then proceed.
        remaining = stable_for - (now - event.time).total_seconds()
        return (UNKNOWN_ETCD_GRACE, remaining) if remaining > 0 else None
    if etcd.condition is not EtcdCondition.STABLE or etcd.stable_since is None:
        return (ETCD_UNSTABLE, min(5.0, stable_for))
    remaining = stable_for - (now - etcd.stable_since).total_seconds()
    return ("etcd-settling", remaining) if remaining > 0 else None


def circuit_tripped(rule: CompiledRule, rule_state: RuleState, now: datetime) -> bool:
    """Whether the failures within the rule's window reach its circuit breaker."""
    breaker = rule.rule.spec.limits.circuit_breaker
    recent = [t for t in rule_state.failures if (now - t).total_seconds() < breaker.window]
    return len(recent) >= breaker.failures
