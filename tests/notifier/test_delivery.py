"""The notifier end to end on a real nats-server, against loopback Slack/webhook receivers."""

from __future__ import annotations

import asyncio
import json

import pytest

from medic.notifier.service import build
from medic.notifier.settings import ChannelConfig
from medic.runtime.bus import MSG_ID, Bus, subject_of
from medic.runtime.health import HealthServer
from medic.runtime.lifecycle import ServiceContext
from medic.runtime.settings import RuntimeSettings
from medic.runtime.subjects import DEADLETTER
from medic.schemas import DeadLetter, DeliveryStatus, Outcome, encode_message
from medic.testing.notifier import (
    make_result,
    notifications,
    notifier_settings,
    running_notifier,
    slack_config,
    stream_messages,
)
from medic.testing.receivers import Reply, SlackReceiver, StandardWebhookReceiver
from medic.testing.waiting import eventually

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def statuses(bus: Bus, status: DeliveryStatus) -> list[str]:
    return [n.channel for n in await notifications(bus) if n.status is status]


async def test_a_problems_story_stays_in_one_slack_thread(bus: Bus) -> None:
    async with SlackReceiver(token="xoxb-test") as slack:
        settings = notifier_settings(slack_config(slack))
        async with running_notifier(bus, settings):
            for step, outcome in enumerate((Outcome.APPLIED, Outcome.FAILED, Outcome.ESCALATED)):
                await bus.publish(make_result(outcome=outcome, step=str(step)))
                await slack.wait_for_posts(step + 1)
            await bus.publish(make_result("other", Outcome.SUCCEEDED))
            posts = await slack.wait_for_posts(4)
            records = await eventually(lambda: statuses(bus, DeliveryStatus.DELIVERED), timeout=5)
    root = posts[0]
    assert root.thread_ts is None
    assert [p.thread_ts for p in posts[1:3]] == [root.ts, root.ts]
    assert posts[3].thread_ts is None  # another problem, another thread
    assert "ESCALATED" in posts[2].text
    assert posts[2].fields.get("reply_broadcast") is True  # escalation shows in the channel
    assert not posts[0].fields.get("reply_broadcast")
    assert posts[2].fields["attachments"][0]["color"] == "#e01e5a"
    assert records


async def test_rate_limited_post_is_retried_after_retry_after(bus: Bus) -> None:
    async with SlackReceiver() as slack:
        slack.script(Reply.rate_limited(retry_after=1))
        async with running_notifier(bus, notifier_settings(slack_config(slack))):
            await bus.publish(make_result())
            await slack.wait_for_posts(1)
    first, second = slack.requests
    assert first.reply.status == 429
    assert second.at - first.at >= 1.0


async def test_server_error_and_timeout_are_retried_until_delivered(bus: Bus) -> None:
    async with SlackReceiver() as slack:
        slack.script(Reply.server_error(), Reply.hang(1.5))
        async with running_notifier(bus, notifier_settings(slack_config(slack))):
            await bus.publish(make_result())
            await slack.wait_for_posts(1)
    assert len(slack.requests) == 3


async def test_permanent_error_is_dead_lettered_and_not_retried(bus: Bus) -> None:
    async with SlackReceiver() as slack:
        slack.script(Reply.fail("invalid_payload", 400))
        async with running_notifier(bus, notifier_settings(slack_config(slack))):
            await bus.publish(make_result("broken"))

            async def letters() -> list[DeadLetter]:
                found = await stream_messages(bus, DEADLETTER.name)
                return [m for m in found if isinstance(m, DeadLetter)]

            [letter] = await eventually(letters, timeout=5)
            await bus.publish(make_result("next"))  # later results still flow
            await slack.wait_for_posts(1)
            dead = await eventually(lambda: statuses(bus, DeliveryStatus.DEAD_LETTERED))
    assert "invalid_payload" in letter.data.error.message
    assert letter.data.error.field == "channels.ops"
    assert letter.data.consumer == "notifier"
    assert dead == ["ops"]
    assert [r.reply.error for r in slack.requests] == ["invalid_payload", None]


async def test_redelivered_result_is_not_posted_twice(bus: Bus) -> None:
    slack = SlackReceiver()
    async with slack, running_notifier(bus, notifier_settings(slack_config(slack))):
        result = make_result()
        await bus.publish(result)
        await slack.wait_for_posts(1)
        # The same result again under another message id: JetStream stores it a second time,
        # as after a publisher retry outside the dedup window.
        await bus.js.publish(subject_of(result), encode_message(result), headers={MSG_ID: "again"})
        await eventually(lambda: statuses(bus, DeliveryStatus.DUPLICATE), timeout=5)
    assert len(slack.requests) == 1


