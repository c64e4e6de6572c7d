"""Benchmark 2r: detection -> action latency on the real API server (issue 12 item 6).

As benchmark 2 (bench/latency.py), on a real etcd 3.6 + kube-apiserver 1.34 (bench.realcluster):
`medic watcher` (helmrelease source) and `medic remediator` (one rule: `retry` on a transient etcd
failure) as their own processes on a real nats-server; N ready HelmReleases are patched, at a
steady pace, through the status subresource to failed-on-`etcdserver: leader changed`;
latency = the remediator's PATCH of that HelmRelease arriving at the API server (the audit log's
requestReceivedTimestamp) minus the moment that status write was sent.

helm-controller is played in this process on a plain watch: a new `requestedAt` is answered with
a Ready status that handled it, so each retry verifies at once. The same watch notes when the
remediator's annotations were seen (`extra.watch_seen_*`: arrival plus one watch delivery).

Baseline, measured first on the same objects, pace and server: the same status write to its
event on a plain watch (aiohttp, this process); then every object is made Ready again before
Medic starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from bench.common import Row, nats_bus, not_measured, percentile, workdir
from bench.latency_adapter import PACE, RULE

NAME_P50 = "2r detection->action p50, real API server (ms)"
NAME_P99 = "2r detection->action p99, real API server (ms)"
NAMESPACES = 10


def _name(i: int) -> tuple[str, str]:
    return f"app-{i:05d}", f"lat-{i % NAMESPACES}"


async def _paced(count: int, write: Callable[[int], Awaitable[None]]) -> dict[str, float]:
    """Await write(i) `count` times at PACE per second; return name -> wall time it was sent."""
    written: dict[str, float] = {}
    start = time.perf_counter()
    for i in range(count):
        written[_name(i)[0]] = time.time()
        await write(i)
        delay = start + (i + 1) / PACE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    return written


async def _watch(
    session: Any, resource_version: str, on_event: Callable[[dict[str, Any]], None]
) -> None:
    """A plain watch of every HelmRelease from `resource_version`; on_event(object) per event."""
    from bench.realcluster import ALL_HELMRELEASES

    query = {"watch": "1", "resourceVersion": resource_version}
    endless = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with session.get(ALL_HELMRELEASES, params=query, timeout=endless) as stream:
        async for line in stream.content:
            if line.strip():
                on_event(json.loads(line)["object"])


async def _list_version(session: Any) -> str:
    from bench.realcluster import ALL_HELMRELEASES

    async with session.get(ALL_HELMRELEASES, params={"limit": "1"}) as reply:
        return str((await reply.json())["metadata"]["resourceVersion"])


async def stage(session: Any, problems: int) -> None:
    from bench import realcluster

    await realcluster.stage_ready(session, (_name(i) for i in range(problems)))


def _fail(session: Any) -> Callable[[int], Awaitable[None]]:
    from bench.realcluster import patch_status

    from medic.testing import objects

    async def write(i: int) -> None:
        await patch_status(session, _name(i)[1], _name(i)[0], objects.etcd_failed_status(*_name(i)))

    return write


async def baseline(session: Any, problems: int) -> list[float]:
    """Status write -> its event on a plain watch, per object (ms); then all Ready again."""
    from bench import realcluster
    from medic.testing import objects

    seen: dict[str, float] = {}
    names = {_name(i)[0] for i in range(problems)}
    all_seen = asyncio.Event()

    def on_event(obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if name in names:
            seen.setdefault(name, time.time())
            if len(seen) >= problems:
                all_seen.set()

    async with asyncio.TaskGroup() as group:
        watching = group.create_task(_watch(session, await _list_version(session), on_event))
        written = await _paced(problems, _fail(session))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_seen.wait(), 30.0)
        watching.cancel()
    await realcluster.bounded(
        realcluster.patch_status(session, ns, name, objects.ready_status(name, ns))
        for name, ns in (_name(i) for i in range(problems))
    )
    return [(seen[name] - at) * 1000 for name, at in written.items() if name in seen]


class PlayedHelmController:
    """helm-controller's answer to a reconcile request: Ready, having handled the token."""

    def __init__(self, session: Any, delay: float = 0.0) -> None:
        self.session = session
        self.delay = delay  # a reconcile that takes this long (0: answer at once)
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.seen: dict[str, float] = {}  # name -> when the remediator's annotations were seen

    def on_event(self, obj: dict[str, Any]) -> None:
        from medic.upstream import flux

        token = (obj["metadata"].get("annotations") or {}).get(flux.REQUESTED_AT)
        handled = (obj.get("status") or {}).get("lastHandledReconcileAt")
        if token and token != handled:
            self.seen.setdefault(obj["metadata"]["name"], time.time())
            self.queue.put_nowait(obj)

    async def answer(self) -> None:
        from bench.realcluster import patch_status

        from medic.testing import objects
        from medic.upstream import flux

        while True:
            obj = await self.queue.get()
            if self.delay:
                await asyncio.sleep(self.delay)
            meta = obj["metadata"]
            annotations = meta.get("annotations") or {}
            status = objects.ready_status(meta["name"], meta["namespace"])
            status["lastHandledReconcileAt"] = annotations[flux.REQUESTED_AT]
            if flux.RESET_AT in annotations:
                status["lastHandledResetAt"] = annotations[flux.RESET_AT]
            await patch_status(self.session, meta["namespace"], meta["name"], status)


