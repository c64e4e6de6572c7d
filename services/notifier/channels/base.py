"""The contract every notification channel implements, and the errors it raises.

A channel knows one destination (Slack, an HTTP endpoint, the console) and how to put one
rendered message there. It knows nothing about NATS, retries, deduplication or digests: those
live in `medic.notifier.delivery`. Errors carry what delivery needs to decide:

    ChannelError               the destination did not take the message
    ├── permanent=True         never retry (revoked webhook, invalid_payload, channel_not_found)
    └── permanent=False        retry later; `retry_after` when the destination said when (429)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class Rendered:
    """One message ready for a channel: text fallback, Block Kit blocks, and the raw event."""

    title: str
    text: str
    color: str
    blocks: list[dict[str, Any]]
    payload: dict[str, Any]  # the result event (or digest) as JSON, for machine channels
    message_id: str  # idempotency key at the destination (webhook-id)
    problem_key: str
    thread: str | None = None  # the destination's thread id to reply into (Slack ts)
    is_digest: bool = False
    broadcast: bool = False  # a thread reply people must see in the channel too (escalation)


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """What the destination told us: its id for the message (Slack ts), to thread later ones."""

    thread: str | None = None
    status: int | None = None


class ChannelError(Exception):
    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        self.code = code


class Channel(Protocol):
    """A destination. A channel for machines may also set `machine_readable = True`: it then
    gets every result as it is, failed attempts included, never folded."""

    name: str
    supports_threads: bool

    async def send(self, rendered: Rendered) -> DeliveryReceipt: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class ChannelPlugin:
    """A channel type's declaration: its options model and how to build a channel from them."""

    kind: str  # the `type:` of a channel in the configuration
    options_model: type[BaseModel]
    create: Callable[[str, Any], Channel]
    description: str = ""
    example: dict[str, Any] = field(default_factory=dict)
    default_rate: float | None = None  # messages per second per channel; None = unlimited


def mask_url(url: str) -> str:
    """`https://host/services/T/B/X` -> `https://host/***` (paths are secret)."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return "***"
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/***"


def retryable_http_status(status: int) -> bool:
    """408, 429 and 5xx are worth retrying; other 4xx will fail the same way next time."""
    return status in {408, 429} or status >= 500


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
