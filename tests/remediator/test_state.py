"""The remediator's KV state on a real nats-server: what a snapshot reads (issue 15)."""

from __future__ import annotations

from datetime import UTC, datetime

from medic.remediator.actions import default_registry
from medic.remediator.rules.index import RuleSet
from medic.remediator.rules.loader import load_text
from medic.remediator.state import StateStore
from medic.runtime.bus import Bus
from medic.runtime.replies import Stored

RULES = """
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: tell}
spec:
  match: {problems: [failed]}
  action: {name: notify-only}
---
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: fix}
spec:
  match: {problems: [failed]}
  action: {name: retry}
"""


def test_only_notify_only_keeps_no_state() -> None:
    # A new action is stateful unless it says otherwise: its limits then hold.
    assert default_registry(entry_points=False).stateless() == {"notify-only"}


async def test_a_stateless_rules_snapshot_reads_no_records(bus: Bus) -> None:
    state = StateStore(await bus.kv("state-test", history=1), bus.kv_ops("state-test"))
    loaded = load_text(RULES, "rules.yaml")
    assert not loaded.errors
    tell, fix = RuleSet.build(loaded.rules).rules
    at = datetime(2026, 12, 3, tzinfo=UTC)
    for compiled in (tell, fix):  # records as a previous action of the same name left them
        await state.record_attempt(compiled.rule.name, "p", "failed", at)
    reads: list[list[str]] = []
    get_many = state.ops.get_many

    async def counted(keys: list[str]) -> list[Stored | None]:
        reads.append(keys)
        return await get_many(keys)

    state.ops.get_many = counted  # type: ignore[method-assign]
    snapshot = await state.snapshot("c", "p", [tell, fix], {}, frozenset({"notify-only"}))

    assert len(reads) == 1
    assert len(reads[0]) == 2  # fix's object and rule records; none of tell's
    assert snapshot.objects[("fix", "p")].attempts == 1
    assert ("tell", "p") not in snapshot.objects  # the engine sees it as new
