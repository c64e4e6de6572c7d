"""The NATS JetStream bus: connection, streams, idempotent publishing, KV buckets.

Settings follow runtime-facts.md: reconnect forever (nats-py gives up after ~2 min by default),
ping every 15 s (default 120 s hides a half-open connection for minutes), publish with
`Nats-Msg-Id` = the message's stable id so JetStream stores a re-published event once.
Consuming lives in `medic.runtime.consumer`; this module does not know Kubernetes or rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import nats
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from medic.runtime import subjects
from medic.runtime.errors import BusError
from medic.runtime.replies import EXPECTED_LAST, KvOps, Replies
from medic.runtime.settings import NatsSettings
from medic.schemas import Message, RemediationResult, encode_message

log = structlog.get_logger(__name__)
MSG_ID = "Nats-Msg-Id"
EXPECTED_IN = "Nats-Expected-Last-Subject-Sequence-Subject"  # nats-server 2.11+; wildcards
INITIAL_CONNECT_ATTEMPTS = 3


def subject_of(message: Message) -> str:
    """Where a message goes, by its type (see `medic.runtime.subjects`)."""
    match message.type:
        case "medic.result":
            return subjects.result_subject(message)  # type: ignore[arg-type]
        case "medic.audit":
            return subjects.audit_subject(message)  # type: ignore[arg-type]
        case "medic.notification":
            return subjects.notification_subject(message)  # type: ignore[arg-type]
        case "medic.deadletter":
            return subjects.deadletter_subject(message)  # type: ignore[arg-type]
        case _:
            return subjects.event_subject(message)  # type: ignore[arg-type]


def _tls_context(settings: NatsSettings) -> ssl.SSLContext | None:
    if not (settings.tls_ca_file or settings.tls_cert_file):
        return None
    context = ssl.create_default_context(
        cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None
    )
    if settings.tls_cert_file and settings.tls_key_file:
        context.load_cert_chain(str(settings.tls_cert_file), str(settings.tls_key_file))
    return context


def connect_options(settings: NatsSettings, name: str) -> dict[str, Any]:
    """nats.connect keyword arguments from settings; secrets passed, never logged."""
    options: dict[str, Any] = {
        "servers": settings.urls or ["nats://127.0.0.1:4222"],
        "name": name,
        "connect_timeout": settings.connect_timeout,
        "ping_interval": settings.ping_interval,
        "max_outstanding_pings": settings.max_outstanding_pings,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": settings.reconnect_wait,
        "allow_reconnect": True,
        "drain_timeout": 5,
    }
    if settings.user:
        options["user"] = settings.user
    if settings.password:
        options["password"] = settings.password.get_secret_value()
    if settings.token:
        options["token"] = settings.token.get_secret_value()
    if settings.nkey_seed_file:
        options["nkeys_seed"] = str(settings.nkey_seed_file)
    if settings.creds_file:
        options["user_credentials"] = str(settings.creds_file)
    tls = _tls_context(settings)
    if tls is not None:
        options["tls"] = tls
    return options


class Bus:
    """One NATS connection and its JetStream context, shared by a service's parts."""

    def __init__(self, nc: Client, settings: NatsSettings) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=10.0)
        self.settings = settings
        self.replies = Replies(nc)  # the hot path's publishes and KV operations

    @classmethod
    async def connect(cls, settings: NatsSettings, name: str = "medic") -> Bus:
        client: list[Client] = []

        async def on_disconnect() -> None:
            closing = bool(client) and (client[0].is_draining or client[0].is_closed)
            (log.info if closing else log.warning)("nats_disconnected", closing=closing)

        async def on_reconnect() -> None:
            log.info("nats_reconnected")

        async def on_error(exc: Exception) -> None:
            log.warning("nats_error", error=str(exc))

        options = connect_options(settings, name)
        # Fail closed at start-up (wrong credentials, bad TLS, nobody listening): nats-py applies
        # max_reconnect_attempts to the first connection too, so -1 would retry it forever.
        # Once connected, reconnect forever.
        options["max_reconnect_attempts"] = INITIAL_CONNECT_ATTEMPTS
        # Some failures (e.g. a server that drops the TLS handshake of a client whose certificate
        # it rejects) make nats-py retry past max_reconnect_attempts: bound the whole start too.
        budget = INITIAL_CONNECT_ATTEMPTS * (settings.connect_timeout + settings.reconnect_wait)
        nc = Client()
        client.append(nc)
        try:
            async with asyncio.timeout(budget + 1.0):
                await nc.connect(
                    **options,
                    disconnected_cb=on_disconnect,
                    reconnected_cb=on_reconnect,
                    error_cb=on_error,
                )
        except (OSError, nats.errors.Error, TimeoutError) as exc:
            with contextlib.suppress(nats.errors.Error, OSError, TimeoutError):
                await asyncio.wait_for(nc.close(), timeout=2.0)
            servers = ", ".join(options["servers"])
            raise BusError(f"cannot connect to NATS at {servers}: {exc!r}") from exc
        nc.options["max_reconnect_attempts"] = -1
        log.info("nats_connected", servers=options["servers"], name=name)
        return cls(nc, settings)

    @property
    def is_connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def ensure_streams(self, specs: Iterable[subjects.StreamSpec] = subjects.STREAMS) -> None:
        """Create or update every stream; safe to call from every replica at every start."""
        for spec in specs:
            config = api.StreamConfig(
                name=spec.name,
                subjects=list(spec.subjects),
                description=spec.description,
                storage=api.StorageType.FILE,
                retention=api.RetentionPolicy.LIMITS,
                num_replicas=self.settings.stream_replicas,
                duplicate_window=self.settings.duplicate_window,
                max_age=7 * 24 * 3600.0,
            )
            try:
                await self.js.update_stream(config)
            except NotFoundError:
                await self.js.add_stream(config)
            except nats.errors.Error as exc:
                raise BusError(f"cannot configure stream {spec.name}: {exc!r}") from exc

    async def publish(self, message: Message, subject: str | None = None) -> api.PubAck:
        """Publish and wait for the stream's ack; a duplicate id is acknowledged, not stored.

        A result is also published expecting its slot to be empty (`subjects.result_slot`):
        one already stored under its id, however long ago, answers as a duplicate too."""
        headers = {MSG_ID: message.id}
        slot = subjects.result_slot(message) if isinstance(message, RemediationResult) else None
        if slot is not None:
            headers[EXPECTED_LAST] = "0"
            headers[EXPECTED_IN] = slot
        try:
            return await self.replies.publish(
                subject or subject_of(message), encode_message(message), headers
            )
        except KeyWrongLastSequenceError as refused:
            if slot is None:  # no expectation was sent: a refusal like any other
                raise BusError(
                    f"publish of {message.type} {message.id} failed: {refused!r}"
                ) from refused
            # "wrong last sequence: N": N is the stored result's sequence, as a dedup ack says
            stored = str(refused.description or "").rpartition(" ")[2]
            seq = int(stored) if stored.isdigit() else 0
            return api.PubAck(stream=subjects.RESULTS.name, seq=seq, duplicate=True)
        except (nats.errors.Error, TimeoutError) as exc:
            raise BusError(f"publish of {message.type} {message.id} failed: {exc!r}") from exc

    async def publish_many(self, messages: Sequence[Message]) -> list[api.PubAck]:
        """Publish with many acks in flight (publish_async), then wait for all of them."""
        try:
            futures = [
                await self.js.publish_async(
                    subject_of(m), encode_message(m), headers={MSG_ID: m.id}, wait_stall=10.0
                )
                for m in messages
            ]
            return list(await asyncio.wait_for(asyncio.gather(*futures), timeout=30.0))
        except (nats.errors.Error, TimeoutError) as exc:
            raise BusError(f"batch publish of {len(messages)} messages failed: {exc!r}") from exc

    async def kv(self, bucket: str, history: int = 1, ttl: float | None = None) -> KeyValue:
        """Bind a KV bucket, creating it first when it does not exist.

        Reads are direct gets (`allow_direct`): the server answers `$JS.API.DIRECT.GET` with
        the stored message itself, where the stream API's `MSG.GET` answers JSON with the value
        base64-encoded, which cost the remediator about a third of its CPU per event (issue 15,
        bench/scale.py). A bucket made before that gets the setting when it is bound."""
        try:
            bound = await self.js.key_value(bucket)
        except (BucketNotFoundError, NotFoundError):
            config = api.KeyValueConfig(
                bucket=bucket,
                history=history,
                ttl=ttl,
                storage=api.StorageType.FILE,
                replicas=self.settings.stream_replicas,
                direct=True,
            )
            return await self.js.create_key_value(config)
        if not bound._direct:  # noqa: SLF001 - nats-py exposes the flag only as this
            stream = f"KV_{bucket}"
            info = await self.js.stream_info(stream)
            await self.js.update_stream(replace(info.config, allow_direct=True))
            return await self.js.key_value(bucket)
        return bound

    def kv_ops(self, bucket: str) -> KvOps:
        """Get, create and update on `bucket` (bound first with `kv`, which makes it direct)
        through the lean request path, for per-event state."""
        return KvOps(self.replies, bucket)

    async def close(self) -> None:
        """Drain: flush pending publishes and acks, then close."""
        if self.nc.is_closed:
            return
        if self.nc.is_connected:
            with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
                await asyncio.wait_for(self.nc.drain(), timeout=10.0)
                return
        # Not connected (NATS down, reconnecting): nothing can be flushed; just stop trying.
        with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
            await asyncio.wait_for(self.nc.close(), timeout=5.0)
