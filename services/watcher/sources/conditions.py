"""Reading status conditions and classifying failure messages: pure helpers of the sources."""

from __future__ import annotations

import sys
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Cond:
    """A condition as a source keeps it per object (about 150 bytes where the pydantic model costs
    about 1 KB); `model()` gives the Condition for an event's evidence."""

    type: str
    status: str
    reason: str
    message: str
    last_transition_time: datetime | None
    observed_generation: int | None

    def model(self) -> Condition:
        return Condition(
            type=self.type,
            status=self.status,
            reason=self.reason,
            message=self.message,
            last_transition_time=self.last_transition_time,
            observed_generation=self.observed_generation,
        )


def compact_conditions(obj: dict[str, Any], types: frozenset[str]) -> dict[str, Cond]:
    """The conditions of `types` only, read the way `conditions_of` reads them (an unparsable
    time is None rather than an error); repeating strings (type, status, reason) are interned."""
    found: dict[str, Cond] = {}
    for raw in (obj.get("status") or {}).get("conditions") or []:
        if not (isinstance(raw, dict) and raw.get("type") in types and "status" in raw):
            continue
        generation = raw.get("observedGeneration")
        found[raw["type"]] = Cond(
            type=sys.intern(str(raw["type"])),
            status=sys.intern(str(raw["status"])),
            reason=sys.intern(str(raw.get("reason") or "")),
            message=str(raw.get("message") or ""),
            last_transition_time=parse_time(raw.get("lastTransitionTime")),
            observed_generation=generation if isinstance(generation, int) else None,
        )
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
