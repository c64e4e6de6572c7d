"""One contract for machines: what the webhook receives validates against the committed schemas.

The bus message, `schemas/remediation-result.json` (`additionalProperties: false`) and the
webhook body are the same JSON; a burst's digest is `schemas/result-digest.json`, whose entries
are results under that same contract. Checked on the bodies a real receiver got from the
notifier running on a real nats-server. Slack's body is Slack's own format (Block Kit), and the
console writes text: neither emits Medic JSON.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema

from medic.notifier.render import event_payload
from medic.notifier.settings import ChannelConfig
from medic.runtime.bus import Bus
from medic.schemas import Outcome, encode_message
from medic.testing.notifier import make_result, notifier_settings, running_notifier
from medic.testing.receivers import StandardWebhookReceiver
from medic.testing.waiting import eventually

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((resources.files("medic.schemas") / name).read_text())
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def errors(name: str, body: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator(name).iter_errors(body)]


def hook(receiver: StandardWebhookReceiver) -> ChannelConfig:
    return ChannelConfig(
        name="hook",
        type="webhook",
        options={"url": f"{receiver.url}/in", "secret": SECRET},
        rate_per_second=200.0,
        rate_burst=50,
    )


async def test_webhook_body_is_the_bus_message_and_validates_against_the_result_schema(
    bus: Bus,
) -> None:
    result = make_result(outcome=Outcome.SUCCEEDED)
    receiver = StandardWebhookReceiver(SECRET)
    async with receiver, running_notifier(bus, notifier_settings(hook(receiver))):
        await bus.publish(result)
        [request] = await receiver.wait_for_verified(1)
    body = json.loads(request.body)
    assert errors("remediation-result.json", body) == []
    assert body["data"]["object"]["apiVersion"] == result.data.object.api_version  # type: ignore[union-attr]
    assert body == json.loads(encode_message(result))


async def test_webhook_digest_validates_against_the_digest_schema(bus: Bus) -> None:
    results = [make_result(f"app-{i}", Outcome.SUCCEEDED) for i in range(6)]
    async with StandardWebhookReceiver(SECRET) as receiver:
        settings = notifier_settings(hook(receiver), digest_threshold=1, digest_window=0.5)
        async with running_notifier(bus, settings):
            await bus.publish_many(results)
            await receiver.wait_for_verified(2)

            async def every_result_arrived() -> bool:
                bodies = [json.loads(r.body) for r in receiver.verified]
                names = [b["data"]["object"]["name"] for b in bodies if "data" in b]
                names += [r["data"]["object"]["name"] for b in bodies for r in b.get("results", [])]
                return sorted(names) == sorted(f"app-{i}" for i in range(6))

            await eventually(every_result_arrived, timeout=10)
    bodies = [json.loads(r.body) for r in receiver.verified]
    digests = [b for b in bodies if b.get("type") == "medic.digest"]
    assert digests
    for body in bodies:
        name = "result-digest.json" if body in digests else "remediation-result.json"
        assert errors(name, body) == [], body


def test_every_outcome_renders_a_payload_valid_against_the_result_schema() -> None:
    for outcome in Outcome:
        result = make_result(outcome=outcome, reason="why", diagnosis={"a": {"b": None}})
        assert errors("remediation-result.json", event_payload(result)) == []
