"""Benchmark 15a (issue 15): a bootstrap burst of stalled HelmReleases on the real API server.

A real etcd 3.6 + kube-apiserver 1.34 (bench.realcluster) auditing every request (Metadata
level), N ready HelmReleases; then all N are turned, within `within` seconds, into what
helm-controller v1.4.3 writes when an install fails on `etcdserver: leader changed` and its
retries are exhausted (the status recorded from the real one in
tests/watcher/fixtures/helmrelease-s1-stalled-on-leader-changed.json: Stalled=True
RetriesExceeded, Ready=False InstallFailed). `medic watcher` (helmrelease) and `medic
remediator` run as processes with the built-in rules (so `flux-retry-after-transient-etcd-error`
decides, its `etcdStableFor: 30s` satisfied by an etcd `stable` event published first, as the
watcher's etcd probe would) and a client limit of 1,000 qps (the default 20 qps cannot carry
a burst of thousands of fixes; see BENCHMARKS.md). helm-controller is played in this process on
a plain watch: it answers the reset request (`requestedAt` = `resetAt`) with Ready=True and
`lastHandledReconcileAt`/`lastHandledResetAt`, as the real one does once the reset install
succeeds (bench.latency_real.PlayedHelmController).

Reported: detection (the watcher's event) -> action (the remediator's PATCH arriving, audit
log) p50/p99 against write -> event on a plain watch in the same burst (measured first on the
same objects); time from the burst's start until the last fix is verified (its `succeeded`
result) against the burst's own length; that every object was patched exactly once and has one
`succeeded` result; the remediator's API requests per fix (audit log: Medic's user agent, the
namespaced requests, i.e. not the watcher's cluster-wide list and watch) against 2 (one read
and one write, the least a judged write needs); and the API server's request rate during the
burst with Medic against the baseline burst without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import Row, nats_bus, not_measured, percentile, workdir
from bench.latency_real import PlayedHelmController, _list_version, _watch

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "watcher" / "fixtures" / "helmrelease-s1-stalled-on-leader-changed.json"
NAMESPACES = 20
NAMES = {
    "p50": "15a burst detection->action p50 (ms)",
    "p99": "15a burst detection->action p99 (ms)",
    "last": "15a burst start -> last fix verified (s)",
    "once": "15a burst fixes retried once and verified",
    "requests": "15a burst API requests per fix (remediator)",
    "rate": "15a burst API server request rate (req/s)",
}
AUDIT_EVERYTHING = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
"""


def _name(i: int) -> tuple[str, str]:
    return f"boot-{i:05d}", f"burst-{i % NAMESPACES}"


def stalled_status(name: str, namespace: str) -> dict[str, Any]:
    """helm-controller v1.4.3's status after an install failed on `leader changed`, retries
    exhausted (recorded from the real one; names and times made this object's)."""
    recorded = json.loads(FIXTURE.read_text())
    meta = recorded["metadata"]
    text = json.dumps(recorded["status"])
    text = text.replace(f"{meta['namespace']}/{meta['name']}", f"{namespace}/{name}")
    status: dict[str, Any] = json.loads(text)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for condition in status.get("conditions", []):
        condition["lastTransitionTime"] = now
    return status


async def _burst(session: Any, problems: int, within: float) -> dict[str, float]:
    """Write every object's stalled status, spread evenly over `within` seconds (64 writes in
    flight at most); name -> wall time its write was sent."""
    from bench import realcluster

    written: dict[str, float] = {}
    start = time.perf_counter()

    async def write(i: int) -> None:
        delay = start + i * within / problems - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        name, namespace = _name(i)
        written[name] = time.time()
        await realcluster.patch_status(session, namespace, name, stalled_status(name, namespace))

    await realcluster.bounded(write(i) for i in range(problems))
    return written


async def stage(session: Any, problems: int) -> None:
    from bench import realcluster

    await realcluster.stage_ready(session, (_name(i) for i in range(problems)))


