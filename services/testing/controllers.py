"""Controllers a test plays over Medic's own `KubeClient`: one watch loop, level-triggered.

A real controller reconciles the state it finds, so an object changed before its watch began
is handled as well as one changed during it: `follow` hands over ADDED as well as MODIFIED,
and resumes the watch from the last resourceVersion when the server ends it. `running` keeps
a played controller going for the length of a `with` block and stops it (and its watch's
connection) at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from medic.runtime.kube import KubeClient, KubeError, ResourceType

Obj = dict[str, Any]
React = Callable[[Obj], Awaitable[None]]
WATCH_SECONDS = 30


async def follow(
    kube: KubeClient, rt: ResourceType, namespace: str, react: React, version: str = ""
) -> None:
    """Hand every object of `rt` in `namespace` that is added or changed to `react`, forever;
    from `version` ("" starts with what is there now)."""
    while True:
        # aclosing: a cancelled controller closes its watch (and the connection) at once
        with contextlib.suppress(KubeError):
            async with contextlib.aclosing(
                kube.watch(
                    rt, namespace, version, allow_bookmarks=False, timeout_seconds=WATCH_SECONDS
                )
            ) as stream:
                async for kind, obj in stream:
                    version = obj["metadata"].get("resourceVersion", version)
                    if kind in {"ADDED", "MODIFIED"}:
                        await react(obj)


@contextlib.asynccontextmanager
async def running(controller: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run `controller` while the block runs; cancel it and wait for it afterwards."""
    task = asyncio.create_task(controller)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
