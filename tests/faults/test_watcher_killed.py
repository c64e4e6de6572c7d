"""`medic watcher` SIGKILLed at random points while it publishes 2,000 problems, then restarted:
every problem is on the bus exactly once (nothing lost, nothing stored twice).

A restarted watcher lists everything again and re-publishes what it finds; the event ids are
derived from the object and its evidence, so JetStream's dedup (Nats-Msg-Id) stores each once.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from medic.runtime.bus import Bus
from medic.runtime.embedded_nats import EmbeddedNats, free_port
from medic.sandbox import KubeSandbox
from medic.schemas import ReleaseEvent
from medic.testing import objects
from medic.testing.e2e import wait_ready
from medic.testing.notifier import stream_messages
from medic.testing.processes import ServiceProcess
from medic.testing.waiting import eventually

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]
N = 2000


async def stored_events(bus: Bus) -> int:
    info = await bus.js.stream_info("MEDIC_EVENTS")
    return int(info.state.messages)


async def test_watcher_killed_mid_run_publishes_every_problem_exactly_once(
    nats_server: EmbeddedNats, bus: Bus, tmp_path: Path
) -> None:
    rng = random.Random(7)
    async with KubeSandbox.start(history=4 * N) as sandbox:
        for i in range(N):
            name, namespace = f"app-{i:05d}", f"ns-{i % 7}"
            sandbox.store.put(
                objects.helmrelease(
                    name, namespace, status=objects.etcd_failed_status(name, namespace)
                )
            )
        env = {
            "MEDIC_NATS__URLS": nats_server.url,
            "MEDIC_KUBE__KUBECONFIG": str(sandbox.kubeconfig_path),
            "MEDIC_KUBE__QPS": "1000",
            "MEDIC_KUBE__BURST": "1000",
            "MEDIC_CLUSTER": "faults",
            "MEDIC_WATCHER_SOURCES": "helmrelease",
            "MEDIC_LOG_LEVEL": "warning",
        }
        expected = 2 * N  # failed + stalled per release
        kills = 0
        for round_ in range(3):
            port = free_port()
            watcher = ServiceProcess(
                "watcher", {**env, "MEDIC_HEALTH__PORT": str(port)}, tmp_path / f"w{round_}.log"
            )
            watcher.start()
            try:
                if round_ == 2:  # the last one runs to the end
                    await wait_ready(port, watcher)

                    async def all_stored() -> bool:
                        return await stored_events(bus) >= expected

                    await eventually(all_stored, timeout=90.0, interval=0.2)
                    break
                # Kill somewhere in the middle of publishing: after a random share is stored.
                at_least = rng.randint(expected // 10, expected * 6 // 10)

                async def some_stored(at_least: int = at_least) -> bool:
                    return await stored_events(bus) >= at_least

                await eventually(some_stored, timeout=90.0, interval=0.005)
                watcher.kill()
                kills += 1
            finally:
                if watcher.running:
                    assert await watcher.stop() == 0
        assert kills == 2
        events = [
            e for e in await stream_messages(bus, "MEDIC_EVENTS") if isinstance(e, ReleaseEvent)
        ]
    ids = Counter(e.id for e in events)
    assert len(events) == expected, len(events)
    assert all(count == 1 for count in ids.values())
    per_release = Counter((e.data.object.name, e.data.problem.value) for e in events)
    assert len(per_release) == expected
