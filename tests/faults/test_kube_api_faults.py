"""The Kubernetes API misbehaving under the whole pipeline: every problem still handled once.

N failed HelmReleases are staged in the sandbox; the real watcher (helmrelease source) and the
real remediator (a user rule that annotates each failed release) run in-process against it
and a real nats-server. Meanwhile the API server answers 429 with Retry-After, 500 with an
etcd error (reads and writes), slows reads down, drops the watch, and forgets its history
(`compact()`) so the watch's resume gets 410 Gone and the watcher must re-list. Afterwards
every release was patched exactly once and every problem has exactly one result, succeeded.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from medic.remediator.service import create as create_remediator
from medic.remediator.settings import RemediatorSettings
from medic.runtime.bus import Bus
from medic.runtime.health import HealthServer
from medic.runtime.kube import KubeClient
from medic.runtime.lifecycle import ServiceContext
from medic.runtime.settings import KubeSettings, RuntimeSettings
from medic.runtime.subjects import EVENTS, RESULTS
from medic.sandbox import Fault, KubeSandbox
from medic.schemas import Outcome, ReleaseEvent, RemediationResult
from medic.testing import objects
from medic.testing.tally import count_patches, fetch_all, patched_names
from medic.testing.waiting import eventually
from medic.upstream import etcd
from medic.watcher.service import WatcherService, build_sources
from medic.watcher.settings import WatcherSettings
from medic.watcher.sources import default_registry
from medic.watcher.sources.base import SourceContext

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]
N = 150
CLUSTER = "apifaults"
PLURAL = "helmreleases"
ANNOTATION = "medic.dev/handled"
RULE = f"""
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {{name: mark-failed-release}}
spec:
  match: {{types: [medic.release], problems: [failed], kinds: [HelmRelease]}}
  action: {{name: annotate, params: {{plural: {PLURAL}, values: {{"{ANNOTATION}": "{{name}}"}}}}}}
  limits: {{ratePerMinute: 100000}}
  verify: {{timeout: 20s, interval: 0.1s}}
