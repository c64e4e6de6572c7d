"""The contract every watcher source implements, and the registry that lists them.

A source knows one upstream system (Kubernetes objects of a kind, or etcd's own endpoints) and
turns what it sees into typed events; it knows nothing about NATS. The watcher service gives
each source an `emit` callable that publishes (JetStream dedups on the event id) and a `stop`
event. Third-party sources register through the `medic.sources` entry-point group.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol

from pydantic import BaseModel

from medic.schemas import Event

Emit = Callable[[Event], Awaitable[None]]


class Source(Protocol):
    name: str

    async def run(self, emit: Emit, stop: asyncio.Event) -> None:
        """Observe until `stop` is set; call `emit` once per distinct problem state."""


@dataclass(frozen=True)
class SourceContext:
    """What a source may use: the cluster name it stamps on events, and clients it needs."""

    cluster: str
    kube: Any = None  # medic.runtime.kube.KubeClient when the source needs the Kubernetes API


@dataclass(frozen=True)
class SourcePlugin:
    """A source's declaration: name, settings model, the RBAC it needs, and how to build it."""

    name: str
    settings_model: type[BaseModel]
    create: Callable[[BaseModel, SourceContext], Source]
    rbac: tuple[dict[str, Any], ...] = ()  # PolicyRules: {"apiGroups", "resources", "verbs"}
    description: str = ""
    example: dict[str, Any] = field(default_factory=dict)

    def describe(self, config: BaseModel) -> str:
        """One line for `medic run`'s summary: what it watches, and the options set."""
        options = config.model_dump(mode="json", exclude_defaults=True)
        chosen = ", ".join(f"{key}={value}" for key, value in options.items())
        return f"{self.name}: {self.description}" + (f" ({chosen})" if chosen else "")


class SourceRegistry:
    """Sources by name; built by the service, filled by `register` or from entry points."""

    def __init__(self) -> None:
        self._plugins: dict[str, SourcePlugin] = {}

    def register(self, plugin: SourcePlugin) -> None:
        if plugin.name in self._plugins:
            raise ValueError(f"source {plugin.name!r} is already registered")
        self._plugins[plugin.name] = plugin

    def get(self, name: str) -> SourcePlugin:
        try:
            return self._plugins[name]
        except KeyError:
            known = ", ".join(sorted(self._plugins))
            raise KeyError(f"unknown source {name!r}; known: {known}") from None

    def __iter__(self) -> Iterator[SourcePlugin]:
        return iter(self._plugins.values())

    def load_entry_points(self, group: str = "medic.sources") -> None:
        for entry in entry_points(group=group):
            self.register(entry.load())
