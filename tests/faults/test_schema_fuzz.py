"""Bad input generated from the committed JSON Schemas, published raw to a real bus.

Instances of schemas/*.json (hypothesis-jsonschema), broken in one place (a wrong type, a field
removed, an unknown major schemaversion) or left valid, go to the real remediator (events) and
the real notifier (results). A message the JSON Schema rejects must be dead-lettered naming the
broken field; one it accepts may be handled or dead-lettered with a field; nothing crashes or
stalls the consumer: a valid message published after all of them is still handled, and the
consumer ends with nothing pending. Rule files generated from the remediation-rule schema are
either loaded or reported as file:line field by `load_text`, which never raises.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from medic.notifier.delivery import CONSUMER as NOTIFIER_DURABLE
from medic.notifier.settings import ChannelConfig
from medic.remediator.actions import default_registry
from medic.remediator.rules import cel
from medic.remediator.rules.loader import load_text
from medic.remediator.service import create
from medic.remediator.settings import RemediatorSettings
from medic.runtime.bus import Bus
from medic.runtime.kube import KubeClient
from medic.runtime.settings import KubeSettings
from medic.runtime.subjects import DEADLETTER, EVENTS, RESULTS
from medic.sandbox import KubeSandbox
from medic.schemas import CustomEvent, DeadLetter, ObjectRef, Outcome, RemediationResult
from medic.schemas import stable_id as make_id
from medic.testing import schema_fuzz
from medic.testing.notifier import (
    make_result,
    notifier_settings,
    running_notifier,
    stream_messages,
)
from medic.testing.receivers import StandardWebhookReceiver
from medic.testing.schema_fuzz import Mutant
from medic.testing.waiting import eventually

pytestmark = pytest.mark.faults
CLUSTER = "fuzz"
ACTIONS = default_registry(entry_points=False).params_models()
PER_EVENT_SCHEMA = 25
RESULTS_COUNT = 40
SECRET = "whsec_" + base64.b64encode(b"schema-fuzz-webhook-secret-01234").decode()
SENTINEL_RULE = """
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: fuzz-sentinel}
spec:
  match: {types: [custom.fuzz-sentinel], names: [sentinel]}
  action: {name: annotate, params: {values: {"medic.dev/seen": "yes"}}}
  verify: {timeout: 5s, interval: 0.1s}
