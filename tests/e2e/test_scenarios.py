"""S1-S5 end to end: `medic watcher`, `medic remediator` and `medic notifier` as separate
processes on a real nats-server, the Kubernetes API sandbox with the controllers played, and a
real three-member etcd for S1. Each test asserts the final cluster state, the audit trail and
what Slack and the signed webhook received, and that every service shut down cleanly.

Tests taking the `running` fixture run twice: on the sandbox, and on the real control plane
(kube-apiserver 1.34 on etcd 3.6, the same controllers played as watch loops over the real API;
S1 on a three-member etcd under kube-apiserver, whose leader is killed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from medic.demo import play, scenarios
from medic.demo.cluster import EtcdDruid, HelmController
from medic.demo.stack import Controllers
from medic.schemas import EtcdCondition, EtcdEvent, Outcome
from medic.testing import e2e
from medic.testing.e2e import (
    assert_clean_exit,
    assert_told_people,
    assert_verdict,
    audit_for,
    concluded,
    settle,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
Running = Callable[..., AbstractAsyncContextManager[e2e.Rig]]


@pytest.fixture(params=["sandbox", pytest.param("real", marks=pytest.mark.realcluster)])
def running(request: pytest.FixtureRequest) -> Running:
    """`e2e.running` on the sandbox, or the same rig on the real control plane."""
    if request.param == "sandbox":
        return e2e.running

    def on_plane(
        directory: Path, chosen: Sequence[scenarios.Scenario], *, with_etcd: bool = False, **kw: Any
    ) -> AbstractAsyncContextManager[e2e.Rig]:
        plane = request.getfixturevalue("etcd3_control_plane" if with_etcd else "control_plane")
        return e2e.running_on_plane(directory, chosen, plane, with_etcd=with_etcd, **kw)

    return on_plane


@pytest.mark.etcd
async def test_s1_retry_waits_until_etcd_is_stable_after_its_leader_was_killed(
    tmp_path: Path, running: Running
) -> None:
    s1 = scenarios.s1()
    async with running(tmp_path, [s1], with_etcd=True) as rig:
        s1.stage(rig.stack.store)
        rig.observer.staged(s1)
        await play.kill_etcd_leader(rig.stack, rig.observer)
        await settle(rig, [s1])
        await assert_told_people(rig, s1, "succeeded")
        assert_verdict(rig, s1)
        written = [a for a in await audit_for(rig, s1) if a.data.outcome == "written"]
        assert len(written) == 1
        assert written[0].data.action == "retry"
        etcd = [e for e in await rig.messages("MEDIC_EVENTS") if isinstance(e, EtcdEvent)]
        changes = [e for e in etcd if e.data.condition is EtcdCondition.LEADER_CHANGED]
        assert changes, "the probe saw no leader change"
        stable = [
            e
            for e in etcd
            if e.data.condition is EtcdCondition.STABLE and e.time > changes[-1].time
        ]
        assert stable, "etcd was never reported stable after the leader change"
        since = stable[0].data.stable_since
        assert since is not None
        wait = timedelta(seconds=rig.stack.timings.etcd_stable_for)
        assert written[0].time >= since + wait, (written[0].time, since)
        assert written[0].time > changes[-1].time
    assert_clean_exit(rig)


async def test_s2_migrates_as_flux_migrate_does(tmp_path: Path) -> None:
    s2 = scenarios.s2_migrate()
    async with e2e.running(tmp_path, [s2]) as rig:
        play.stage(rig.stack, [s2], rig.observer)
        written = await concluded(rig, s2, "succeeded")
        assert [a.data.action for a in written] == ["migrate-api-version"]
    assert_clean_exit(rig)


async def test_s2_stale_status_gets_a_forced_reconcile(tmp_path: Path, running: Running) -> None:
    stale = scenarios.s2_stale()
    async with running(tmp_path, [stale]) as rig:
        play.stage(rig.stack, [stale], rig.observer)
        written = await concluded(rig, stale, "succeeded")
        assert [a.data.action for a in written] == ["force-reconcile"]
    assert_clean_exit(rig)


async def test_s2_drift_loop_is_reported_with_the_drifting_fields_not_retried(
    tmp_path: Path,
) -> None:
    drift = scenarios.s2_drift()
    async with e2e.running(tmp_path, [drift]) as rig:
        play.stage(rig.stack, [drift], rig.observer)
        await concluded(rig, drift, "escalated")
        assert not await audit_for(rig, drift)
        (escalated,) = [r for r in await rig.results() if r.data.rule == scenarios.S2_DRIFT]
        (drifting,) = escalated.data.diagnosis["drifting"]
        assert drifting["paths"] == ["/spec/replicas"]
        assert drifting["writers"] == ["kube-controller-manager"]
        ignore = escalated.data.diagnosis["suggestedPatch"]["spec"]["driftDetection"]["ignore"]
        assert ignore == [
            {"paths": ["/spec/replicas"], "target": {"kind": "Deployment", "name": "api"}}
        ]
        assert any("/spec/replicas" in p.text for p in rig.slack.posted)
    assert_clean_exit(rig)


async def test_s3_backs_up_then_marks_the_stuck_revision_failed(tmp_path: Path) -> None:
    s3 = scenarios.s3()
    async with e2e.running(tmp_path, [s3]) as rig:
        play.stage(rig.stack, [s3], rig.observer)
        (entry,) = await concluded(rig, s3, "succeeded")
        assert entry.data.backup_id, "no backup before the Helm storage write"
        assert entry.data.before is not None
        assert entry.data.after is not None
    assert_clean_exit(rig)


async def test_s3_with_rbac_still_broken_escalates_and_touches_nothing(tmp_path: Path) -> None:
    broken = scenarios.s3(rbac_fixed=False)
    async with e2e.running(tmp_path, [broken]) as rig:
        play.stage(rig.stack, [broken], rig.observer)
        assert not await concluded(rig, broken, "escalated")
        (escalated,) = [r for r in await rig.results() if r.data.outcome.value == "escalated"]
        assert escalated.data.diagnosis["allowed"]["update"] is False
    assert_clean_exit(rig)


async def test_s4_waits_out_the_grace_period_and_forces_only_the_stuck_bundle(
    tmp_path: Path,
    running: Running,
) -> None:
    stuck = scenarios.s4()
    heals = scenarios.s4(name="catalog", heals=True)
    async with running(tmp_path, [stuck, heals]) as rig:
        play.stage(rig.stack, [stuck, heals], rig.observer)
        await play.disturb(rig.stack, [stuck, heals], rig.observer)
        await settle(rig, [stuck, heals])
        await assert_told_people(rig, stuck, "succeeded")
        assert_verdict(rig, stuck)
        assert_verdict(rig, heals)
        story = rig.observer.stories[stuck.key]
        first_write = story.first(story.audits)
        assert story.staged_at is not None
        assert first_write is not None
        assert first_write - story.staged_at >= rig.stack.timings.fleet_grace
        assert not await audit_for(rig, heals)
        assert not [p for p in rig.slack.posted if "catalog" in p.text]
        assert not [r for r in rig.webhook.requests if b"catalog" in r.body]
    assert_clean_exit(rig)


async def test_s5_reapplies_the_operation_annotation(tmp_path: Path, running: Running) -> None:
    s5 = scenarios.s5()
    async with running(tmp_path, [s5]) as rig:
        play.stage(rig.stack, [s5], rig.observer)
        assert len(await concluded(rig, s5, "succeeded")) == 1
    assert_clean_exit(rig)


async def test_s5_escalates_when_druid_never_answers_the_retry(tmp_path: Path) -> None:
    s5 = scenarios.s5()
    stuck = scenarios.Scenario(
        key="S5-stuck",
        title="etcd-druid does not clear the annotation",
        target=s5.target,
        objects=s5.objects,
        expect=((scenarios.S5_REAPPLY, Outcome.ESCALATED),),
        verify=lambda _store: None,
    )
    controllers = Controllers(druid=EtcdDruid(healthy=False), helm=HelmController())
    async with e2e.running(tmp_path, [stuck], controllers=controllers) as rig:
        play.stage(rig.stack, [stuck], rig.observer)
        await concluded(rig, stuck, "escalated")
        assert s5.check(rig.stack.store) == (
            "operation annotation still there: gardener.cloud/operation"
        )
    assert_clean_exit(rig)


async def test_healthy_objects_get_no_action_and_no_message(tmp_path: Path) -> None:
    healthy = scenarios.healthy()
    async with e2e.running(tmp_path, [healthy]) as rig:
        play.stage(rig.stack, [healthy], rig.observer)
        await settle(rig, [healthy])
        assert_verdict(rig, healthy)
        assert not await rig.results()
        assert not await rig.audit()
        assert not rig.slack.requests
        assert not rig.webhook.requests
    assert_clean_exit(rig)


async def test_dry_run_plans_every_fix_and_leaves_the_cluster_untouched(tmp_path: Path) -> None:
    chosen = [scenarios.s2(), scenarios.s3(), scenarios.s5()]
    planned = [scenarios.as_dry_run(s) for s in chosen]
    async with e2e.running(tmp_path, planned, dry_run=True) as rig:
        play.stage(rig.stack, planned, rig.observer)
        await settle(rig, planned)
        for scenario in planned:
            assert_verdict(rig, scenario)
        assert {a.data.outcome for a in await rig.audit()} <= {"dry-run"}
        await assert_told_people(rig, planned[1], "planned")
    assert_clean_exit(rig)
