"""`medic watcher` stops on SIGTERM even while NATS is down and it has events to publish.

Its publish retries wait for the bus; a stop must end that wait at once (the events are not
lost: the next start lists the same objects and publishes the same ids), or the pod is killed
at the end of its grace period.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from medic.runtime.embedded_nats import EmbeddedNats, free_port
from medic.sandbox import KubeSandbox
from medic.testing import objects
from medic.testing.e2e import wait_ready
from medic.testing.processes import ServiceProcess
from medic.testing.waiting import eventually

pytestmark = pytest.mark.timeout(90)


async def test_sigterm_while_nats_is_down_exits_promptly_and_cleanly(tmp_path: Path) -> None:
    server = EmbeddedNats(data_dir=tmp_path / "nats")
    await server.start()
    async with KubeSandbox.start() as sandbox:
        port = free_port()
        env = {
            "MEDIC_NATS__URLS": server.url,
            "MEDIC_NATS__RECONNECT_WAIT": "0.2",
            "MEDIC_KUBE__KUBECONFIG": str(sandbox.kubeconfig_path),
            "MEDIC_WATCHER_SOURCES": "helmrelease",
            "MEDIC_HEALTH__PORT": str(port),
        }
        watcher = ServiceProcess("watcher", env, tmp_path / "watcher.log")
        watcher.start()
        try:
            await wait_ready(port, watcher)
            server.kill()
            for i in range(5):  # problems it cannot publish now
                name = f"app-{i}"
                sandbox.store.put(
                    objects.helmrelease(name, status=objects.etcd_failed_status(name, "apps"))
                )

            async def stuck_publishing() -> bool:
                return "publish_failed_retrying" in watcher.logs()

            await eventually(stuck_publishing, timeout=30.0)
            started = time.monotonic()
            code = await watcher.stop(timeout=15.0)
            took = time.monotonic() - started
        finally:
            watcher.kill()
    assert code == 0, watcher.logs()[-3000:]
    assert took < 8.0, took
    assert "Traceback" not in watcher.logs()
