"""The audit trail: every write (or planned write) as an AuditEntry on `medic.audit.<cluster>`.

Secret data never enters the trail: values are replaced by their length.
"""

from __future__ import annotations

from typing import Any

from medic.remediator.actions.base import Plan
from medic.runtime.bus import Bus
from medic.schemas import AuditData, AuditEntry, ObjectRef, stable_id


def redacted(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    if obj is None:
        return None
    if obj.get("kind") == "Secret" or "data" in obj:
        data = obj.get("data") or {}
        return {**obj, "data": {k: f"<{len(str(v))} bytes>" for k, v in data.items()}}
    return obj


async def record(
    bus: Bus,
    *,
    cluster: str,
    actor: str,
    rule: str,
    action: str,
    event_id: str,
    target: ObjectRef,
    plan: Plan,
    outcome: str,
    after: dict[str, Any] | None = None,
    backup_id: str | None = None,
    error: str | None = None,
) -> AuditEntry:
    verb = "delete" if plan.extra.get("delete") else "update" if plan.replace else "patch"
    entry = AuditEntry(
        id=stable_id("audit", event_id, rule, outcome, plan.resource_version),
        source=f"medic/remediator/{cluster}",
        cluster=cluster,
        subject=f"{target.kind}/{target.namespace or '_'}/{target.name}",
        data=AuditData(
            actor=actor,
            rule=rule,
            action=action,
            event_id=event_id,
            object=target,
            verb=verb,
            dry_run=outcome == "dry-run",
            before=redacted(plan.backup) or {"changes": [c.model_dump() for c in plan.changes]},
            after=redacted(after),
            backup_id=backup_id,
            outcome=outcome,
            error=error,
        ),
    )
    await bus.publish(entry)
    return entry
