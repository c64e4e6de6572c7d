"""The cluster's story over time: stage the scenarios, disturb etcd, let Fleet heal, wait.

Shared by `medic demo` (services in this process) and the end-to-end tests (services as separate
processes): only how the services run differs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Protocol

from medic.demo.cluster import FleetAgent
from medic.demo.observer import Observer
from medic.demo.scenarios import Scenario
from medic.demo.world import World
from medic.testing.etcd import EtcdCluster


class Cluster(Protocol):
    """What the story is played on: the demo's `Stack` (sandbox) or a real control plane."""

    @property
    def store(self) -> World: ...
    @property
    def etcd(self) -> EtcdCluster | None: ...
    @property
    def etcd_missing(self) -> str | None: ...


def playable(
    stack: Cluster, scenarios: Sequence[Scenario]
) -> tuple[list[Scenario], dict[str, str]]:
    """The scenarios this stack can play, and why the others cannot."""
    skipped = {
        s.key: stack.etcd_missing or "no etcd"
        for s in scenarios
        if s.needs_etcd and stack.etcd is None
    }
    return [s for s in scenarios if s.key not in skipped], skipped


def stage(stack: Cluster, scenarios: Sequence[Scenario], observer: Observer) -> None:
    for scenario in scenarios:
        began = observer.now()
        scenario.stage(stack.store)
        observer.staged(scenario, began)


async def disturb(stack: Cluster, scenarios: Sequence[Scenario], observer: Observer) -> None:
    """What happens in the cluster after staging: an etcd leader dies, Fleet heals in time."""
    async with asyncio.TaskGroup() as tg:
        if stack.etcd is not None and any(s.needs_etcd for s in scenarios):
            tg.create_task(kill_etcd_leader(stack, observer))
        for scenario in scenarios:
            if scenario.heals_after is not None:
                tg.create_task(heal(stack, scenario, scenario.heals_after, observer))


async def kill_etcd_leader(stack: Cluster, observer: Observer, down_for: float = 1.5) -> float:
    """SIGKILL the leader while releases fail; restart it; return when the kill happened."""
    assert stack.etcd is not None
    leader = await stack.etcd.wait_leader()
    stack.etcd.kill(leader)
    killed_at = observer.now()
    observer.note("cluster", "", f"etcd leader {leader.name} killed (SIGKILL)")
    await asyncio.sleep(down_for)  # the member stays down for a while, as after a node crash
    await stack.etcd.restart(leader)
    observer.note("cluster", "", f"etcd member {leader.name} restarted")
    return killed_at


async def heal(stack: Cluster, scenario: Scenario, after: float, observer: Observer) -> None:
    await asyncio.sleep(after)  # the agent's next reconcile comes when it comes
    target = scenario.target
    FleetAgent.redeploy(stack.store, target.name, target.namespace)
    observer.note("cluster", scenario.key, "Fleet agent re-created the values Secret by itself")


def settled(observer: Observer, scenario: Scenario, quiet_window: float) -> bool:
    story = observer.stories[scenario.key]
    if scenario.quiet:
        return story.staged_at is not None and observer.now() - story.staged_at >= quiet_window
    return all(story.final(rule) is not None and story.told(rule) for rule, _ in scenario.expect)


async def wait_settled(
    observer: Observer, scenarios: Sequence[Scenario], quiet_window: float, timeout: float
) -> bool:
    """Until every scenario reached a final outcome (or stayed quiet long enough), or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(settled(observer, s, quiet_window) for s in scenarios):
            return True
        await asyncio.sleep(0.1)
    return False
