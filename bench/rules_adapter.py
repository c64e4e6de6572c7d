"""How the benchmarks build a rule set of N distinct rules and run the pure engine on events.

Rule i is spread over 50 kinds (the four of the scenarios and 46 custom kinds users might add),
the nine release problems, four clusters and fifty namespaces, some with wildcards, so the
(type, problem, kind) index has work to do and candidates still need the full match. The events
(bench.pipeline.make_events) are HelmReleases in those clusters and namespaces.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from medic.remediator.rules.engine import Snapshot, decide
from medic.remediator.rules.index import RuleSet
from medic.remediator.rules.model import Rule
from medic.runtime.subjects import event_subject
from medic.schemas import ReleaseProblem

KINDS = ["HelmRelease", "Secret", "BundleDeployment", "Etcd"] + [f"Custom{j}" for j in range(46)]
PROBLEMS = [p.value for p in ReleaseProblem]
CLASSES = ["transient_etcd", "timeout", "other"]


def rule_document(i: int) -> dict[str, Any]:
    """Rule i: problem, kind, cluster, namespace taken in turn (mixed radix), so N rules cover
    distinct combinations and an event matches one or two rules whatever N is; every tenth rule
    takes any cluster and every seventh any namespace."""
    match: dict[str, Any] = {
        "types": ["medic.release"],
        "problems": [PROBLEMS[i % len(PROBLEMS)]],
        "kinds": [KINDS[(i // len(PROBLEMS)) % len(KINDS)]],
    }
    combos = len(PROBLEMS) * len(KINDS)
    if i % 10:
        match["clusters"] = [f"c{(i // combos) % 4}"]
    if i % 7:
        match["namespaces"] = [f"ns-{(i // (combos * 4)) % 50}"]
    if i % 3 == 0:
        match["classifications"] = [CLASSES[(i // 3) % len(CLASSES)]]
    return {
        "apiVersion": "medic.dev/v1alpha1",
        "kind": "RemediationRule",
        "metadata": {"name": f"bench-rule-{i}"},
        "spec": {
            "match": match,
            "action": {"name": "retry"},
            "dryRun": True,
            "priority": i % 200,
        },
    }


def rules(count: int) -> list[Rule]:
    return [Rule.model_validate(rule_document(i)) for i in range(count)]


def ruleset(count: int) -> RuleSet:
    return RuleSet.build(rules(count))


def matcher(count: int) -> Callable[[list[Any]], int]:
    """A function deciding every event against `count` rules; returns the decisions made."""
    rule_set = ruleset(count)
    state = Snapshot()
    now = datetime(2026, 11, 23, tzinfo=UTC)

    def decide_all(events: list[Any]) -> int:
        made = 0
        for event in events:
            made += len(decide(event, event_subject(event), rule_set, state, now))
        return made

    return decide_all