def _patches(entries: list[Any], names: set[str], since: float) -> dict[str, float]:
    """name -> when the API server received the remediator's first PATCH of it."""
    from medic.runtime.kube import USER_AGENT

    first: dict[str, float] = {}
    for entry in entries:
        if (
            entry.verb == "patch"
            and entry.resource == "helmreleases"
            and not entry.subresource
            and entry.user_agent == USER_AGENT
            and entry.name in names
            and entry.received >= since
        ):
            first[entry.name] = min(first.get(entry.name, entry.received), entry.received)
    return first


async def measure_medic(
    base: Path, real: Any, session: Any, problems: int, reconcile_delay: float
) -> dict[str, Any]:
    from bench.latency_adapter import start_services

    from medic.runtime.embedded_nats import free_port

    names = {_name(i)[0] for i in range(problems)}
    controller = PlayedHelmController(session, reconcile_delay)
    async with nats_bus(base) as (server, bus):
        processes = await start_services(base, server.url, real.plane.kubeconfig, free_port)
        try:
            async with asyncio.TaskGroup() as group:
                version = await _list_version(session)
                watching = group.create_task(_watch(session, version, controller.on_event))
                answering = [group.create_task(controller.answer()) for _ in range(64)]
                since = time.time()
                written = await _paced(problems, _fail(session))
                await real.audit.wait_for(
                    lambda entries: len(_patches(entries, names, since)) >= problems,
                    timeout=120.0,
                    alive=lambda: all(p.running for p in processes),
                )
                for task in (watching, *answering):
                    task.cancel()
        finally:
            for process in processes:
                await process.stop()
        detected = await _detected(bus, names)
    acted = _patches(list(real.audit.entries.values()), names, since)
    return {"written": written, "acted": acted, "seen": controller.seen, "detected": detected}


async def _detected(bus: Any, names: set[str]) -> dict[str, float]:
    """name -> when the watcher made its first `failed` event about it (the event's time)."""
    from medic.schemas import ReleaseEvent
    from medic.testing.notifier import stream_messages

    first: dict[str, float] = {}
    for message in await stream_messages(bus, "MEDIC_EVENTS"):
        if (
            isinstance(message, ReleaseEvent)
            and message.data.object.name in names
            and message.data.problem.value == "failed"
        ):
            at, name = message.time.timestamp(), message.data.object.name
            first[name] = min(first.get(name, at), at)
    return first


async def run(problems: int = 1_000, reconcile_delay: float = 0.0, real: Any = None) -> list[Row]:
    """`real`: an AuditedPlane to reuse (the smoke test's); by default a fresh one.
    `reconcile_delay`: the played helm-controller answers a reconcile request this much later."""
    from bench import realcluster

    why = realcluster.unavailable()
    if why is not None:
        return [
            not_measured(NAME_P50, why, "(reported)"),
            not_measured(NAME_P99, why, "p99 < 100 ms"),
        ]
    with workdir("latency-real") as base:
        (base / "rules").mkdir()
        (base / "rules" / "bench.yaml").write_text(RULE)
        if real is not None:
            return await _measure(base, real, problems, reconcile_delay)
        with realcluster.audited_plane(base / "real") as fresh:
            return await _measure(base, fresh, problems, reconcile_delay)


async def _measure(base: Path, real: Any, problems: int, reconcile_delay: float) -> list[Row]:
    from bench import realcluster

    async with realcluster.admin_session(real.plane) as session:
        await stage(session, problems)
        base_ms = await baseline(session, problems)
        found = await measure_medic(base, real, session, problems, reconcile_delay)
    written, acted, seen = found["written"], found["acted"], found["seen"]
    detected = found["detected"]
    medic_ms = [(acted[name] - at) * 1000 for name, at in written.items() if name in acted]
    seen_ms = [(seen[name] - at) * 1000 for name, at in written.items() if name in seen]
    # where the time goes: the watcher (write -> its event) and the bus + remediator (-> PATCH)
    watcher_ms = [(detected[n] - at) * 1000 for n, at in written.items() if n in detected]
    remediator_ms = [
        (acted[n] - detected[n]) * 1000 for n in written if n in detected and n in acted
    ]
    if not medic_ms:
        raise RuntimeError("the remediator patched none of the failed HelmReleases")
    p50, p99 = percentile(medic_ms, 50), percentile(medic_ms, 99)
    extra = {
        "problems": problems,
        "acted": len(medic_ms),
        "baseline_seen": len(base_ms),
        "pace_per_s": PACE,
        "reconcile_delay_s": reconcile_delay,
        "watch_seen_p50_ms": percentile(seen_ms, 50) if seen_ms else None,
        "watch_seen_p99_ms": percentile(seen_ms, 99) if seen_ms else None,
        **_spread("write_to_event", watcher_ms),
        **_spread("event_to_patch", remediator_ms),
        "latency_by_order_ms": [round(ms, 1) for ms in medic_ms[:: max(1, len(medic_ms) // 50)]],
    }
    return [
        Row(NAME_P50, p50, percentile(base_ms, 50), "ms", "(reported)", extra=extra),
        Row(
            NAME_P99, p99, percentile(base_ms, 99), "ms", "p99 < 100 ms", met=p99 < 100, extra=extra
        ),
    ]


def _spread(name: str, values: list[float]) -> dict[str, float | None]:
    if not values:
        return {f"{name}_p50_ms": None, f"{name}_p99_ms": None}
    return {f"{name}_p50_ms": percentile(values, 50), f"{name}_p99_ms": percentile(values, 99)}
