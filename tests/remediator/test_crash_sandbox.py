"""A remediator killed between its write and its verification: the next owner verifies, never
rewrites (issue 16, item 15).

`medic remediator` runs as a process; it is SIGKILLed after the fix was written (audit entry
seen) while it waits for verification. The event comes back (ack_wait) to a new process with
the same identity, which finds the decision's claim marked applied, with what to check and
until when: it runs the action's check (no second write) and reports `succeeded` when the
object was fixed meanwhile, or `failed` at the first owner's deadline when it never was.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from medic.demo.cluster import HelmController
from medic.runtime.bus import Bus
from medic.runtime.embedded_nats import EmbeddedNats
from medic.sandbox import KubeSandbox
from medic.schemas import AuditEntry, Outcome, RemediationResult
from medic.testing import objects
from medic.testing.factories import release_event
from medic.testing.notifier import stream_messages
from medic.testing.processes import ServiceProcess
from medic.testing.waiting import eventually
from medic.upstream import flux

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

RULE = """
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: slow-to-verify}
spec:
  match: {problems: [failed], kinds: [HelmRelease]}
  action: {name: retry}
  limits: {maxAttempts: 1}
  verify: {timeout: %s, interval: 1s}
"""


def env_for(nats_server: EmbeddedNats, sandbox: KubeSandbox, rules: Path) -> dict[str, str]:
    return {
        "MEDIC_NATS__URLS": nats_server.url,
        "MEDIC_KUBE__KUBECONFIG": str(sandbox.kubeconfig_path),
        "MEDIC_CLUSTER": "test",
        "MEDIC_HEALTH__PORT": "0",
        "MEDIC_REMEDIATOR_RULES": str(rules),
        "MEDIC_REMEDIATOR_BUILTIN_RULES": "false",
        "MEDIC_REMEDIATOR_ACTOR": "remediator-0",
        "MEDIC_REMEDIATOR_ACK_WAIT": "2",
    }


async def written(bus: Bus) -> list[AuditEntry]:
    audit = await stream_messages(bus, "MEDIC_AUDIT")
    return [a for a in audit if isinstance(a, AuditEntry)]


async def reported(bus: Bus) -> list[RemediationResult]:
    found = await stream_messages(bus, "MEDIC_RESULTS")
    return [r for r in found if isinstance(r, RemediationResult)]


def patches(sandbox: KubeSandbox) -> int:
    return len(
        [r for r in sandbox.store.requests if r.verb == "patch" and r.resource == "helmreleases"]
    )


async def kill_after_the_write(
    nats_server: EmbeddedNats, bus: Bus, sandbox: KubeSandbox, tmp_path: Path, timeout: str
) -> dict[str, str]:
    """Start a remediator, publish the failure, SIGKILL it once the fix is written."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rule.yaml").write_text(RULE % timeout)
    sandbox.store.put(
        objects.helmrelease("podinfo", status=objects.etcd_failed_status("podinfo", "apps"))
    )
    env = env_for(nats_server, sandbox, tmp_path / "rules")
    first = ServiceProcess("remediator", env, tmp_path / "first.log")
    first.start()
    try:
        await bus.publish(release_event("podinfo"))
        await eventually(lambda: written(bus), timeout=30.0)
    finally:
        first.kill()  # SIGKILL while it waits for verification
    assert await reported(bus) == []
    return env


async def test_killed_before_verifying_the_next_owner_verifies_the_fix_and_reports_succeeded(
    nats_server: EmbeddedNats, bus: Bus, tmp_path: Path
) -> None:
    async with KubeSandbox.start() as sandbox:
        env = await kill_after_the_write(nats_server, bus, sandbox, tmp_path, "10m")
        # helm-controller gets round to the request only now, with no remediator running.
        HelmController().install(sandbox.store)
        sandbox.store.patch_merge(
            flux.api_version("v2"),
            flux.KIND,
            "podinfo",
            "apps",
            {"metadata": {"labels": {"touched": "yes"}}},
        )
        second = ServiceProcess("remediator", env, tmp_path / "second.log")
        second.start()
        try:
            results = await eventually(lambda: reported(bus), timeout=30.0)
        finally:
            assert await second.stop() == 0, second.logs()[-3000:]
        assert [(r.data.outcome, r.data.reason) for r in results] == [(Outcome.SUCCEEDED, "")]
        assert len(await written(bus)) == 1
        assert patches(sandbox) == 1


async def test_killed_before_verifying_the_next_owner_reports_failed_at_the_same_deadline(
    nats_server: EmbeddedNats, bus: Bus, tmp_path: Path
) -> None:
    async with KubeSandbox.start() as sandbox:
        env = await kill_after_the_write(nats_server, bus, sandbox, tmp_path, "12s")
        killed = time.monotonic()
        second = ServiceProcess("remediator", env, tmp_path / "second.log")
        second.start()
        try:
            results = await eventually(lambda: reported(bus), timeout=40.0)
            took = time.monotonic() - killed
        finally:
            assert await second.stop() == 0, second.logs()[-3000:]
        first = results[0]
        assert (first.data.outcome, first.data.reason) == (Outcome.FAILED, "not verified in time")
        # The first owner's deadline (12 s after its write), not 12 s after the takeover.
        assert 8.0 < took < 14.0, took
        assert len(await written(bus)) == 1
        assert patches(sandbox) == 1
