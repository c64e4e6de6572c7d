"""A remediator killed between its write and its report: the next owner reports, never rewrites.

`medic remediator` runs as a process; it is SIGKILLed after the fix was written (audit entry
seen) while it waits for verification. The event comes back (ack_wait) to a new process with
the same identity, which finds the decision's claim marked applied: one write, one `applied`
result that says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from medic.remediator.service import RESUMED
from medic.runtime.bus import Bus
from medic.runtime.embedded_nats import EmbeddedNats
from medic.sandbox import KubeSandbox
from medic.schemas import AuditEntry, Outcome, RemediationResult
from medic.testing import objects
from medic.testing.factories import release_event
from medic.testing.notifier import stream_messages
from medic.testing.processes import ServiceProcess
from medic.testing.waiting import eventually

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

RULE = """
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: slow-to-verify}
spec:
  match: {problems: [failed], kinds: [HelmRelease]}
  action: {name: retry}
  verify: {timeout: 10m, interval: 1s}
"""


async def test_killed_after_the_write_the_fix_is_reported_not_written_again(
    nats_server: EmbeddedNats, bus: Bus, tmp_path: Path
) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rule.yaml").write_text(RULE)
    async with KubeSandbox.start() as sandbox:
        sandbox.store.put(
            objects.helmrelease("podinfo", status=objects.etcd_failed_status("podinfo", "apps"))
        )
        env = {
            "MEDIC_NATS__URLS": nats_server.url,
            "MEDIC_KUBE__KUBECONFIG": str(sandbox.kubeconfig_path),
            "MEDIC_CLUSTER": "test",
            "MEDIC_HEALTH__PORT": "0",
            "MEDIC_REMEDIATOR_RULES": str(tmp_path / "rules"),
            "MEDIC_REMEDIATOR_BUILTIN_RULES": "false",
            "MEDIC_REMEDIATOR_ACTOR": "remediator-0",
            "MEDIC_REMEDIATOR_ACK_WAIT": "2",
        }
        first = ServiceProcess("remediator", env, tmp_path / "first.log")
        first.start()
        try:
            await bus.publish(release_event("podinfo"))

            async def written() -> list[AuditEntry]:
                audit = await stream_messages(bus, "MEDIC_AUDIT")
                return [a for a in audit if isinstance(a, AuditEntry)]

            await eventually(written, timeout=30.0)
            first.kill()  # SIGKILL while it waits for verification
            second = ServiceProcess("remediator", env, tmp_path / "second.log")
            second.start()
            try:

                async def reported() -> list[RemediationResult]:
                    found = await stream_messages(bus, "MEDIC_RESULTS")
                    return [r for r in found if isinstance(r, RemediationResult)]

                results = await eventually(reported, timeout=30.0)
            finally:
                assert await second.stop() == 0, second.logs()[-3000:]
        finally:
            first.kill()
        assert [(r.data.outcome, r.data.reason) for r in results] == [(Outcome.APPLIED, RESUMED)]
        assert len(await written()) == 1
        patches = [
            r for r in sandbox.store.requests if r.verb == "patch" and r.resource == "helmreleases"
        ]
        assert len(patches) == 1