async def test_only_the_failed_channel_is_retried(bus: Bus) -> None:
    async with (
        SlackReceiver() as good,
        SlackReceiver() as flaky,
        StandardWebhookReceiver(SECRET) as hook,
    ):
        flaky.script(Reply.server_error(), Reply.server_error())
        webhook = ChannelConfig(
            name="hook", type="webhook", options={"url": hook.url + "/in", "secret": SECRET}
        )
        settings = notifier_settings(
            slack_config(good, "good"), slack_config(flaky, "flaky"), webhook
        )
        async with running_notifier(bus, settings):
            await bus.publish(make_result())
            await flaky.wait_for_posts(1)
            await hook.wait_for_verified(1)
    assert len(good.requests) == 1
    assert len(hook.requests) == 1
    assert len(flaky.requests) == 3


async def test_burst_is_grouped_into_one_digest(bus: Bus) -> None:
    async with SlackReceiver() as slack:
        settings = notifier_settings(slack_config(slack), digest_threshold=2, digest_window=0.5)
        async with running_notifier(bus, settings):
            await bus.publish_many([make_result(f"app-{i}") for i in range(8)])

            async def all_recorded() -> bool:
                return len(await notifications(bus)) >= 8

            await eventually(all_recorded, timeout=10)
    digested = await statuses(bus, DeliveryStatus.DIGESTED)
    delivered = await statuses(bus, DeliveryStatus.DELIVERED)
    # The threshold lets two through; the rest of the burst is digested (if a loaded machine
    # splits the burst across fetches, a later part may open a second digest).
    assert len(delivered) + len(digested) == 8
    assert len(delivered) >= 2
    assert len(digested) >= 3
    digests = [p for p in slack.posted if "digest" in p.text.lower() or "results for" in p.text]
    assert digests
    assert len(slack.posted) == len(delivered) + len(digests)
    if len(delivered) == 2:
        assert "6 results" in digests[0].text
    for i in range(8):
        assert sum(f"app-{i}" in p.text for p in slack.posted) == 1


async def test_results_wait_for_a_channel_that_was_down_across_a_restart(bus: Bus) -> None:
    slack = SlackReceiver()
    await slack.start()
    await slack.stop()  # the channel is down; its port is known
    settings = notifier_settings(slack_config(slack))
    try:
        async with running_notifier(bus, settings) as notifier:
            await bus.publish(make_result())
            ledger = notifier.deliverer.ledger
            result_id = make_result().id

            async def failed_once() -> bool:
                return await ledger.state("ops", result_id) == "failed"

            await eventually(failed_once, timeout=5)
        # notifier stopped while the channel is still down; both come back
        await slack.start()
        async with running_notifier(bus, settings):
            await slack.wait_for_posts(1, timeout=10)
            await eventually(lambda: statuses(bus, DeliveryStatus.DELIVERED), timeout=5)
    finally:
        await slack.stop()
    assert len(slack.posted) == 1


async def test_resolved_within_grace_is_never_notified(bus: Bus) -> None:
    async with SlackReceiver() as slack:
        console = ChannelConfig(name="all", type="console", filters={"include_skipped": True})
        async with running_notifier(bus, notifier_settings(slack_config(slack), console)):
            await bus.publish(make_result("quiet", Outcome.SKIPPED, reason="resolved-within-grace"))
            await bus.publish(make_result("loud", Outcome.SUCCEEDED))
            await slack.wait_for_posts(1)
            await eventually(lambda: statuses(bus, DeliveryStatus.DELIVERED), timeout=5)
    assert "loud" in slack.posted[0].text
    assert all("quiet" not in r.text for r in slack.requests)


async def test_build_reads_channels_from_the_environment(
    bus: Bus, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    channels = [{"name": "console", "type": "console"}]
    monkeypatch.setenv("MEDIC_NOTIFIER_CHANNELS", json.dumps(channels))
    ctx = ServiceContext(settings=RuntimeSettings(), bus=bus, health=HealthServer("127.0.0.1", 0))
    service = await build(ctx)
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(service.run(stop))
        await bus.publish(make_result(outcome=Outcome.SUCCEEDED))
        await eventually(lambda: statuses(bus, DeliveryStatus.DELIVERED), timeout=5)
        stop.set()
    assert "SUCCEEDED: HelmRelease apps/podinfo" in capsys.readouterr().out
