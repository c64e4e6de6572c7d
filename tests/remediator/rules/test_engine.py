"""The pure decision engine: matching, the index, limits, waits; no I/O anywhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from medic.remediator.rules.engine import (
    RESOLVED_WITHIN_GRACE,
    EtcdState,
    ObjectState,
    ProblemState,
    RuleState,
    Snapshot,
    Verdict,
    decide,
    problem_key,
)
from medic.remediator.rules.index import RuleSet, subject_matches
from medic.remediator.rules.loader import load_builtin, load_text
from medic.remediator.rules.model import Rule
from medic.schemas import EtcdCondition, MessageClass, ReleaseProblem
from medic.testing.factories import release_event

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SUBJECT = "medic.events.test.release.failed"


def rule(name: str, **spec: object) -> Rule:
    body = {"action": {"name": "retry"}, **spec}
    return Rule.model_validate(
        {
            "apiVersion": "medic.dev/v1alpha1",
            "kind": "RemediationRule",
            "metadata": {"name": name},
            "spec": body,
        }
    )


def event_at(when: datetime, **kwargs: object):
    return release_event(**kwargs).model_copy(update={"time": when})


def test_builtin_pack_loads_without_errors() -> None:
    result = load_builtin()
    assert result.errors == []
    assert len(result.rules) >= 5


def test_s1_waits_for_etcd_stability_then_acts() -> None:
    rules = RuleSet.build(load_builtin().rules)
    event = event_at(T0, problem=ReleaseProblem.STALLED)
    unstable = Snapshot(etcd={"test": EtcdState(EtcdCondition.LEADER_CHANGED, None, T0)})
    [decision] = decide(event, SUBJECT, rules, unstable, T0)
    assert decision.verdict is Verdict.WAIT
    settling = Snapshot(etcd={"test": EtcdState(EtcdCondition.STABLE, T0, T0)})
    [decision] = decide(event, SUBJECT, rules, settling, T0 + timedelta(seconds=10))
    assert decision.verdict is Verdict.WAIT
    assert decision.reason == "etcd-settling"
    [decision] = decide(event, SUBJECT, rules, settling, T0 + timedelta(seconds=31))
    assert decision.verdict is Verdict.ACT
    assert decision.attempt == 1


def test_a_failed_release_that_did_not_stall_is_left_to_helm_controller() -> None:
    """helm-controller retries a failure by itself until its retries are exhausted (Stalled,
    RetriesExceeded): only then does S1 act (upstream-facts.md; seen on the real controller)."""
    rules = RuleSet.build(load_builtin().rules)
    stable = Snapshot(etcd={"test": EtcdState(EtcdCondition.STABLE, T0, T0)})
    event = event_at(T0, problem=ReleaseProblem.FAILED)
    assert decide(event, SUBJECT, rules, stable, T0 + timedelta(seconds=60)) == []


def test_non_etcd_failures_do_not_match_s1() -> None:
    rules = RuleSet.build(load_builtin().rules)
    event = event_at(T0, message="chart not found", classification=MessageClass.OTHER)
    assert decide(event, SUBJECT, rules, Snapshot(), T0) == []


def test_for_duration_waits_and_a_healed_problem_is_skipped_quietly() -> None:
    rules = RuleSet.build([rule("grace", **{"for": "2m"})])
    event = event_at(T0)
    [decision] = decide(event, SUBJECT, rules, Snapshot(), T0 + timedelta(seconds=30))
    assert decision.verdict is Verdict.WAIT
    assert 89 <= decision.delay <= 90
    healed = Snapshot(problems={problem_key(event): ProblemState(T0, T0 + timedelta(seconds=40))})
    [decision] = decide(event, SUBJECT, rules, healed, T0 + timedelta(seconds=130))
    assert (decision.verdict, decision.reason) == (Verdict.SKIP, RESOLVED_WITHIN_GRACE)


def test_attempt_limit_escalates_once() -> None:
    rules = RuleSet.build([rule("limited", limits={"maxAttempts": 2, "backoff": 0})])
    event = event_at(T0)
    key = ("limited", problem_key(event))
    tried = Snapshot(objects={key: ObjectState(2, T0, "failed", escalated=False)})
    [decision] = decide(event, SUBJECT, rules, tried, T0 + timedelta(hours=1))
    assert decision.verdict is Verdict.ESCALATE
    done = Snapshot(objects={key: ObjectState(2, T0, "failed", escalated=True)})
    [decision] = decide(event, SUBJECT, rules, done, T0 + timedelta(hours=1))
    assert decision.verdict is Verdict.SKIP


def test_circuit_breaker_pauses_the_rule() -> None:
    rules = RuleSet.build([rule("breaker")])
    paused = Snapshot(rules={"breaker": RuleState(paused_until=T0 + timedelta(minutes=5))})
    [decision] = decide(event_at(T0), SUBJECT, rules, paused, T0)
    assert (decision.verdict, decision.reason) == (Verdict.SKIP, "circuit-open")


def test_invalid_rule_is_reported_with_line_and_field() -> None:
    text = """apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: ok}