async def baseline(session: Any, problems: int, within: float) -> dict[str, Any]:
    """The same burst seen by a plain watch: write -> event per object; then Ready again."""
    from bench import realcluster
    from medic.testing import objects

    seen: dict[str, float] = {}
    names = {_name(i)[0] for i in range(problems)}
    all_seen = asyncio.Event()

    def on_event(obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if name in names and (obj.get("status") or {}).get("failures"):
            seen.setdefault(name, time.time())
            if len(seen) >= problems:
                all_seen.set()

    async with asyncio.TaskGroup() as group:
        watching = group.create_task(_watch(session, await _list_version(session), on_event))
        began = time.time()
        written = await _burst(session, problems, within)
        wrote = time.time() - began
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_seen.wait(), 60.0)
        ended = time.time()
        watching.cancel()
    await realcluster.bounded(
        realcluster.patch_status(session, ns, name, objects.ready_status(name, ns))
        for name, ns in (_name(i) for i in range(problems))
    )
    latencies = [(seen[n] - at) * 1000 for n, at in written.items() if n in seen]
    return {"ms": latencies, "began": began, "ended": ended, "wrote_s": wrote}


class Results:
    """The remediator's results as they arrive (core NATS subscription on `medic.results.>`)."""

    def __init__(self) -> None:
        self.outcomes: dict[str, list[tuple[str, float]]] = {}
        self.succeeded: set[str] = set()
        self.changed = asyncio.Event()

    async def on_msg(self, msg: Any) -> None:
        from medic.schemas import RemediationResult, decode_message

        result = decode_message(msg.data)
        if isinstance(result, RemediationResult) and result.data.object is not None:
            name = result.data.object.name
            self.outcomes.setdefault(name, []).append((result.data.outcome.value, time.time()))
            if result.data.outcome.value == "succeeded":
                self.succeeded.add(name)
            self.changed.set()


RULE = "flux-retry-after-transient-etcd-error"


def tuned_rule(directory: Path) -> Path:
    """The built-in S1 rule as shipped, but for its rate limit (60 fixes a minute by default,
    which would spread a burst of 2,000 over half an hour): a file of the same name replaces
    the built-in, which is how a team tunes a shipped rule."""
    from importlib import resources

    import yaml

    builtin = resources.files("medic.remediator.rules").joinpath("builtin")
    shipped = yaml.safe_load(builtin.joinpath("s1-flux-transient-etcd.yaml").read_text())
    assert shipped["metadata"]["name"] == RULE
    shipped["spec"]["limits"]["ratePerMinute"] = 100_000
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "s1-tuned.yaml").write_text(yaml.safe_dump(shipped))
    return directory


def services_env(nats_url: str, kubeconfig: Path, rules: Path) -> dict[str, str]:
    from bench import realcluster

    return {**realcluster.services_env(nats_url, kubeconfig), "MEDIC_REMEDIATOR_RULES": str(rules)}


async def start(base: Path, env: dict[str, str]) -> list[Any]:
    from medic.runtime.embedded_nats import free_port
    from medic.testing.e2e import wait_ready
    from medic.testing.processes import ServiceProcess

    started = []
    for service in ("watcher", "remediator"):
        port = free_port()
        process = ServiceProcess(
            service, env={**env, "MEDIC_HEALTH__PORT": str(port)}, log_path=base / f"{service}.log"
        )
        process.start()
        started.append((process, port))
    for process, port in started:
        await wait_ready(port, process, timeout=120.0)
    await asyncio.sleep(1.0)  # the watcher's initial list of the ready releases has settled
    return [process for process, _ in started]


async def etcd_stable(bus: Any) -> None:
    """What the watcher's etcd probe publishes when etcd has been stable for a while."""
    from medic.schemas import EtcdCondition, EtcdEvent, EtcdEventData, stable_id

    since = datetime.now(UTC) - timedelta(minutes=10)
    await bus.publish(
        EtcdEvent(
            id=stable_id("bench", "etcd", "stable", since.isoformat()),
            source="medic/watcher/bench",
            cluster="bench",
            data=EtcdEventData(condition=EtcdCondition.STABLE, stable_since=since),
        )
    )


