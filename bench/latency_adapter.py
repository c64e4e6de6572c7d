"""How the latency benchmark drives sandbox + watcher + remediator (kept apart: APIs move).

The sandbox runs in this process (its request log has the arrival time of every request); the
watcher (helmrelease source only) and the remediator (one rule: `retry` on a transient etcd
failure, no `for`, no preconditions) run as their own processes on a real nats-server, as in
production. helm-controller is played on the sandbox (medic.demo.cluster), so each retry is
verified at once and no verification holds a worker.

Per problem: a healthy HelmRelease is patched to failed-on-`etcdserver: leader changed` at a
steady pace; latency = the remediator's PATCH arriving at the sandbox minus that write.
Baseline, measured first on the same sandbox and pace: the write to the event on a plain watch
(HTTP, in this process) = what any client of this API server waits for a change.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
from bench.common import Row, nats_bus, percentile, workdir

RULE = """
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: bench-retry}
spec:
  match: {problems: [failed], kinds: [HelmRelease], classifications: [transient_etcd]}
  action: {name: retry}
  limits: {maxAttempts: 3, ratePerMinute: 100000}
  verify: {timeout: 30s, interval: 0.2s}
"""
PACE = 20.0  # problems per second: a burst of failing releases at cluster bootstrap
NAMESPACES = 10


def unavailable() -> str | None:
    try:
        import medic.demo.cluster
        import medic.remediator.service
        import medic.watcher.service  # noqa: F401
        from medic.sandbox import KubeSandbox  # noqa: F401
    except ImportError as exc:
        return f"not landed yet: {exc.name}"
    return None


def _name(i: int) -> tuple[str, str]:
    return f"app-{i:05d}", f"ns-{i % NAMESPACES}"


async def _paced(count: int, write: Any) -> dict[str, float]:
    """Call write(i) `count` times at PACE per second; return name -> wall time written."""
    written: dict[str, float] = {}
    start = time.perf_counter()
    for i in range(count):
        written[_name(i)[0]] = time.time()
        write(i)
        delay = start + (i + 1) / PACE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    return written


async def baseline(store: Any, url: str, count: int) -> list[float]:
    """Write -> event on a plain HTTP watch of the same sandbox, per object (ms)."""
    from medic.upstream import flux

    seen: dict[str, float] = {}
    rv = store.list(flux.api_version("v2"), flux.KIND)[-1]["metadata"]["resourceVersion"]
    path = f"{url}/apis/{flux.GROUP}/v2/helmreleases?watch=1&resourceVersion={rv}"
    async with aiohttp.ClientSession() as session, session.get(path) as stream:

        async def read() -> None:
            async for line in stream.content:
                event = json.loads(line)
                name = event["object"]["metadata"]["name"]
                seen.setdefault(name, time.time())
                if len(seen) >= count:
                    return

        reader = asyncio.create_task(read())
        written = await _paced(
            count,
            lambda i: store.patch_merge(
                flux.api_version("v2"),
                flux.KIND,
                *_name(i),
                {"metadata": {"annotations": {"bench.medic.dev/touch": "1"}}},
            ),
        )
        await asyncio.wait_for(reader, timeout=60.0)
    return [(seen[name] - at) * 1000 for name, at in written.items()]


async def measure(problems: int, name_p50: str, name_p99: str) -> list[Row]:
    from medic.demo.cluster import HelmController
    from medic.runtime.embedded_nats import free_port
    from medic.sandbox import KubeSandbox
    from medic.testing import objects
    from medic.upstream import flux

    with workdir("latency") as base:
        (base / "rules").mkdir()
        (base / "rules" / "bench.yaml").write_text(RULE)
        history = 6 * problems + 1000
        async with (
            KubeSandbox.start(kubeconfig_dir=base, history=history) as sb,
            nats_bus(base) as (server, _),
        ):
            for i in range(problems):
                name, namespace = _name(i)
                sb.store.put(
                    objects.helmrelease(
                        name, namespace, status=objects.ready_status(name, namespace)
                    )
                )
            base_ms = await baseline(sb.store, sb.url, problems)
            HelmController().install(sb.store)
            processes = await start_services(base, server.url, sb.kubeconfig_path, free_port)
            try:
                written = await _paced(
                    problems,
                    lambda i: sb.store.patch_merge(
                        flux.api_version("v2"),
                        flux.KIND,
                        *_name(i),
                        {"status": objects.etcd_failed_status(*_name(i))},
                        status=True,
                        manager="helm-controller",
                    ),
                )
                acted = await _wait_patches(sb.store, set(written), timeout=120.0)
            finally:
                for process in processes:
                    await process.stop()
    medic_ms = [(acted[name] - at) * 1000 for name, at in written.items() if name in acted]
    p50, p99 = percentile(medic_ms, 50), percentile(medic_ms, 99)
    b50, b99 = percentile(base_ms, 50), percentile(base_ms, 99)
    extra = {"problems": problems, "acted": len(medic_ms), "pace_per_s": PACE}
    return [
        Row(name_p50, p50, b50, "ms", "(reported)", extra=extra),
        Row(name_p99, p99, b99, "ms", "p99 < 100 ms", met=p99 < 100, extra=extra),
    ]


async def start_services(base: Path, nats_url: str, kubeconfig: Path, free_port: Any) -> list[Any]:
    from bench import realcluster
    from medic.testing.e2e import wait_ready
    from medic.testing.processes import ServiceProcess

    common = {
        **realcluster.services_env(nats_url, kubeconfig),
        "MEDIC_REMEDIATOR_RULES": str(base / "rules"),
        "MEDIC_REMEDIATOR_BUILTIN_RULES": "false",
    }
    started = []
    for service in ("watcher", "remediator"):
        port = free_port()
        env = {**common, "MEDIC_HEALTH__PORT": str(port)}
        process = ServiceProcess(service, env=env, log_path=base / f"{service}.log")
        process.start()
        started.append((process, port))
    for process, port in started:
        await wait_ready(port, process)
    await asyncio.sleep(1.0)  # the watcher's initial list of the healthy releases has settled
    return [process for process, _ in started]


async def _wait_patches(store: Any, names: set[str], timeout: float) -> dict[str, float]:
    """name -> wall time the remediator's first PATCH of it arrived at the sandbox."""
    acted: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in list(store.requests):
            # Only Medic talks HTTP to this sandbox; the benchmark writes in-process.
            if (
                record.verb == "patch"
                and record.resource == "helmreleases"
                and record.name in names
            ):
                acted.setdefault(record.name, record.time)
        if len(acted) >= len(names):
            break
        await asyncio.sleep(0.2)
    return acted
