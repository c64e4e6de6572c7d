"""Security faults: NATS auth (user/password, token) and mutual TLS fail closed; no secret in logs;
a tampered or stale webhook delivery is rejected by the receiver."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import structlog
from standardwebhooks.webhooks import Webhook

from medic.runtime import logging as medic_logging
from medic.runtime.bus import Bus
from medic.runtime.consumer import Consumer, ConsumerSpec, Delivery
from medic.runtime.embedded_nats import EmbeddedNats
from medic.runtime.errors import BusError
from medic.runtime.lifecycle import service_context
from medic.runtime.settings import NatsSettings, RuntimeSettings
from medic.runtime.subjects import EVENTS
from medic.schemas import Message
from medic.testing.certs import make_pki, openssl_available
from medic.testing.factories import release_event
from medic.testing.receivers import StandardWebhookReceiver
from medic.testing.waiting import eventually

pytestmark = pytest.mark.faults
PASSWORD = "s3cret-nats-Passw0rd"
TOKEN = "t0ken-for-nats-8c1f"


def settings(url: str, **auth: object) -> NatsSettings:
    return NatsSettings(urls=[url], connect_timeout=1.0, reconnect_wait=0.1, **auth)


async def start(tmp_path: Path, *args: str) -> EmbeddedNats:
    server = EmbeddedNats(data_dir=tmp_path / "nats", extra_args=list(args))
    await server.start()
    return server


async def assert_refused(nats: NatsSettings) -> None:
    """Fails closed: no connection, and Bus.connect says so (BusError) within its bounded start
    (attempts x (connect_timeout + reconnect_wait)) instead of retrying for ever."""
    try:
        bus = await asyncio.wait_for(Bus.connect(nats, name="intruder"), timeout=10.0)
    except BusError:
        return
    await bus.close()
    pytest.fail("connected without valid credentials")


async def roundtrip(nats: NatsSettings) -> None:
    bus = await Bus.connect(nats, name="security-test")
    try:
        await bus.ensure_streams()
        ack = await bus.publish(release_event("secured", cluster="sec"))
        assert ack.stream == EVENTS.name
    finally:
        await bus.close()


async def test_user_password_works_and_fails_closed(tmp_path: Path) -> None:
    server = await start(tmp_path, "--user", "medic", "--pass", PASSWORD)
    try:
        await roundtrip(settings(server.url, user="medic", password=PASSWORD))
        for wrong in ({}, {"user": "medic", "password": "wrong-password"}):
            await assert_refused(settings(server.url, **wrong))
    finally:
        await server.stop()


async def test_token_works_and_fails_closed(tmp_path: Path) -> None:
    server = await start(tmp_path, "--auth", TOKEN)
    try:
        await roundtrip(settings(server.url, token=TOKEN))
        for wrong in ({}, {"token": "not-the-token"}):
            await assert_refused(settings(server.url, **wrong))
    finally:
        await server.stop()


@pytest.mark.skipif(not openssl_available(), reason="needs the openssl command")
async def test_mutual_tls_works_and_fails_closed(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    server = await start(
        tmp_path,
        "--tls", "--tlscert", str(pki.server_cert), "--tlskey", str(pki.server_key),
        "--tlscacert", str(pki.ca_file), "--tlsverify",
    )  # fmt: skip
    try:
        good = {
            "tls_ca_file": pki.ca_file,
            "tls_cert_file": pki.client_cert,
            "tls_key_file": pki.client_key,
        }
        await roundtrip(settings(server.url, **good))
        # No TLS at all; TLS without a client certificate; a client that does not trust the CA.
        other = make_pki(tmp_path / "other")
        for wrong in (
            {},
            {"tls_ca_file": pki.ca_file},
            {**good, "tls_ca_file": other.ca_file},
            {**good, "tls_cert_file": other.client_cert, "tls_key_file": other.client_key},
        ):
            await assert_refused(settings(server.url, **wrong))
    finally:
        await server.stop()


async def test_no_secret_in_any_log_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    server = await start(tmp_path, "--user", "medic", "--pass", PASSWORD)
    url_with_password = f"nats://medic:{PASSWORD}@127.0.0.1:{server.port}"
    runtime = RuntimeSettings(
        cluster="sec",
        log_format="json",
        log_level="debug",
        nats=settings(server.url, user="medic", password=PASSWORD, token=TOKEN),
    )
    medic_logging.configure("json", "debug")
    log = structlog.get_logger("faults.security")
    try:
        # nats-server accepts user/password here; the token is registered as a secret anyway.
        runtime = runtime.model_copy(
            update={"nats": settings(url_with_password, password=PASSWORD, token=None)}
        )
        runtime.nats.token = None
        medic_logging.register_secrets([PASSWORD, TOKEN])
        handled: list[str] = []

        async def handler(message: Message, delivery: Delivery) -> None:
            log.info(
                "handled",
                event_id=message.id,
                url=url_with_password,
                attempt=delivery.num_delivered,
            )
            handled.append(message.id)

        async with service_context(runtime, "security-test") as ctx:
            consumer = Consumer(ctx.bus, ConsumerSpec(EVENTS, "sec", ("medic.events.>",)), handler)
            stop = asyncio.Event()
            task = asyncio.create_task(consumer.run(stop))
            await ctx.bus.publish(release_event("logged", cluster="sec", message=f"token {TOKEN}"))

            async def done() -> bool:
                return bool(handled)

            await eventually(done)
            stop.set()
            await task
        # A failed connection whose error names the password-bearing URL.
        bad = settings(f"nats://medic:{PASSWORD}@127.0.0.1:1", password=PASSWORD)
        with pytest.raises((BusError, TimeoutError)) as caught:
            await asyncio.wait_for(Bus.connect(bad, name="failing"), timeout=1.0)
        log.error("connect_failed", error=repr(caught.value), url=bad.urls[0], token=TOKEN)
    finally:
        await server.stop()
    out, err = capfd.readouterr()
    captured = out + err
    assert "connect_failed" in captured
    assert "handled" in captured
    assert PASSWORD not in captured
    assert TOKEN not in captured


async def test_webhook_signature_verified_tampered_and_stale_rejected() -> None:
    secret = "whsec_" + base64.b64encode(b"faults-webhook-secret-0123456789").decode()
    signer = Webhook(secret)
    body = json.dumps({"event": "remediated", "object": "apps/podinfo"}).encode()

    def headers(msg_id: str, at: datetime, payload: bytes) -> dict[str, str]:
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signer.sign(msg_id, at, payload.decode()),
            "content-type": "application/json",
        }

    now = datetime.now(UTC)
    async with StandardWebhookReceiver(secret) as receiver, aiohttp.ClientSession() as http:
        sent = [
            (headers("msg_good", now, body), body),
            (headers("msg_tampered", now, body), body.replace(b"podinfo", b"evil")),
            (headers("msg_stale", now - timedelta(minutes=10), body), body),
            ({**headers("msg_forged", now, body), "webhook-signature": "v1,AAAA"}, body),
        ]
        statuses = []
        for sent_headers, payload in sent:
            async with http.post(receiver.url, data=payload, headers=sent_headers) as response:
                statuses.append(response.status)
    assert statuses[0] < 300
    assert statuses[1:] == [401, 401, 401]
    assert [r.headers["webhook-id"] for r in receiver.verified] == ["msg_good"]
    assert len(receiver.rejected) == 3