"""
# celpy raises the recursion limit on its first compile; do it now, not inside a hypothesis
# example (hypothesis warns when the limit changes under it).
cel.check("true")


async def publish_raw(bus: Bus, subject: str, mutants: list[Mutant]) -> dict[int, Mutant]:
    """Raw bytes, no Nats-Msg-Id (two equal mutants are two messages); by stream sequence."""
    by_sequence: dict[int, Mutant] = {}
    for mutant in mutants:
        ack = await bus.js.publish(subject, mutant.payload)
        by_sequence[ack.seq] = mutant
    return by_sequence


async def consumer_drained(bus: Bus, stream: str, durable: str) -> bool:
    info = await bus.js.consumer_info(stream, durable)
    return info.num_pending == 0 and info.num_ack_pending == 0


async def dead_letters(bus: Bus, consumer: str) -> dict[int, DeadLetter]:
    found = await stream_messages(bus, DEADLETTER.name)
    return {
        d.data.sequence: d
        for d in found
        if isinstance(d, DeadLetter) and d.data.consumer == consumer
    }


def judge(published: dict[int, Mutant], letters: dict[int, DeadLetter]) -> None:
    """Every mutant the schema rejects is dead-lettered naming its field; others, if
    dead-lettered at all, name a field too."""
    problems = []
    for sequence, mutant in published.items():
        letter = letters.get(sequence)
        error = letter.data.error if letter is not None else None
        if mutant.must_reject:
            if error is None or error.kind.value != "schema" or not mutant.names_field(error.field):
                problems.append((mutant.mutation, mutant.field, error))
        elif error is not None and not (error.field or error.kind.value != "schema"):
            problems.append((mutant.mutation, mutant.field, error))
    assert not problems, problems
    assert set(letters) <= set(published)


def event_mutants() -> list[Mutant]:
    found: list[Mutant] = []
    for name in ("release-event", "etcd-event", "custom-event"):
        found += schema_fuzz.balanced(schema_fuzz.mutants(name), PER_EVENT_SCHEMA)
    return found


@contextlib.asynccontextmanager
async def running_remediator(bus: Bus, tmp_path: Path) -> AsyncIterator[asyncio.Task[None]]:
    (tmp_path / "sentinel.yaml").write_text(SENTINEL_RULE)
    async with KubeSandbox.start() as sandbox:
        sandbox.store.put(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "sentinel"}}
        )
        kube = await KubeClient.connect(KubeSettings(kubeconfig=sandbox.kubeconfig_path))
        settings = RemediatorSettings(actor="fuzz", rules=[tmp_path], builtin_rules=False)
        service = await create(bus, kube, settings, CLUSTER)  # closes kube when it stops
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        try:
            yield task
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=20.0)


def sentinel_event() -> CustomEvent:
    ref = ObjectRef(kind="ConfigMap", api_version="v1", namespace="default", name="sentinel")
    return CustomEvent(
        id=make_id("fuzz", "sentinel"),
        source="medic/faults",
        cluster=CLUSTER,
        type="custom.fuzz-sentinel",
        subject="ConfigMap/default/sentinel",
        object=ref,
    )


async def test_remediator_dead_letters_bad_events_by_field_and_keeps_going(
    bus: Bus, tmp_path: Path
) -> None:
    mutants = event_mutants()
    assert sum(m.must_reject for m in mutants) >= len(mutants) // 3  # the batch does break
    sentinel = sentinel_event()
    async with running_remediator(bus, tmp_path) as task:
        published = await publish_raw(bus, f"medic.events.{CLUSTER}.custom.fuzz", mutants)
        await bus.publish(sentinel)

        async def sentinel_handled() -> list[RemediationResult]:
            results = await stream_messages(bus, RESULTS.name)
            return [
                r
                for r in results
                if isinstance(r, RemediationResult) and r.data.event_id == sentinel.id
            ]

        [result] = await eventually(sentinel_handled, timeout=30.0)
        await eventually(lambda: consumer_drained(bus, EVENTS.name, "remediator"), timeout=20.0)
        assert not task.done()  # never crashed
        letters = await dead_letters(bus, "remediator")
    assert result.data.outcome is Outcome.SUCCEEDED, result.data.reason
    judge(published, letters)


def header_safe(mutant: Mutant) -> Mutant:
    """The result id without control characters: it becomes the `webhook-id` header, and such
    an id is retried for ever today (test_result_id_unfit_for_a_header_is_not_retried_forever)."""
    instance = mutant.instance
    if not isinstance(instance, dict) or not isinstance(instance.get("id"), str):
        return mutant
    clean = "".join(c for c in instance["id"] if " " <= c != "\x7f") or "x"
    return dataclasses.replace(mutant, instance={**instance, "id": clean})


async def test_notifier_dead_letters_bad_results_by_field_and_keeps_going(bus: Bus) -> None:
    drawn = schema_fuzz.balanced(schema_fuzz.mutants("remediation-result"), RESULTS_COUNT)
    mutants = [header_safe(m) for m in drawn]
    assert sum(m.must_reject for m in mutants) >= len(mutants) // 3
    sentinel = make_result("sentinel", Outcome.SUCCEEDED, cluster=CLUSTER)
    async with StandardWebhookReceiver(SECRET) as receiver:
        hook = ChannelConfig(
            name="hook",
            type="webhook",
            options={"url": f"{receiver.url}/in", "secret": SECRET, "timeout": 2.0},
            rate_per_second=500.0,
            rate_burst=100,
        )
        async with running_notifier(bus, notifier_settings(hook)) as notifier:
            published = await publish_raw(bus, f"medic.results.{CLUSTER}.applied", mutants)
            await bus.publish(sentinel)

            async def sentinel_delivered() -> bool:
                return any(r.headers["webhook-id"] == sentinel.id for r in receiver.verified)

            await eventually(sentinel_delivered, timeout=30.0)
            await eventually(
                lambda: consumer_drained(bus, RESULTS.name, NOTIFIER_DURABLE), timeout=20.0
            )
            assert notifier.consumer is not None
        letters = await dead_letters(bus, NOTIFIER_DURABLE)
    assert not receiver.rejected
    judge(published, letters)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(schema_fuzz.mutants("remediation-rule", message=False))
def test_generated_rule_files_load_or_report_file_line_field(mutant: Mutant) -> None:
    text = yaml.safe_dump(mutant.instance, sort_keys=False)
    lines = text.count("\n") + 1
    loaded = load_text(text, "fuzz.yaml", ACTIONS)  # never raises
    assert len(loaded.rules) + len({e.line for e in loaded.errors}) >= 1
    for error in loaded.errors:
        assert error.file == "fuzz.yaml"
        assert 1 <= error.line <= lines, (error, text)
        assert str(error).startswith(f"fuzz.yaml:{error.line}:")
    if mutant.must_reject:
        assert not loaded.rules
        assert any(mutant.names_field(e.field) for e in loaded.errors), (mutant, loaded.errors)
    if not loaded.errors:
        assert len(loaded.rules) == 1


async def test_result_id_unfit_for_a_header_is_not_retried_forever(bus: Bus) -> None:
    result = make_result("newline", Outcome.SUCCEEDED, cluster=CLUSTER)
    result = result.model_copy(update={"id": "line\nbreak"})
    async with StandardWebhookReceiver(SECRET) as receiver:
        hook = ChannelConfig(
            name="hook", type="webhook", options={"url": receiver.url, "secret": SECRET}
        )
        async with running_notifier(bus, notifier_settings(hook)):
            await bus.publish(result)
            await eventually(
                lambda: consumer_drained(bus, RESULTS.name, NOTIFIER_DURABLE), timeout=8.0
            )
