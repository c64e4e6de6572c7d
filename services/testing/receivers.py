"""Local HTTP receivers for notifier tests: real servers on loopback, not mocks of HTTP.

`SlackReceiver` answers like Slack's incoming webhooks (`/services/...`: `ok` or an error word
with a status) and Web API (`/api/chat.postMessage`: `{"ok": true, "ts": ...}` or
`{"ok": false, "error": ...}`), from a script of `Reply`s (default: ok), and records every
request. `StandardWebhookReceiver` verifies each request's signature with the
`standardwebhooks` library (which also refuses a timestamp outside +-5 minutes), refuses a
replay (a `webhook-id` it already accepted) and records verified and rejected requests. Both can
be stopped and started again on the same port, to play a destination that is down for a while.

    async with SlackReceiver(token="xoxb-test") as slack:
        slack.script(Reply.rate_limited(retry_after=1), Reply.ok())
        ... point the channel at slack.webhook_url or slack.api_url ...
        await slack.wait_for_posts(1)
"""

from __future__ import annotations

import asyncio
import binascii
import collections
import json
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from medic.testing.waiting import eventually


@dataclass(frozen=True)
class Reply:
    """One scripted answer. `error` is Slack's error word (webhook body / API `error`)."""

    status: int = 200
    error: str | None = None
    retry_after: float | None = None
    delay: float = 0.0  # answer this late (play a timeout)

    @classmethod
    def ok(cls) -> Reply:
        return cls()

    @classmethod
    def fail(cls, error: str, status: int = 400) -> Reply:
        """`invalid_payload` (400), `channel_not_found` (404), `no_service` (404), ..."""
        return cls(status=status, error=error)

    @classmethod
    def rate_limited(cls, retry_after: float = 1.0) -> Reply:
        return cls(status=429, error="rate_limited", retry_after=retry_after)

    @classmethod
    def server_error(cls) -> Reply:
        return cls(status=500, error="internal_error")

    @classmethod
    def hang(cls, seconds: float) -> Reply:
        return cls(delay=seconds)


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # event-loop time of arrival
    reply: Reply
    fields: dict[str, Any] = field(default_factory=dict)  # JSON or form body, parsed
    ts: str | None = None  # the message ts the Web API answered with

    @property
    def ok(self) -> bool:
        """Answered with success in time (a `hang` reply is meant to outlast the client)."""
        reply = self.reply
        return reply.error is None and reply.status < 300 and not reply.delay

    @property
    def thread_ts(self) -> str | None:
        value = self.fields.get("thread_ts")
        return str(value) if value else None

    @property
    def text(self) -> str:
        return str(self.fields.get("text", ""))


class _Receiver:
    def __init__(self, default: Reply | None = None) -> None:
        self.port = 0
        self.default = default or Reply.ok()
        self.requests: list[ReceivedRequest] = []
        self._script: collections.deque[Reply] = collections.deque()
        self._runner: web.AppRunner | None = None

    def _app(self) -> web.Application:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these, in order; then the default again."""
        self._script.extend(replies)

    def _next_reply(self) -> Reply:
        return self._script.popleft() if self._script else self.default

    async def start(self) -> None:
        """Listen on a free port, or on the same port as before after `stop` (a restart)."""
        runner = web.AppRunner(self._app(), shutdown_timeout=0.2, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self._runner = runner
        if self.port == 0:
            self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening (connections are refused) until `start` is called again."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[ReceivedRequest]:
        async def enough() -> bool:
            return len(self.requests) >= count

        await eventually(enough, timeout=timeout)
        return self.requests

    async def _record(self, request: web.Request, reply: Reply) -> ReceivedRequest:
        body = await request.read()
        received = ReceivedRequest(
            path=request.path,
            headers=dict(request.headers),
            body=body,
            at=asyncio.get_running_loop().time(),
            reply=reply,
            fields=_parse(request.content_type, body),
        )
        self.requests.append(received)
        return received


def _parse(content_type: str, body: bytes) -> dict[str, Any]:
    if content_type == "application/json":
        try:
            value = json.loads(body or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {}  # a tampered or garbled body is recorded, then rejected, never a crash
        return value if isinstance(value, dict) else {"_": value}
    if content_type == "application/x-www-form-urlencoded":
        from urllib.parse import parse_qsl  # noqa: PLC0415 - only form bodies need it

        return dict(parse_qsl(body.decode()))
    return {}


class SlackReceiver(_Receiver):
    """Slack's incoming webhooks (`webhook_url`) and Web API (`api_url`), scripted."""

    def __init__(self, token: str | None = None, default: Reply | None = None) -> None:
        super().__init__(default)
        self.token = token
        self._ts = 0

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/services/T0000/B0000/SECRETPATH"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    @property
    def posted(self) -> list[ReceivedRequest]:
        """Requests Slack would have shown in the channel."""
        return [r for r in self.requests if r.ok]

    async def wait_for_posts(self, count: int, timeout: float = 10.0) -> list[ReceivedRequest]:
        async def enough() -> bool:
            return len(self.posted) >= count

        await eventually(enough, timeout=timeout)
        return self.posted

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/services/{tail:.*}", self._webhook)
        app.router.add_post("/api/{method}", self._api)
        return app

    async def _webhook(self, request: web.Request) -> web.Response:
        reply = self._next_reply()
        await self._record(request, reply)
        await asyncio.sleep(reply.delay)
        return web.Response(
            status=reply.status, text=reply.error or "ok", headers=_retry_header(reply)
        )

    async def _api(self, request: web.Request) -> web.Response:
        reply = self._next_reply()
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            reply = Reply(status=200, error="invalid_auth")
        received = await self._record(request, reply)
        await asyncio.sleep(reply.delay)
        if reply.error is None and reply.status == 200:
            self._ts += 1
            received.ts = f"1700000000.{self._ts:06d}"
            body: dict[str, Any] = {
                "ok": True,
                "ts": received.ts,
                "channel": received.fields.get("channel"),
            }
        else:
            error = "ratelimited" if reply.status == 429 else reply.error
            body = {"ok": False, "error": error}
        return web.json_response(body, status=reply.status, headers=_retry_header(reply))


