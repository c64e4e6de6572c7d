"""The pure etcd stability judge: transitions, baselines, ids, and properties over any history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from medic.schemas import EtcdCondition
from medic.watcher.etcd_health import (
    EtcdStability,
    MemberObservation,
    Reachability,
    StabilityState,
    member_condition,
    parse_member_metrics,
)

A, B, C = "http://a:2379", "http://b:2379", "http://c:2379"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
JUDGE = EtcdStability(cluster="test", stable_after=timedelta(seconds=5))


def ok(endpoint: str, *, leader: bool = False, changes: float = 1) -> MemberObservation:
    return MemberObservation(
        endpoint, healthy=True, has_leader=True, is_leader=leader, leader_changes=changes
    )


def cluster(leader: str = A, changes: float = 1) -> list[MemberObservation]:
    return [ok(e, leader=e == leader, changes=changes) for e in (A, B, C)]


def run(rounds, judge=JUDGE, state=None):
    state = state or StabilityState()
    out = []
    for seconds, observations in rounds:
        state, events = judge.step(state, observations, T0 + timedelta(seconds=seconds))
        out.append(events)
    return state, out


def conditions(events):
    return [(e.data.condition, e.data.endpoint) for e in events]


def test_metrics_parser_reads_the_three_leader_metrics_among_others():
    text = (
        "# HELP etcd_server_has_leader Whether or not a leader exists.\n"
        "# TYPE etcd_server_has_leader gauge\n"
        "etcd_server_has_leader 1\n"
        "# TYPE etcd_server_is_leader gauge\n"
        "etcd_server_is_leader 0\n"
        "# TYPE etcd_server_leader_changes_seen_total counter\n"
        "etcd_server_leader_changes_seen_total 3\n"
        "# TYPE etcd_disk_wal_fsync_duration_seconds histogram\n"
        'etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"} 5\n'
    )
    metrics = parse_member_metrics(text)
    assert (metrics.has_leader, metrics.is_leader, metrics.leader_changes) == (True, False, 3.0)


def test_metrics_parser_leaves_missing_metrics_unknown():
    metrics = parse_member_metrics("go_goroutines 12\n")
    assert (metrics.has_leader, metrics.is_leader, metrics.leader_changes) == (None, None, None)


def test_first_round_sets_the_baseline_without_claiming_a_leader_change():
    _, (events,) = run([(0, cluster(changes=7))])
    assert events == []


def test_counter_increase_is_one_leader_change_however_many_members_saw_it():
    _, (_, events) = run([(0, cluster(A, 1)), (1, cluster(A, 2))])
    assert conditions(events) == [(EtcdCondition.LEADER_CHANGED, A)]


def test_new_leader_identity_is_a_leader_change():
    _, (_, events) = run([(0, cluster(A, 1)), (1, cluster(B, 1))])
    assert conditions(events) == [(EtcdCondition.LEADER_CHANGED, B)]


def test_member_conditions_are_reported_once_per_transition():
    dead = MemberObservation(C, Reachability.UNREACHABLE, error="connection refused")
    slow = MemberObservation(C, Reachability.TIMEOUT, error="no answer")
    lonely = MemberObservation(C, healthy=False, has_leader=False, leader_changes=1)
    rounds = [
        (0, cluster()),
        (1, [ok(A, leader=True), ok(B), dead]),
        (2, [ok(A, leader=True), ok(B), dead]),
        (3, [ok(A, leader=True), ok(B), slow]),
        (4, [ok(A, leader=True), ok(B), lonely]),
        (5, [ok(A, leader=True), ok(B), lonely]),
    ]
    _, out = run(rounds)
    assert [conditions(e) for e in out] == [
        [],
        [(EtcdCondition.UNHEALTHY, C)],
        [],
        [(EtcdCondition.TIMEOUT, C)],
        [(EtcdCondition.NO_LEADER, C)],
        [],
    ]


def test_restarted_member_with_a_lower_counter_is_a_new_baseline():
    rounds = [
        (0, cluster(A, 5)),
        (1, [ok(A, leader=True, changes=5), ok(B, changes=5), ok(C, changes=1)]),
        (2, [ok(A, leader=True, changes=5), ok(B, changes=5), ok(C, changes=1)]),
    ]
    _, out = run(rounds)
    assert out == [[], [], []]


def test_member_back_from_the_dead_does_not_claim_a_leader_change():
    dead = MemberObservation(C, Reachability.UNREACHABLE, error="refused")
    starting = MemberObservation(C, healthy=False, has_leader=False, leader_changes=0)
    rounds = [
        (0, cluster(A, 3)),
        (1, [ok(A, leader=True, changes=3), ok(B, changes=3), dead]),
        (2, [ok(A, leader=True, changes=3), ok(B, changes=3), starting]),
        (3, [ok(A, leader=True, changes=3), ok(B, changes=3), ok(C, changes=1)]),
        (4, [ok(A, leader=True, changes=3), ok(B, changes=3), ok(C, changes=2)]),
    ]
    _, out = run(rounds)
    changes = [[e for e in es if e.data.condition is EtcdCondition.LEADER_CHANGED] for es in out]
    assert [len(c) for c in changes] == [0, 0, 0, 0, 1]


def test_stable_is_announced_once_after_stable_after_seconds_with_stable_since():
    rounds = [(s, cluster()) for s in (0, 2, 4, 5, 6, 9)]
    _, out = run(rounds)
    assert [conditions(e) for e in out] == [[], [], [], [(EtcdCondition.STABLE, None)], [], []]
    assert out[3][0].data.stable_since == T0


def test_leader_change_restarts_the_quiet_period():
    rounds = [(0, cluster(A, 1)), (5, cluster(A, 1)), (6, cluster(B, 2)), (7, cluster(B, 2))]
    rounds += [(11, cluster(B, 2)), (12, cluster(B, 2))]
    _, out = run(rounds)
    stable = [e for events in out for e in events if e.data.condition is EtcdCondition.STABLE]
    assert [e.data.stable_since for e in stable] == [T0, T0 + timedelta(seconds=7)]


def test_unreachable_members_do_not_hold_back_stability():
    dead = MemberObservation(C, Reachability.UNREACHABLE, error="refused")
    rounds = [(s, [ok(A, leader=True), ok(B), dead]) for s in (0, 5)]
    _, out = run(rounds)
    assert (EtcdCondition.STABLE, None) in conditions(out[1])


def test_ids_are_stable_for_the_same_transition_and_differ_between_transitions():
    rounds = [(0, cluster(A, 1)), (1, cluster(A, 2))]
    _, first = run(rounds)
    _, again = run(rounds)
    assert first[1][0].id == again[1][0].id
    _, other = run([(0, cluster(A, 1)), (1, cluster(A, 3))])
    assert other[1][0].id != first[1][0].id


def test_events_carry_the_members_and_the_etcd_subject():
    dead = MemberObservation(C, Reachability.UNREACHABLE, error="refused")
    _, out = run([(0, cluster()), (1, [ok(A, leader=True), ok(B), dead])])
    event = out[1][0]
    assert event.subject == "etcd"
    assert event.cluster == "test"
    assert [m.endpoint for m in event.data.members] == [A, B, C]
    assert event.data.members[2].healthy is False
    assert "refused" in event.data.detail


def test_member_condition_is_worst_first():
    assert member_condition(MemberObservation(A, Reachability.TIMEOUT)) is EtcdCondition.TIMEOUT
    no_leader = MemberObservation(A, healthy=False, has_leader=False)
    assert member_condition(no_leader) is EtcdCondition.NO_LEADER
    assert member_condition(MemberObservation(A, healthy=False, has_leader=True)) is (
        EtcdCondition.UNHEALTHY
    )
    assert member_condition(ok(A)) is None


# --- properties over arbitrary histories --------------------------------------------------

member_observations = st.builds(
    MemberObservation,
    endpoint=st.sampled_from([A, B, C]),
    reachability=st.sampled_from(list(Reachability)),
    healthy=st.booleans(),
    has_leader=st.one_of(st.none(), st.booleans()),
    is_leader=st.one_of(st.none(), st.booleans()),
    leader_changes=st.one_of(st.none(), st.integers(0, 4).map(float)),
)
rounds_strategy = st.lists(
    st.tuples(
        st.integers(1, 4),  # seconds since the previous round
        st.lists(member_observations, min_size=1, max_size=3, unique_by=lambda o: o.endpoint),
    ),
    max_size=25,
)


def play(history):
    state, seconds, trace = StabilityState(), 0, []
    for gap, observations in history:
        seconds += gap
        now = T0 + timedelta(seconds=seconds)
        state, events = JUDGE.step(state, observations, now)
        trace.append((now, observations, events, state))
    return trace


@settings(max_examples=120, deadline=None)
@given(rounds_strategy)
def test_never_stable_while_a_reachable_member_lacks_a_leader(history):
    for _, observations, events, _ in play(history):
        if any(e.data.condition is EtcdCondition.STABLE for e in events):
            assert all(o.has_leader for o in observations if o.answered)


@settings(max_examples=120, deadline=None)
@given(rounds_strategy)
def test_stable_only_after_stable_after_seconds_without_a_change(history):
    last_unsettled = None
    for now, observations, events, _ in play(history):
        changed = any(e.data.condition is EtcdCondition.LEADER_CHANGED for e in events)
        reachable = [o for o in observations if o.answered]
        if changed or not reachable or not all(o.has_leader for o in reachable):
            last_unsettled = now
        for event in events:
            if event.data.condition is EtcdCondition.STABLE:
                assert event.data.stable_since is not None
                assert now - event.data.stable_since >= JUDGE.stable_after
                assert last_unsettled is None or event.data.stable_since > last_unsettled


@settings(max_examples=120, deadline=None)
@given(rounds_strategy)
def test_the_same_observations_twice_emit_nothing_new(history):
    for now, observations, _, state in play(history):
        _, events = JUDGE.step(state, observations, now)
        assert events == []


@settings(max_examples=80, deadline=None)
@given(rounds_strategy)
def test_first_round_never_claims_a_leader_change(history):
    for _, observations in history[:1]:
        _, events = JUDGE.step(StabilityState(), observations, T0)
        assert not any(e.data.condition is EtcdCondition.LEADER_CHANGED for e in events)


def test_events_are_stamped_with_the_round_time_not_the_clock():
    _, out = run([(0, cluster(A, 1)), (3, cluster(A, 2))])
    assert out[1][0].time == T0 + timedelta(seconds=3)
