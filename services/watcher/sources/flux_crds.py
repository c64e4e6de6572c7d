"""Flux CRDs left behind by a Flux upgrade: `status.storedVersions` lists versions besides the
storage version (scenarios.md S2).

That list, not managedFields (which only say which version a writer used), is what the API server
checks: the next Flux's CRD, which drops an old version, is refused while that version is still
listed (`medic.upstream.kubernetes`). One event per CRD, naming the stale versions; it resolves
when the list holds the storage version alone. Not for the objects themselves: re-storing them is
the remediator's `migrate-api-version`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from medic.runtime.kube import ResourceType
from medic.schemas import Evidence, ReleaseProblem
from medic.upstream import flux, kubernetes
from medic.watcher.problems import Finding
from medic.watcher.sources.base import Source, SourceContext, SourcePlugin
from medic.watcher.sources.kubernetes import TICK_HELP, ObjectSource, Tracked, WatchOptions

CRDS = ResourceType(
    kubernetes.CRD_GROUP,
    kubernetes.CRD_VERSION,
    kubernetes.CRD_PLURAL,
    kubernetes.CRD_KIND,
    namespaced=False,
)


class FluxCrdSettings(BaseModel):
    groups: list[str] = Field(
        default_factory=lambda: sorted({group for group, _ in flux.MIGRATED}),
        description="API groups whose CRDs to check.",
    )
    watch: WatchOptions = Field(default_factory=WatchOptions)
    tick: float = Field(default=30.0, gt=0, description=TICK_HELP)


@dataclass(frozen=True, slots=True)
class CrdView:
    group: str
    kind: str
    storage_version: str
    stale: tuple[str, ...]
    stored: tuple[str, ...]


def project(obj: dict[str, Any], groups: frozenset[str]) -> CrdView | None:
    spec = obj.get("spec") or {}
    group = str(spec.get("group", ""))
    if group not in groups:
        return None
    return CrdView(
        group,
        str((spec.get("names") or {}).get("kind", "")),
        kubernetes.storage_version(obj),
        tuple(kubernetes.stale_stored_versions(obj)),
        tuple(kubernetes.stored_versions(obj)),
    )


def judge(item: Tracked[CrdView], _now: datetime, _source: ObjectSource[CrdView]) -> list[Finding]:
    view = item.projection
    if not view.stale:
        return []
    evidence = Evidence(
        message=f"{view.kind} objects may still be stored at {', '.join(view.stale)}; "
        f"storage version is {view.storage_version} (status.storedVersions: "
        f"{', '.join(view.stored)}): a CRD that drops those versions will be refused",
        fields={
            "storedVersions": ",".join(view.stored),
            "storageVersion": view.storage_version,
            "staleVersions": ",".join(view.stale),
            "kind": view.kind,
        },
    )
    return [Finding(ReleaseProblem.OLD_API_VERSION, (*view.stored, view.storage_version), evidence)]


def create(settings: BaseModel, context: SourceContext) -> Source:
    assert isinstance(settings, FluxCrdSettings)
    groups = frozenset(settings.groups)
    return ObjectSource(
        name="flux_crds",
        cluster=context.cluster,
        kube=context.kube,
        rt=CRDS,
        project=lambda obj: project(obj, groups),
        judge=judge,
        tick=settings.tick,
        watch=settings.watch,
    )


PLUGIN = SourcePlugin(
    name="flux_crds",
    settings_model=FluxCrdSettings,
    create=create,
    rbac=(
        {
            "apiGroups": [kubernetes.CRD_GROUP],
            "resources": [kubernetes.CRD_PLURAL],
            "verbs": ["list", "watch"],
        },
    ),
    description="Flux CRDs whose status.storedVersions still lists versions besides the storage "
    "version (left behind by a Flux upgrade; S2).",
    example={"groups": ["helm.toolkit.fluxcd.io"]},
)
