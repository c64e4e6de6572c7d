"""Judging etcd's health from what its members report: a pure state machine, no I/O.

`EtcdStability.step(previous, observations, now)` takes one polling round (what each member's
`/health` and `/metrics` said, or that it did not answer) and returns the new state and the
events that round's transitions deserve. The probe (`medic.watcher.sources.etcd_probe`) does the
HTTP and feeds this; the rules wait on the `stable` event's `stable_since`.

Transitions and the events they produce, one event per transition (never one per poll):
- a member starts to time out -> `timeout`; stops answering or answers /health false ->
  `unhealthy`; reports `etcd_server_has_leader 0` -> `no_leader` (each for that member);
- a member's `etcd_server_leader_changes_seen_total` increases, or the leading member is a
  different one than before -> `leader_changed` (once per round, whatever the number of members);
- every reachable member has a leader and nothing changed for `stable_after` seconds -> `stable`.
The first round (a fresh watcher) only sets the baseline: counters seen then are not changes.
A counter that drops belongs to a restarted member and is a new baseline, not a change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from prometheus_client.parser import text_string_to_metric_families

from medic.schemas import EtcdCondition, EtcdEvent, EtcdEventData, EtcdMember, stable_id
from medic.upstream import etcd

_METRICS = (etcd.METRIC_HAS_LEADER, etcd.METRIC_IS_LEADER, etcd.METRIC_LEADER_CHANGES)


class Reachability(StrEnum):
    ANSWERED = "answered"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class MemberObservation:
    """What one member said in one round."""

    endpoint: str
    reachability: Reachability = Reachability.ANSWERED
    healthy: bool = False
    has_leader: bool | None = None
    is_leader: bool | None = None
    leader_changes: float | None = None
    error: str | None = None

    @property
    def answered(self) -> bool:
        return self.reachability is Reachability.ANSWERED

    def to_member(self) -> EtcdMember:
        return EtcdMember(
            endpoint=self.endpoint,
            healthy=self.answered and self.healthy,
            has_leader=self.has_leader,
            is_leader=self.is_leader,
            leader_changes_total=self.leader_changes,
            error=self.error,
        )


@dataclass(frozen=True)
class MemberMetrics:
    has_leader: bool | None = None
    is_leader: bool | None = None
    leader_changes: float | None = None


def parse_member_metrics(text: str) -> MemberMetrics:
    """The three leader metrics from a member's Prometheus text (other families are skipped).

    etcd exports ~150 kB of metrics; only the lines naming ours are handed to the parser.
    """
    wanted = "\n".join(line for line in text.splitlines() if any(m in line for m in _METRICS))
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(wanted + "\n"):
        for sample in family.samples:
            if sample.name in _METRICS:
                values[sample.name] = sample.value
    has_leader = values.get(etcd.METRIC_HAS_LEADER)
    is_leader = values.get(etcd.METRIC_IS_LEADER)
    return MemberMetrics(
        has_leader=None if has_leader is None else has_leader >= 1,
        is_leader=None if is_leader is None else is_leader >= 1,
        leader_changes=values.get(etcd.METRIC_LEADER_CHANGES),
    )


def member_condition(observation: MemberObservation) -> EtcdCondition | None:
    """The problem a member shows, worst first; None when it is fine."""
    if observation.reachability is Reachability.TIMEOUT:
        return EtcdCondition.TIMEOUT
    if observation.reachability is Reachability.UNREACHABLE:
        return EtcdCondition.UNHEALTHY
    if observation.has_leader is False:
        return EtcdCondition.NO_LEADER
    if not observation.healthy:
        return EtcdCondition.UNHEALTHY
    return None


@dataclass(frozen=True)
class MemberState:
    condition: EtcdCondition | None = None
    # Only counted while the member has a leader; forgotten while it does not answer (it may
    # come back restarted, with a counter that starts again).
    leader_changes: float | None = None


@dataclass(frozen=True)
class StabilityState:
    members: Mapping[str, MemberState] = field(default_factory=dict)
    leader: str | None = None  # the endpoint last seen leading
    quiet_since: datetime | None = None  # since when every reachable member has had a leader
    stable: bool = False  # whether `stable` was announced for the current quiet period
    observed: bool = False  # False until the first round set the baseline


@dataclass(frozen=True)
class EtcdStability:
    """The judge: settings in, `step` out."""

    cluster: str
    stable_after: timedelta
    source: str = ""

    def step(
        self,
        previous: StabilityState,
        observations: Sequence[MemberObservation],
        now: datetime,
    ) -> tuple[StabilityState, list[EtcdEvent]]:
        members = [o.to_member() for o in observations]
        events: list[EtcdEvent] = []
        member_states: dict[str, MemberState] = {}
        changed = False
        for observation in observations:
            before = previous.members.get(observation.endpoint, MemberState())
            after, counter_moved = _member_step(before, observation)
            changed = changed or (previous.observed and counter_moved)
            member_states[observation.endpoint] = after
            if after.condition is not None and after.condition != before.condition:
                events.append(self._event(after.condition, observation.endpoint, members, now))
        leaders = [o.endpoint for o in observations if o.answered and o.is_leader]
        # None or two members claiming leadership (an election in flight) names no leader yet.
        seen = leaders[0] if len(leaders) == 1 else None
        if previous.observed and None not in (seen, previous.leader) and seen != previous.leader:
            changed = True
        if changed:
            events.append(self._leader_changed(seen, observations, members, now))
        # After a change announced without a known leader, whoever leads next is not news again.
        leader = seen or (None if changed else previous.leader)
        reachable = [o for o in observations if o.answered]
        settled = bool(reachable) and all(o.has_leader for o in reachable) and not changed
        quiet_since = (previous.quiet_since or now) if settled else None
        stable = previous.stable and settled
        if quiet_since is not None and not stable and now - quiet_since >= self.stable_after:
            stable = True
            events.append(self._event(EtcdCondition.STABLE, None, members, now, since=quiet_since))
        state = StabilityState(member_states, leader, quiet_since, stable, observed=True)
        return state, events

    def _leader_changed(
        self,
        leader: str | None,
        observations: Sequence[MemberObservation],
        members: list[EtcdMember],
        now: datetime,
    ) -> EtcdEvent:
        # Counters and the new leader identify the change: two watchers seeing it agree on the id.
        counters = sorted((o.endpoint, o.leader_changes) for o in observations if o.answered)
        detail = f"leader is now {leader}" if leader else "leader unknown"
        return self._build(
            stable_id("etcd", self.cluster, EtcdCondition.LEADER_CHANGED, leader, counters),
            EtcdEventData(
                condition=EtcdCondition.LEADER_CHANGED,
                endpoint=leader,
                members=members,
                detail=detail,
            ),
            now,
        )

    def _event(
        self,
        condition: EtcdCondition,
        endpoint: str | None,
        members: list[EtcdMember],
        now: datetime,
        *,
        since: datetime | None = None,
    ) -> EtcdEvent:
        # A member condition is identified by when it began; `stable` by when the quiet began.
        moment = since or now
        return self._build(
            stable_id("etcd", self.cluster, condition, endpoint, moment.isoformat()),
            EtcdEventData(
                condition=condition,
                endpoint=endpoint,
                members=members,
                stable_since=since,
                detail=_detail(condition, endpoint, members),
            ),
            now,
        )

    def _build(self, event_id: str, data: EtcdEventData, now: datetime) -> EtcdEvent:
        return EtcdEvent(
            id=event_id,
            time=now,
            source=self.source or f"medic/watcher/{self.cluster}/etcd_probe",
            cluster=self.cluster,
            # One subject for all of a cluster's etcd events: consumers handle them in order.
            subject="etcd",
            data=data,
        )


def _member_step(before: MemberState, observation: MemberObservation) -> tuple[MemberState, bool]:
    """The member's new state, and whether its counter shows a leader change."""
    condition = member_condition(observation)
    if not observation.answered:
        return MemberState(condition=condition, leader_changes=None), False
    counter = observation.leader_changes
    if not observation.has_leader or counter is None:
        return replace(before, condition=condition), False
    changed = before.leader_changes is not None and counter > before.leader_changes
    return MemberState(condition=condition, leader_changes=counter), changed


def _detail(condition: EtcdCondition, endpoint: str | None, members: list[EtcdMember]) -> str:
    if condition is EtcdCondition.STABLE:
        reachable = sum(1 for m in members if m.healthy)
        return f"{reachable}/{len(members)} members healthy, all reachable ones have a leader"
    member = next((m for m in members if m.endpoint == endpoint), None)
    if member is not None and member.error:
        return f"{endpoint}: {member.error}"
    return f"{endpoint}: {condition.value}"
