"""The end-to-end rig: a demo `Stack` (or a real control plane, `running_on_plane`), receivers
for Slack and signed webhooks, and the three services as separate OS processes
(`python -m medic.cli watcher|remediator|notifier`).

Every process reads the stack's settings file (`MEDIC_CONFIG`) and gets its own health port;
the rig waits until each answers `/readyz`, and on exit stops them with SIGTERM and records
their exit codes and logs, so a test can also assert a clean shutdown.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from medic.demo import play, report
from medic.demo.observer import Observer
from medic.demo.scenarios import Scenario
from medic.demo.stack import (
    Controllers,
    Stack,
    Timings,
    rules_yaml,
    service_settings,
    tuned_rules,
)
from medic.remediator.rules.model import Rule
from medic.runtime import health
from medic.runtime.bus import Bus
from medic.runtime.embedded_nats import EmbeddedNats, free_port
from medic.runtime.settings import NatsSettings
from medic.schemas import AuditEntry, Message, ReleaseEvent, RemediationResult
from medic.testing.controlplane import ControlPlane
from medic.testing.etcd import EtcdCluster
from medic.testing.notifier import stream_messages
from medic.testing.played import ApiWorld
from medic.testing.processes import ServiceProcess
from medic.testing.receivers import SlackReceiver, StandardWebhookReceiver
from medic.testing.waiting import eventually

SERVICES = ("watcher", "remediator", "notifier")
WEBHOOK_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class ScenarioCluster(play.Cluster, Protocol):
    @property
    def timings(self) -> Timings: ...


@dataclass
class PlaneStack:
    """A real control plane as the scenarios' cluster: what `Stack` is for the sandbox."""

    plane: ControlPlane
    store: ApiWorld
    etcd: EtcdCluster | None
    timings: Timings
    etcd_missing: str | None = None


@dataclass
class Rig:
    stack: ScenarioCluster
    observer: Observer
    slack: SlackReceiver
    webhook: StandardWebhookReceiver
    processes: dict[str, ServiceProcess]
    bus: Bus
    exit_codes: dict[str, int] = field(default_factory=dict)

    async def messages(self, stream: str) -> list[Message]:
        return await stream_messages(self.bus, stream)

    async def audit(self) -> list[AuditEntry]:
        return [m for m in await self.messages("MEDIC_AUDIT") if isinstance(m, AuditEntry)]

    async def results(self) -> list[RemediationResult]:
        found = await self.messages("MEDIC_RESULTS")
        return [m for m in found if isinstance(m, RemediationResult)]

    def logs(self) -> dict[str, str]:
        return {name: p.logs() for name, p in self.processes.items()}


async def wait_ready(port: int, process: ServiceProcess, timeout: float = 40.0) -> None:
    """Until the service process answers `/readyz`; its log when it exited instead."""

    def still_starting() -> None:
        if not process.running:
            raise RuntimeError(f"medic {process.service} exited:\n{process.logs()[-3000:]}")

    await health.wait_ready(port, timeout, still_starting=still_starting)


@contextlib.asynccontextmanager
async def running(
    directory: Path,
    scenarios: Sequence[Scenario],
    *,
    with_etcd: bool = False,
    dry_run: bool = False,
    controllers: Controllers | None = None,
    timings: Timings | None = None,
) -> AsyncIterator[Rig]:
    async with (
        SlackReceiver() as slack,
        StandardWebhookReceiver(WEBHOOK_SECRET) as webhook,
        Stack.start(
            directory,
            with_etcd=with_etcd,
            dry_run=dry_run,
            channels=channel_settings(slack, webhook),
            controllers=controllers,
            timings=timings,
        ) as stack,
    ):
        observer = Observer(scenarios)
        await observer.start(stack.nats.url)
        bus = await Bus.connect(NatsSettings(urls=[stack.nats.url]), name="e2e-test")
        processes: dict[str, ServiceProcess] = {}
        rig = Rig(stack, observer, slack, webhook, processes, bus)
        try:
            async with services(directory, stack.config_path, processes, rig.exit_codes):
                yield rig
        finally:
            await bus.close()
            await observer.stop()


def channel_settings(
    slack: SlackReceiver, webhook: StandardWebhookReceiver
) -> list[dict[str, Any]]:
    return [
        {"name": "slack", "type": "slack", "options": {"webhook_url": slack.webhook_url}},
        {
            "name": "hooks",
            "type": "webhook",
            "options": {"url": webhook.url, "secret": WEBHOOK_SECRET},
        },
    ]


