"""Benchmark 6: time to act on a new failure while N verifications are in flight (issue 17).

The remediator service (as `medic run` wires it, default concurrency) runs in this process on
the API sandbox and a real nats-server. N HelmReleases fail under a rule whose
`verify.condition` never holds (timeout 10 minutes): each is annotated and its verification
stays in flight. Then, one after another, `fixes` other HelmReleases fail under a plain rule;
latency = the remediator's PATCH of that release arriving at the sandbox (request log) minus
the publish of its event. Baseline: the same with no verification in flight, same run, same
service set-up. Before issue 17 the fetch loop waited for its whole batch, so with one
verification in flight the next fix came only after that verification timed out.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import Row, nats_bus, workdir

MARK = "bench.medic.dev/restartedAt"
RULES = """apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {{name: never-verifies}}
spec:
  match: {{kinds: [HelmRelease], names: [{slow}]}}
  action: {{name: annotate, params: {{plural: helmreleases, values: {{"{mark}": "now"}}}}}}
  limits: {{maxAttempts: 1, ratePerMinute: 100000}}
  verify:
    timeout: 10m
    interval: 1s
    condition: 'object.status.conditions.exists(c, c.type == "Verified")'
---
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {{name: plain}}
spec:
  match: {{kinds: [HelmRelease], names: [{fast}]}}
  action: {{name: annotate, params: {{plural: helmreleases, values: {{"{mark}": "now"}}}}}}
  limits: {{ratePerMinute: 100000}}
  verify: {{timeout: 1m, interval: 1s}}
"""


def _patched(store: Any, name: str) -> float | None:
    for record in store.requests:
        if record.verb == "patch" and record.name == name:
            return float(record.time)
    return None


async def _until(probe: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        await asyncio.sleep(0.005)
    raise TimeoutError("benchmark condition not met")


async def act_latencies(base: Path, in_flight: int, fixes: int) -> list[float]:
    """ms from each new failure's publish to its patch, with `in_flight` verifications open."""
    from medic.remediator.service import create
    from medic.remediator.settings import RemediatorSettings
    from medic.runtime.kube import KubeClient
    from medic.runtime.settings import KubeSettings
    from medic.sandbox import KubeSandbox
    from medic.testing import objects
    from medic.testing.factories import release_event

    slow = [f"slow-{i:03d}" for i in range(in_flight)] or ["none"]
    fast = [f"fast-{i:03d}" for i in range(fixes)]
    rules = base / f"rules-{in_flight}"
    rules.mkdir()
    text = RULES.format(slow=", ".join(slow), fast=", ".join(fast), mark=MARK)
    (rules / "rules.yaml").write_text(text)
    async with (
        KubeSandbox.start(kubeconfig_dir=base) as sb,
        nats_bus(base / f"n{in_flight}") as (
            _,
            bus,
        ),
    ):
        for name in [*slow, *fast]:
            sb.store.put(objects.helmrelease(name, status=objects.etcd_failed_status(name, "apps")))
        kube = await KubeClient.connect(
            KubeSettings(kubeconfig=sb.kubeconfig_path, qps=5000, burst=5000)
        )
        settings = RemediatorSettings(actor="bench", rules=[rules], builtin_rules=False)
        service = await create(bus, kube, settings, "bench")
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        try:
            if in_flight:
                await bus.publish_many([release_event(name) for name in slow])
                await _until(lambda: all(_patched(sb.store, n) for n in slow), 120.0)
                await asyncio.sleep(0.5)  # every slow verification is now waiting
            latencies = []
            for name in fast:
                published = time.time()
                await bus.publish(release_event(name))
                acted = await _until(lambda n=name: _patched(sb.store, n), 60.0)
                latencies.append((acted - published) * 1000)
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=30.0)
    return latencies


async def run(in_flight: tuple[int, ...] = (1, 100), fixes: int = 20) -> list[Row]:
    rows: list[Row] = []
    with workdir("inflight") as base:
        baseline = await act_latencies(base, 0, fixes)
        b50 = statistics.median(baseline)
        for n in in_flight:
            medic = await act_latencies(base, n, fixes)
            m50 = statistics.median(medic)
            rows.append(
                Row(
                    name=f"6 act on a failure, {n} verification(s) in flight (ms)",
                    medic=m50,
                    baseline=b50,
                    unit="ms",
                    target="(ratio reported)",
                    extra={
                        "fixes": fixes,
                        "medic_max_ms": max(medic),
                        "baseline_max_ms": max(baseline),
                        "in_flight": n,
                        "statistic": "median",
                    },
                )
            )
    return rows
