"""A stopping remediator does not sit out a long verification: it reports `applied` and exits.

SIGTERM gives a pod about 30 s; a rule may verify for minutes. Holding the shutdown would end
in SIGKILL with no result published and the decision's lease left to expire, after which
another replica would apply the fix a second time.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from medic.remediator.runner import INTERRUPTED
from medic.remediator.service import create
from medic.remediator.settings import RemediatorSettings
from medic.runtime.bus import Bus
from medic.runtime.kube import KubeClient
from medic.runtime.settings import KubeSettings
from medic.sandbox import KubeSandbox
from medic.schemas import AuditEntry, Outcome, RemediationResult
from medic.testing import objects
from medic.testing.factories import release_event
from medic.testing.notifier import stream_messages
from medic.testing.waiting import eventually

RULE = """
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: slow-to-verify}
spec:
  match: {problems: [failed], kinds: [HelmRelease]}
  action: {name: retry}
  verify: {timeout: 10m, interval: 1s}
"""


async def test_stop_during_verification_publishes_applied_and_returns_promptly(
    bus: Bus, tmp_path: Path
) -> None:
    (tmp_path / "rule.yaml").write_text(RULE)
    settings = RemediatorSettings(actor="test", builtin_rules=False, rules=[tmp_path])
    async with KubeSandbox.start() as sandbox:
        sandbox.store.put(
            objects.helmrelease("podinfo", status=objects.etcd_failed_status("podinfo", "apps"))
        )
        kube = await KubeClient.connect(KubeSettings(kubeconfig=sandbox.kubeconfig_path))
        service = await create(bus, kube, settings, "test")
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        await bus.publish(release_event("podinfo"))

        async def written() -> bool:
            audit = await stream_messages(bus, "MEDIC_AUDIT")
            return any(isinstance(a, AuditEntry) and a.data.outcome == "written" for a in audit)

        await eventually(written, timeout=15.0)
        stopped = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, timeout=10.0)
        assert time.monotonic() - stopped < 5.0
        results = [
            r
            for r in await stream_messages(bus, "MEDIC_RESULTS")
            if isinstance(r, RemediationResult)
        ]
        assert [(r.data.outcome, r.data.reason) for r in results] == [
            (Outcome.APPLIED, INTERRUPTED)
        ]
