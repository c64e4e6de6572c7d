"""Helpers for notifier tests: results to notify of, settings, a notifier running on a real bus."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from medic.notifier.service import NotifierService
from medic.notifier.settings import ChannelConfig, NotifierSettings
from medic.runtime.bus import Bus
from medic.schemas import Change, Outcome, RemediationResult, ResultData, stable_id
from medic.testing.factories import helmrelease_ref


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
