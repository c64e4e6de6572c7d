"""The remediator service on a real nats-server: once per problem, replicas, hot reload.

Rules here use the `notify-only` action, which writes nothing, so no Kubernetes API is needed;
the actions against the API are tested with the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.js import api

from medic.remediator.rules.engine import Decision, Verdict
from medic.remediator.rules.index import RuleSet
from medic.remediator.rules.loader import load_text
from medic.remediator.service import RemediatorService, create
from medic.remediator.settings import RemediatorSettings
from medic.runtime import subjects
from medic.runtime.bus import Bus
from medic.runtime.consumer import Delivery
from medic.runtime.errors import Deferred, PermanentError
from medic.runtime.settings import NatsSettings
from medic.schemas import Outcome, RemediationResult, decode_message
from medic.testing.factories import release_event
from medic.testing.waiting import eventually

RULE = """
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {{name: {name}}}
spec:
  match: {{problems: [failed], names: ["{pattern}"]}}
  action: {{name: notify-only}}
  notify: [ops]
"""


def settings(**overrides: object) -> RemediatorSettings:
    return RemediatorSettings(builtin_rules=False, actor="test", **overrides)  # type: ignore[arg-type]


async def results(bus: Bus) -> list[RemediationResult]:
    sub = await bus.js.pull_subscribe(
        "medic.results.>", stream=subjects.RESULTS.name, config=api.ConsumerConfig()
    )
    found: list[RemediationResult] = []
    with contextlib.suppress(Exception):
        while True:
            batch = await sub.fetch(500, timeout=0.3)
            for msg in batch:
                message = decode_message(msg.data)
                assert isinstance(message, RemediationResult)
                found.append(message)
    await sub.unsubscribe()
    return found


@contextlib.asynccontextmanager
async def running(service: RemediatorService) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def push(bus: Bus, key: str, text: str) -> None:
    kv = await bus.kv("medic-rules", history=5)
    await kv.put(key, text.encode())


async def test_redelivered_event_is_not_applied_twice(bus: Bus) -> None:
    await push(bus, "rules.ops", RULE.format(name="ops", pattern="*"))
    service = await create(bus, None, settings(), "test")  # type: ignore[arg-type]
    async with running(service):
        await eventually(lambda: asyncio.sleep(0, result=bool(service.rules.ruleset.rules)))
    event = release_event("web")
    delivery = Delivery(
        subject="medic.events.test.release.failed",
        stream_sequence=1,
        num_delivered=1,
        is_last_attempt=False,
    )
    await service.handle(event, delivery)
    await service.handle(event, delivery)
    found = await results(bus)
    assert len(found) == 1
    assert found[0].data.outcome is Outcome.NO_OP
    assert found[0].data.notify == ["ops"]


WAITING_RULE = """
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: later}
spec:
  match: {problems: [failed]}
  for: 10m
  action: {name: notify-only}
"""


async def test_a_stateless_decision_is_not_repeated_when_its_event_comes_back(
    nats_settings: NatsSettings,
) -> None:
    """A notify-only decision takes no claim (issue 15): when its event has to come back for
    another rule (a `for:` wait), past the results' dedup window, the results stream still
    refuses a second result under the same id, so the event's return publishes none."""
    short = nats_settings.model_copy(update={"duplicate_window": 0.5})
    bus = await Bus.connect(short, name="test-short-dedup")
    try:
        await bus.ensure_streams()
        service = await create(bus, None, settings(), "test")  # type: ignore[arg-type]
        rules = RULE.format(name="ops", pattern="*") + "---\n" + WAITING_RULE
        service.rules.ruleset = RuleSet.build(load_text(rules, "rules.yaml").rules)
        event = release_event("web")
        subject = "medic.events.test.release.failed"
        with pytest.raises(Deferred):
            await service.handle(event, Delivery(subject, 1, 1, is_last_attempt=False))
        await asyncio.sleep(1.0)  # the window is over: JetStream would store a copy now
        with pytest.raises(Deferred):
            await service.handle(event, Delivery(subject, 1, 2, is_last_attempt=False))
        found = await results(bus)
    finally:
        await bus.close()
    assert [(r.data.rule, r.data.outcome) for r in found] == [("ops", Outcome.NO_OP)]


async def test_two_replicas_act_once_per_problem(bus: Bus) -> None:
    await push(bus, "rules.ops", RULE.format(name="ops", pattern="*"))
    first = await create(bus, None, settings(), "test")  # type: ignore[arg-type]
    second = await create(bus, None, settings(), "test")  # type: ignore[arg-type]
    events = [release_event(f"app{i}") for i in range(120)]
    async with running(first), running(second):
        await bus.publish_many(events)
        found = await eventually(lambda: _at_least(bus, 120), timeout=30)
    assert sorted(r.data.event_id for r in found) == sorted(e.id for e in events)


class SlowWatch:
    """A rules bucket whose watch answers a second late, as a loaded nats-server may."""

    def __init__(self, kv: Any) -> None:
        self.kv = kv

    async def watchall(self) -> Any:
        await asyncio.sleep(1.0)
        return await self.kv.watchall()


