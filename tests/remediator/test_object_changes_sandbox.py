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
