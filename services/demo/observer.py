"""Follows the bus and tells what happens to each scenario: detected, decided, applied, verified.

A plain NATS subscription to `medic.>` sees every event, result, audit entry and notification as
the services publish them (JetStream streams store the same messages; the observer only listens).
It files each message under the scenario whose object it names and hands a readable line to
`on_entry` as it goes, so `medic demo` can print a live account.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from medic.demo.scenarios import Scenario, Target
from medic.schemas import (
    AuditEntry,
    DeadLetter,
    EtcdEvent,
    Notification,
    ObjectRef,
    Outcome,
    ReleaseEvent,
    RemediationResult,
    SchemaError,
    decode_message,
)

FINAL = frozenset({Outcome.SUCCEEDED, Outcome.FAILED, Outcome.ESCALATED, Outcome.NO_OP})
FINAL_OR_PLANNED = FINAL | {Outcome.PLANNED}
ACTED = frozenset({Outcome.APPLIED, Outcome.SUCCEEDED, Outcome.FAILED, Outcome.PLANNED})


@dataclass(frozen=True)
class Entry:
    at: float  # seconds since the observer started
    stage: str  # staged, detected, resolved, decided, applied, verified, notified, etcd, cluster
    scenario: str  # scenario key, or "" for the cluster as a whole (etcd)
    text: str


@dataclass
class Story:
    """Everything seen about one scenario's object."""

    scenario: Scenario
    events: list[tuple[float, ReleaseEvent]] = field(default_factory=list)
    results: list[tuple[float, RemediationResult]] = field(default_factory=list)
    audits: list[tuple[float, AuditEntry]] = field(default_factory=list)
    notifications: list[tuple[float, Notification]] = field(default_factory=list)
    staged_at: float | None = None  # when its staging began: nothing of it was visible before

    def final(self, rule: str) -> Outcome | None:
        outcomes = [r.data.outcome for _, r in self.results if r.data.rule == rule]
        finals = [o for o in outcomes if o in FINAL or o is Outcome.PLANNED]
        return finals[-1] if finals else None

    def told(self, rule: str) -> bool:
        """Whether people were told (delivered, failed or parked) after the rule's final result."""
        final = [
            (t, r)
            for t, r in self.results
            if r.data.rule == rule and r.data.outcome in FINAL_OR_PLANNED
        ]
        if not final:
            return False
        at, result = final[-1]
        return any(n.data.result_id == result.id or t >= at for t, n in self.notifications)

    def first(self, items: Sequence[tuple[float, object]]) -> float | None:
        return items[0][0] if items else None

    def first_result(self, *outcomes: Outcome) -> float | None:
        return next((t for t, r in self.results if r.data.outcome in outcomes), None)

    @property
    def acted(self) -> bool:
        return bool(self.audits) or any(r.data.outcome in ACTED for _, r in self.results)


def matches(target: Target, ref: ObjectRef | None) -> bool:
    return (
        ref is not None
        and ref.kind == target.kind
        and (ref.namespace or "") == target.namespace
        and ref.name == target.name
    )


