"""The verdict of a run: per scenario, what was expected, what happened, when, and the table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from medic.demo.observer import Observer
from medic.demo.scenarios import Scenario
from medic.demo.world import World
from medic.schemas import Outcome


@dataclass
class ScenarioReport:
    key: str
    title: str
    target: str
    expected: str
    observed: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    detected_s: float | None = None  # seconds after staging
    decided_s: float | None = None
    applied_s: float | None = None
    verified_s: float | None = None
    notifications: int = 0


@dataclass
class Report:
    ok: bool
    scenarios: list[ScenarioReport]
    not_run: dict[str, str]
    dead_letters: int
    duration_s: float
    timeline: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _since(at: float | None, start: float | None) -> float | None:
    return None if at is None or start is None else round(at - start, 2)


def judge(observer: Observer, store: World, scenario: Scenario) -> ScenarioReport:
    story = observer.stories[scenario.key]
    problems: list[str] = []
    if scenario.quiet:
        observed = "quiet" if not story.acted and not story.notifications else "acted"
        if story.acted:
            problems.append("Medic acted on a problem that needed no action")
        if story.notifications:
            problems.append("Medic notified about a problem that needed no message")
    else:
        finals = {rule: story.final(rule) for rule, _ in scenario.expect}
        observed = ", ".join(o.value if o else "nothing" for o in finals.values())
        for rule, wanted in scenario.expect:
            final = finals[rule]
            if final is not wanted:
                got = final.value if final is not None else "no final result"
                problems.append(f"rule {rule}: expected {wanted.value}, got {got}")
        delivered = [n for _, n in story.notifications if n.data.status.value == "delivered"]
        if not delivered:
            problems.append("no notification was delivered")
    wrong = scenario.check(store)
    if wrong:
        problems.append(f"cluster: {wrong}")
    start = story.staged_at
    return ScenarioReport(
        key=scenario.key,
        title=scenario.title,
        target=str(scenario.target),
        expected=scenario.expected_text,
        observed=observed,
        ok=not problems,
        problems=problems,
        detected_s=_since(story.first(story.events), start),
        decided_s=_since(story.first(story.results), start),
        applied_s=_since(story.first(story.audits), start),
        verified_s=_since(
            story.first_result(Outcome.SUCCEEDED, Outcome.FAILED, Outcome.ESCALATED), start
        ),
        notifications=len(story.notifications),
    )


def build(
    observer: Observer,
    store: World,
    scenarios: Sequence[Scenario],
    not_run: dict[str, str],
) -> Report:
    reports = [judge(observer, store, s) for s in scenarios]
    return Report(
        ok=all(r.ok for r in reports) and not not_run,
        scenarios=reports,
        not_run=not_run,
        dead_letters=len(observer.dead_letters),
        duration_s=round(observer.now(), 2),
        timeline=[asdict(e) | {"at": round(e.at, 3)} for e in observer.entries],
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def table(report: Report) -> str:
    header = ("scenario", "object", "expected", "observed", "detected", "acted", "verified", "ok")
    rows = [
        (
            r.key,
            r.target,
            r.expected,
            r.observed,
            _seconds(r.detected_s),
            _seconds(r.applied_s),
            _seconds(r.verified_s),
            "yes" if r.ok else "NO",
        )
        for r in report.scenarios
    ]
    rows += [
        (key, "-", "-", f"not run: {why}", "-", "-", "-", "NO")
        for key, why in report.not_run.items()
    ]
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    lines = [
        " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
        for row in (header, *rows)
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    for r in report.scenarios:
        lines.extend(f"  {r.key}: {problem}" for problem in r.problems)
    return "\n".join(lines)
