"""Least privilege of the chart's RBAC, on the real authorizer (kube-apiserver 1.34, RBAC on).

The chart is `helm install`ed twice (distributed): with dryRun=false, the widest roles it grants
by default, and with dryRun=true, the default, where the remediator's role holds only reads. Per
install, the real watcher and remediator then run in this process, each with a TokenRequest
kubeconfig for the chart's own ServiceAccount and a client that records every request and the
API server's answer, through the scenarios of `medic.demo.scenarios` staged on the control
plane (HelmReleases, Helm release Secrets, Fleet BundleDeployments, Gardener Etcds, Events),
with the built-in rules at the demo's waiting times and a real nats-server.

What this proves:
- `test_no_request_of_the_services_is_forbidden`: in that run no request of either service was
  answered 403, and every scenario's rule reached a final result (no helm-controller, Fleet
  agent or etcd-druid runs here, so fixes that wait for them end `failed: not verified in
  time`; with dryRun=true every fix ends `planned`).
- `test_every_granted_permission_is_used_and_needed`: every (apiGroup, resource, verb) the two
  installed ClusterRoles grant was used by at least one request of that run that the API
  server authorised; and for each one, with the installed role minus that permission (one rule
  of the normalised role, or one verb of it), the real authorizer denies it (SubjectAccessReview)
  and replaying that recorded request with the service's own client is answered 403.
- `test_a_watcher_without_one_permission_reports_forbidden`: one real run with a permission
  removed: the watcher's source is refused and says so.

What it does not prove: that removing a permission changes a scenario's final outcome (a
source that cannot watch keeps retrying; the replay shows the request that would fail). The
roles and the scenarios both come from the declarations and the shipped rules, so a permission a
merged action newly declares must be exercised by some scenario here, or this test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog

from medic.chart.rbac import Grant, grants, normalise
from medic.demo import scenarios
from medic.demo.stack import Timings, rules_yaml, service_settings, tuned_rules
from medic.remediator.actions.diagnose_drift import READABLE
from medic.remediator.service import create as create_remediator
from medic.remediator.settings import RemediatorSettings
from medic.runtime.bus import Bus
from medic.runtime.embedded_nats import EmbeddedNats
from medic.runtime.health import HealthServer
from medic.runtime.kube import ForbiddenError, KubeError
from medic.runtime.lifecycle import ServiceContext
from medic.runtime.settings import KubeSettings, NatsSettings, RuntimeSettings
from medic.runtime.subjects import RESULTS
from medic.schemas import Outcome, RemediationResult
from medic.testing import helm as helm_objects
from medic.testing import objects
from medic.testing.chart import CHART, helm
from medic.testing.controlplane import ControlPlane
from medic.testing.recording import Call, RecordingKubeClient
from medic.testing.tally import fetch_all
from medic.upstream import fleet, flux
from medic.watcher.service import WatcherService, build_sources
from medic.watcher.settings import WatcherSettings
from medic.watcher.sources import default_registry
from medic.watcher.sources.base import SourceContext

pytestmark = [pytest.mark.realcluster, pytest.mark.timeout(300)]
RBAC = "/apis/rbac.authorization.k8s.io/v1/clusterroles"
CLUSTER = "leastpriv"
FINAL = {
    Outcome.PLANNED,  # dry-run's final word
    Outcome.SUCCEEDED,
    Outcome.FAILED,
    Outcome.ESCALATED,
    Outcome.SKIPPED,
    Outcome.NO_OP,
}
# Where the staged kinds live (the staging client's paths, not permissions of Medic).
PLURALS = {
    "HelmRelease": "helmreleases",
    "BundleDeployment": "bundledeployments",
    "Bundle": "bundles",
    "GitRepo": "gitrepos",
    "HelmOp": "helmops",
    "Etcd": "etcds",
    "Secret": "secrets",
    "Event": "events",
    "Deployment": "deployments",
    "Role": "roles",
    "RoleBinding": "rolebindings",
}


@dataclass
class Run:
    namespace: str
    release: str
    kubeconfigs: dict[str, Path]
    calls: dict[str, list[Call]]
    results: list[RemediationResult]
    expected: set[str]
    dry_run: bool
    played: list[str]

    def role(self, component: str) -> str:
        return f"{self.release}-{component}"

    def user(self, component: str) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.role(component)}"


# --- staging on the real API server (as the admin) ------------------------------------------


def collection(obj: dict[str, Any]) -> str:
    group, _, version = obj["apiVersion"].rpartition("/")
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    namespace = obj["metadata"].get("namespace")
    where = f"/namespaces/{namespace}" if namespace else ""
    return f"{base}{where}/{PLURALS[obj['kind']]}"


def stage(plane: ControlPlane, obj: dict[str, Any]) -> None:
    plane.ensure_namespace(obj["metadata"]["namespace"])
    body = {k: v for k, v in obj.items() if k != "status"}
    created = plane.request("POST", collection(obj), body)
    assert created.ok, (obj["kind"], obj["metadata"], created.status, str(created.body)[:1500])
    if "status" in obj and obj["kind"] in {"HelmRelease", "BundleDeployment", "Etcd"}:
        item = f"{collection(obj)}/{obj['metadata']['name']}"
        updated = plane.request("PUT", f"{item}/status", {**created.body, "status": obj["status"]})
        assert updated.ok, (obj["kind"], updated.status, str(updated.body)[:1500])


def served_version(plane: ControlPlane, group: str) -> str:
    if not group:
        return "v1"
    return str(plane.request("GET", f"/apis/{group}").body["preferredVersion"]["version"])


def drift_over_every_readable_kind(plane: ControlPlane, namespace: str) -> scenarios.Scenario:
    """S2's drift loop, its Event naming one object of each kind diagnose-drift can read."""
    name = "drifting"
    release = objects.helmrelease(name, namespace, status=objects.ready_status(name, namespace))
    release["spec"]["driftDetection"] = {"mode": "enabled"}
    manifest: list[dict[str, Any]] = [
        {
            "apiVersion": "/".join(p for p in (group, served_version(plane, group)) if p),
            "kind": kind,
            "metadata": {"name": f"{name}-{kind.lower()}"},
        }
        for kind, (group, _plural) in READABLE.items()
    ]
    text = "---\n" + "---\n".join(json.dumps(m) + "\n" for m in manifest)
    stored = helm_objects.release_secret(name, namespace, modified_ago=3600, manifest=text)
    lines = [f"{m['kind']}/{namespace}/{m['metadata']['name']} changed (0 additions, 1 changes, "
             "0 removals)" for m in manifest]  # fmt: skip
    event = scenarios.drift_event(release, count=4, drifted="\n".join(lines))
    return scenarios.Scenario(
        key="S2-drift-all-kinds",
        title="drift over every readable kind",
        target=scenarios.Target(scenarios.HR_V2, flux.KIND, namespace, name),
        objects=(release, stored, event),
        expect=((scenarios.S2_DRIFT, Outcome.ESCALATED),),
    )


