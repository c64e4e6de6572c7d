"""Webhook replay and tamper: the notifier's signed deliveries are accepted once; a captured
delivery sent again (as is, re-timed, or with another body) is rejected by the receiver.

The notifier runs on a real nats-server and posts to a real `StandardWebhookReceiver` on
loopback; the replays are raw HTTP posts of what the receiver captured.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from standardwebhooks.webhooks import Webhook

from medic.notifier.settings import ChannelConfig
from medic.runtime.bus import Bus
from medic.schemas import Outcome
from medic.testing.notifier import make_result, notifier_settings, running_notifier
from medic.testing.receivers import ReceivedRequest, Reply, StandardWebhookReceiver

pytestmark = pytest.mark.faults
SECRET = "whsec_" + base64.b64encode(b"replay-and-tamper-secret-0123456").decode()


def hook_channel(receiver: StandardWebhookReceiver) -> ChannelConfig:
    return ChannelConfig(
        name="hook",
        type="webhook",
        options={"url": f"{receiver.url}/medic", "secret": SECRET, "timeout": 2.0},
        rate_per_second=200.0,
        rate_burst=50,
    )


def resigned(captured: ReceivedRequest, at: datetime, body: bytes) -> dict[str, str]:
    """The captured delivery's id, signed again (by someone holding the secret) for `at`."""
    msg_id = captured.headers["webhook-id"]
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(msg_id, at, body.decode()),
    }


async def post(http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> int:
    async with http.post(url, data=body, headers=headers) as response:
        return response.status


async def test_notifier_deliveries_accepted_once_and_replays_rejected(bus: Bus) -> None:
    results = [make_result(f"app-{i}", Outcome.SUCCEEDED) for i in range(5)]
    async with StandardWebhookReceiver(SECRET) as receiver:
        # The first delivery fails (500): the notifier's retry carries the same webhook-id and
        # must be accepted, since the failed attempt was never accepted.
        receiver.script(Reply.server_error())
        async with running_notifier(bus, notifier_settings(hook_channel(receiver))):
            await bus.publish_many(results)
            delivered = await receiver.wait_for_verified(len(results), timeout=20.0)
        assert not receiver.rejected, receiver.rejected
        assert sorted(r.headers["webhook-id"] for r in delivered) == sorted(r.id for r in results)
        assert len(receiver.requests) == len(results) + 1  # one retry after the 500

        captured = delivered[0]
        url = f"{receiver.url}/medic"
        now = datetime.now(UTC)
        tampered = captured.body.replace(b"app-", b"evil-")
        assert tampered != captured.body
        async with aiohttp.ClientSession() as http:
            statuses = {
                # byte for byte what the notifier sent
                "replayed": await post(http, url, captured.body, captured.headers),
                # same id, signed afresh: still a delivery already accepted
                "re-timed": await post(
                    http,
                    url,
                    captured.body,
                    resigned(captured, now + timedelta(seconds=30), captured.body),
                ),
                # the captured signature over another body
                "tampered": await post(http, url, tampered, captured.headers),
                # a new id, correctly signed, but from outside the +-5 minute tolerance
                "stale": await post(
                    http,
                    url,
                    captured.body,
                    {
                        **resigned(captured, now - timedelta(minutes=6), captured.body),
                        "webhook-id": "msg_stale",
                    },
                ),
                "future": await post(
                    http,
                    url,
                    captured.body,
                    {
                        **resigned(captured, now + timedelta(minutes=6), captured.body),
                        "webhook-id": "msg_future",
                    },
                ),
                "garbled": await post(
                    http, url, captured.body, {**captured.headers, "webhook-signature": "v1"}
                ),
            }
    assert statuses == {
        "replayed": 409,
        "re-timed": 409,
        "tampered": 401,
        "stale": 401,
        "future": 401,
        "garbled": 401,
    }
    assert len(receiver.verified) == len(results)
    assert [r.headers["webhook-id"] for r in receiver.replayed] == [
        captured.headers["webhook-id"]
    ] * 2
    assert len(receiver.rejected) == len(statuses)


async def test_same_id_signed_afresh_is_a_replay_and_a_new_id_is_not() -> None:
    body = json.dumps({"type": "medic.result", "id": "r1"}).encode()
    async with StandardWebhookReceiver(SECRET) as receiver, aiohttp.ClientSession() as http:
        url = f"{receiver.url}/medic"
        signer = Webhook(SECRET)

        def signed(msg_id: str, at: datetime) -> dict[str, str]:
            return {
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(int(at.timestamp())),
                "webhook-signature": signer.sign(msg_id, at, body.decode()),
            }

        now = datetime.now(UTC)
        first = await post(http, url, body, signed("msg_1", now))
        again = await post(http, url, body, signed("msg_1", now + timedelta(seconds=30)))
        other = await post(http, url, body, signed("msg_2", now))
    assert (first, again, other) == (204, 409, 204)
    assert [r.headers["webhook-id"] for r in receiver.verified] == ["msg_1", "msg_2"]
    assert [r.headers["webhook-id"] for r in receiver.replayed] == ["msg_1"]
