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


def rule_document(i: int, prefix: str = "bench", action: str = "retry") -> dict[str, Any]:
    """Rule 0 matches every benchmark event (HelmRelease, any problem it has, any cluster and
    namespace); rules 1..N-1 are decoys spread over the 50 kinds, nine problems and four
    clusters, in namespaces no event is in (`team-*`), so each event gets exactly one decision
    whatever N is, while the index still has to sort the decoys out (those filed under the
    events' (problem, kind) buckets reach the full match)."""
    match: dict[str, Any] = {"types": ["medic.release"], "kinds": ["HelmRelease"]}
    if i:
        match = {
            "types": ["medic.release"],
            "problems": [PROBLEMS[i % len(PROBLEMS)]],
            "kinds": [KINDS[(i // len(PROBLEMS)) % len(KINDS)]],
            "namespaces": [f"team-{i % 97}"],
        }
        if i % 10:
            match["clusters"] = [f"c{i % 4}"]
        if i % 3 == 0:
            match["classifications"] = [CLASSES[(i // 3) % len(CLASSES)]]
    return {
        "apiVersion": "medic.dev/v1alpha1",
        "kind": "RemediationRule",
        "metadata": {"name": f"{prefix}-rule-{i}"},
        "spec": {"match": match, "action": {"name": action}, "dryRun": True, "priority": i % 200},
    }


def rules(count: int, prefix: str = "bench", action: str = "retry") -> list[Rule]:
    return [Rule.model_validate(rule_document(i, prefix, action)) for i in range(count)]


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