"""


def stage(sandbox: KubeSandbox) -> list[str]:
    names = [f"rel-{i:03d}" for i in range(N)]
    for i, name in enumerate(names):
        namespace = f"team-{i % 5}"
        status = objects.etcd_failed_status(name, namespace, error=etcd.LEADER_CHANGED)
        sandbox.store.put(objects.helmrelease(name, namespace, status=status))
    return names


@contextlib.asynccontextmanager
async def pipeline(bus: Bus, sandbox: KubeSandbox, rules: Path) -> AsyncIterator[None]:
    """Watcher (helmrelease source) and remediator, in-process, each with its own client."""
    kube_settings = KubeSettings(kubeconfig=sandbox.kubeconfig_path, qps=2000, burst=2000)
    watcher_kube = await KubeClient.connect(kube_settings)
    remediator_kube = await KubeClient.connect(kube_settings)
    context = ServiceContext(
        settings=RuntimeSettings(cluster=CLUSTER), bus=bus, health=HealthServer("127.0.0.1", 0)
    )
    settings = WatcherSettings(sources=["helmrelease"], config={"helmrelease": {"tick": 0.2}})
    sources = build_sources(
        settings,
        SourceContext(cluster=CLUSTER, kube=watcher_kube),
        default_registry(entry_points=False),
    )
    watcher = WatcherService(context, sources, watcher_kube)  # closes its client
    remediator = await create_remediator(  # closes its client
        bus,
        remediator_kube,
        RemediatorSettings(actor="api-faults", rules=[rules], builtin_rules=False),
        CLUSTER,
    )
    stop = asyncio.Event()
    tasks = [asyncio.create_task(watcher.run(stop)), asyncio.create_task(remediator.run(stop))]
    try:
        yield
        for task in tasks:
            assert not task.done(), task  # neither service died of the faults
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30.0)


async def test_api_faults_under_the_pipeline_every_problem_handled_once(
    bus: Bus, tmp_path: Path
) -> None:
    (tmp_path / "rule.yaml").write_text(RULE)
    async with KubeSandbox.start(bookmark_interval=0.2) as sandbox:
        names = stage(sandbox)
        store = sandbox.store
        leader_changed = etcd.LEADER_CHANGED
        for fault in (
            # priority and fairness turns the first lists away
            Fault(verb="list", resource=PLURAL, status=429, retry_after=1, times=2),
            # etcd loses its leader under reads and writes
            Fault(verb="get", resource=PLURAL, status=500, message=leader_changed, times=10),
            Fault(verb="patch", resource=PLURAL, status=500, message=leader_changed, times=10),
            # and the API server is slow for a while
            Fault(verb="get", resource=PLURAL, latency=0.3, times=30),
        ):
            store.inject(fault)
        async with pipeline(bus, sandbox, tmp_path):

            async def patched(at_least: int) -> bool:
                return count_patches(store, resource=PLURAL) >= at_least

            await eventually(lambda: patched(N // 3), timeout=40.0)
            store.inject(Fault(verb="watch", resource=PLURAL, drop_watch=True))
            await eventually(lambda: patched(N // 2), timeout=40.0)
            lists_before = sum(r.verb == "list" and r.resource == PLURAL for r in store.requests)
            store.inject(Fault(verb="watch", resource=PLURAL, drop_watch=True))
            # Before the watcher can resume (no await in between): a write its dropped watch
            # never delivers, then compaction. Its resume is older than the history: 410 Gone,
            # and it must re-list (compacting while it is caught up would let it resume).
            store.patch_merge(
                "helm.toolkit.fluxcd.io/v2",
                "HelmRelease",
                names[1],
                "team-1",
                {"metadata": {"annotations": {"faults.medic.dev/touched": "1"}}},
            )
            store.compact()
            await eventually(lambda: patched(N), timeout=60.0)

            async def reported() -> bool:
                info = await bus.js.stream_info(RESULTS.name)
                return info.state.messages >= N

            await eventually(reported, timeout=40.0)

            async def drained() -> bool:
                info = await bus.js.consumer_info(EVENTS.name, "remediator")
                return info.num_pending == 0 and info.num_ack_pending == 0

            await eventually(drained, timeout=30.0)

            async def relisted() -> bool:
                lists = sum(r.verb == "list" and r.resource == PLURAL for r in store.requests)
                return lists > lists_before

            await eventually(relisted, timeout=20.0)
        statuses = collections.Counter(r.status for r in store.requests if r.resource == PLURAL)
        left = list(store.faults)
        writes = collections.Counter(patched_names(store, resource=PLURAL))
        annotations = {
            (o["metadata"]["name"]): (o["metadata"].get("annotations") or {}).get(ANNOTATION)
            for o in store.list("helm.toolkit.fluxcd.io/v2", "HelmRelease")
        }
    assert not left, f"faults never hit: {left}"
    assert statuses[429] == 2
    assert statuses[500] == 20
    assert sorted(writes) == names
    assert set(writes.values()) == {1}, {n: c for n, c in writes.items() if c != 1}
    assert annotations == {n: n for n in names}
    results = [r for r in await fetch_all(bus, RESULTS.name) if isinstance(r, RemediationResult)]
    events = [e for e in await fetch_all(bus, EVENTS.name) if isinstance(e, ReleaseEvent)]
    failed = {e.id for e in events if e.data.problem.value == "failed"}
    by_problem = collections.Counter(r.data.problem_key for r in results)
    assert len(failed) == N, "one failed event per release (re-lists and resumes deduplicated)"
    assert len(by_problem) == N
    assert set(by_problem.values()) == {1}, {k: c for k, c in by_problem.items() if c != 1}
    assert {r.data.outcome for r in results} == {Outcome.SUCCEEDED}, collections.Counter(
        (r.data.outcome.value, r.data.reason) for r in results
    )
