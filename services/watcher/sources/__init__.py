"""The watcher's sources, one module each, listed in one registry.

Third-party sources join through the `medic.sources` entry-point group (see `base.py`).
"""

from __future__ import annotations

from medic.watcher.sources import (
    etcd_probe,
    fleet,
    flux_crds,
    gardener_etcd,
    helm_storage,
    helmrelease,
    kube_events,
)
from medic.watcher.sources.base import SourceRegistry

BUILTIN = (
    helmrelease.PLUGIN,
    flux_crds.PLUGIN,
    helm_storage.PLUGIN,
    fleet.PLUGIN,
    gardener_etcd.PLUGIN,
    kube_events.PLUGIN,
    etcd_probe.PLUGIN,
)


def default_registry(entry_points: bool = True) -> SourceRegistry:
    registry = SourceRegistry()
    for plugin in BUILTIN:
        registry.register(plugin)
    if entry_points:
        registry.load_entry_points()
    return registry
