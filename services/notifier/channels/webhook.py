"""Generic webhook: the result event as JSON, signed per the Standard Webhooks specification.

Headers `webhook-id` (the result id, stable across retries so receivers can deduplicate),
`webhook-timestamp` and `webhook-signature` (`v1,` + HMAC-SHA256 over `id.timestamp.body`,
computed by the `standardwebhooks` package). 2xx is success; 408, 429 and 5xx are retried
(honouring Retry-After); 410 means the receiver disabled the endpoint and, like other 4xx, is
permanent.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from pydantic import BaseModel, ConfigDict, SecretStr, model_validator
from standardwebhooks.webhooks import Webhook

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


class WebhookOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: SecretStr | None = None
    url_file: Path | None = None
    url_env: str | None = None
    secret: SecretStr | None = None  # `whsec_<base64>`; unsigned when absent
    secret_file: Path | None = None
    secret_env: str | None = None
    headers: dict[str, str] = {}
    timeout: float = 10.0

    @model_validator(mode="after")
    def _has_url(self) -> WebhookOptions:
        if self.url is None and self.url_file is None and self.url_env is None:
            raise ValueError("url, url_file or url_env is required")
        return self


class WebhookChannel:
    supports_threads = False
    machine_readable = True  # every result as it is: never folded (medic.notifier.folding)

    def __init__(self, name: str, options: WebhookOptions) -> None:
        self.name = name
        self.options = options
        url = read_secret(options.url, options.url_file, f"{name}.url", options.url_env)
        if not url:
            raise ValueError(f"{name}.url is empty")
        self.url = url
        secret = read_secret(
            options.secret, options.secret_file, f"{name}.secret", options.secret_env
        )
        self._secret = secret
        self.signer = Webhook(secret) if secret else None
        self.where = mask_url(url)
        self._session: aiohttp.ClientSession | None = None

    def secrets(self) -> list[str]:
        return [s for s in (self.url, self._secret) if s]

    def signed_headers(self, message_id: str, body: str, now: datetime) -> dict[str, str]:
        headers = {**self.options.headers, "content-type": "application/json"}
        headers["webhook-id"] = message_id
        headers["webhook-timestamp"] = str(int(now.timestamp()))
        if self.signer is not None:
            headers["webhook-signature"] = self.signer.sign(message_id, now, body)
        return headers

    async def send(self, rendered: Rendered) -> DeliveryReceipt:
        body = json.dumps(rendered.payload, separators=(",", ":"))
        headers = self.signed_headers(rendered.message_id, body, datetime.now(UTC))
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.options.timeout)
        try:
            async with self._session.post(
                self.url, data=body.encode(), headers=headers, timeout=timeout
            ) as response:
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ChannelError(
                f"webhook {self.where} unreachable: {type(exc).__name__}", permanent=False
            ) from None
        except ValueError as exc:  # e.g. a header value aiohttp refuses: no retry can fix it
            raise ChannelError(
                f"webhook {self.where}: request cannot be sent: {exc}", permanent=True
            ) from None
        if 200 <= status < 300:
            return DeliveryReceipt(status=status)
        raise ChannelError(
            f"webhook {self.where} answered {status}",
            permanent=not retryable_http_status(status),
            retry_after=retry_after,
            code=str(status),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


PLUGIN = ChannelPlugin(
    kind="webhook",
    options_model=WebhookOptions,
    create=WebhookChannel,
    description="JSON POST of the result event, signed per Standard Webhooks.",
    example={"url_file": "/var/run/secrets/hook/url", "secret_file": "/var/run/secrets/hook/key"},
)
