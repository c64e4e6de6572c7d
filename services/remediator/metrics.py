"""The remediator's Prometheus metrics: decisions, outcomes and how long actions take.

Rule and action names are labels: both are a short, operator-written list, never object names.
Bus traffic (fetches, acks, dead letters) is counted in medic.runtime.metrics.
"""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import Counter, Histogram

from medic.remediator.rules.engine import Decision, Verdict
from medic.schemas import Outcome

DECISIONS = Counter(
    "medic_remediator_decisions",
    "Decisions the rule engine took (act, wait, escalate, skip), by rule.",
    ["rule", "verdict"],
)
OUTCOMES = Counter(
    "medic_remediator_outcomes",
    "Results published, by rule, action and outcome (succeeded, failed, escalated, ...).",
    ["rule", "action", "outcome"],
)
ACTION_SECONDS = Histogram(
    "medic_remediator_action_seconds",
    "Time from claim to result of an acted decision: plan, write and verification.",
    ["action", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)


@functools.cache
def _decisions(rule: str, verdict: str) -> Any:
    """A label set's child, looked up once (`labels` costs about 3.5 us a call, issue 15)."""
    return DECISIONS.labels(rule, verdict)


@functools.cache
def _outcomes(rule: str, action: str, outcome: str) -> Any:
    return OUTCOMES.labels(rule, action, outcome)


@functools.cache
def _seconds(action: str, outcome: str) -> Any:
    return ACTION_SECONDS.labels(action, outcome)


def record_decision(decision: Decision) -> None:
    _decisions(decision.name, decision.verdict.value).inc()


def record_outcome(decision: Decision, outcome: Outcome, seconds: float) -> None:
    action = decision.rule.rule.spec.action.name
    _outcomes(decision.name, action, outcome.value).inc()
    if decision.verdict is Verdict.ACT:
        _seconds(action, outcome.value).observe(seconds)
