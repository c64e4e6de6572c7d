"""The scenarios of scenarios.md as data: what is staged, what must come of it, and the check.

Each `Scenario` stages realistic objects (as Flux, Helm, Fleet and Gardener write them), names
the object Medic should judge and the outcome per rule it must reach, or `quiet` when nothing
may happen at all (a problem that heals itself in its grace period, a healthy object). `verify`
reads the final cluster state from the sandbox and says what is wrong, or None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from medic.sandbox import SandboxStore
from medic.schemas import Outcome
from medic.testing import helm as helm_objects
from medic.testing import objects
from medic.upstream import etcd, fleet, flux, gardener, helm

Obj = dict[str, Any]
HR_V2 = flux.api_version("v2")

S1_RETRY = "flux-retry-after-transient-etcd-error"
S2_MIGRATE = "flux-migrate-old-api-version"
S2_FORCE = "flux-force-reconcile-stale-status"
S2_DRIFT = "flux-report-drift-loop"
S3_CLEAR = "helm-clear-stuck-pending-release"
S4_FORCE = "fleet-force-sync-missing-values"
S5_REAPPLY = "gardener-reapply-stuck-operation"


@dataclass(frozen=True)
class Target:
    """The object a scenario is about (what Medic's events and results name)."""

    api_version: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    target: Target
    objects: tuple[Obj, ...]
    expect: tuple[tuple[str, Outcome], ...] = ()  # (rule, final outcome) for the target
    quiet: bool = False  # nothing may be done or said about the target
    verify: Callable[[SandboxStore], str | None] = field(default=lambda _store: None)
    needs_etcd: bool = False
    heals_after: float | None = None  # the cluster repairs it by itself after this many seconds
    verify_untouched: bool = False  # the final check: nothing staged was written since
    # The expected outcomes are the plans' own verdicts (a diagnosis, a refusal): nothing is
    # written live either, so dry-run, which stops after `plan`, reaches the same outcomes.
    settled_by_plan: bool = False

    staged: dict[tuple[str, str, str], str] = field(default_factory=dict, compare=False)

    def stage(self, store: SandboxStore) -> None:
        for obj in self.objects:
            stored = store.put(obj, manager=_manager(obj))
            meta = stored["metadata"]
            key = (obj["kind"], meta.get("namespace", ""), meta["name"])
            self.staged[key] = meta["resourceVersion"]

    def untouched(self, store: SandboxStore) -> str | None:
        """None when every staged object still has the resourceVersion it was staged with."""
        for obj in self.objects:
            meta = obj["metadata"]
            now = store.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
            key = (obj["kind"], meta.get("namespace", ""), meta["name"])
            if now is None or now["metadata"]["resourceVersion"] != self.staged.get(key):
                return f"{obj['kind']} {meta.get('namespace')}/{meta['name']} was changed"
        return None

    def check(self, store: SandboxStore) -> str | None:
        """What is wrong with the final cluster state, or None."""
        if self.verify_untouched:
            return self.untouched(store)
        return self.verify(store)

    @property
    def expected_text(self) -> str:
        if self.quiet:
            return "no action, no message"
        return ", ".join(f"{outcome.value}" for _rule, outcome in self.expect)


def _manager(obj: Obj) -> str:
    return {
        flux.KIND: "helm-controller",
        "BundleDeployment": "fleet-agent",
        gardener.KIND: "etcd-druid",
        "Secret": "helm",
        "Deployment": "kube-controller-manager",
        "Event": "helm-controller",
    }.get(obj.get("kind", ""), "kubectl")


def _ready(obj: Obj | None) -> bool:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == flux.READY and c.get("status") == "True" for c in conditions)


# --------------------------------------------------------------------------- S1
def s1(namespace: str = "apps", name: str = "podinfo") -> Scenario:
    def verify(store: SandboxStore) -> str | None:
        obj = store.get(HR_V2, flux.KIND, name, namespace)
        status = (obj or {}).get("status") or {}
        if not _ready(obj):
            return "HelmRelease is not Ready"
        if status.get("lastHandledResetAt") != status.get("lastHandledReconcileAt"):
            return "failure counters were not reset with the retry"
        return None

    failed = objects.etcd_failed_status(name, namespace, error=etcd.LEADER_CHANGED)
    return Scenario(
        key="S1",
        title="Flux install failed on `etcdserver: leader changed`; retry once etcd is stable",
        target=Target(HR_V2, flux.KIND, namespace, name),
        objects=(objects.helmrelease(name, namespace, status=failed),),
        expect=((S1_RETRY, Outcome.SUCCEEDED),),
        verify=verify,
        needs_etcd=True,
    )