def _retry_header(reply: Reply) -> dict[str, str]:
    return {"Retry-After": f"{reply.retry_after:g}"} if reply.retry_after is not None else {}


class StandardWebhookReceiver(_Receiver):
    """Verifies `webhook-id/-timestamp/-signature` with the standardwebhooks library, and
    refuses replays.

    A replay is a delivery whose `webhook-id` was already accepted (answered 2xx): it is not
    processed again, but answered `replay_status` (409) and recorded in `rejected` and
    `replayed`. An id is remembered only once accepted, so a sender's retry after a failure it
    was answered (5xx, 429, a scripted error, a `hang` it gave up on) is a new attempt, not a
    replay. Ids are kept for twice the signature tolerance (`TOLERANCE`, the library's 5
    minutes) after their timestamp: an older copy fails the timestamp check anyway, so the
    cache stays bounded.
    """

    TOLERANCE = 5 * 60.0  # standardwebhooks.webhooks: timestamps off by more are refused

    def __init__(self, secret: str, default: Reply | None = None, replay_status: int = 409) -> None:
        super().__init__(default or Reply(status=204))
        self.verifier = Webhook(secret)
        self.replay_status = replay_status
        self.verified: list[ReceivedRequest] = []
        self.rejected: list[tuple[ReceivedRequest, str]] = []
        self.replayed: list[ReceivedRequest] = []
        self._seen: dict[str, float] = {}  # accepted webhook-id -> its webhook-timestamp

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._receive)
        return app

    async def wait_for_verified(self, count: int, timeout: float = 10.0) -> list[ReceivedRequest]:
        async def enough() -> bool:
            return len(self.verified) >= count

        await eventually(enough, timeout=timeout)
        return self.verified

    def _reject(self, received: ReceivedRequest, reason: str, status: int = 401) -> web.Response:
        self.rejected.append((received, reason))
        return web.Response(status=status, text=reason)

    def _forget_expired(self) -> None:
        horizon = time.time() - 2 * self.TOLERANCE
        for msg_id in [i for i, at in self._seen.items() if at < horizon]:
            del self._seen[msg_id]

    async def _receive(self, request: web.Request) -> web.Response:
        reply = self._next_reply()
        received = await self._record(request, reply)
        try:
            self.verifier.verify(received.body, received.headers, json_parse=False)
        except WebhookVerificationError as exc:
            return self._reject(received, str(exc))
        except (ValueError, binascii.Error) as exc:  # a signature that is not `v1,<base64>`
            return self._reject(received, f"malformed signature: {exc}")
        headers = {k.lower(): v for k, v in received.headers.items()}
        msg_id = headers["webhook-id"]
        self._forget_expired()
        if msg_id in self._seen:
            self.replayed.append(received)
            return self._reject(received, f"replayed webhook-id {msg_id}", self.replay_status)
        if reply.status < 300 and not reply.delay:  # before any await: a concurrent copy
            self._seen[msg_id] = float(headers["webhook-timestamp"])  # is a replay too
        await asyncio.sleep(reply.delay)
        if reply.status < 300:
            self.verified.append(received)
        return web.Response(
            status=reply.status, text=reply.error or "", headers=_retry_header(reply)
        )