spec: {action: {name: retry}}
---
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata:
  name: broken
spec:
  action: {name: retry}
  limits:
    maxAttempts: -1
"""
    result = load_text(text, "team.yaml")
    assert [r.name for r in result.rules] == ["ok"]
    [error] = result.errors
    assert (error.file, error.line, error.field) == ("team.yaml", 13, "spec.limits.maxAttempts")
    assert str(error).startswith("team.yaml:13:")


def test_subject_globs_follow_nats_rules() -> None:
    assert subject_matches("medic.events.*.release.>", "medic.events.prod.release.failed")
    assert not subject_matches("medic.events.*.etcd.*", "medic.events.prod.release.failed")


def test_cel_expression_narrows_a_match() -> None:
    rules = RuleSet.build([rule("cel", when='event.cluster.startsWith("prod")')])
    assert decide(event_at(T0, cluster="test"), SUBJECT, rules, Snapshot(), T0) == []
    assert decide(event_at(T0, cluster="prod-eu"), SUBJECT, rules, Snapshot(), T0)


names = st.sampled_from(["a", "b", "web", "api", "db"])
problems = st.sampled_from([p.value for p in ReleaseProblem])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(names, problems, st.booleans()), min_size=1, max_size=30), names, problems
)
def test_index_finds_exactly_what_a_linear_scan_finds(
    specs: list[tuple[str, str, bool]], name: str, problem: str
) -> None:
    rules = [
        rule(
            f"r{i}", match={"problems": [p], "names": [n] if glob else [], "kinds": ["HelmRelease"]}
        )
        for i, (n, p, glob) in enumerate(specs)
    ]
    indexed = RuleSet.build(rules)
    event = event_at(T0, name=name, problem=ReleaseProblem(problem))
    expected = sorted(
        r.name
        for r in rules
        if problem in r.spec.match.problems
        and (not r.spec.match.names or name in r.spec.match.names)
    )
    got = sorted(
        d.name
        for d in decide(event, f"medic.events.test.release.{problem}", indexed, Snapshot(), T0)
    )
    assert got == expected


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10), st.integers(1, 5), st.integers(0, 3600))
def test_never_acts_beyond_the_attempt_limit(attempts: int, limit: int, elapsed: int) -> None:
    rules = RuleSet.build([rule("lim", limits={"maxAttempts": limit, "backoff": 0, "cooldown": 0})])
    event = event_at(T0)
    state = Snapshot(objects={("lim", problem_key(event)): ObjectState(attempts, T0, "failed")})
    [decision] = decide(event, SUBJECT, rules, state, T0 + timedelta(seconds=elapsed))
    if attempts >= limit:
        assert decision.verdict in {Verdict.ESCALATE, Verdict.SKIP}
    else:
        assert decision.verdict is Verdict.ACT
        assert decision.attempt == attempts + 1


def test_rule_json_schema_is_committed_and_current() -> None:
    from pathlib import Path

    from medic.remediator.actions import default_registry
    from medic.remediator.actions.reference import rule_schema
    from medic.schemas.export import HERE, schema_documents

    model = rule_schema(default_registry(entry_points=False))
    documents = schema_documents({"remediation-rule": model})
    committed = (Path(HERE) / "remediation-rule.json").read_text()
    assert committed == documents["remediation-rule.json"], "run `medic schemas` and commit"