@contextlib.asynccontextmanager
async def running_on_plane(
    directory: Path,
    scenarios: Sequence[Scenario],
    plane: ControlPlane,
    *,
    with_etcd: bool = False,
    controllers: Controllers | None = None,
    timings: Timings | None = None,
) -> AsyncIterator[Rig]:
    """As `running`, on a real kube-apiserver: the played controllers watch it (`ApiWorld`),
    the watcher looks only at the scenarios' namespaces (other tests share the server), and
    with `with_etcd` the etcd probe watches the plane's own etcd, the one under kube-apiserver."""
    timings = timings or Timings()
    world = ApiWorld(plane)
    played = controllers or Controllers()
    for controller in (played.helm, played.fleet, played.druid):
        controller.install(world)
    async with (
        SlackReceiver() as slack,
        StandardWebhookReceiver(WEBHOOK_SECRET) as webhook,
        contextlib.AsyncExitStack() as stack,
    ):
        nats = EmbeddedNats(data_dir=directory / "nats")
        await nats.start()
        stack.push_async_callback(nats.stop)
        rules = directory / "rules.yaml"
        rules.write_text(rules_yaml(tuned_rules(timings)))
        settings = service_settings(
            nats_url=nats.url,
            kubeconfig=plane.kubeconfig,
            rules=rules,
            etcd_endpoints=plane.etcd.client_urls if with_etcd else [],
            channels=channel_settings(slack, webhook),
            timings=timings,
        )
        only_in(
            settings, {o["metadata"].get("namespace", "") for s in scenarios for o in s.objects}
        )
        config_path = directory / "medic.yaml"
        config_path.write_text(yaml.safe_dump(settings, sort_keys=False))
        observer = Observer(scenarios)
        await observer.start(nats.url)
        stack.push_async_callback(observer.stop)
        bus = await Bus.connect(NatsSettings(urls=[nats.url]), name="e2e-test")
        stack.push_async_callback(bus.close)
        await stack.enter_async_context(world.playing())
        on_plane = PlaneStack(plane, world, plane.etcd if with_etcd else None, timings)
        rig = Rig(on_plane, observer, slack, webhook, {}, bus)
        async with services(directory, config_path, rig.processes, rig.exit_codes):
            yield rig


def only_in(settings: dict[str, Any], namespaces: set[str]) -> None:
    """Every Kubernetes source of the watcher looks only at `namespaces`."""
    config = settings["watcher"]["config"]
    for source in settings["watcher"]["sources"]:
        if source != "etcd_probe":
            config.setdefault(source, {})["filter"] = {"namespaces": sorted(namespaces - {""})}


@contextlib.asynccontextmanager
async def services(
    directory: Path,
    config_path: Path,
    processes: dict[str, ServiceProcess],
    exit_codes: dict[str, int],
    names: Sequence[str] = SERVICES,
) -> AsyncIterator[None]:
    """`medic <name>` for each name as a process reading `config_path`, each ready on /readyz;
    stopped with SIGTERM on the way out, their exit codes recorded in `exit_codes`."""
    try:
        ports = {name: free_port() for name in names}
        for name in names:
            env = {"MEDIC_CONFIG": str(config_path), "MEDIC_HEALTH__PORT": str(ports[name])}
            processes[name] = ServiceProcess(name, env, directory / f"{name}.log")
            processes[name].start()
        for name in names:
            await wait_ready(ports[name], processes[name])
        yield
    finally:
        for name, process in processes.items():
            exit_codes[name] = await process.stop()


# ------------------------------------------------------------------ what the tests assert
def timeline(rig: Rig) -> str:
    return "\n".join(
        f"{e.at:6.2f}s {e.stage:<9} {e.scenario:<8} {e.text}" for e in rig.observer.entries
    )


async def settle(rig: Rig, scenarios: Sequence[Scenario], timeout: float = 60.0) -> None:
    quiet_window = rig.stack.timings.fleet_grace + 3.0
    done = await play.wait_settled(rig.observer, scenarios, quiet_window, timeout)
    assert done, f"not settled within {timeout}s:\n{timeline(rig)}"


def assert_verdict(rig: Rig, scenario: Scenario) -> report.ScenarioReport:
    verdict = report.judge(rig.observer, rig.stack.store, scenario)
    assert verdict.ok, f"{verdict.problems}\n{timeline(rig)}"
    return verdict


async def audit_for(rig: Rig, scenario: Scenario) -> list[AuditEntry]:
    """The audit entries of the scenario's fixes: about its object, or caused by an event about
    it (an action may write another object, e.g. the Bundle that owns a BundleDeployment)."""
    target = scenario.target

    def about(ref: Any) -> bool:
        return bool(
            ref.kind == target.kind
            and ref.name == target.name
            and (ref.namespace or "") == target.namespace
        )

    events = {
        m.id
        for m in await rig.messages("MEDIC_EVENTS")
        if isinstance(m, ReleaseEvent) and about(m.data.object)
    }
    return [e for e in await rig.audit() if about(e.data.object) or e.data.event_id in events]


async def concluded(rig: Rig, scenario: Scenario, told: str) -> list[AuditEntry]:
    """Wait until the scenario settled and people were told `told`, judge the cluster by the
    scenario; the audit entries of what Medic wrote for it."""
    await settle(rig, [scenario])
    await assert_told_people(rig, scenario, told)
    assert_verdict(rig, scenario)
    return [a for a in await audit_for(rig, scenario) if a.data.outcome == "written"]