async def test_events_waiting_at_start_are_judged_by_the_pushed_rules(bus: Bus) -> None:
    """The consumer starts only once the rules pushed to the KV bucket are in force: an event
    fetched before would match none of them, be acked, and never be judged (seen as 3 of 120
    events without a result when two replicas started beside a waiting backlog)."""
    await push(bus, "rules.ops", RULE.format(name="ops", pattern="*"))
    events = [release_event(f"app{i}") for i in range(50)]
    await bus.publish_many(events)
    service = await create(bus, None, settings(), "test")  # type: ignore[arg-type]
    service.rules_kv = SlowWatch(service.rules_kv)  # type: ignore[assignment]
    async with running(service):
        found = await eventually(lambda: _at_least(bus, 50), timeout=30)
    assert sorted(r.data.event_id for r in found) == sorted(e.id for e in events)


async def _at_least(bus: Bus, count: int) -> list[RemediationResult]:
    found = await results(bus)
    return found if len(found) >= count else []


async def test_rule_pushed_to_kv_is_picked_up_and_a_bad_one_is_rejected(bus: Bus) -> None:
    service = await create(bus, None, settings(), "test")  # type: ignore[arg-type]
    async with running(service):
        await push(bus, "rules.first", RULE.format(name="first", pattern="web*"))
        await eventually(
            lambda: asyncio.sleep(0, result=service.rules.ruleset.names() == ["first"])
        )
        await push(
            bus,
            "rules.broken",
            "apiVersion: medic.dev/v1alpha1\nkind: RemediationRule\n"
            "metadata: {name: broken}\nspec:\n  action: {name: retry}\n"
            "  limits: {maxAttempts: 0}\n",
        )
        await push(bus, "rules.second", RULE.format(name="second", pattern="api*"))
        await eventually(
            lambda: asyncio.sleep(0, result=service.rules.ruleset.names() == ["first", "second"])
        )
        await bus.publish(release_event("web-1"))
        found = await eventually(lambda: results(bus))
    assert [r.data.rule for r in found] == ["first"]


async def test_a_pushed_rule_with_a_bad_regex_or_bad_bytes_leaves_the_rules_in_force(
    bus: Bus,
) -> None:
    service = await create(bus, None, settings(), "test")  # type: ignore[arg-type]
    async with running(service):
        await push(bus, "rules.first", RULE.format(name="first", pattern="web*"))
        await eventually(
            lambda: asyncio.sleep(0, result=service.rules.ruleset.names() == ["first"])
        )
        await push(
            bus,
            "rules.first",
            RULE.format(name="first", pattern="web*").replace(
                "names:", 'message: "(leader", names:'
            ),
        )
        kv = await bus.kv("medic-rules", history=5)
        await kv.put("rules.binary", b"\xff\xfe not UTF-8")
        await push(bus, "rules.second", RULE.format(name="second", pattern="api*"))
        await eventually(
            lambda: asyncio.sleep(0, result=service.rules.ruleset.names() == ["first", "second"])
        )
        await bus.publish(release_event("web-1"))
        found = await eventually(lambda: results(bus))
    assert [r.data.rule for r in found] == ["first"]


async def test_a_bad_rule_file_at_start_is_reported_and_the_rest_are_in_force(
    bus: Bus, tmp_path: Path
) -> None:
    (tmp_path / "leader.yaml").write_text(
        RULE.format(name="leader", pattern="*").replace("names:", 'message: "(leader", names:')
    )
    (tmp_path / "ops.yaml").write_text(RULE.format(name="ops", pattern="*"))
    service = await create(bus, None, settings(rules=[tmp_path]), "test")  # type: ignore[arg-type]
    assert service.rules.ruleset.names() == ["ops"]
    [error] = service.rules.base.errors
    assert (error.file, error.field) == (str(tmp_path / "leader.yaml"), "spec.match.message")


async def test_a_pushed_rule_whose_action_is_unknown_is_rejected(bus: Bus) -> None:
    service = await create(bus, None, settings(), "test")  # type: ignore[arg-type]
    async with running(service):
        await push(
            bus,
            "rules.typo",
            RULE.format(name="typo", pattern="*").replace("notify-only", "notify-onyl"),
        )
        await push(bus, "rules.second", RULE.format(name="second", pattern="api*"))
        await eventually(
            lambda: asyncio.sleep(0, result=service.rules.ruleset.names() == ["second"])
        )


async def test_an_unchecked_rule_with_wrong_params_fails_naming_the_field(bus: Bus) -> None:
    service = await create(bus, None, settings(), "test")  # type: ignore[arg-type]
    unchecked = load_text(  # loaded without its action checked, as a library user might
        RULE.format(name="raw", pattern="*").replace(
            "{name: notify-only}", "{name: annotate, params: {annotations: {a: b}}}"
        ),
        "raw.yaml",
    )
    [rule] = RuleSet.build(unchecked.rules).rules
    decision = Decision(rule, Verdict.ACT, attempt=1)
    with pytest.raises(PermanentError) as raised:
        await service.runner.execute(decision, release_event("web-1"), contextlib.nullcontext)
    assert str(raised.value) == (
        "rule raw: field 'spec.action.params.values' action 'annotate' needs parameter 'values'; "
        "field 'spec.action.params.annotations' unknown parameter 'annotations' of action "
        "'annotate'; known: values, plural"
    )


async def test_dry_run_plans_and_does_not_act(bus: Bus) -> None:
    await push(bus, "rules.ops", RULE.format(name="ops", pattern="*"))
    service = await create(bus, None, settings(dry_run=True), "test")  # type: ignore[arg-type]
    async with running(service):
        await bus.publish(release_event("dry"))
        found = await eventually(lambda: results(bus))
    assert found[0].data.dry_run is True
