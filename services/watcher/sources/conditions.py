"""Reading status conditions and classifying failure messages: pure helpers of the sources."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from medic.schemas import Condition, MessageClass
from medic.upstream import etcd, flux, helm


def conditions_of(obj: dict[str, Any]) -> dict[str, Condition]:
    found: dict[str, Condition] = {}
    for raw in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(raw, dict) and "type" in raw and "status" in raw:
            condition = Condition.model_validate(raw)
            found[condition.type] = condition
    return found


def classify(message: str) -> tuple[MessageClass, str | None]:
    """What kind of failure a message describes, and the etcd error it quotes if any."""
    error = etcd.transient_error_in(message)
    if error is not None and error != etcd.CONTEXT_DEADLINE:
        return MessageClass.TRANSIENT_ETCD, error
    if helm.ANOTHER_OPERATION in message:
        return MessageClass.OPERATION_IN_PROGRESS, None
    if "dependency" in message and flux.DEPENDENCY_NOT_READY_TEXT in message:
        return MessageClass.DEPENDENCY_NOT_READY, None
    if error == etcd.CONTEXT_DEADLINE or "timed out" in message or "timeout" in message:
        return MessageClass.TIMEOUT, error
    return (MessageClass.OTHER if message else MessageClass.NONE), None


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def last_write(obj: dict[str, Any]) -> tuple[datetime | None, str]:
    """When the object was last written and through which API version (managedFields)."""
    newest: tuple[datetime | None, str] = (None, "")
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        when = parse_time(entry.get("time"))
        if when is not None and (newest[0] is None or when >= newest[0]):
            newest = (when, str(entry.get("apiVersion", "")))
    return newest