# --------------------------------------------------------------------------- S2
def s2(namespace: str = "apps", name: str = "frontend", dependency: str = "backend") -> Scenario:
    def verify(store: SandboxStore) -> str | None:
        stored = store.stored_version(flux.GROUP, flux.KIND, name, namespace)
        if stored != flux.STORAGE_VERSION:
            return f"still stored at {stored}"
        obj = store.get(HR_V2, flux.KIND, name, namespace)
        status = (obj or {}).get("status") or {}
        if not _ready(obj) or status.get("lastHandledForceAt") is None:
            return "no forced reconcile made it Ready"
        return None

    ready_dep = objects.helmrelease(
        dependency, namespace, status=objects.ready_status(dependency, namespace)
    )
    stale = objects.helmrelease(
        name,
        namespace,
        version="v2beta1",
        depends_on=[dependency],
        status=objects.stale_status(dependency),
    )
    return Scenario(
        key="S2",
        title="HelmRelease left at v2beta1 after a Flux upgrade, stale DependencyNotReady",
        target=Target(HR_V2, flux.KIND, namespace, name),
        objects=(ready_dep, stale),
        expect=((S2_MIGRATE, Outcome.SUCCEEDED), (S2_FORCE, Outcome.SUCCEEDED)),
        verify=verify,
    )


def deployment(name: str, namespace: str, replicas: int) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": name, "image": "ghcr.io/stefanprodan/podinfo:6.5.4"}]
                },
            },
        },
    }


def drift_event(release: Obj, count: int, drifted: str) -> Obj:
    """helm-controller's DriftDetected Event (aggregated by the API server: `count`)."""
    meta = release["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    message = (
        f"Cluster state of release {namespace}/{name}.v1 has drifted from the desired state:\n"
        f"{drifted}"
    )
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{name}.drift", "namespace": namespace},
        "involvedObject": {
            "apiVersion": release["apiVersion"],
            "kind": flux.KIND,
            "name": name,
            "namespace": namespace,
        },
        "reason": flux.DRIFT_DETECTED,
        "message": message,
        "type": "Warning",
        "count": count,
        "source": {"component": "helm-controller"},
        "firstTimestamp": objects.timestamp(ago=600),
        "lastTimestamp": objects.timestamp(),
    }


def s2_drift(namespace: str = "apps", name: str = "api") -> Scenario:
    """An HPA keeps scaling a Deployment helm-controller keeps scaling back (drift detection on)."""
    release = objects.helmrelease(name, namespace, status=objects.ready_status(name, namespace))
    release["spec"]["driftDetection"] = {"mode": "enabled"}
    desired = deployment(name, namespace, replicas=2)
    manifest = "---\n# Source: podinfo/templates/deployment.yaml\n" + yaml.safe_dump(desired)
    stored = helm_objects.release_secret(name, namespace, modified_ago=3600, manifest=manifest)
    summary = f"Deployment/{namespace}/{name} changed (0 additions, 1 changes, 0 removals)"
    return Scenario(
        key="S2-drift",
        title="Drift-correction loop (an HPA rescales what helm-controller scales back): report it",
        target=Target(HR_V2, flux.KIND, namespace, name),
        objects=(
            release,
            stored,
            deployment(name, namespace, replicas=5),  # as the HPA left it
            drift_event(release, count=4, drifted=summary),
        ),
        expect=((S2_DRIFT, Outcome.ESCALATED),),
        verify_untouched=True,
        settled_by_plan=True,
    )


