"""Slack and webhook channels against local receivers on loopback: real HTTP, no mocks."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from medic.notifier.channels import ChannelError, default_registry, mask_url
from medic.notifier.channels.slack import SlackChannel, SlackOptions
from medic.notifier.channels.webhook import WebhookChannel, WebhookOptions
from medic.notifier.render import render_result
from medic.notifier.settings import ChannelConfig
from medic.notifier.templates import TemplateSet
from medic.schemas import Outcome
from medic.testing.notifier import make_result
from medic.testing.receivers import Reply, SlackReceiver, StandardWebhookReceiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def rendered(outcome: Outcome = Outcome.SUCCEEDED):
    return render_result(make_result(outcome=outcome), TemplateSet())


async def test_slack_webhook_posts_block_kit_with_colour_and_fallback_text() -> None:
    async with SlackReceiver() as slack:
        channel = SlackChannel("ops", SlackOptions(webhook_url=SecretStr(slack.webhook_url)))
        await channel.send(rendered(Outcome.SUCCEEDED))
        [post] = await slack.wait_for_posts(1)
    attachment = post.fields["attachments"][0]
    assert attachment["color"] == "#2eb886"
    assert "podinfo" in post.text
    assert attachment["fallback"] == post.text
    blocks = attachment["blocks"]
    assert blocks[0]["type"] == "header"
    fields = " ".join(f["text"] for f in blocks[1]["fields"])
    assert "test" in fields
    assert "apps/podinfo" in fields
    assert "HelmRelease" in fields
    assert any("leader changed" in b.get("text", {}).get("text", "") for b in blocks)


@pytest.mark.parametrize(
    ("reply", "permanent", "retry_after"),
    [
        (Reply.fail("invalid_payload", 400), True, None),
        (Reply.fail("no_service", 404), True, None),
        (Reply.rate_limited(retry_after=7), False, 7.0),
        (Reply.server_error(), False, None),
        (Reply(status=408, error="timeout"), False, None),
    ],
)
async def test_slack_webhook_errors_are_classified(
    reply: Reply, permanent: bool, retry_after: float | None
) -> None:
    async with SlackReceiver() as slack:
        slack.script(reply)
        channel = SlackChannel("ops", SlackOptions(webhook_url=SecretStr(slack.webhook_url)))
        with pytest.raises(ChannelError) as caught:
            await channel.send(rendered())
    assert caught.value.permanent is permanent
    assert caught.value.retry_after == retry_after
    assert "SECRETPATH" not in str(caught.value)


async def test_slack_timeout_is_transient() -> None:
    async with SlackReceiver() as slack:
        slack.script(Reply.hang(2.0))
        options = SlackOptions(webhook_url=SecretStr(slack.webhook_url), timeout=0.2)
        with pytest.raises(ChannelError) as caught:
            await SlackChannel("ops", options).send(rendered())
    assert not caught.value.permanent


async def test_slack_unreachable_is_transient_and_masks_the_webhook_path() -> None:
    slack = SlackReceiver()
    await slack.start()
    await slack.stop()
    channel = SlackChannel("ops", SlackOptions(webhook_url=SecretStr(slack.webhook_url)))
    with pytest.raises(ChannelError) as caught:
        await channel.send(rendered())
    assert not caught.value.permanent
    assert "SECRETPATH" not in str(caught.value)


async def test_slack_web_api_returns_ts_and_replies_in_thread() -> None:
    async with SlackReceiver(token="xoxb-test") as slack:
        options = SlackOptions(token=SecretStr("xoxb-test"), channel="#ops", base_url=slack.api_url)
        channel = SlackChannel("ops", options)
        first = await channel.send(rendered())
        import dataclasses

        await channel.send(dataclasses.replace(rendered(), thread=first.thread))
        posts = await slack.wait_for_posts(2)
    assert first.thread == posts[0].ts
    assert posts[1].thread_ts == first.thread
    assert posts[0].fields["channel"] == "#ops"


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [
        (Reply.fail("channel_not_found", 200), True),
        (Reply.fail("invalid_auth", 200), True),
        (Reply.rate_limited(retry_after=3), False),
        (Reply.server_error(), False),
    ],
)
async def test_slack_web_api_errors_are_classified(reply: Reply, permanent: bool) -> None:
    async with SlackReceiver(token="xoxb-test") as slack:
        slack.script(reply)
        options = SlackOptions(token=SecretStr("xoxb-test"), channel="#ops", base_url=slack.api_url)
        with pytest.raises(ChannelError) as caught:
            await SlackChannel("ops", options).send(rendered())
    assert caught.value.permanent is permanent
    if reply.retry_after:
        assert caught.value.retry_after == reply.retry_after


async def test_webhook_is_signed_per_standard_webhooks_with_extra_headers() -> None:
    async with StandardWebhookReceiver(SECRET) as receiver:
        options = WebhookOptions(
            url=SecretStr(f"{receiver.url}/hooks/medic"),
            secret=SecretStr(SECRET),
            headers={"X-Team": "platform"},
        )
        channel = WebhookChannel("hook", options)
        try:
            message = rendered()
            await channel.send(message)
            [request] = await receiver.wait_for_verified(1)
        finally:
            await channel.close()
    assert not receiver.rejected
    assert request.headers["webhook-id"] == message.message_id
    assert request.headers["X-Team"] == "platform"
    assert request.fields["type"] == "medic.result"
    assert request.fields["data"]["outcome"] == "succeeded"


async def test_webhook_receiver_rejects_a_wrong_signature() -> None:
    async with StandardWebhookReceiver(SECRET) as receiver:
        other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
        channel = WebhookChannel(
            "hook", WebhookOptions(url=SecretStr(receiver.url + "/x"), secret=SecretStr(other))
        )
        try:
            with pytest.raises(ChannelError) as caught:
                await channel.send(rendered())
        finally:
            await channel.close()
    assert caught.value.permanent  # 401
    assert len(receiver.rejected) == 1


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [(Reply(status=410), True), (Reply(status=400), True), (Reply.rate_limited(2), False)],
)
async def test_webhook_errors_are_classified(reply: Reply, permanent: bool) -> None:
    async with StandardWebhookReceiver(SECRET) as receiver:
        receiver.script(reply)
        channel = WebhookChannel(
            "hook", WebhookOptions(url=SecretStr(receiver.url + "/x"), secret=SecretStr(SECRET))
        )
        try:
            with pytest.raises(ChannelError) as caught:
                await channel.send(rendered())
        finally:
            await channel.close()
    assert caught.value.permanent is permanent


def test_registry_builds_channels_from_config_and_reads_secret_files(tmp_path) -> None:
    secret_file = tmp_path / "url"
    secret_file.write_text("https://hooks.example.com/services/T/B/X\n")
    registry = default_registry()
    channel = registry.create(
        ChannelConfig(name="ops", type="slack", options={"webhook_url_file": str(secret_file)})
    )
    assert isinstance(channel, SlackChannel)
    assert channel.webhook_url == "https://hooks.example.com/services/T/B/X"
    assert channel.where == "https://hooks.example.com/***"
    with pytest.raises(KeyError, match="unknown channel type"):
        registry.create(ChannelConfig(name="x", type="pager"))


def test_mask_url_keeps_only_scheme_and_host() -> None:
    assert mask_url("https://hooks.slack.com/services/T/B/X") == "https://hooks.slack.com/***"
    assert mask_url("http://127.0.0.1:8080/a/b?token=1") == "http://127.0.0.1:8080/***"
    assert mask_url("not a url") == "***"
