"""The verification watches (medic.remediator.verification.ObjectChanges) on the API sandbox:
one watch per resource type and namespace however many wait, a change wakes the waiter of that
object only, and stopping ends every watch (a watch left behind kept `medic remediator` from
exiting after a kill -9 and restart)."""

from __future__ import annotations

import asyncio
import contextlib

from medic.remediator.actions.base import KNOWN_PLURALS
from medic.remediator.verification import ObjectChanges
from medic.runtime.kube import KubeClient, ResourceType
from medic.sandbox import KubeSandbox

CONFIGMAPS = ResourceType("", "v1", KNOWN_PLURALS["ConfigMap"], "ConfigMap")


def configmap(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}}


async def test_one_watch_serves_every_waiter_and_wakes_only_the_changed_object(
    kube: tuple[KubeSandbox, KubeClient],
) -> None:
    sandbox, client = kube
    for i in range(10):
        sandbox.store.put(configmap(f"cm-{i}"))
    changes = ObjectChanges(client)
    stop = asyncio.Event()
    runner = asyncio.create_task(changes.run(stop))
    await asyncio.sleep(0)
    async with contextlib.AsyncExitStack() as stack:
        subscriptions = await asyncio.gather(
            *(
                stack.enter_async_context(changes.subscribe(CONFIGMAPS, "ns", f"cm-{i}"))
                for i in range(10)
            )
        )
        assert len(changes._watches) == 1
        await asyncio.sleep(0.3)  # the watch is established
        for subscription in subscriptions:
            subscription.changed.clear()
        sandbox.store.patch_merge("v1", "ConfigMap", "cm-3", "ns", {"data": {"k": "v"}})
        await asyncio.wait_for(subscriptions[3].changed.wait(), 5.0)
        assert [s.changed.is_set() for s in subscriptions].count(True) == 1
        assert subscriptions[3].live
    assert changes._watches == {}
    stop.set()
    await asyncio.wait_for(runner, 5.0)


async def test_a_write_sent_after_the_shared_watch_started_needs_no_read_one_sent_before_does(
    kube: tuple[KubeSandbox, KubeClient],
) -> None:
    """A verification joining a watch another one started: the watch delivers every change
    after the version it started from, so a write sent after it started (and all that follows)
    reaches its waiter without a read (issue 15: a GET per fix in a burst); a write sent before
    may lie between that version and the join, so its waiter must read once."""
    sandbox, client = kube
    for name in ("first", "early", "late"):
        sandbox.store.put(configmap(name))
    changes = ObjectChanges(client)
    stop = asyncio.Event()
    runner = asyncio.create_task(changes.run(stop))
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()

    def write(name: str) -> tuple[float, str]:
        sent = loop.time()
        written = sandbox.store.patch_merge("v1", "ConfigMap", name, "ns", {"data": {"k": "v"}})
        return sent, str(written["metadata"]["resourceVersion"])

    early_sent, early_version = write("early")
    first_sent, first_version = write("first")
    async with changes.subscribe(CONFIGMAPS, "ns", "first", first_version, first_sent):
        late_sent, late_version = write("late")
        async with (
            changes.subscribe(CONFIGMAPS, "ns", "late", late_version, late_sent) as late,
            changes.subscribe(CONFIGMAPS, "ns", "early", early_version, early_sent) as early,
        ):
            assert len(changes._watches) == 1
            assert not late.joined_blind
            assert early.joined_blind
            await asyncio.wait_for(late.changed.wait(), 5.0)
            assert late.take_seen()["metadata"]["resourceVersion"] == late_version
    stop.set()
    await asyncio.wait_for(runner, 5.0)