def as_druid_crd_requires(obj: dict[str, Any]) -> dict[str, Any]:
    """etcd-druid's CRD requires spec.labels and each condition's lastUpdateTime, which
    objects.gardener_etcd (written for the sandbox, which does not validate) leaves out."""
    name = obj["metadata"]["name"]
    status = obj.get("status") or {}
    conditions = [
        {"lastUpdateTime": c["lastTransitionTime"], **c} for c in status.get("conditions") or []
    ]
    return {
        **obj,
        "spec": {"labels": {"app": "etcd", "name": name}, **obj["spec"]},
        "status": {**status, "conditions": conditions},
    }


# The demo's scenarios this run does not stage, and why; any other is staged below, so a scenario
# added to medic.demo.scenarios fails test_every_demo_scenario_is_staged until it is.
NOT_STAGED = {
    "S2-drift": "S2-drift-all-kinds stages the same loop, naming every kind diagnose-drift reads",
    "S4-heals": "it heals only through the demo's Fleet agent, and then asks for no permission",
}


OWNERS = {  # what Fleet labels a BundleDeployment with when a GitRepo or HelmOp owns its Bundle
    "GitRepo": (fleet.REPO_LABEL, {"repo": "https://git.example/app", "paths": ["app"]}),
    "HelmOp": (fleet.HELMOP_LABEL, {"helm": {"chart": "app", "repo": "https://charts.example"}}),
}


def owned_by(scenario: scenarios.Scenario, kind: str) -> scenarios.Scenario:
    """S4 whose Bundle a GitRepo or HelmOp owns: the redeploy bumps the owner's field."""
    label, spec = OWNERS[kind]
    staged: list[dict[str, Any]] = []
    for obj in scenario.objects:
        if obj["kind"] == fleet.KIND:
            name = obj["metadata"]["name"]
            labels = {**obj["metadata"]["labels"], label: name}
            obj = {**obj, "metadata": {**obj["metadata"], "labels": labels}}  # noqa: PLW2901
            workspace = labels[fleet.BUNDLE_NAMESPACE_LABEL]
            meta = {"name": name, "namespace": workspace}
            staged.append(
                {"apiVersion": fleet.API_VERSION, "kind": kind, "metadata": meta, "spec": spec}
            )
        staged.append(obj)
    return dataclasses.replace(scenario, key=f"{scenario.key}-{kind}", objects=tuple(staged))