async def measure_medic(
    base: Path, real: Any, session: Any, problems: int, within: float
) -> dict[str, Any]:
    names = {_name(i)[0] for i in range(problems)}
    controller = PlayedHelmController(session)
    results = Results()
    async with nats_bus(base) as (server, bus):
        await etcd_stable(bus)
        sub = await bus.nc.subscribe("medic.results.>", cb=results.on_msg)
        processes = await start(
            base, services_env(server.url, real.plane.kubeconfig, tuned_rule(base / "rules"))
        )
        try:
            async with asyncio.TaskGroup() as group:
                watching = group.create_task(
                    _watch(session, await _list_version(session), controller.on_event)
                )
                answering = [group.create_task(controller.answer()) for _ in range(64)]
                pids = _pids(processes, server, real)
                cpu_before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
                began = time.time()
                written = await _burst(session, problems, within)
                wrote = time.time() - began
                deadline = time.monotonic() + 300.0
                while len(results.succeeded & names) < problems and time.monotonic() < deadline:
                    if not all(p.running for p in processes):
                        break
                    results.changed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(results.changed.wait(), 1.0)
                ended = time.time()
                cores = {
                    name: round((_cpu_seconds(pid) - cpu_before[name]) / (ended - began), 2)
                    for name, pid in pids.items()
                }
                await asyncio.sleep(2.0)  # a second attempt or result would show now
                for task in (watching, *answering):
                    task.cancel()
        finally:
            for process in processes:
                await process.stop()
        await sub.unsubscribe()
        detected = await _detected(bus, names)
    real.audit.read()
    return {
        "written": written,
        "wrote_s": wrote,
        "began": began,
        "ended": ended,
        "results": results,
        "detected": detected,
        "cores": cores,
        "entries": list(real.audit.entries.values()),
    }


def _pids(processes: list[Any], server: Any, real: Any) -> dict[str, int]:
    """The processes whose CPU the burst shares the machine's cores between."""
    import os

    pids = {p.service: p.process.pid for p in processes if p.process is not None}
    pids["benchmark (played helm-controller, watch)"] = os.getpid()
    for name, owner in (("nats-server", server), ("kube-apiserver", real.plane)):
        if getattr(owner, "process", None) is not None:
            pids[name] = owner.process.pid
    return pids


def _cpu_seconds(pid: int) -> float:
    import os

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _detected(bus: Any, names: set[str]) -> dict[str, float]:
    """name -> the time of the watcher's first `stalled` event about it."""
    from medic.schemas import ReleaseEvent
    from medic.testing.notifier import stream_messages

    first: dict[str, float] = {}
    for message in await stream_messages(bus, "MEDIC_EVENTS"):
        if isinstance(message, ReleaseEvent) and message.data.object.name in names:
            at, name = message.time.timestamp(), message.data.object.name
            first[name] = min(first.get(name, at), at)
    return first


async def run(problems: int = 2_000, within: float = 10.0, real: Any = None) -> list[Row]:
    from bench import realcluster

    why = realcluster.unavailable()
    if why is not None:
        return [not_measured(name, why) for name in NAMES.values()]
    with workdir("burst") as base:
        if real is not None:
            return await _measure(base, real, problems, within)
        with realcluster.audited_plane(base / "real", policy=AUDIT_EVERYTHING) as fresh:
            return await _measure(base, fresh, problems, within)


async def _measure(base: Path, real: Any, problems: int, within: float) -> list[Row]:
    from bench import realcluster

    async with realcluster.admin_session(real.plane) as session:
        staged = time.perf_counter()
        await stage(session, problems)
        staging_s = time.perf_counter() - staged
        plain = await baseline(session, problems, within)
        found = await measure_medic(base, real, session, problems, within)
    return rows_of(plain, found, problems, within, staging_s)


