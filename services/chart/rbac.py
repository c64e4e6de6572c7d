"""The chart's RBAC, derived from the one source of truth: each plugin's `rbac` declaration.

Watcher sources (`medic.watcher.sources`) and remediator actions (`medic.remediator.actions`)
each declare the PolicyRules they need. This module turns those declarations into
`charts/medic/files/rbac.yaml` (written by `medic.chart.generate`), from which the chart's
templates build the ClusterRoles for what the values enable: the watcher's role from the enabled
sources, the remediator's from the actions the built-in rules use plus the actions the values
name. The same derivation is exposed here (`watcher_rules`, `remediator_rules`) so tests compare
what Helm renders with what the code declares.

Rules are normalised to one PolicyRule per (apiGroup, resource) with sorted verbs, the same
shape the chart's `medic.rules` template emits, so "remove one rule" means one resource of one
group. An action's rules are split into `reads` (what `plan`, and so dry-run, needs: every
non-mutating verb but `watch`, and creating access reviews, which write nothing) and `writes`
(the mutating verbs, and `watch`, which only the verification of a write uses).

Not for: granting what no declaration names (that is the values' `rbac.extraRules`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from medic.remediator.actions import default_registry as action_registry
from medic.remediator.rules.loader import load_builtin
from medic.watcher.settings import WatcherSettings
from medic.watcher.sources import default_registry as source_registry
from medic.watcher.sources.kubernetes import NAMESPACE_SELECTOR_RBAC

Grant = tuple[str, str, str]  # (apiGroup, resource, verb)
PolicyRule = dict[str, list[str]]

MUTATING_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
# Creating one of these asks the authorizer a question; nothing is stored (k8s.io/api
# authorization/v1 and authentication/v1: the reviews are not persisted).
REVIEWS = frozenset(
    {
        ("authorization.k8s.io", "subjectaccessreviews"),
        ("authorization.k8s.io", "selfsubjectaccessreviews"),
        ("authorization.k8s.io", "localsubjectaccessreviews"),
        ("authentication.k8s.io", "tokenreviews"),
    }
)


def grants(rules: Iterable[Mapping[str, Any]]) -> set[Grant]:
    """Every (apiGroup, resource, verb) a list of PolicyRules allows."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", ())
        for resource in rule.get("resources", ())
        for verb in rule.get("verbs", ())
    }


def normalise(found: Iterable[Grant]) -> list[PolicyRule]:
    """One rule per (apiGroup, resource), verbs sorted, in the order Helm's dict range gives."""
    verbs: dict[str, set[str]] = {}
    for group, resource, verb in found:
        verbs.setdefault(f"{group}|{resource}", set()).add(verb)
    rules: list[PolicyRule] = []
    for key in sorted(verbs):
        group, resource = key.split("|", 1)
        rules.append({"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs[key])})
    return rules


def is_write(grant: Grant) -> bool:
    group, resource, verb = grant
    return verb in MUTATING_VERBS and (group, resource) not in REVIEWS


def needs_writes(grant: Grant) -> bool:
    """An action's grant needed only when the remediator writes: a write, or the `watch` an
    action declares for verifying its write (dry-run never writes, so never verifies)."""
    return is_write(grant) or grant[2] == "watch"


def builtin_rule_actions() -> list[str]:
    """The actions the built-in rule pack uses (what the remediator needs with no own rules)."""
    return sorted({rule.spec.action.name for rule in load_builtin().rules})


def default_sources() -> list[str]:
    return list(WatcherSettings.model_fields["sources"].get_default(call_default_factory=True))


def document() -> dict[str, Any]:
    """The content of charts/medic/files/rbac.yaml."""
    sources = source_registry(entry_points=False)
    actions = action_registry(entry_points=False)
    by_action: dict[str, dict[str, list[PolicyRule]]] = {}
    for action in sorted(actions, key=lambda a: a.name):
        declared = grants(action.rbac)
        by_action[action.name] = {
            "reads": normalise(g for g in declared if not needs_writes(g)),
            "writes": normalise(g for g in declared if needs_writes(g)),
        }
    return {
        "defaultSources": default_sources(),
        "builtinRuleActions": builtin_rule_actions(),
        "sources": {
            plugin.name: normalise(grants(plugin.rbac))
            for plugin in sorted(sources, key=lambda p: p.name)
        },
        "namespaceSelector": normalise(grants(NAMESPACE_SELECTOR_RBAC)),
        "actions": by_action,
    }


def watcher_rules(sources: Sequence[str], *, namespace_selector: bool = False) -> list[PolicyRule]:
    """The watcher's ClusterRole for these enabled sources."""
    registry = source_registry(entry_points=False)
    found = set().union(*(grants(registry.get(name).rbac) for name in sources))
    if namespace_selector:
        found |= grants(NAMESPACE_SELECTOR_RBAC)
    return normalise(found)


def remediator_rules(actions: Sequence[str], *, dry_run: bool) -> list[PolicyRule]:
    """The remediator's ClusterRole for these actions; in dry-run, only what `plan` needs."""
    registry = action_registry(entry_points=False)
    found = set().union(*(grants(registry.get(name).rbac) for name in actions))
    return normalise(g for g in found if not (dry_run and needs_writes(g)))
