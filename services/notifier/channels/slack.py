"""Slack: incoming webhooks, or the Web API with a bot token (threads a problem's story).

Incoming webhooks answer `ok` or an error word with an HTTP status and return no message id, so
they cannot thread; the Web API (`chat.postMessage`) returns the message `ts`, and later steps
of the same problem are posted with `thread_ts` (delivery keeps the ts per problem in NATS KV).
slack-sdk's async clients are used with their retry handlers switched off: retries belong to
delivery, which keeps the message un-acked on the bus instead of sleeping in a request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import aiohttp
from pydantic import BaseModel, ConfigDict, SecretStr, model_validator
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from medic.notifier.channels.base import (
    ChannelError,
    ChannelPlugin,
    DeliveryReceipt,
    Rendered,
    mask_url,
    parse_retry_after,
    retryable_http_status,
)
from medic.notifier.settings import read_secret

# Web API error codes worth retrying (Slack docs, chat.postMessage "Errors"); others are final.
TRANSIENT_API_ERRORS: Final = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
HTTP_OK: Final = 200


class SlackOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhook_url: SecretStr | None = None
    webhook_url_file: Path | None = None
    webhook_url_env: str | None = None
    token: SecretStr | None = None
    token_file: Path | None = None
    token_env: str | None = None
    channel: str | None = None
    base_url: str = "https://slack.com/api/"
    timeout: float = 10.0

    @model_validator(mode="after")
    def _one_way_in(self) -> SlackOptions:
        hook = (self.webhook_url, self.webhook_url_file, self.webhook_url_env)
        has_hook = any(v is not None for v in hook)
        has_token = any(v is not None for v in (self.token, self.token_file, self.token_env))
        if has_hook == has_token:
            raise ValueError("set either webhook_url(_file/_env) or token(_file/_env) + channel")
        if has_token and not self.channel:
            raise ValueError("channel is required with a bot token")
        return self


class SlackChannel:
    """One Slack destination; `send` raises ChannelError, never a transport exception."""

    def __init__(self, name: str, options: SlackOptions) -> None:
        self.name = name
        self.options = options
        self.token = read_secret(
            options.token, options.token_file, f"{name}.token", options.token_env
        )
        self.webhook_url = read_secret(
            options.webhook_url,
            options.webhook_url_file,
            f"{name}.webhook_url",
            options.webhook_url_env,
        )
        self.supports_threads = self.token is not None
        # Where we post, for logs: host only, the path of a webhook URL is its secret.
        self.where = mask_url(self.webhook_url) if self.webhook_url else options.base_url

    def secrets(self) -> list[str]:
        return [s for s in (self.token, self.webhook_url) if s]

    def _body(self, rendered: Rendered) -> dict[str, Any]:
        attachment = {"color": rendered.color, "fallback": rendered.text, "blocks": rendered.blocks}
        return {"text": rendered.text, "attachments": [attachment]}

    async def send(self, rendered: Rendered) -> DeliveryReceipt:
        try:
            if self.token is not None:
                return await self._post_message(rendered)
            return await self._post_webhook(rendered)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ChannelError(
                f"slack {self.where} unreachable: {type(exc).__name__}", permanent=False
            ) from None

    async def _post_webhook(self, rendered: Rendered) -> DeliveryReceipt:
        assert self.webhook_url is not None
        client = AsyncWebhookClient(
            self.webhook_url,
            timeout=self.options.timeout,  # type: ignore[arg-type]  # aiohttp takes float seconds
            retry_handlers=[],
        )
        response = await client.send_dict(self._body(rendered))
        if response.status_code == HTTP_OK:
            return DeliveryReceipt(status=HTTP_OK)
        code = (response.body or "").strip()[:100] or str(response.status_code)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise ChannelError(
            f"slack webhook {self.where} answered {response.status_code} {code}",
            permanent=not retryable_http_status(response.status_code),
            retry_after=retry_after,
            code=code,
        )

    async def _post_message(self, rendered: Rendered) -> DeliveryReceipt:
        client = AsyncWebClient(
            token=self.token,
            base_url=self.options.base_url,
            timeout=self.options.timeout,  # type: ignore[arg-type]  # aiohttp takes float seconds
            retry_handlers=[],
        )
        body = self._body(rendered)
        try:
            response = await client.chat_postMessage(
                channel=self.options.channel or "",
                text=body["text"],
                attachments=body["attachments"],
                thread_ts=rendered.thread,
                reply_broadcast=bool(rendered.thread and rendered.broadcast),
                unfurl_links=False,
            )
        except SlackApiError as exc:
            raise self._api_error(exc) from None
        ts = response.get("ts")
        return DeliveryReceipt(thread=str(ts) if ts else None, status=response.status_code)

    def _api_error(self, exc: SlackApiError) -> ChannelError:
        response = exc.response
        status = int(response.status_code)
        data = response.data if isinstance(response.data, dict) else {}
        code = str(data.get("error") or status)
        retry_after = parse_retry_after((response.headers or {}).get("Retry-After"))
        transient = retryable_http_status(status) or code in TRANSIENT_API_ERRORS
        return ChannelError(
            f"slack chat.postMessage answered {status} {code}",
            permanent=not transient,
            retry_after=retry_after,
            code=code,
        )

    async def close(self) -> None:
        """The slack-sdk clients open a session per request; nothing stays open."""


PLUGIN = ChannelPlugin(
    kind="slack",
    options_model=SlackOptions,
    create=SlackChannel,
    description="Slack incoming webhook or Web API (bot token, one thread per object).",
    example={"token_file": "/var/run/secrets/slack/token", "channel": "#platform-alerts"},
    default_rate=1.0,  # Slack: about one message per second per channel
)