def staged_scenarios(plane: ControlPlane, prefix: str) -> list[scenarios.Scenario]:
    played = [
        scenarios.s1(namespace=f"{prefix}-s1"),
        scenarios.s2(namespace=f"{prefix}-s2"),
        scenarios.s2_migrate(namespace=f"{prefix}-s2m"),
        drift_over_every_readable_kind(plane, f"{prefix}-drift"),
        scenarios.s3(namespace=f"{prefix}-s3"),
        # Bundles live in Fleet's workspace namespace, shared by the runs: names of their own.
        scenarios.s4(namespace=f"{prefix}-s4", name=f"{prefix}-cart"),
        owned_by(scenarios.s4(namespace=f"{prefix}-s4g", name=f"{prefix}-git"), "GitRepo"),
        owned_by(scenarios.s4(namespace=f"{prefix}-s4h", name=f"{prefix}-op"), "HelmOp"),
        scenarios.s5(namespace=f"{prefix}-s5"),
        scenarios.healthy(namespace=f"{prefix}-ok"),
    ]
    for scenario in played:
        for obj in scenario.objects:
            if obj["apiVersion"] == flux.api_version("v2beta1"):
                # helm-controller 1.4's CRD (Flux 2.7) no longer serves v2beta1: the oldest it does
                obj = {**obj, "apiVersion": flux.api_version("v2beta2")}  # noqa: PLW2901
            stage(plane, as_druid_crd_requires(obj) if obj["kind"] == "Etcd" else obj)
    # S2-migrate: the CRD as a Flux 2.2 -> 2.7 upgrade leaves it (Flux 2.7's CRD serves v2beta2
    # and stores v2; an object written at 2.2 was stored at v2beta2), so Medic migrates.
    set_stored_versions(plane, ["v2beta2", flux.STORAGE_VERSION])
    return played


def set_stored_versions(plane: ControlPlane, versions: list[str]) -> None:
    crd = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{flux.CRD_NAME}/status"
    body = {"status": {"storedVersions": versions}}
    patched = plane.request("PATCH", crd, body, content_type="application/merge-patch+json")
    assert patched.ok, patched.body


# --- the services, in this process, as the chart's ServiceAccounts ---------------------------


async def client(kubeconfig: Path) -> RecordingKubeClient:
    return await RecordingKubeClient.connect(
        KubeSettings(kubeconfig=kubeconfig, qps=200, burst=200)
    )


@contextlib.asynccontextmanager
async def services(
    bus: Bus, kubeconfigs: dict[str, Path], rules: Path, etcd: list[str], *, dry_run: bool
) -> AsyncIterator[dict[str, RecordingKubeClient]]:
    timings = Timings()
    document = service_settings(nats_url="nats://unused", kubeconfig=Path(), rules=rules,
                                etcd_endpoints=etcd, channels=(), timings=timings)  # fmt: skip
    watcher_settings = WatcherSettings(**document["watcher"])
    watcher_kube = await client(kubeconfigs["watcher"])
    remediator_kube = await client(kubeconfigs["remediator"])
    context = ServiceContext(
        settings=RuntimeSettings(cluster=CLUSTER), bus=bus, health=HealthServer("127.0.0.1", 0)
    )
    registry = default_registry(entry_points=False)
    source_context = SourceContext(cluster=CLUSTER, kube=watcher_kube)
    sources = build_sources(watcher_settings, source_context, registry)
    # kube_events reads one of two APIs by its `api` setting and declares both: run both.
    events = registry.get("kube_events")
    sources.append(
        events.create(
            events.settings_model.model_validate({"api": "events.k8s.io"}), source_context
        )
    )
    watcher = WatcherService(context, sources, watcher_kube)
    remediator = await create_remediator(
        bus,
        remediator_kube,
        RemediatorSettings(
            actor="least-privilege", rules=[rules], lease_seconds=30, dry_run=dry_run
        ),
        CLUSTER,
    )
    stop = asyncio.Event()
    tasks = [asyncio.create_task(watcher.run(stop)), asyncio.create_task(remediator.run(stop))]
    try:
        yield {"watcher": watcher_kube, "remediator": remediator_kube}
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30.0)


