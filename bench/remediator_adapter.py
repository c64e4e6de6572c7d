"""How the pipeline benchmark drives `medic.remediator` (kept apart so the API can move).

The real `RemediatorService` (its consumer, KV state, engine, runner, result publishing) on the
benchmark's stream, with N generated rules (bench.rules_adapter: one rule matches each event,
N-1 decoys) and no built-in rules. The matching rule's action is `notify-only` in dry-run:
it writes nothing and needs no API server, so the figure is the pipeline itself (consume,
observe the problem in KV, match, decide, claim, publish the result, finish) and not the
latency of a Kubernetes API. The Kubernetes client points at a closed port and is never used.
Each N gets its own durable consumer and its own KV buckets, so no run sees another's claims.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from pathlib import Path

from bench import rules_adapter
from medic.runtime import heap
from medic.runtime.bus import Bus
from medic.runtime.subjects import EVENTS
from medic.schemas import Message


def unavailable() -> str | None:
    try:
        found = importlib.util.find_spec("medic.remediator.service") is not None
    except ImportError:
        found = False
    if not found:
        return "remediator service not landed (services/remediator/service.py)"
    return None


async def pipeline_rate(bus: Bus, base: Path, events: list[Message], rules: int) -> float:
    """Events/s through the remediator; `pipeline_cost` says its CPU time per event too."""
    return (await pipeline_cost(bus, base, events, rules))[0]


async def pipeline_cost(
    bus: Bus, base: Path, events: list[Message], rules: int, run: str = ""
) -> tuple[float, float]:
    """(events/s, CPU us per event): this process's CPU time while the service ran (the
    service, its NATS client and this benchmark's polling of the consumer's progress). Each
    `run` name gets its own durable, buckets and rule names."""
    from kubernetes_asyncio import client as kclient

    from medic.remediator.rules.loader import LoadResult
    from medic.remediator.service import RemediatorService, RuleBook
    from medic.remediator.settings import RemediatorSettings
    from medic.remediator.state import StateStore
    from medic.runtime.kube import KubeClient
    from medic.runtime.settings import KubeSettings

    del base
    tag = f"n{rules}{run}"
    settings = RemediatorSettings(
        builtin_rules=False,
        dry_run=True,
        durable=f"bench-remediator-{tag}",
        state_bucket=f"bench-state-{tag}",
        rules_bucket=f"bench-rules-{tag}",
        backups_bucket=f"bench-backups-{tag}",
    )
    kube = KubeClient(kclient.Configuration(host="http://127.0.0.1:9"), KubeSettings())
    from medic.remediator.service import create

    service: RemediatorService = await create(bus, kube, settings, "bench")
    service.rules = RuleBook(
        LoadResult(rules=rules_adapter.rules(rules, prefix=tag, action="notify-only"))
    )
    assert isinstance(service.state, StateStore)
    service.rules_kv = None  # no hot reload during the measurement
    heap.settle()  # as `medic run` does once its services are built (medic.runtime.lifecycle)
    stop = asyncio.Event()
    count = len(events)
    started, cpu = time.perf_counter(), time.process_time()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(service.run(stop))
        try:
            await until_consumed(bus, settings.durable, count)
        finally:
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            stop.set()
    return count / elapsed, cpu / count * 1e6


async def until_consumed(bus: Bus, durable: str, count: int, timeout: float = 300.0) -> None:
    """Until the durable consumer has acked every one of `count` messages."""
    deadline = time.perf_counter() + timeout
    for _ in range(int(timeout / 0.02)):
        try:
            info = await bus.js.consumer_info(EVENTS.name, durable)
        except Exception:  # not created yet
            info = None
        if info is not None and info.ack_floor.stream_seq >= count and info.num_ack_pending == 0:
            return
        if time.perf_counter() > deadline:
            break
        await asyncio.sleep(0.02)
    raise TimeoutError(f"remediator did not consume {count} events in {timeout}s")
