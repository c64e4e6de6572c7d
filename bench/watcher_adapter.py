"""How the watcher-scale benchmark drives sandbox + watcher (kept apart: APIs move).

The watcher runs as `python -m medic.cli watcher` (medic.testing.processes.ServiceProcess) with
the helmrelease and helm_storage sources, so its RSS and CPU are its own. "Initial list" is the
time from the process start until the sandbox has seen the watch requests of both informers
(an informer watches only after its list and its on_sync finished). Baseline: the same two paged
lists through `medic.runtime.kube.KubeClient` in this process, plus the interpreter start-up
and `import medic.cli` that the watcher process pays first (measured with a subprocess).
"""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Row, nats_bus, workdir
from bench.objects import helmrelease, release_secret


def unavailable() -> str | None:
    gone = []
    try:
        import medic.sandbox

        if not hasattr(medic.sandbox, "KubeSandbox"):
            gone.append("sandbox")
    except ImportError:
        gone.append("sandbox")
    if importlib.util.find_spec("medic.watcher.service") is None:
        gone.append("watcher service")
    if gone:
        return f"not landed yet: {', '.join(gone)}"
    return None


def startup_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import medic.cli"], check=True)
    return time.perf_counter() - started


async def baseline_list_seconds(kubeconfig: Path) -> float:
    from medic.runtime.kube import SECRETS, KubeClient, ResourceType
    from medic.runtime.settings import KubeSettings
    from medic.upstream import flux

    kube = await KubeClient.connect(KubeSettings(kubeconfig=kubeconfig, qps=1000, burst=1000))
    try:
        started = time.perf_counter()
        await kube.list(ResourceType(flux.GROUP, "v2", flux.PLURAL, flux.KIND))
        await kube.list(SECRETS, label_selector="owner=helm")
        return time.perf_counter() - started
    finally:
        await kube.close()


def watcher_process(base: Path, nats_url: str, kubeconfig: Path) -> Any:
    """`medic watcher` (helmrelease + helm_storage sources) as a process, not started yet."""
    from medic.runtime.embedded_nats import free_port
    from medic.testing.processes import ServiceProcess

    env = {
        "MEDIC_NATS__URLS": nats_url,
        "MEDIC_KUBE__KUBECONFIG": str(kubeconfig),
        "MEDIC_KUBE__QPS": "1000",
        "MEDIC_KUBE__BURST": "1000",
        "MEDIC_WATCHER_SOURCES": "helmrelease,helm_storage",
        "MEDIC_HEALTH__PORT": str(free_port()),
        "MEDIC_CLUSTER": "bench",
        "MEDIC_LOG_LEVEL": "warning",
    }
    return ServiceProcess("watcher", env=env, log_path=base / "watcher.log")


def _watching(store: Any, since: float) -> set[str]:
    """Which of helmreleases/secrets the sandbox has seen a watch request for since `since`."""
    seen = set()
    for record in list(store.requests):
        if record.time < since or "watch=" not in record.path:
            continue
        for resource in ("helmreleases", "secrets"):
            if f"/{resource}" in record.path:
                seen.add(resource)
    return seen


async def measure(objects: int, changes_per_second: int, steady_seconds: float) -> list[Row]:
    from bench.watcher_scale import NAMES, TARGETS, proc_cpu_seconds, proc_status_kib

    from medic.sandbox import KubeSandbox
    from medic.upstream import flux

    with workdir("watcher") as base:
        history = 2 * objects + changes_per_second * int(steady_seconds) + 1000
        sandbox = KubeSandbox.start(kubeconfig_dir=base, history=history)
        async with sandbox as sb, nats_bus(base) as (server, _):
            for i in range(objects):
                sb.store.put(helmrelease(i))
                sb.store.put(release_secret(f"app-{i}", f"ns-{i % 50}"))
            listed = await baseline_list_seconds(sb.kubeconfig_path)
            startup = startup_seconds()
            process = watcher_process(base, server.url, sb.kubeconfig_path)
            since = time.time()
            started = time.perf_counter()
            process.start()
            try:
                assert process.process is not None
                pid = process.process.pid
                synced = None
                for _ in range(12000):  # 240 s
                    if _watching(sb.store, since) == {"helmreleases", "secrets"}:
                        synced = time.perf_counter() - started
                        break
                    if not process.running:
                        break
                    await asyncio.sleep(0.02)
                if synced is None:
                    raise RuntimeError(f"watcher never synced: {process.logs()[-2000:]}")
                await asyncio.sleep(1.0)  # let the sync's garbage settle before reading RSS
                rss_mb = proc_status_kib(pid, "VmRSS") / 1024
                hwm_mb = proc_status_kib(pid, "VmHWM") / 1024
                changes = int(changes_per_second * steady_seconds)
                cpu_before, clock = proc_cpu_seconds(pid), time.perf_counter()
                for k in range(changes):
                    i = k % objects
                    sb.store.patch_merge(
                        flux.api_version("v2"),
                        flux.KIND,
                        f"app-{i}",
                        f"ns-{i % 50}",
                        {"metadata": {"annotations": {"bench.medic.dev/tick": str(k)}}},
                    )
                    delay = clock + (k + 1) / changes_per_second - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                elapsed = time.perf_counter() - clock
                cpu_pct = (proc_cpu_seconds(pid) - cpu_before) / elapsed * 100
            finally:
                await process.stop()
    baseline_sync = listed + startup
    return [
        Row(
            NAMES[0],
            synced,
            baseline_sync,
            "s",
            TARGETS[0],
            extra={"objects": objects, "list_s": listed, "startup_s": startup},
        ),
        Row(NAMES[1], rss_mb, None, "MB", TARGETS[1], met=rss_mb < 200, extra={"hwm_mb": hwm_mb}),
        Row(
            NAMES[2],
            cpu_pct,
            None,
            "%",
            TARGETS[2],
            extra={"changes_per_second": changes_per_second, "seconds": elapsed},
        ),
    ]