class Observer:
    def __init__(
        self, scenarios: Sequence[Scenario], on_entry: Callable[[Entry], None] | None = None
    ) -> None:
        self.stories = {s.key: Story(s) for s in scenarios}
        self.on_entry = on_entry
        self.entries: list[Entry] = []
        self.etcd: list[tuple[float, EtcdEvent]] = []
        self.dead_letters: list[DeadLetter] = []
        self.undecodable: list[str] = []
        self.started = time.monotonic()
        self._result_story: dict[str, str] = {}
        self._event_story: dict[str, str] = {}
        self._nc: Client | None = None

    def now(self) -> float:
        return time.monotonic() - self.started

    async def start(self, url: str) -> None:
        self._nc = await nats.connect(servers=[url], name="medic-demo-observer")
        await self._nc.subscribe("medic.>", cb=self._on_msg)

    async def stop(self) -> None:
        if self._nc is not None:
            await self._nc.drain()
            self._nc = None

    def note(self, stage: str, scenario: str, text: str) -> None:
        entry = Entry(self.now(), stage, scenario, text)
        self.entries.append(entry)
        if self.on_entry is not None:
            self.on_entry(entry)

    def _story_of_event(self, event_id: str) -> Story | None:
        key = self._event_story.get(event_id)
        return self.stories[key] if key is not None else None

    def staged(self, scenario: Scenario, began: float | None = None) -> None:
        """`scenario` is staged; `began`: when its first write was sent (by default now). On a
        real API server each object is visible as soon as it is written, so Medic may see the
        problem before the last write returns."""
        self.stories[scenario.key].staged_at = self.now() if began is None else began
        self.note("staged", scenario.key, f"{scenario.target}: {scenario.title}")

    async def _on_msg(self, msg: Msg) -> None:
        if msg.subject.startswith("$"):
            return
        try:
            message = decode_message(msg.data)
        except SchemaError as exc:
            self.undecodable.append(f"{msg.subject}: {exc}")
            return
        self.observe(message)

    def observe(self, message: object) -> None:  # noqa: C901 - one branch per message type
        at = self.now()
        if isinstance(message, EtcdEvent):
            self.etcd.append((at, message))
            detail = f" ({message.data.detail})" if message.data.detail else ""
            self.note("etcd", "", f"etcd {message.data.condition.value}{detail}")
        elif isinstance(message, ReleaseEvent):
            story = self._story(message.data.object)
            if story is not None:
                self._event_story[message.id] = story.scenario.key
                story.events.append((at, message))
                data = message.data
                what = data.etcd_error or data.evidence.message or data.evidence.reason
                stage = "detected" if data.state.value == "firing" else "resolved"
                text = f"{data.problem.value} ({data.watcher_source}): {what}".rstrip(": ")
                self.note(stage, story.scenario.key, text)
        elif isinstance(message, RemediationResult):
            story = self._story(message.data.object)
            if story is not None:
                story.results.append((at, message))
                self._result_story[message.id] = story.scenario.key
                self.note(*_result_line(story.scenario.key, message))
        elif isinstance(message, AuditEntry):
            # An action may write another object than the one observed (the Bundle that owns a
            # BundleDeployment): the audit names what was written, its event what was seen.
            story = self._story(message.data.object) or self._story_of_event(message.data.event_id)
            if story is not None:
                story.audits.append((at, message))
                backup = f", backup {message.data.backup_id}" if message.data.backup_id else ""
                self.note(
                    "applied",
                    story.scenario.key,
                    f"{message.data.verb} {message.data.action} ({message.data.outcome}{backup})",
                )
        elif isinstance(message, Notification):
            key = self._result_story.get(message.data.result_id)
            if key is not None:
                self.stories[key].notifications.append((at, message))
                sent = message.data
                self.note("notified", key, f"{sent.channel}: {sent.status.value}")
        elif isinstance(message, DeadLetter):
            self.dead_letters.append(message)
            self.note("dead-letter", "", f"{message.data.subject}: {message.data.error}")

    def _story(self, ref: ObjectRef | None) -> Story | None:
        return next((s for s in self.stories.values() if matches(s.scenario.target, ref)), None)


def _result_line(key: str, result: RemediationResult) -> tuple[str, str, str]:
    data = result.data
    outcome = data.outcome
    stage = {
        Outcome.PLANNED: "decided",
        Outcome.APPLIED: "applied",
        Outcome.SKIPPED: "decided",
    }.get(outcome, "verified")
    changes = "; ".join(f"{c.path}: {c.before!r} -> {c.after!r}" for c in data.changes[:3])
    took = f" in {data.duration_ms / 1000:.1f}s" if data.duration_ms is not None else ""
    reason = f" ({data.reason})" if data.reason else ""
    text = f"{data.action} by rule {data.rule}: {outcome.value}{reason}{took}"
    if changes and outcome in {Outcome.PLANNED, Outcome.APPLIED}:
        text += f" [{changes}]"
    return stage, key, text