# --------------------------------------------------------------------------- S3
def deployer_rbac(namespace: str, identity: str = "ci-deployer") -> tuple[Obj, Obj]:
    """The Role the platform team has since fixed: the deployer (a CI ServiceAccount, as in the
    incident, not `default`) may update its release Secrets."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "helm-deployer", "namespace": namespace},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "verbs": ["get", "list", "create", "update", "patch", "delete"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "helm-deployer", "namespace": namespace},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "helm-deployer",
        },
        "subjects": [{"kind": "ServiceAccount", "name": identity, "namespace": namespace}],
    }
    return role, binding


def s3(namespace: str = "shop", release: str = "checkout", *, rbac_fixed: bool = True) -> Scenario:
    secret_name = helm.secret_name(release, 1)

    def verify(store: SandboxStore) -> str | None:
        secret = store.get("v1", "Secret", secret_name, namespace) or {}
        label = ((secret.get("metadata") or {}).get("labels") or {}).get(helm.LABEL_STATUS)
        record = helm.decode_secret_data(str((secret.get("data") or {}).get(helm.DATA_KEY, "")))
        status = helm.summarize(record).status.value
        if rbac_fixed:
            return None if label == status == "failed" else f"release is {label}/{status}"
        return None if label == status == "pending-install" else "pending lock was touched"

    pending = helm_objects.release_secret(
        release, namespace, status="pending-install", modified_ago=900
    )
    staged: tuple[Obj, ...] = (pending, *deployer_rbac(namespace)) if rbac_fixed else (pending,)
    outcome = Outcome.SUCCEEDED if rbac_fixed else Outcome.ESCALATED
    title = (
        "Helm release stuck in pending-install (RBAC since fixed): back up, mark failed"
        if rbac_fixed
        else "Helm release stuck in pending-install, RBAC still broken: escalate, touch nothing"
    )
    return Scenario(
        key="S3" if rbac_fixed else "S3-rbac",
        title=title,
        target=Target("v1", "Secret", namespace, secret_name),
        objects=staged,
        expect=((S3_CLEAR, outcome),),
        verify=verify,
        settled_by_plan=not rbac_fixed,  # clear-pending refuses with the RBAC diagnosis
    )


# --------------------------------------------------------------------------- S4
def s4(
    namespace: str = "cluster-fleet-default-c-7f2k9", name: str = "cart", *, heals: bool = False
) -> Scenario:
    def verify(store: SandboxStore) -> str | None:
        bundle = store.get(fleet.API_VERSION, fleet.KIND, name, namespace) or {}
        generation = ((bundle.get("spec") or {}).get("options") or {}).get("forceSyncGeneration")
        if store.get("v1", "Secret", name, namespace) is None:
            return "values Secret still missing"
        if heals:
            return None if not generation else "Medic forced a sync it should have waited out"
        return None if generation == 1 else f"forceSyncGeneration is {generation}"

    error = f'secrets "{name}" not found'
    return Scenario(
        key="S4-heals" if heals else "S4",
        title=(
            "Fleet values Secret missing, re-created by the agent within the grace period"
            if heals
            else "Fleet values Secret stays missing after re-creation: force a redeploy"
        ),
        target=Target(fleet.API_VERSION, fleet.KIND, namespace, name),
        objects=(objects.bundledeployment(name, namespace, error=error),),
        expect=() if heals else ((S4_FORCE, Outcome.SUCCEEDED),),
        quiet=heals,
        verify=verify,
        heals_after=4.0 if heals else None,
    )


# --------------------------------------------------------------------------- S5
def s5(namespace: str = "shoot--dev--demo", name: str = "etcd-main") -> Scenario:
    def verify(store: SandboxStore) -> str | None:
        obj = store.get(gardener.API_VERSION, gardener.KIND, name, namespace) or {}
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        return "operation annotation still there" if gardener.OPERATION in annotations else None

    return Scenario(
        key="S5",
        title="Gardener Etcd operation annotation never cleared: remove and re-apply",
        target=Target(gardener.API_VERSION, gardener.KIND, namespace, name),
        objects=(objects.gardener_etcd(name, namespace),),
        expect=((S5_REAPPLY, Outcome.SUCCEEDED),),
        verify=verify,
    )


# --------------------------------------------------------------------------- healthy
def healthy(namespace: str = "healthy") -> Scenario:
    """Healthy objects of every kind: Medic must leave them alone."""
    staged = (
        objects.helmrelease("web", namespace, status=objects.ready_status("web", namespace)),
        helm_objects.release_secret("web", namespace, modified_ago=900),
        objects.values_secret("web", namespace),  # before its BundleDeployment, as Fleet does
        objects.bundledeployment("web", namespace),
        objects.gardener_etcd("etcd-web", namespace, operation=False),
    )

    return Scenario(
        key="healthy",
        title="Healthy HelmRelease, Helm release, BundleDeployment and Etcd: leave alone",
        target=Target(HR_V2, flux.KIND, namespace, "web"),
        objects=staged,
        quiet=True,
        verify_untouched=True,
    )


def all_scenarios() -> list[Scenario]:
    """What `medic demo` plays: the five scenarios, S4's self-healing twin, healthy objects."""
    return [
        s1(),
        s2(),
        s2_drift(),
        s3(),
        s4(),
        s4(name="catalog", heals=True),
        s5(),
        healthy(),
    ]


def as_dry_run(scenario: Scenario) -> Scenario:
    """The same scenario under dry-run: nothing is written; every fix is `planned`.

    Dry-run stops after `plan` (runner.py), so an outcome the plan settles without writing (a
    diagnosis-only rule's escalation, such as flux-report-drift-loop's) is the same as live:
    people still get the diagnosis, which is what such a rule is for.
    """
    if scenario.quiet:
        return scenario
    expect = scenario.expect
    if not scenario.settled_by_plan:
        expect = tuple((rule, Outcome.PLANNED) for rule, _ in scenario.expect)
    return replace(scenario, expect=expect, verify_untouched=True, staged={})
