"""Benchmark 3r: the watcher's initial sync on the real API server (issue 12 item 6).

A real etcd 3.6 + kube-apiserver 1.34 (bench.realcluster) holds N HelmReleases (created through
the Flux CRD's validation, status written by "helm-controller" through the status subresource)
and N Helm release Secrets (type helm.sh/release.v1, a podinfo release record as Helm's Secrets
driver encodes it), staged concurrently (64 in flight) in 50 namespaces.

Figures, each against a plain client in the same run:
- time to synced: from starting `medic watcher` (helmrelease + helm_storage) to the API server
  receiving the watch requests of both informers (audit log; an informer watches only after its
  list and its on_sync). Baseline: `python -m bench.plain_list`, an aiohttp client making the
  same two paged lists (limit 500, continue, at the same time), from its process start to its
  answer: both pay an interpreter start and their imports.
- RSS after sync (VmRSS 1 s after, as benchmark 3): baseline is the plain client's VmRSS while it
  holds what it listed (no projection).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from bench.common import ROOT, Row, nats_bus, not_measured, workdir

NAMES = (
    "3r watcher initial sync, real API server (s)",
    "3r watcher RSS after sync, real API server (MB)",
)
TARGETS = ("(ratio reported)", "< 200 MB")
NAMESPACES = 50


def _name(i: int) -> tuple[str, str]:
    return f"app-{i}", f"ns-{i % NAMESPACES}"


async def stage(plane: Any, objects: int) -> float:
    """N HelmReleases (with status) and N release Secrets, 64 writes in flight; seconds taken."""
    from bench.objects import real_release_secret

    from bench import realcluster
    from medic.testing import objects as flux_objects

    started = time.perf_counter()
    async with realcluster.admin_session(plane) as session:
        await realcluster.ensure_namespaces(session, {_name(i)[1] for i in range(objects)})

        def writes() -> Any:
            for i in range(objects):
                name, namespace = _name(i)
                yield realcluster.create_helmrelease(
                    session,
                    flux_objects.helmrelease(name, namespace),
                    flux_objects.ready_status(name, namespace),
                )
                yield realcluster.create_secret(session, real_release_secret(name, namespace))

        await realcluster.bounded(writes())
    return time.perf_counter() - started


def plain_list(real: Any) -> tuple[float, dict[str, Any]]:
    """The baseline client as its own process: (seconds from start to answer, its answer with
    the list requests the API server saw from it)."""
    from medic.upstream import helm

    plane = real.plane
    pki = plane.pki
    argv = [
        sys.executable,
        "-m",
        "bench.plain_list",
        plane.server,
        str(pki.ca_cert),
        str(pki.admin_cert),
        str(pki.admin_key),
        f"type={helm.SECRET_TYPE}",
    ]
    since, started = time.time(), time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=True, timeout=300)
    took = time.perf_counter() - started
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    deadline = time.monotonic() + 5.0  # the last page's audit line may land just after
    while True:
        real.audit.read()
        entries = list(real.audit.entries.values())
        answer["lists"] = list_shapes(entries, since, time.time(), "Python/")
        if sum(answer["lists"].values()) >= answer["pages"] or time.monotonic() > deadline:
            return took, answer
        time.sleep(0.05)


def _watching(entries: list[Any], since: float) -> dict[str, float]:
    """resource -> when the API server received the watcher's first watch of it after `since`."""
    from medic.runtime.kube import USER_AGENT

    first: dict[str, float] = {}
    for entry in entries:
        if entry.verb == "watch" and entry.user_agent == USER_AGENT and entry.received >= since:
            first[entry.resource] = min(first.get(entry.resource, entry.received), entry.received)
    return first


