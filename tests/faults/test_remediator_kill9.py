"""kill -9 of the real `medic remediator` process while it remediates 2,000 objects.

2,000 ConfigMaps are staged in the Kubernetes API sandbox and 2,000 matching events published;
a user rule annotates each object. The remediator (`python -m medic.cli remediator`) is
SIGKILLed at random points (seeded, printed; MEDIC_FAULTS_SEED replays one) and started again,
three times. The run happens once; two tests judge it:
- every object carries the annotation and was patched exactly once (the sandbox's request
  log), every event got a result, no write was audited twice, the last process stops cleanly;
- every event has exactly one result and it is `succeeded` or `applied` (an owner killed after
  its write reports what it finds; the final result has one id per event and rule).
"""

from __future__ import annotations

import collections
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from medic.runtime.bus import Bus
from medic.runtime.embedded_nats import EmbeddedNats
from medic.runtime.settings import NatsSettings
from medic.runtime.subjects import EVENTS, RESULTS
from medic.sandbox import KubeSandbox
from medic.schemas import AuditEntry, CustomEvent, Outcome, RemediationResult
from medic.testing.factories import custom_event
from medic.testing.processes import ServiceProcess
from medic.testing.tally import count_patches, fetch_all, patched_names
from medic.testing.waiting import eventually

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]
N = 2000
KILLS = 3
NAMESPACE = "kill"
ANNOTATION = "medic.dev/fixed"
EVENT_TYPE = "custom.kill-test"
RULE = f"""
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {{name: mark-configmap}}
spec:
  match: {{types: [custom.kill-test], kinds: [ConfigMap]}}
  action: {{name: annotate, params: {{values: {{"{ANNOTATION}": "{{namespace}}/{{name}}"}}}}}}
  limits: {{ratePerMinute: 100000}}
  verify: {{timeout: 10s, interval: 0.1s}}
"""


def configmap(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {"k": "v"},
    }


def remediator_env(nats: EmbeddedNats, sandbox: KubeSandbox, rules: Path) -> dict[str, str]:
    return {
        "MEDIC_NATS__URLS": nats.url,
        "MEDIC_KUBE__KUBECONFIG": str(sandbox.kubeconfig_path),
        "MEDIC_KUBE__QPS": "5000",
        "MEDIC_KUBE__BURST": "5000",
        "MEDIC_CLUSTER": "kill",
        "MEDIC_HEALTH__PORT": "0",
        "MEDIC_LOG_LEVEL": "warning",
        "MEDIC_REMEDIATOR_RULES": str(rules),
        "MEDIC_REMEDIATOR_BUILTIN_RULES": "false",
        "MEDIC_REMEDIATOR_ACTOR": "remediator-0",  # one identity, as a restarted pod keeps
        "MEDIC_REMEDIATOR_ACK_WAIT": "2",  # what the killed process held comes back soon
    }


@dataclass
class KillRun:
    seed: int
    kills: list[int]
    events: list[CustomEvent]
    patched: list[str]
    annotations: dict[str, str | None]
    results: list[RemediationResult]
    audit: list[AuditEntry]
    exit_code: int
    logs: str

    def by_event(self) -> dict[str, list[RemediationResult]]:
        found: dict[str, list[RemediationResult]] = collections.defaultdict(list)
        for result in self.results:
            found[result.data.event_id].append(result)
        return found

    def stories(self) -> collections.Counter[tuple[tuple[str, str], ...]]:
        """How many events ended with each set of (outcome, reason) results."""
        return collections.Counter(
            tuple(sorted((r.data.outcome.value, r.data.reason) for r in found))
            for found in self.by_event().values()
        )


_RUNS: dict[str, KillRun] = {}


async def kill_at(
    process: ServiceProcess, thresholds: list[int], progress: Callable[[], Awaitable[int]]
) -> list[int]:
    """SIGKILL the process each time `progress` reaches the next threshold, and start it
    again; the progress at each kill."""
    kills: list[int] = []
    for threshold in thresholds:

        async def reached(at_least: int = threshold) -> bool:
            return await progress() >= at_least

        await eventually(reached, timeout=60.0, interval=0.01)
        process.kill()
        kills.append(await progress())
        process.start()
    return kills


async def stored_results(bus: Bus) -> int:
    return (await bus.js.stream_info(RESULTS.name)).state.messages


async def drained(bus: Bus) -> bool:
    """The remediator's durable has nothing left to deliver or to be acked."""
    info = await bus.js.consumer_info(EVENTS.name, "remediator")
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


async def kill_run(directory: Path) -> KillRun:
    """The run (once per session; the second test judges the same one)."""
    if "run" not in _RUNS:
        nats = EmbeddedNats(data_dir=directory / "nats")
        await nats.start()
        try:
            bus = await Bus.connect(NatsSettings(urls=[nats.url]), name="kill9-test")
            try:
                await bus.ensure_streams()
                _RUNS["run"] = await remediate_while_killing(nats, bus, directory)
            finally:
                await bus.close()
        finally:
            await nats.stop()
    return _RUNS["run"]


