"""Notification channels: one module per destination, one registry listing them.

Built-in types: `slack`, `webhook`, `console`. Third parties add a `ChannelPlugin` through the
`medic.channels` entry-point group; the service builds a `ChannelRegistry` and passes it in.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import entry_points

from medic.notifier.channels import console, slack, webhook
from medic.notifier.channels.base import (
    Channel,
    ChannelError,
    ChannelPlugin,
    DeliveryReceipt,
    Rendered,
    mask_url,
)
from medic.notifier.settings import ChannelConfig

__all__ = [
    "Channel",
    "ChannelError",
    "ChannelPlugin",
    "ChannelRegistry",
    "DeliveryReceipt",
    "Rendered",
    "default_registry",
    "mask_url",
]


class ChannelRegistry:
    """Channel types by name; filled by `register` or from entry points."""

    def __init__(self) -> None:
        self._plugins: dict[str, ChannelPlugin] = {}

    def register(self, plugin: ChannelPlugin) -> None:
        if plugin.kind in self._plugins:
            raise ValueError(f"channel type {plugin.kind!r} is already registered")
        self._plugins[plugin.kind] = plugin

    def get(self, type_: str) -> ChannelPlugin:
        try:
            return self._plugins[type_]
        except KeyError:
            known = ", ".join(sorted(self._plugins))
            raise KeyError(f"unknown channel type {type_!r}; known: {known}") from None

    def __iter__(self) -> Iterator[ChannelPlugin]:
        return iter(self._plugins.values())

    def load_entry_points(self, group: str = "medic.channels") -> None:
        for entry in entry_points(group=group):
            self.register(entry.load())

    def create(self, config: ChannelConfig) -> Channel:
        """Validate the channel's options with its type's model and build it."""
        plugin = self.get(config.type)
        options = plugin.options_model.model_validate(config.options)
        return plugin.create(config.name, options)


def default_registry(*, entry_points_too: bool = True) -> ChannelRegistry:
    registry = ChannelRegistry()
    for plugin in (slack.PLUGIN, webhook.PLUGIN, console.PLUGIN):
        registry.register(plugin)
    if entry_points_too:
        registry.load_entry_points()
    return registry
