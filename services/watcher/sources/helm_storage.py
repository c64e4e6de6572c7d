"""Helm release storage (driver `secret`): releases whose newest revision stays pending.

Decodes each `helm.sh/release.v1` Secret (medic.upstream.helm) and keeps only a summary (never
the manifest or values: they may hold secrets). A newest revision in pending-install/-upgrade/
-rollback for longer than a threshold becomes a `pending` event (scenarios.md S3); a record that
cannot be decoded becomes a `decode_error` event of its own.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from medic.runtime.kube import SECRETS
from medic.schemas import Evidence, MessageClass, ReleaseProblem
from medic.upstream import helm
from medic.watcher.problems import Finding
from medic.watcher.sources.base import Source, SourceContext, SourcePlugin
from medic.watcher.sources.conditions import parse_time
from medic.watcher.sources.kubernetes import (
    TICK_HELP,
    ObjectFilter,
    ObjectSource,
    Tracked,
    WatchOptions,
)


class HelmStorageSettings(BaseModel):
    pending_after: float = Field(
        default=300.0,
        ge=0,
        description="Seconds the newest revision may stay pending-* before it is `pending`.",
    )
    filter: ObjectFilter = Field(default_factory=ObjectFilter)
    watch: WatchOptions = Field(default_factory=WatchOptions)
    tick: float = Field(default=5.0, gt=0, description=TICK_HELP)


@dataclass(frozen=True, slots=True)
class StoredRelease:
    release: str
    namespace: str
    revision: int
    summary: helm.ReleaseSummary | None
    modified_at: datetime | None
    error: str | None


def project(obj: dict[str, Any]) -> StoredRelease | None:
    if obj.get("type") != helm.SECRET_TYPE:
        return None
    metadata = obj.get("metadata") or {}
    labels = metadata.get("labels") or {}
    modified = labels.get(helm.LABEL_MODIFIED_AT, "")
    modified_at = datetime.fromtimestamp(int(modified), UTC) if str(modified).isdigit() else None
    revision = str(labels.get(helm.LABEL_VERSION, "0"))
    try:
        record = helm.decode_secret_data(str((obj.get("data") or {}).get(helm.DATA_KEY, "")))
    except helm.ReleaseDecodeError as exc:
        return StoredRelease(
            str(labels.get(helm.LABEL_NAME, metadata.get("name", ""))),
            sys.intern(str(metadata.get("namespace", ""))),
            int(revision) if revision.isdigit() else 0,
            None,
            modified_at,
            str(exc),
        )
    summary = helm.summarize(record)
    del record  # the whole release (manifest, values): not kept past the summary
    # Kept for every release Secret: strings most releases share are stored once.
    summary = replace(
        summary,
        namespace=sys.intern(summary.namespace),
        chart=sys.intern(summary.chart),
        chart_version=sys.intern(summary.chart_version),
        description=sys.intern(summary.description),
        last_deployed=sys.intern(summary.last_deployed),
    )
    if modified_at is None:
        modified_at = parse_time(summary.last_deployed)
    return StoredRelease(
        summary.name, summary.namespace, summary.revision, summary, modified_at, None
    )


def judge(
    item: Tracked[StoredRelease],
    now: datetime,
    source: ObjectSource[StoredRelease],
    settings: HelmStorageSettings,
) -> list[Finding]:
    stored = item.projection
    if stored.error is not None:
        evidence = Evidence(message=stored.error, fields={"release": stored.release})
        return [Finding(ReleaseProblem.DECODE_ERROR, (stored.error,), evidence)]
    summary = stored.summary
    assert summary is not None
    if not summary.status.is_pending or _newer_revision_exists(stored, source):
        return []
    since = stored.modified_at or item.first_seen
    age = max(0.0, (now - since).total_seconds())
    if age < settings.pending_after:
        return []
    evidence = Evidence(
        reason=summary.status.value,
        message=summary.description,
        age_seconds=age,
        since=since,
        fields={
            "release": summary.name,
            "revision": summary.revision,
            "status": summary.status.value,
            "chart": summary.chart,
            "chartVersion": summary.chart_version,
        },
    )
    fingerprint = (summary.name, str(summary.revision), summary.status.value)
    return [
        Finding(ReleaseProblem.PENDING, fingerprint, evidence, MessageClass.OPERATION_IN_PROGRESS)
    ]


def _newer_revision_exists(stored: StoredRelease, source: ObjectSource[StoredRelease]) -> bool:
    return any(
        other.projection.namespace == stored.namespace
        and other.projection.release == stored.release
        and other.projection.revision > stored.revision
        for other in source.tracked.values()
    )


def create(settings: BaseModel, context: SourceContext) -> Source:
    assert isinstance(settings, HelmStorageSettings)
    return ObjectSource(
        name="helm_storage",
        cluster=context.cluster,
        kube=context.kube,
        rt=SECRETS,
        project=project,
        judge=lambda item, now, src: judge(item, now, src, settings),
        filter=settings.filter,
        field_selector=f"type={helm.SECRET_TYPE}",
        tick=settings.tick,
        watch=settings.watch,
    )


PLUGIN = SourcePlugin(
    name="helm_storage",
    settings_model=HelmStorageSettings,
    create=create,
    rbac=({"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]},),
    description="Helm release Secrets whose newest revision stays pending (S3).",
    example={"pending_after": 300},
)