async def play(plane: ControlPlane, run: Run, work: Path) -> None:
    rules = work / "rules.yaml"
    rules.write_text(rules_yaml(tuned_rules(Timings())))
    nats = EmbeddedNats(data_dir=work / "nats")
    await nats.start()
    try:
        bus = await Bus.connect(NatsSettings(urls=[nats.url]), name="least-privilege")
        await bus.ensure_streams()
        try:
            etcd = plane.etcd.client_urls
            async with services(bus, run.kubeconfigs, rules, etcd, dry_run=run.dry_run) as kube:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    run.results = [
                        r
                        for r in await fetch_all(bus, RESULTS.name)
                        if isinstance(r, RemediationResult)
                    ]
                    if run.expected <= {
                        r.data.rule for r in run.results if r.data.outcome in FINAL
                    }:
                        break
                    await asyncio.sleep(0.5)
            run.calls = {name: list(c.calls) for name, c in kube.items()}
        finally:
            await bus.close()
    finally:
        await nats.stop()


@pytest.fixture(scope="module", params=[False, True], ids=["dryRun=false", "dryRun=true"])
def run(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory, request: Any) -> Run:
    """One install and one run per dryRun value: false grants the most, true is the default."""
    dry_run: bool = request.param
    work = tmp_path_factory.mktemp("least-privilege")
    suffix = uuid.uuid4().hex[:6]
    namespace, release = f"medic-lp-{suffix}", f"medic-lp-{suffix}"
    control_plane.ensure_namespace(namespace)
    values = work / "values.json"
    values.write_text(json.dumps({"mode": "distributed", "dryRun": dry_run,
                                  "nats": {"urls": ["nats://nats.nats:4222"]}}))  # fmt: skip
    helm("install", release, str(CHART), "-n", namespace, f"--values={values}",
         "--kubeconfig", str(control_plane.kubeconfig))  # fmt: skip
    kubeconfigs = {
        component: control_plane.serviceaccount_kubeconfig(
            namespace, f"{release}-{component}", create=False
        )
        for component in ("watcher", "remediator")
    }
    played = staged_scenarios(control_plane, f"lp{suffix}")
    expected = {rule for s in played for rule, _ in s.expect}
    keys = [s.key for s in played]
    result = Run(namespace, release, kubeconfigs, {}, [], expected, dry_run, keys)
    try:
        asyncio.run(play(control_plane, result, work))
    finally:  # the session's other tests expect Flux 2.7's CRD as installed (dry-run left it)
        set_stored_versions(control_plane, [flux.STORAGE_VERSION])
    return result


def test_no_request_of_the_services_is_forbidden(run: Run) -> None:
    for component, calls in run.calls.items():
        assert calls, f"{component} made no request"
        forbidden = [c for c in calls if c.status == 403]
        assert not forbidden, f"{component}: {forbidden[:5]}"
    finals = {r.data.rule for r in run.results if r.data.outcome in FINAL}
    assert run.expected <= finals, f"no final result for {run.expected - finals}"
    assert not [r for r in run.results if "forbidden" in r.data.reason.lower()]


def test_every_demo_scenario_is_staged(run: Run) -> None:
    missing = {s.key for s in scenarios.all_scenarios()} - set(run.played) - set(NOT_STAGED)
    assert not missing, f"stage these in staged_scenarios too: {sorted(missing)}"


# --- the converse: every permission used, and needed -----------------------------------------


def installed_rules(plane: ControlPlane, role: str) -> list[dict[str, Any]]:
    reply = plane.request("GET", f"{RBAC}/{role}")
    assert reply.ok, reply.body
    return list(reply.body["rules"])


def set_rules(plane: ControlPlane, role: str, rules: list[dict[str, Any]]) -> None:
    current = plane.request("GET", f"{RBAC}/{role}").body
    reply = plane.request("PUT", f"{RBAC}/{role}", {**current, "rules": rules})
    assert reply.ok, reply.body


def allowed(plane: ControlPlane, run: Run, component: str, call: Call) -> bool:
    """The real authorizer's answer for the ServiceAccount and the call's attributes."""
    attributes = call.attributes
    assert attributes is not None
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{run.namespace}",
              "system:authenticated"]  # fmt: skip
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": run.user(component),
            "groups": groups,
            "resourceAttributes": {
                "verb": attributes.verb,
                "group": attributes.group,
                "resource": attributes.resource,
                "namespace": attributes.namespace,
                "name": attributes.name,
            },
        },
    }
    reply = plane.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    assert reply.ok, reply.body
    return bool(reply.body["status"].get("allowed"))


