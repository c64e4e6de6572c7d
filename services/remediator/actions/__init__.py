"""The remediator's actions, one module each, listed in one registry.

Third-party actions join through the `medic.actions` entry-point group (see `base.py`).
"""

from __future__ import annotations

from medic.remediator.actions import (
    clear_pending,
    delete,
    force_reconcile,
    metadata,
    migrate_api_version,
    notify_only,
    patch,
    report_drift,
    retry,
)
from medic.remediator.actions.base import ActionRegistry

BUILTIN = (
    retry.ACTION,
    force_reconcile.ACTION,
    migrate_api_version.ACTION,
    clear_pending.ACTION,
    metadata.ANNOTATE,
    metadata.LABEL,
    patch.ACTION,
    delete.ACTION,
    notify_only.ACTION,
    report_drift.ACTION,
)


def default_registry(entry_points: bool = True) -> ActionRegistry:
    registry = ActionRegistry()
    for action in BUILTIN:
        registry.register(action)
    if entry_points:
        registry.load_entry_points()
    return registry
