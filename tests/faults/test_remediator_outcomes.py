"""The remediator's reported outcome without any kill: a burst, and a redelivered event.

Two bugs the kill -9 test showed, reproduced without killing anything (fixed: shared rule
statistics are serialised per replica and never fail a decision that acted; one claim per
event and rule, so a redelivery finds the final outcome reported):
- a burst of fixes at the default concurrency: the per-rule KV key `rule.<name>` is updated by
  every handler with optimistic concurrency and gives up after 20 conflicts; the attempt was
  already counted, so the redelivery decides "skipped: cooldown" and a fix that was written and
  verified is reported as skipped;
- an event delivered again after its handler finished (what a kill -9 between the handler's
  return and the ack amounts to; here published again under another Nats-Msg-Id): the new
  decision (skipped: cooldown) has its own claim and publishes a second final result.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.js import api

from medic.remediator.service import create
from medic.remediator.settings import RemediatorSettings
from medic.runtime.bus import Bus
from medic.runtime.kube import KubeClient
from medic.runtime.settings import KubeSettings
from medic.runtime.subjects import EVENTS, RESULTS
from medic.sandbox import KubeSandbox
from medic.schemas import Outcome, RemediationResult, encode_message
from medic.testing.factories import custom_event
from medic.testing.tally import count_patches, fetch_all
from medic.testing.waiting import eventually

pytestmark = pytest.mark.faults
NAMESPACE = "burst"
EVENT_TYPE = "custom.burst"
RULE = f"""
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {{name: mark-configmap}}
spec:
  match: {{types: [{EVENT_TYPE}], kinds: [ConfigMap]}}
  action: {{name: annotate, params: {{values: {{"medic.dev/fixed": "yes"}}}}}}
  limits: {{ratePerMinute: 100000}}
  verify: {{timeout: 10s, interval: 0.1s}}
"""


@contextlib.asynccontextmanager
async def remediating(bus: Bus, tmp_path: Path, names: list[str]) -> AsyncIterator[KubeSandbox]:
    (tmp_path / "rule.yaml").write_text(RULE)
    async with KubeSandbox.start() as sandbox:
        for name in names:
            sandbox.store.put(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": NAMESPACE},
                }
            )
        kube = await KubeClient.connect(
            KubeSettings(kubeconfig=sandbox.kubeconfig_path, qps=5000, burst=5000)
        )
        settings = RemediatorSettings(actor="outcomes", rules=[tmp_path], builtin_rules=False)
        service = await create(bus, kube, settings, "outcomes")  # default concurrency (64)
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        try:
            yield sandbox
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=20.0)


async def results_settled(bus: Bus, count: int) -> list[RemediationResult]:
    async def done() -> bool:
        info = await bus.js.stream_info(RESULTS.name)
        consumer = await bus.js.consumer_info(EVENTS.name, "remediator")
        return (
            info.state.messages >= count
            and consumer.num_pending == 0
            and consumer.num_ack_pending == 0
        )

    await eventually(done, timeout=40.0, interval=0.1)
    return [r for r in await fetch_all(bus, RESULTS.name) if isinstance(r, RemediationResult)]


async def test_a_burst_of_fixes_is_reported_succeeded(bus: Bus, tmp_path: Path) -> None:
    names = [f"cm-{i:03d}" for i in range(300)]
    async with remediating(bus, tmp_path, names) as sandbox:
        await bus.publish_many(
            [custom_event(n, NAMESPACE, type_name=EVENT_TYPE, cluster="outcomes") for n in names]
        )
        results = await results_settled(bus, len(names))
        assert count_patches(sandbox.store, NAMESPACE) == len(names)  # each written once
    outcomes = collections.Counter((r.data.outcome.value, r.data.reason) for r in results)
    assert outcomes == {("succeeded", ""): len(names)}, outcomes


async def test_an_event_handled_again_gets_no_second_result(bus: Bus, tmp_path: Path) -> None:
    event = custom_event("cm-0", NAMESPACE, type_name=EVENT_TYPE, cluster="outcomes")
    async with remediating(bus, tmp_path, ["cm-0"]) as sandbox:
        await bus.publish(event)
        [first] = await results_settled(bus, 1)
        assert first.data.outcome is Outcome.SUCCEEDED
        # The same event again, as a redelivery after a lost ack hands it to the handler.
        subject = f"medic.events.outcomes.{event.subject_suffix()}"
        await bus.js.publish(subject, encode_message(event), headers={api.Header.MSG_ID: "again"})

        async def handled_again() -> bool:
            consumer = await bus.js.consumer_info(EVENTS.name, "remediator")
            return consumer.delivered.stream_seq >= 2 and consumer.num_ack_pending == 0

        await eventually(handled_again, timeout=20.0)
        assert count_patches(sandbox.store, NAMESPACE) == 1
    results = [r for r in await fetch_all(bus, RESULTS.name) if isinstance(r, RemediationResult)]
    assert [(r.data.outcome.value, r.data.reason) for r in results] == [("succeeded", "")]
