"""Benchmark 5: events/s through the remediator's pure rule engine (pytest-benchmark).

    .venv/bin/pytest bench/test_rule_matching.py --benchmark-only

Baseline: a naive linear scan that compares every rule's (event type, kind, cluster, namespace)
with the event, the cost an unindexed engine would pay. The engine's figure comes from
`medic.remediator.rules` once it has landed (skipped with the reason until then). The same
generated rules and events feed both; events/s = events per round / round time.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pipeline import make_events

EVENTS = 1_000
RULE_COUNTS = (10, 1_000, 10_000)


@dataclass(frozen=True, slots=True)
class NaiveRule:
    name: str
    event_type: str
    kind: str
    cluster: str | None
    namespace: str | None


def naive_rules(count: int, clusters: int = 4, namespaces: int = 50) -> list[NaiveRule]:
    return [
        NaiveRule(
            name=f"rule-{i}",
            event_type="medic.release",
            kind="HelmRelease" if i % 3 else "Bundle",
            cluster=None if i % 7 == 0 else f"c{i % clusters}",
            namespace=None if i % 5 == 0 else f"ns-{i % namespaces}",
        )
        for i in range(count)
    ]


def naive_match(rules: list[NaiveRule], events: list[Any]) -> int:
    matched = 0
    for event in events:
        obj = event.data.object
        for rule in rules:
            if (
                rule.event_type == event.type
                and rule.kind == obj.kind
                and (rule.cluster is None or rule.cluster == event.cluster)
                and (rule.namespace is None or rule.namespace == obj.namespace)
            ):
                matched += 1
    return matched


@pytest.mark.parametrize("rules", RULE_COUNTS)
def test_baseline_naive_linear_scan(benchmark: Any, rules: int) -> None:
    events = make_events(EVENTS)
    table = naive_rules(rules)
    benchmark.extra_info["events_per_round"] = EVENTS
    result = benchmark(naive_match, table, events)
    benchmark.extra_info["matches_per_round"] = result
    assert result > 0


def _engine_missing() -> str | None:
    try:
        spec = importlib.util.find_spec("medic.remediator.rules.engine")
    except ImportError:
        spec = None
    return None if spec is not None else "rule engine not landed (medic.remediator.rules.engine)"


@pytest.mark.parametrize("rules", RULE_COUNTS)
def test_engine_matching(benchmark: Any, rules: int) -> None:
    why = _engine_missing()
    if why is not None:
        pytest.skip(why)
    from bench import rules_adapter

    events = make_events(EVENTS)
    match_all = rules_adapter.matcher(rules)
    benchmark.extra_info["events_per_round"] = EVENTS
    result = benchmark(match_all, events)
    benchmark.extra_info["decisions_per_round"] = result
    assert result >= 0