def list_shapes(entries: list[Any], since: float, until: float, agent: str) -> dict[str, int]:
    """The list requests a client (by user agent prefix) made in [since, until]: request URI
    without its continue token -> how many pages."""
    shapes: dict[str, int] = {}
    for entry in entries:
        if entry.verb != "list" or not entry.user_agent.startswith(agent):
            continue
        if not since <= entry.received <= until:
            continue
        parts = urllib.parse.urlsplit(entry.uri)
        query = sorted(
            (key, value) for key, value in urllib.parse.parse_qsl(parts.query) if key != "continue"
        )
        shape = f"{parts.path}?{urllib.parse.urlencode(query)}"
        shapes[shape] = shapes.get(shape, 0) + 1
    return shapes


async def measure_watcher(base: Path, real: Any) -> dict[str, float]:
    from bench.watcher_adapter import watcher_process
    from bench.watcher_scale import proc_status_kib

    from medic.runtime.kube import USER_AGENT

    async with nats_bus(base) as (server, _):
        process = watcher_process(base, server.url, real.plane.kubeconfig)
        since = time.time()
        process.start()
        try:
            assert process.process is not None
            pid = process.process.pid
            both = {"helmreleases", "secrets"}
            synced = await real.audit.wait_for(
                lambda entries: set(_watching(entries, since)) >= both,
                timeout=240.0,
                alive=lambda: process.running,
            )
            if not synced:
                raise RuntimeError(f"watcher never synced: {process.logs()[-2000:]}")
            watching = _watching(list(real.audit.entries.values()), since)
            await asyncio.sleep(1.0)  # let the sync's garbage settle before reading RSS
            rss_kib, hwm_kib = proc_status_kib(pid, "VmRSS"), proc_status_kib(pid, "VmHWM")
        finally:
            await process.stop()
    synced_at = max(watching.values())
    entries = list(real.audit.entries.values())
    return {
        "synced_s": synced_at - since,
        "rss_mb": rss_kib / 1024,
        "hwm_mb": hwm_kib / 1024,
        "lists": list_shapes(entries, since, synced_at, USER_AGENT),
    }


async def run(objects: int = 10_000, repeats: int = 1, real: Any = None) -> list[Row]:
    """`real`: an AuditedPlane to reuse (the smoke test's); by default a fresh one."""
    from bench import realcluster

    why = realcluster.unavailable()
    if why is not None:
        return [not_measured(n, why, t) for n, t in zip(NAMES, TARGETS, strict=True)]
    with workdir("watcher-real") as base:
        if real is not None:
            return await _measure(base, real, objects, repeats)
        with realcluster.audited_plane(base / "real") as fresh:
            return await _measure(base, fresh, objects, repeats)


async def _measure(base: Path, real: Any, objects: int, repeats: int) -> list[Row]:
    staged = await stage(real.plane, objects)
    print(f"... staged {2 * objects} objects in {staged:.1f}s", file=sys.stderr, flush=True)
    plain: list[tuple[float, dict[str, Any]]] = []
    medic: list[dict[str, float]] = []
    for _ in range(repeats):  # interleaved, best of each: both see the same machine load
        plain.append(await asyncio.to_thread(plain_list, real))
        medic.append(await measure_watcher(base, real))
    base_s, base_answer = min(plain, key=lambda item: item[0])
    best = min(medic, key=lambda item: item["synced_s"])
    rss = min(item["rss_mb"] for item in medic)
    base_rss = min(answer["rss_kib"] for _, answer in plain) / 1024
    extra = {
        "objects": 2 * objects,
        "staging_s": staged,
        "staging_in_flight": 64,
        "baseline_list_s": base_answer["list_s"],
        "baseline_items": base_answer["items"],
        "baseline_pages": base_answer["pages"],
        "baseline_lists": base_answer["lists"],
        "watcher_lists": best["lists"],
        "runs": {"plain_s": [s for s, _ in plain], "watcher_s": [m["synced_s"] for m in medic]},
    }
    return [
        Row(NAMES[0], best["synced_s"], base_s, "s", TARGETS[0], extra=extra),
        Row(
            NAMES[1],
            rss,
            base_rss,
            "MB",
            TARGETS[1],
            met=rss < 200,
            extra={
                "watcher_hwm_mb": best["hwm_mb"],
                "baseline_hwm_mb": base_answer["hwm_kib"] / 1024,
            },
        ),
    ]
