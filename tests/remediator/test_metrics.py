"""The remediator's metrics count decisions by verdict and outcomes by rule and action; only
acted decisions feed the action latency histogram."""

from __future__ import annotations

from prometheus_client import REGISTRY

from medic.remediator import metrics
from medic.remediator.rules.engine import Decision, Verdict
from medic.remediator.rules.index import CompiledRule
from medic.remediator.rules.model import Rule
from medic.schemas import Outcome


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_decisions_outcomes_and_action_latency_are_counted() -> None:
    rule = CompiledRule.compile(
        Rule.model_validate(
            {
                "apiVersion": "medic.dev/v1alpha1",
                "kind": "RemediationRule",
                "metadata": {"name": "metrics-probe"},
                "spec": {"action": {"name": "retry"}},
            }
        )
    )
    acted, escalated = Decision(rule, Verdict.ACT), Decision(rule, Verdict.ESCALATE)
    latency = {"action": "retry", "outcome": "succeeded"}
    before = sample("medic_remediator_action_seconds_count", **latency)

    metrics.record_decision(acted)
    metrics.record_outcome(acted, Outcome.SUCCEEDED, 0.2)
    metrics.record_decision(escalated)
    metrics.record_outcome(escalated, Outcome.ESCALATED, 0.0)

    assert sample("medic_remediator_decisions_total", rule="metrics-probe", verdict="act") == 1
    outcome = {"rule": "metrics-probe", "action": "retry"}
    assert sample("medic_remediator_outcomes_total", **outcome, outcome="escalated") == 1
    assert sample("medic_remediator_action_seconds_count", **latency) == before + 1
    assert sample("medic_remediator_action_seconds_count", action="retry", outcome="escalated") == 0