def wait_authorizer(
    plane: ControlPlane, run: Run, component: str, call: Call, *, want: bool
) -> None:
    deadline = time.monotonic() + 10
    while allowed(plane, run, component, call) != want:
        assert time.monotonic() < deadline, f"authorizer never said allowed={want} for {call}"
        time.sleep(0.02)


async def replay(kubeconfig: Path, call: Call) -> int:
    """The recorded request again, with the service's own client; the status it gets."""
    kube = await RecordingKubeClient.connect(KubeSettings(kubeconfig=kubeconfig))
    query = dict(call.query)
    if query.get("watch") == "true":
        query["timeoutSeconds"] = "1"
    body: dict[str, Any] | None = None if call.method in {"GET", "DELETE"} else {}
    content = "application/merge-patch+json" if call.method == "PATCH" else "application/json"
    try:
        await kube.request(call.method, call.path, query=query, body=body, content_type=content)
    except ForbiddenError:
        return 403
    except KubeError as error:
        return error.status
    finally:
        await kube.close()
    return 200


def used_grants(calls: list[Call]) -> dict[Grant, Call]:
    """Each permission an authorised request needed (404, 409, ... were authorised first)."""
    used: dict[Grant, Call] = {}
    for call in calls:
        attributes = call.attributes
        if attributes is not None and call.status not in {0, 401, 403}:
            used.setdefault(attributes.grant, call)
    return used


@pytest.mark.parametrize("component", ["watcher", "remediator"])
def test_every_granted_permission_is_used_and_needed(
    run: Run, control_plane: ControlPlane, component: str
) -> None:
    role = run.role(component)
    rules = installed_rules(control_plane, role)
    granted = grants(rules)
    assert granted, f"{role} grants nothing"
    used = used_grants(run.calls[component])
    assert not sorted(granted - set(used)), (
        f"{role} grants what no request of the run used: {sorted(granted - set(used))}"
    )
    try:
        for grant in sorted(granted):
            call = used[grant]
            set_rules(control_plane, role, normalise(granted - {grant}))
            wait_authorizer(control_plane, run, component, call, want=False)
            status = asyncio.run(replay(run.kubeconfigs[component], call))
            assert status == 403, f"without {grant}, {call.method} {call.path} got {status}"
        set_rules(control_plane, role, rules)
        for grant in sorted(granted):
            wait_authorizer(control_plane, run, component, used[grant], want=True)
    finally:
        set_rules(control_plane, role, rules)


async def watch_once(kubeconfig: Path, source_name: str) -> tuple[list[Call], list[object]]:
    """One source alone, until the API server has answered its first requests."""
    kube = await client(kubeconfig)
    plugin = default_registry(entry_points=False).get(source_name)
    source = plugin.create(plugin.settings_model.model_validate({}), SourceContext(CLUSTER, kube))
    emitted: list[object] = []

    async def emit(event: object) -> None:
        emitted.append(event)

    stop = asyncio.Event()
    task = asyncio.create_task(source.run(emit, stop))
    try:
        deadline = time.monotonic() + 20
        while not any(c.status == 403 for c in kube.calls) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # what it does right after being refused
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        await kube.close()
    return kube.calls, emitted


def test_a_watcher_without_one_permission_reports_forbidden(
    run: Run, control_plane: ControlPlane
) -> None:
    """A real run: the helmrelease source with its declared `list` taken out of the installed
    role is refused by the API server, logs it as forbidden, and reports no HelmRelease."""
    role = run.role("watcher")
    rules = installed_rules(control_plane, role)
    declared = grants(default_registry(entry_points=False).get("helmrelease").rbac)
    removed = {grant for grant in declared if grant[2] == "list"}
    assert removed, "the helmrelease source declares no list"
    try:
        set_rules(control_plane, role, normalise(grants(rules) - removed))
        probe = next(
            c for c in run.calls["watcher"] if c.attributes and c.attributes.grant in removed
        )
        wait_authorizer(control_plane, run, "watcher", probe, want=False)
        with structlog.testing.capture_logs() as log:
            calls, emitted = asyncio.run(watch_once(run.kubeconfigs["watcher"], "helmrelease"))
    finally:
        set_rules(control_plane, role, rules)
    refused = [c for c in calls if c.status == 403]
    assert refused, calls
    assert {c.attributes.grant for c in refused if c.attributes} <= removed
    assert any("forbidden" in str(entry.get("error", "")) for entry in log), log
    assert emitted == []
