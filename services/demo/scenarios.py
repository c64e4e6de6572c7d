"""The scenarios of scenarios.md as data: what is staged, what must come of it, and the check.

Each `Scenario` stages realistic objects (as Flux, Helm, Fleet and Gardener write them), names
the object Medic should judge and the outcome per rule it must reach, or `quiet` when nothing
may happen at all (a problem that heals itself in its grace period, a healthy object). `verify`
reads the final cluster state from the sandbox and says what is wrong, or None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, cast

import yaml

from medic.demo.world import World
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
    verify: Callable[[World], str | None] = field(default=lambda _store: None)
    needs_etcd: bool = False
    heals_after: float | None = None  # the cluster repairs it by itself after this many seconds
    verify_untouched: bool = False  # the final check: nothing staged was written since
    # The expected outcomes are the plans' own verdicts (a diagnosis, a refusal): nothing is
    # written live either, so dry-run, which stops after `plan`, reaches the same outcomes.
    settled_by_plan: bool = False
    # (group, kind, older, current): stage the objects while `older` was the storage version, as
    # an older Flux stored them, then make `current` the storage version (the upgrade)
    stored_by_older: tuple[str, str, str, str] | None = None

    staged: dict[tuple[str, str, str], str] = field(default_factory=dict, compare=False)

    def stage(self, store: World) -> None:
        if self.stored_by_older is not None:
            group, kind, older, _ = self.stored_by_older
            _storage_setter(store)(group, kind, older)
        for obj in self.objects:
            stored = store.put(obj, manager=_manager(obj))
            meta = stored["metadata"]
            key = (obj["kind"], meta.get("namespace", ""), meta["name"])
            self.staged[key] = meta["resourceVersion"]
        if self.stored_by_older is not None:
            group, kind, _, current = self.stored_by_older
            _storage_setter(store)(group, kind, current)

    def untouched(self, store: World) -> str | None:
        """None when every staged object still has the resourceVersion it was staged with."""
        for obj in self.objects:
            meta = obj["metadata"]
            now = store.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
            key = (obj["kind"], meta.get("namespace", ""), meta["name"])
            if now is None or now["metadata"]["resourceVersion"] != self.staged.get(key):
                return f"{obj['kind']} {meta.get('namespace')}/{meta['name']} was changed"
        return None

    def check(self, store: World) -> str | None:
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
    def verify(store: World) -> str | None:
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
CRD_API_VERSION = "apiextensions.k8s.io/v1"


def _storage_setter(store: World) -> Callable[[str, str, str], None]:
    """Moving a CRD's storage version (as a Flux upgrade does) is the sandbox's; on a real API
    server the CRD itself is upgraded (tests/remediator/test_real_flux_upgrade.py)."""
    setter = getattr(store, "set_storage_version", None)
    if setter is None:
        raise NotImplementedError("staging objects at an older storage version needs the sandbox")
    return cast("Callable[[str, str, str], None]", setter)


def _crds(store: World) -> list[Obj]:
    """The sandbox keeps CRDs apart from other objects; a real API server lists them."""
    crds = getattr(store, "crds", None)
    return (
        list(crds())
        if crds is not None
        else store.list(CRD_API_VERSION, "CustomResourceDefinition")
    )


def s2_migrate(namespace: str = "apps", names: tuple[str, ...] = ("cart", "search")) -> Scenario:
    """Flux 2.1 -> 2.2: HelmReleases stored at v2beta1, so the CRD's status.storedVersions lists
    v2beta1 besides the storage version and the next Flux's CRD would be refused. Medic does
    what `flux migrate` does: `{}` on every object, then storedVersions trimmed."""

    def verify(store: World) -> str | None:
        for name in names:
            stored = store.stored_version(flux.GROUP, flux.KIND, name, namespace)
            if stored != flux.STORAGE_VERSION:
                return f"{name} still stored at {stored}"
        (crd,) = [c for c in _crds(store) if c["metadata"]["name"] == flux.CRD_NAME]
        versions = crd["status"]["storedVersions"]
        return None if versions == [flux.STORAGE_VERSION] else f"storedVersions is {versions}"

    return Scenario(
        key="S2-migrate",
        title="HelmReleases stored at v2beta1 after a Flux upgrade: re-store and trim "
        "storedVersions as `flux migrate` does",
        target=Target(CRD_API_VERSION, "CustomResourceDefinition", "", flux.CRD_NAME),
        objects=tuple(
            objects.helmrelease(
                name, namespace, version="v2beta1", status=objects.ready_status(name, namespace)
            )
            for name in names
        ),
        expect=((S2_MIGRATE, Outcome.SUCCEEDED),),
        verify=verify,
        stored_by_older=(flux.GROUP, flux.KIND, "v2beta1", flux.STORAGE_VERSION),
    )


def s2(namespace: str = "apps", name: str = "frontend", dependency: str = "backend") -> Scenario:
    """After the upgrade: DependencyNotReady and an old-format message although the dependency is
    Ready; `flux reconcile hr --force` (requestedAt = forceAt) repairs it."""

    def verify(store: World) -> str | None:
        obj = store.get(HR_V2, flux.KIND, name, namespace)
        status = (obj or {}).get("status") or {}
        token = ((obj or {}).get("metadata") or {}).get("annotations", {}).get(flux.FORCE_AT)
        if not _ready(obj) or token is None or status.get("lastHandledForceAt") != token:
            return "no forced reconcile made it Ready"
        return None

    ready_dep = objects.helmrelease(
        dependency, namespace, status=objects.ready_status(dependency, namespace)
    )
    stale = objects.helmrelease(
        name, namespace, depends_on=[dependency], status=objects.stale_status(dependency)
    )
    return Scenario(
        key="S2",
        title="Stale DependencyNotReady after a Flux upgrade: reconcile with --force",
        target=Target(HR_V2, flux.KIND, namespace, name),
        objects=(ready_dep, stale),
        expect=((S2_FORCE, Outcome.SUCCEEDED),),
        verify=verify,
    )


def s2_stale(
    namespace: str = "apps", name: str = "frontend", dependency: str = "backend"
) -> Scenario:
    """S2's stale status alone, on a HelmRelease already at the storage version: Flux 2.7
    (helm-controller v1.4) no longer serves v2beta1, so a real API server cannot stage S2 itself."""
    return replace(
        s2(namespace, name, dependency),
        key="S2-stale",
        title="HelmRelease with a stale DependencyNotReady after a Flux upgrade: force a reconcile",
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

    def verify(store: World) -> str | None:
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
    # The fixed RBAC exists before the stuck release is seen (on a real API server each object
    # becomes visible on its own, so the order matters: a Secret first is judged without RBAC).
    staged: tuple[Obj, ...] = (*deployer_rbac(namespace), pending) if rbac_fixed else (pending,)
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
FLEET_NS = "fleet-default"


def s4(
    namespace: str = "cluster-fleet-default-c-7f2k9", name: str = "cart", *, heals: bool = False
) -> Scenario:
    """The BundleDeployment was re-created; its options Secret is not back yet and the
    controller (Fleet >= 0.15) marks it `waitingForValues`. The redeploy is requested on the
    Bundle, whose forceSyncGeneration the controller copies into the BundleDeployment."""

    def verify(store: World) -> str | None:
        owner = store.get(fleet.API_VERSION, "Bundle", name, FLEET_NS) or {}
        generation = (owner.get("spec") or {}).get(fleet.FORCE_SYNC_GENERATION)
        bd = store.get(fleet.API_VERSION, fleet.KIND, name, namespace) or {}
        copied = ((bd.get("spec") or {}).get("options") or {}).get(fleet.FORCE_SYNC_GENERATION)
        if store.get("v1", "Secret", name, namespace) is None:
            return "options Secret still missing"
        if heals:
            return None if not generation else "Medic forced a sync it should have waited out"
        if generation != 1:
            return f"Bundle forceSyncGeneration is {generation}"
        return None if copied == 1 else "the controller did not copy forceSyncGeneration"

    return Scenario(
        key="S4-heals" if heals else "S4",
        title=(
            "Fleet options Secret missing, re-created by the controller within the grace period"
            if heals
            else "Fleet options Secret stays missing after re-creation: bump the Bundle's "
            "forceSyncGeneration"
        ),
        target=Target(fleet.API_VERSION, fleet.KIND, namespace, name),
        objects=(
            objects.bundle(name, FLEET_NS),
            objects.bundledeployment(
                name, namespace, bundle_namespace=FLEET_NS, waiting_for_values=True
            ),
        ),
        expect=() if heals else ((S4_FORCE, Outcome.SUCCEEDED),),
        quiet=heals,
        verify=verify,
        heals_after=4.0 if heals else None,
    )


# --------------------------------------------------------------------------- S5
def s5(
    namespace: str = "shoot--dev--demo",
    name: str = "etcd-main",
    key: str = gardener.GARDENER_OPERATION,
) -> Scenario:
    def verify(store: World) -> str | None:
        obj = store.get(gardener.API_VERSION, gardener.KIND, name, namespace) or {}
        left = gardener.operation_annotations(obj)
        return f"operation annotation still there: {', '.join(left)}" if left else None

    return Scenario(
        key="S5",
        title="Gardener Etcd operation annotation never cleared: remove and re-apply",
        target=Target(gardener.API_VERSION, gardener.KIND, namespace, name),
        objects=(objects.gardener_etcd(name, namespace, key=key),),
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
        objects.bundle("web", namespace),
        objects.bundledeployment("web", namespace, bundle_namespace=namespace),
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
        s2_migrate(),
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
