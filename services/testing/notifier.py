"""Helpers for notifier tests: results to notify of, settings, a notifier running on a real bus."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import nats

from medic.notifier.service import NotifierService
from medic.notifier.settings import ChannelConfig, NotifierSettings
from medic.runtime.bus import Bus
from medic.runtime.subjects import NOTIFICATIONS
from medic.schemas import (
    Change,
    Message,
    Notification,
    NotificationData,
    Outcome,
    RemediationResult,
    ResultData,
    decode_message,
    stable_id,
)
from medic.testing.factories import helmrelease_ref
from medic.testing.receivers import SlackReceiver


def make_result(
    name: str = "podinfo",
    outcome: Outcome = Outcome.APPLIED,
    *,
    namespace: str = "apps",
    cluster: str = "test",
    problem_key: str | None = None,
    step: str = "",
    **data: Any,
) -> RemediationResult:
    ref = helmrelease_ref(name, namespace)
    key = problem_key or f"{cluster}/{ref.kind}/{namespace}/{name}/failed"
    fields: dict[str, Any] = {
        "event_id": stable_id("event", key),
        "problem_key": key,
        "rule": "retry-transient-etcd",
        "action": "retry",
        "outcome": outcome,
        "object": ref,
        "attempt": 1,
        "max_attempts": 3,
        "evidence": {"message": "install failed: etcdserver: leader changed"},
        "changes": [Change(path="/metadata/annotations/reconcile", before=None, after="now")],
    }
    fields.update(data)
    return RemediationResult(
        id=stable_id("result", key, outcome, step),
        source="medic/remediator/test",
        cluster=cluster,
        subject=f"{ref.kind}/{namespace}/{name}",
        data=ResultData(**fields),
    )


def notifier_settings(*channels: ChannelConfig, **overrides: Any) -> NotifierSettings:
    values: dict[str, Any] = {
        "channels": list(channels),
        "retry_base": 0.1,
        "retry_cap": 0.5,
        "digest_threshold": 100,
        "digest_window": 0.5,
        "send_timeout": 2.0,
        "fetch_timeout": 0.2,
    }
    values.update(overrides)
    return NotifierSettings(**values)


@contextlib.asynccontextmanager
async def running_notifier(bus: Bus, settings: NotifierSettings) -> AsyncIterator[NotifierService]:
    """The notifier service running in a task; stopped (gracefully) and awaited on exit."""
    service = await NotifierService.create(bus, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)


def slack_config(receiver: SlackReceiver, name: str = "ops", **fields: Any) -> ChannelConfig:
    """A Slack channel on the receiver: Web API when the receiver has a token, else webhook."""
    options: dict[str, Any] = (
        {"token": receiver.token, "channel": f"#{name}", "base_url": receiver.api_url}
        if receiver.token
        else {"webhook_url": receiver.webhook_url}
    )
    options["timeout"] = 1.0
    values: dict[str, Any] = {"rate_per_second": 200.0, "rate_burst": 50}
    values.update(fields)
    return ChannelConfig(name=name, type="slack", options=options, **values)


async def stream_messages(bus: Bus, stream: str) -> list[Message]:
    """Every message stored in a stream, decoded, oldest first."""
    info = await bus.js.stream_info(stream)
    found: list[Message] = []
    if not info.state.messages:
        return found
    for sequence in range(max(1, info.state.first_seq), info.state.last_seq + 1):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            stored = await bus.js.get_msg(stream, sequence)
            found.append(decode_message(stored.data or b""))
    return found


async def notifications(bus: Bus) -> list[NotificationData]:
    return [
        m.data
        for m in await stream_messages(bus, NOTIFICATIONS.name)
        if isinstance(m, Notification)
    ]