async def remediate_while_killing(nats: EmbeddedNats, bus: Bus, directory: Path) -> KillRun:
    seed = int(os.environ.get("MEDIC_FAULTS_SEED", random.randrange(1 << 30)))
    thresholds = sorted(random.Random(seed).sample(range(100, N - 300), KILLS))
    print(f"seed={seed} kill after {thresholds} patches")  # noqa: T201
    (directory / "rules.yaml").write_text(RULE)
    names = [f"cm-{i:04d}" for i in range(N)]
    events = [
        custom_event(n, NAMESPACE, type_name="custom.kill-test", cluster="kill") for n in names
    ]
    async with KubeSandbox.start() as sandbox:
        for name in names:
            sandbox.store.put(configmap(name))
        env = remediator_env(nats, sandbox, directory / "rules.yaml")
        process = ServiceProcess("remediator", env, directory / "remediator.log")
        process.start()
        try:
            await bus.publish_many(events)

            async def patches() -> int:
                return count_patches(sandbox.store, NAMESPACE)

            kills = await kill_at(process, thresholds, patches)

            async def all_reported() -> bool:
                return await stored_results(bus) >= N

            await eventually(all_reported, timeout=90.0, interval=0.2)
            await eventually(lambda: drained(bus), timeout=30.0, interval=0.2)
        finally:
            code = await process.stop()
        annotations = {}
        for name in names:
            stored = sandbox.store.get("v1", "ConfigMap", name, NAMESPACE) or {}
            annotations[name] = (stored["metadata"].get("annotations") or {}).get(ANNOTATION)
        run = KillRun(
            seed=seed,
            kills=kills,
            events=events,
            patched=patched_names(sandbox.store, NAMESPACE),
            annotations=annotations,
            results=[
                r for r in await fetch_all(bus, RESULTS.name) if isinstance(r, RemediationResult)
            ],
            audit=[a for a in await fetch_all(bus, "MEDIC_AUDIT") if isinstance(a, AuditEntry)],
            exit_code=code,
            logs=process.logs(),
        )
    print(f"killed at {kills} patches of {N}; stories: {dict(run.stories())}")  # noqa: T201
    return run


async def test_remediator_killed_three_times_patches_each_object_once(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    run = await kill_run(tmp_path_factory.mktemp("kill9"))
    assert run.exit_code == 0, run.logs[-3000:]
    assert run.kills[-1] < N, "the remediator finished before the last kill"
    twice = {n: c for n, c in collections.Counter(run.patched).items() if c != 1}
    assert not twice, f"patched more than once: {twice} (seed {run.seed})"
    names = sorted(run.annotations)
    assert sorted(run.patched) == names, f"never patched: {sorted(set(names) - set(run.patched))}"
    assert all(run.annotations[n] == f"{NAMESPACE}/{n}" for n in names)
    assert set(run.by_event()) == {e.id for e in run.events}, "events without any result"
    written = collections.Counter(
        a.data.object.name for a in run.audit if a.data.outcome == "written"
    )
    assert max(written.values()) == 1, "a write audited twice"


async def test_remediator_killed_three_times_reports_one_final_outcome_per_event(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    run = await kill_run(tmp_path_factory.mktemp("kill9"))
    final = {Outcome.SUCCEEDED, Outcome.APPLIED}
    by_event = run.by_event()
    wrong = {
        e: [(r.data.outcome.value, r.data.reason) for r in found]
        for e, found in by_event.items()
        if len(found) != 1 or found[0].data.outcome not in final
    }
    assert not wrong, f"{len(wrong)} events: {dict(run.stories())} (seed {run.seed})"


NOTIFY_RULE = """
apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: tell-configmap}
spec:
  match: {types: [custom.kill-test], kinds: [ConfigMap]}
  action: {name: notify-only}
  notify: [ops]
"""


async def test_remediator_killed_three_times_notifies_once_per_event(
    tmp_path: Path, nats_server: EmbeddedNats, bus: Bus
) -> None:
    """A rule whose action keeps no state takes no claim (issue 15); its result's slot in the
    results stream is the only record: killed mid-run, the remediator still leaves exactly one
    result per event."""
    seed = int(os.environ.get("MEDIC_FAULTS_SEED", random.randrange(1 << 30)))
    thresholds = sorted(random.Random(seed).sample(range(200, 2 * N - 600), KILLS))
    (tmp_path / "rules.yaml").write_text(NOTIFY_RULE)
    events = [
        custom_event(f"cm-{i:04d}", NAMESPACE, type_name=EVENT_TYPE, cluster="kill")
        for i in range(2 * N)
    ]
    async with KubeSandbox.start() as sandbox:  # never written to
        env = remediator_env(nats_server, sandbox, tmp_path / "rules.yaml")
        process = ServiceProcess("remediator", env, tmp_path / "remediator.log")
        process.start()
        try:
            await bus.publish_many(events)
            kills = await kill_at(process, thresholds, lambda: stored_results(bus))
            await eventually(lambda: drained(bus), timeout=90.0, interval=0.2)
        finally:
            code = await process.stop()
    results = [r for r in await fetch_all(bus, RESULTS.name) if isinstance(r, RemediationResult)]
    print(f"seed={seed} killed at {kills} results of {2 * N}")  # noqa: T201
    assert code == 0, process.logs()[-3000:]
    assert kills[-1] < 2 * N, "the remediator finished before the last kill"
    per_event = collections.Counter(r.data.event_id for r in results)
    assert set(per_event) == {e.id for e in events}, "events without a result"
    assert set(per_event.values()) == {1}, f"more than one result (seed {seed})"
    assert {r.data.outcome for r in results} == {Outcome.NO_OP}