async def assert_told_people(rig: Rig, scenario: Scenario, outcome: str) -> None:
    """Slack got a message naming the object and outcome; the webhook a signed JSON body."""
    name = scenario.target.name

    def slack_told() -> list[str]:
        return [
            p.text for p in rig.slack.posted if name in p.text and outcome.upper() in p.text.upper()
        ]

    def webhook_told() -> list[str]:
        bodies = [json.dumps(json.loads(r.body)) for r in rig.webhook.verified]
        return [b for b in bodies if name in b and f'"{outcome}"' in b]

    async def both() -> bool:
        return bool(slack_told()) and bool(webhook_told())

    await eventually(both, timeout=20.0)
    assert not rig.webhook.rejected


def assert_clean_exit(rig: Rig) -> None:
    assert rig.exit_codes == {"watcher": 0, "remediator": 0, "notifier": 0}, rig.exit_codes
    assert not rig.stack.store.hook_errors, rig.stack.store.hook_errors
    for name, text in rig.logs().items():
        assert "Traceback" not in text, f"{name}:\n{text[-4000:]}"


# ------------------------------------------------------------------ on the real control plane
@dataclass
class ClusterRig:
    """Medic's services as processes against a real kube-apiserver, on an embedded nats-server."""

    nats: EmbeddedNats
    bus: Bus
    config_path: Path
    processes: dict[str, ServiceProcess]
    exit_codes: dict[str, int] = field(default_factory=dict)

    async def results(self) -> list[RemediationResult]:
        found = await stream_messages(self.bus, "MEDIC_RESULTS")
        return [m for m in found if isinstance(m, RemediationResult)]

    async def audit(self) -> list[AuditEntry]:
        return [
            m for m in await stream_messages(self.bus, "MEDIC_AUDIT") if isinstance(m, AuditEntry)
        ]

    def logs(self) -> dict[str, str]:
        return {name: p.logs() for name, p in self.processes.items()}

    def env(self) -> dict[str, str]:
        """The environment a `medic` command (backup restore, rules push) needs to reach it."""
        return {"MEDIC_CONFIG": str(self.config_path), "MEDIC_LOG_FORMAT": "json"}


@contextlib.asynccontextmanager
async def on_cluster(
    directory: Path,
    kubeconfig: Path,
    rules: Sequence[Rule],
    *,
    timings: Timings | None = None,
    etcd_endpoints: Sequence[str] = (),
    names: Sequence[str] = ("watcher", "remediator"),
    namespaces: Sequence[str] = (),
) -> AsyncIterator[ClusterRig]:
    """The services on a real cluster, with `rules` replacing built-ins of the same name; with
    `namespaces`, the watcher looks only there (other tests share the server and leave their
    problems behind)."""
    timings = timings or Timings()
    nats = EmbeddedNats(data_dir=directory / "nats")
    await nats.start()
    try:
        rules_path = directory / "rules.yaml"
        rules_path.write_text(rules_yaml(rules))
        settings = service_settings(
            nats_url=nats.url,
            kubeconfig=kubeconfig,
            rules=rules_path,
            etcd_endpoints=etcd_endpoints,
            channels=[{"name": "console", "type": "console"}],
            timings=timings,
        )
        if namespaces:
            only_in(settings, set(namespaces))
        config_path = directory / "medic.yaml"
        config_path.write_text(yaml.safe_dump(settings, sort_keys=False))
        bus = await Bus.connect(NatsSettings(urls=[nats.url]), name="e2e-cluster")
        rig = ClusterRig(nats, bus, config_path, {})
        try:
            async with services(directory, config_path, rig.processes, rig.exit_codes, names):
                yield rig
        finally:
            await bus.close()
    finally:
        await nats.stop()


async def result_for(
    rig: ClusterRig, name: str, outcomes: Sequence[str], timeout: float = 60.0
) -> RemediationResult:
    """The first result about object `name` with one of `outcomes` (waits for it)."""
    found: list[RemediationResult] = []

    async def arrived() -> bool:
        found[:] = [
            r
            for r in await rig.results()
            if r.data.object is not None
            and r.data.object.name == name
            and r.data.outcome.value in outcomes
        ]
        return bool(found)

    try:
        await eventually(arrived, timeout=timeout)
    except AssertionError as error:
        seen = [
            (r.data.object.name if r.data.object else "", r.data.outcome.value, r.data.reason)
            for r in await rig.results()
        ]
        logs = "\n".join(f"--- {n}\n{t[-3000:]}" for n, t in rig.logs().items())
        raise AssertionError(f"no {outcomes} result for {name}; results: {seen}\n{logs}") from error
    return found[0]


def assert_services_exited_cleanly(rig: ClusterRig) -> None:
    assert set(rig.exit_codes.values()) <= {0}, rig.exit_codes
    for name, text in rig.logs().items():
        assert "Traceback" not in text, f"{name}:\n{text[-4000:]}"