def rows_of(
    plain: dict[str, Any], found: dict[str, Any], problems: int, within: float, staging_s: float
) -> list[Row]:
    from medic.runtime.kube import USER_AGENT

    names = {_name(i)[0] for i in range(problems)}
    entries = found["entries"]
    began, ended = found["began"], found["ended"]
    during = [e for e in entries if began <= e.received <= ended]
    medic = [e for e in during if e.user_agent == USER_AGENT and e.namespace]
    patches = Counter(
        e.name
        for e in medic
        if e.verb == "patch" and e.resource == "helmreleases" and not e.subresource
    )
    acted: dict[str, float] = {}
    answered: dict[str, float] = {}
    for e in medic:
        if e.verb == "patch" and e.resource == "helmreleases" and not e.subresource:
            acted[e.name] = min(acted.get(e.name, e.received), e.received)
            answered[e.name] = min(answered.get(e.name, e.answered), e.answered)
    results: Results = found["results"]
    detected = found["detected"]
    ms = [(acted[n] - detected[n]) * 1000 for n in names if n in acted and n in detected]
    # Where the API server queues the write: detection -> its answer (the write applied).
    done_ms = [(answered[n] - detected[n]) * 1000 for n in names if n in answered and n in detected]
    verified = [
        t for n in names for outcome, t in results.outcomes.get(n, []) if outcome == "succeeded"
    ]
    once = sum(
        1
        for n in names
        if patches.get(n) == 1 and [o for o, _ in results.outcomes.get(n, [])] == ["succeeded"]
    )
    fixes = len(results.succeeded & names)
    by_verb = Counter(
        f"{e.verb} {e.resource}{'/' + e.subresource if e.subresource else ''}" for e in medic
    )
    base_during = [e for e in entries if plain["began"] <= e.received <= plain["ended"]]
    rate = len(during) / max(ended - began, 1e-9)
    base_rate = len(base_during) / max(plain["ended"] - plain["began"], 1e-9)
    last = (max(verified) - began) if verified else None
    extra = {
        "problems": problems,
        "within_s": within,
        "burst_written_s": found["wrote_s"],
        "baseline_burst_written_s": plain["wrote_s"],
        "staging_s": staging_s,
        "acted": len(acted),
        "detected": len(detected),
        "succeeded": fixes,
        "patched_more_than_once": sum(1 for n in patches.values() if n > 1),
        "remediator_requests": len(medic),
        "remediator_requests_by_verb": dict(by_verb),
        "requests_during_burst": len(during),
        "cores_during_burst": found["cores"],
        "write_to_event_p50_ms": percentile(plain["ms"], 50) if plain["ms"] else None,
        "detection_to_write_answered_ms": {
            "p50": percentile(done_ms, 50) if done_ms else None,
            "p99": percentile(done_ms, 99) if done_ms else None,
        },
    }
    if not ms:
        raise RuntimeError(f"the remediator acted on none of the burst's releases: {extra}")
    p99 = percentile(ms, 99)
    per_fix = len(medic) / fixes if fixes else float("inf")
    return [
        Row(
            NAMES["p50"],
            percentile(ms, 50),
            percentile(plain["ms"], 50),
            "ms",
            "(reported)",
            extra=extra,
        ),
        Row(NAMES["p99"], p99, percentile(plain["ms"], 99), "ms", "p99 < 2,000 ms", met=p99 < 2000),
        Row(NAMES["last"], last, found["wrote_s"], "s", "(reported; baseline: the burst itself)"),
        Row(NAMES["once"], float(once), float(problems), "fixes", "all", met=once == problems),
        Row(NAMES["requests"], per_fix, 2.0, "req", "<= 4 per fix", met=per_fix <= 4),
        Row(NAMES["rate"], rate, base_rate, "req/s", "(reported)"),
    ]
