"""`medic rules test`: rules rehearsed against recorded events, and, when a case stages
Kubernetes objects, the actions planned in dry-run against them (the `promtool test rules` of
remediation). Not the service: no bus, no state store, no write ever reaches an API server.

A test file:

    rules: [team-rules.yaml]            # default: the built-in pack
    tests:
      - name: s1-retry-once-etcd-settled
        event: {...}                    # a recorded event (JSON/YAML, as on the bus)
        subject: medic.events....       # default: derived from the event
        etcd: {condition: stable, stableFor: 60s}
        after: 90s                      # the engine's clock: event time + after
        objects: [{apiVersion: ..., kind: ..., metadata: ..., status: ...}]
        expect:
          - rule: flux-retry-after-transient-etcd-error
            verdict: act                # act | wait | escalate | skip
            outcome: planned            # with objects: planned | skipped | escalated | no-op
            changes: [{path: /metadata/annotations/reconcile.fluxcd.io~1resetAt, before: null}]

`objects` are staged by a `Stage` the caller passes in (the CLI gives the Kubernetes API
sandbox; the remediator does not import the sandbox). An expectation lists the decisions in
order; each entry is compared on the keys it names (a change on the keys it names), so a value
no one can know beforehand (a reconcile token) is left out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medic.remediator.actions.base import ActionContext, ActionRegistry
from medic.remediator.rules.engine import Decision, EtcdState, Snapshot, Verdict, decide
from medic.remediator.rules.index import RuleSet
from medic.remediator.rules.loader import action_problems, describe
from medic.remediator.rules.model import parse_duration
from medic.remediator.runner import RunOutcome, judged, target_of
from medic.runtime.kube import KubeClient, KubeError
from medic.runtime.settings import KubeSettings
from medic.schemas import EtcdCondition, Event, Outcome, SchemaError, decode_message

Stage = Callable[[Sequence[Mapping[str, Any]]], AbstractAsyncContextManager[Path]]
"""Objects in, the kubeconfig of an API server holding them out (for the block's duration)."""
Echo = Callable[[str], None]
ACTOR = "medic-rules-test"
PLAIN_OUTCOMES = {Verdict.ESCALATE: Outcome.ESCALATED, Verdict.SKIP: Outcome.SKIPPED}


class CaseError(Exception):
    """A case that cannot be run as written (bad event, objects without a sandbox, ...)."""


def _subset(expected: Any, got: Any) -> bool:
    """`expected` holds for `got`: dicts on the keys expected names, lists item by item."""
    if isinstance(expected, dict):
        return isinstance(got, dict) and all(
            key in got and _subset(value, got[key]) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(got, list)
            and len(expected) == len(got)
            and all(_subset(e, g) for e, g in zip(expected, got, strict=True))
        )
    return bool(expected == got)


def expectations_met(expected: list[dict[str, Any]], got: list[dict[str, Any]]) -> bool:
    return _subset(expected, got)


@dataclass
class Rehearsal:
    rules: RuleSet
    actions: ActionRegistry
    stage: Stage | None
    echo: Echo

    async def run(self, cases: Sequence[Mapping[str, Any]]) -> int:
        """Runs every case, prints what would be done; returns the number of failed cases."""
        failures = 0
        for case in cases:
            name = case.get("name")
            try:
                got = await self.case(case)
            except CaseError as exc:
                self.echo(f"FAIL {name}: {exc}")
                failures += 1
                continue
            expected = case.get("expect", [])
            if not expectations_met(expected, got):
                self.echo(f"FAIL {name}: expected {expected}, got {got}")
                failures += 1
                continue
            self.echo(f"ok   {name}")
        return failures

    async def case(self, case: Mapping[str, Any]) -> list[dict[str, Any]]:
        try:
            event: Any = decode_message(json.dumps(case["event"], default=str))
        except (KeyError, SchemaError) as exc:
            raise CaseError(f"event invalid: {exc}") from exc
        now = event.time + timedelta(seconds=parse_duration(case.get("after", 0)))
        subject = case.get("subject", f"medic.events.{event.cluster}.{event.subject_suffix()}")
        decisions = decide(event, subject, self.rules, self._snapshot(case, event, now), now)
        got = [{"rule": d.name, "verdict": d.verdict.value, "reason": d.reason} for d in decisions]
        for decision, entry in zip(decisions, got, strict=True):
            if decision.verdict in PLAIN_OUTCOMES:
                entry["outcome"] = PLAIN_OUTCOMES[decision.verdict].value
        objects = case.get("objects")
        if objects is not None:
            await self._plan_all(objects, decisions, got, event, now)
        for entry in got:
            self._show(str(case.get("name")), entry)
        return got

    def _snapshot(self, case: Mapping[str, Any], event: Any, now: datetime) -> Snapshot:
        etcd = {}
        if case.get("etcd"):
            stable_for = parse_duration(case["etcd"].get("stableFor", 0))
            etcd[event.cluster] = EtcdState(
                EtcdCondition(case["etcd"].get("condition", "stable")),
                now - timedelta(seconds=stable_for),
                now,
            )
        return Snapshot(etcd=etcd)

    async def _plan_all(
        self,
        objects: Any,
        decisions: list[Decision],
        got: list[dict[str, Any]],
        event: Event,
        now: datetime,
    ) -> None:
        if self.stage is None:
            raise CaseError("`objects:` needs a Kubernetes API sandbox (run `medic rules test`)")
        if not isinstance(objects, list):
            raise CaseError("`objects:` must be a list of Kubernetes objects")
        try:
            async with self.stage(objects) as kubeconfig:
                kube = await KubeClient.connect(KubeSettings(kubeconfig=kubeconfig))
                try:
                    context = ActionContext(kube, event.cluster, ACTOR, clock=lambda: now)
                    for decision, entry in zip(decisions, got, strict=True):
                        if decision.verdict is Verdict.ACT:
                            entry.update(await self._plan(context, decision, event))
                finally:
                    await kube.close()
        except (ValueError, KubeError) as exc:  # StagingError is a ValueError
            raise CaseError(str(exc)) from exc

    async def _plan(
        self, context: ActionContext, decision: Decision, event: Event
    ) -> dict[str, Any]:
        spec = decision.rule.rule.spec
        try:
            action = self.actions.get(spec.action.name)
            params = action.params_model.model_validate(spec.action.params)
        except (KeyError, ValidationError) as exc:  # a rule loaded without its actions checked
            problems = describe(action_problems(spec.action, self.actions.params_models()))
            raise CaseError(f"rule {decision.name}: {problems}") from exc
        target = target_of(event)
        if target is None:
            return {"outcome": Outcome.SKIPPED.value, "reason": "event names no object"}
        plan = await action.plan(context, target, params, event)
        result = judged(plan) or RunOutcome(Outcome.PLANNED, "dry-run", plan)
        return {
            "outcome": result.outcome.value,
            "reason": result.reason,
            "changes": [change.model_dump(mode="json") for change in plan.changes],
            **({"diagnosis": plan.diagnosis} if plan.diagnosis else {}),
        }

    def _show(self, name: str, entry: dict[str, Any]) -> None:
        outcome = f" => {entry['outcome']}" if "outcome" in entry else ""
        self.echo(f"  {name}: {entry['rule']} -> {entry['verdict']}{outcome} {entry['reason']}")
        for change in entry.get("changes", []):
            before, after = json.dumps(change["before"]), json.dumps(change["after"])
            self.echo(f"      would change {change['path']}: {before} -> {after}")
        for key, value in entry.get("diagnosis", {}).items():
            lines = str(value).splitlines() or [""]
            self.echo(f"      diagnosis {key}: {lines[0]}")
            for line in lines[1:]:
                self.echo(f"        {line}")
