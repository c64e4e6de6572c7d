"""One message per problem outcome a person reads, on a real nats-server and real receivers.

Results are the ones the remediator published in `medic demo` runs (`fixtures/results`): S5 with
etcd-druid not answering (a failed attempt, then the escalation, 20 ms apart) and S2 (one object,
two problems: old API version, then stale status).
"""

from __future__ import annotations

import json
from pathlib import Path

from medic.notifier.settings import ChannelConfig
from medic.runtime.bus import Bus
from medic.schemas import DeliveryStatus, NotificationData, RemediationResult
from medic.testing.notifier import notifications, notifier_settings, running_notifier, slack_config
from medic.testing.receivers import SlackReceiver, StandardWebhookReceiver
from medic.testing.waiting import eventually

RESULTS = Path(__file__).parent / "fixtures" / "results"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def result(name: str) -> RemediationResult:
    return RemediationResult.model_validate_json((RESULTS / f"{name}.json").read_text())


def hook(receiver: StandardWebhookReceiver) -> ChannelConfig:
    return ChannelConfig(
        name="hook", type="webhook", options={"url": f"{receiver.url}/in", "secret": SECRET}
    )


async def records(bus: Bus, status: DeliveryStatus) -> list[NotificationData]:
    return [n for n in await notifications(bus) if n.status is status]


async def test_an_escalation_is_one_message_that_tells_the_failed_attempt_too(bus: Bus) -> None:
    failed, escalated = result("S5-stuck-failed"), result("S5-stuck-escalated")
    async with SlackReceiver() as slack, StandardWebhookReceiver(SECRET) as receiver:
        settings = notifier_settings(slack_config(slack), hook(receiver), fold_window=1.0)
        async with running_notifier(bus, settings):
            await bus.publish(failed)
            await bus.publish(escalated)
            [post] = await slack.wait_for_posts(1)
            folded = await eventually(lambda: records(bus, DeliveryStatus.FOLDED), timeout=10)
            await receiver.wait_for_verified(2)
    assert len(slack.posted) == 1, [p.text for p in slack.posted]
    assert "ESCALATED" in post.text
    assert "Before: attempt 1/1 failed: not verified in time" in post.text
    assert [(n.channel, n.result_id) for n in folded] == [("ops", failed.id)]
    # Machines get every result as it is: the webhook has both, and the bus keeps both.
    bodies = [json.loads(r.body) for r in receiver.verified]
    assert sorted(b["data"]["outcome"] for b in bodies) == ["escalated", "failed"]


async def test_a_failed_attempt_nothing_follows_is_sent_alone_after_the_window(bus: Bus) -> None:
    failed = result("S5-stuck-failed")
    async with SlackReceiver() as slack:
        settings = notifier_settings(slack_config(slack), fold_window=0.5)
        async with running_notifier(bus, settings):
            await bus.publish(failed)
            [post] = await slack.wait_for_posts(1, timeout=10)
            await eventually(lambda: records(bus, DeliveryStatus.DELIVERED), timeout=5)
    assert "FAILED" in post.text
    assert not await records(bus, DeliveryStatus.FOLDED)


async def test_an_objects_second_problem_is_a_reply_in_its_thread(bus: Bus) -> None:
    migrated, reconciled = result("S2-migrate-succeeded"), result("S2-reconcile-succeeded")
    slack = SlackReceiver(token="xoxb-test")
    async with slack, running_notifier(bus, notifier_settings(slack_config(slack))):
        await bus.publish(migrated)
        await slack.wait_for_posts(1)
        await bus.publish(reconciled)
        first, second = await slack.wait_for_posts(2)
    assert first.thread_ts is None
    assert "flux-migrate-old-api-version" in first.text
    assert second.thread_ts == first.ts
    assert "flux-force-reconcile-stale-status" in second.text
    assert not second.fields.get("reply_broadcast")  # the channel shows one message


async def test_a_failed_attempt_in_an_open_thread_is_a_quiet_reply_at_once(bus: Bus) -> None:
    first_problem, failed = result("S2-migrate-succeeded"), result("S5-stuck-failed")
    # The same object as S2's, so its thread is open.
    data = failed.data.model_copy(update={"object": first_problem.data.object})
    failed = failed.model_copy(update={"data": data, "cluster": first_problem.cluster})
    async with SlackReceiver(token="xoxb-test") as slack:
        settings = notifier_settings(slack_config(slack), fold_window=30.0)
        async with running_notifier(bus, settings):
            await bus.publish(first_problem)
            await slack.wait_for_posts(1)
            await bus.publish(failed)
            _, reply = await slack.wait_for_posts(2, timeout=5)  # not after the 30 s window
    assert "FAILED" in reply.text
    assert reply.thread_ts is not None
    assert not reply.fields.get("reply_broadcast")


async def test_fold_window_zero_sends_a_failed_attempt_at_once(bus: Bus) -> None:
    async with SlackReceiver() as slack:
        settings = notifier_settings(slack_config(slack), fold_window=0)
        async with running_notifier(bus, settings):
            await bus.publish(result("S5-stuck-failed"))
            await bus.publish(result("S5-stuck-escalated"))
            posts = await slack.wait_for_posts(2, timeout=5)
    assert ["FAILED" in posts[0].text, "ESCALATED" in posts[1].text] == [True, True]
