"""The contract of an action: plan (read, judge, decide the write) -> apply (one write with the
judged resourceVersion) -> verify (the rule's success condition). Dry-run stops after `plan`.

An action declares its name, its parameters model, the RBAC it needs and an example, and is
registered in an `ActionRegistry` (third parties via the `medic.actions` entry-point group).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import entry_points
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from medic.runtime.kube import KubeClient, PatchType, ResourceType
from medic.schemas import Change, Event, ObjectRef


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class ActionContext:
    kube: KubeClient
    cluster: str
    actor: str
    backups: Any = None  # medic.remediator.backup.BackupStore
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


@dataclass
class Plan:
    """What an action decided after re-reading the object."""

    verdict: Literal["act", "fixed", "skip", "refuse"]
    reason: str = ""
    rt: ResourceType | None = None
    name: str = ""
    namespace: str | None = None
    patch: Any = None
    patch_type: PatchType = "merge"
    replace: dict[str, Any] | None = None
    resource_version: str | None = None
    changes: list[Change] = field(default_factory=list)
    diagnosis: dict[str, Any] = field(default_factory=dict)
    backup: dict[str, Any] | None = None
    token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # A refusal whose cause a person can remove (missing RBAC): escalate once, then plan again
    # every `recheck_after` seconds and act once the cause is gone (no restart, no new event).
    recheck_after: float | None = None
    # Set by an action's own `apply` when part of the work could not be done (e.g. the API
    # server refused one write): the result escalates with this reason instead of verifying.
    escalation: str = ""


class Action(Protocol):
    """Declarations are read-only properties, so plain class attributes satisfy them."""

    @property
    def name(self) -> str: ...

    @property
    def params_model(self) -> type[BaseModel]: ...

    @property
    def rbac(self) -> Sequence[Mapping[str, Any]]: ...

    @property
    def example(self) -> Mapping[str, Any]: ...

    async def plan(
        self, ctx: ActionContext, target: ObjectRef, params: BaseModel, event: Event
    ) -> Plan: ...

    async def verify(self, ctx: ActionContext, plan: Plan) -> bool: ...


@runtime_checkable
class JudgesObject(Protocol):
    """An action whose `verify` reads only the object the plan wrote: `holds` is that check
    over the object as given (None once deleted), so a verification can judge the object a
    watch delivered instead of reading it again (issue 15: API requests per fix)."""

    def holds(self, plan: Plan, obj: dict[str, Any] | None) -> bool: ...


@runtime_checkable
class JudgesEvent(Protocol):
    """An action that can plan from what the event quotes of the object at the resourceVersion
    it names, without reading the object first (issue 15: one API request per fix, and no read
    between detection and the write). Sound because the plan's write carries that version:
    if the object changed since, the API server refuses it (409) and the runner plans again
    with `plan`, which reads. None when the event does not quote enough."""

    def plan_from_event(
        self, ctx: ActionContext, target: ObjectRef, params: BaseModel, event: Event
    ) -> Plan | None: ...


@runtime_checkable
class KeepsNoState(Protocol):
    """An action whose decisions leave no per-object or per-rule record: it writes nothing
    (`notify-only`), so no attempt, cooldown, rate or circuit-breaker entry is ever kept for
    its rules, and the engine's snapshot reads none for them (two KV reads fewer per
    decision; issue 15). Declared, not inferred: an action without RBAC may still act
    elsewhere."""

    keeps_no_state: Literal[True]


@runtime_checkable
class AppliesItself(Protocol):
    """An action whose writes are more than the one write a Plan describes (`migrate-api-version`
    re-stores every object of a CRD, then trims its status): the runner calls its `apply`."""

    async def apply(self, ctx: ActionContext, plan: Plan) -> Any: ...


def token() -> str:
    """A reconcile request token as `flux reconcile` writes it (a timestamp, here + entropy)."""
    return f"{datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}-{secrets.token_hex(3)}"


KNOWN_PLURALS = {
    "HelmRelease": "helmreleases",
    "BundleDeployment": "bundledeployments",
    "Etcd": "etcds",
    "Secret": "secrets",
    "ConfigMap": "configmaps",
}


PLURAL_HELP = (
    "The resource's plural, when it is not the kind in lower case + s (known: "
    + ", ".join(KNOWN_PLURALS)
    + ")."
)


def resource_type(ref: ObjectRef, plural: str | None = None) -> ResourceType:
    plural = plural or KNOWN_PLURALS.get(ref.kind) or ref.kind.lower() + "s"
    return ResourceType(ref.group, ref.version, plural, ref.kind, ref.namespace is not None)


def annotation_changes(obj: dict[str, Any], wanted: dict[str, str | None]) -> list[Change]:
    current = (obj.get("metadata") or {}).get("annotations") or {}
    return [
        Change(
            path=f"/metadata/annotations/{key.replace('/', '~1')}",
            before=current.get(key),
            after=value,
        )
        for key, value in wanted.items()
        if current.get(key) != value
    ]


def fixed(reason: str) -> Plan:
    return Plan(verdict="fixed", reason=reason)


class ActionRegistry:
    def __init__(self) -> None:
        self._actions: dict[str, Action] = {}

    def register(self, action: Action) -> None:
        if action.name in self._actions:
            raise ValueError(f"action {action.name!r} is already registered")
        self._actions[action.name] = action

    def get(self, name: str) -> Action:
        try:
            return self._actions[name]
        except KeyError:
            known = ", ".join(sorted(self._actions))
            raise KeyError(f"unknown action {name!r}; known: {known}") from None

    def params_models(self) -> dict[str, type[BaseModel]]:
        """Action name -> its parameters model: what the rule loader checks params against."""
        return {name: action.params_model for name, action in self._actions.items()}

    def stateless(self) -> frozenset[str]:
        """The names of the actions that keep no state (`KeepsNoState`)."""
        return frozenset(
            name
            for name, action in self._actions.items()
            if isinstance(action, KeepsNoState) and action.keeps_no_state is True
        )

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def __iter__(self) -> Iterator[Action]:
        return iter(self._actions.values())

    def load_entry_points(self, group: str = "medic.actions") -> None:
        for entry in entry_points(group=group):
            self.register(entry.load())
