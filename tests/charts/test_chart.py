"""The Helm chart, rendered by the real Helm 3.19: lint clean, RBAC exactly what the code
declares for what the values enable, safe pods, secrets by reference, dry-run by default; and
accepted by the real kube-apiserver (`kubectl apply --dry-run=server`, `helm install`).

The expected roles come from `medic.chart.rbac`, i.e. from the sources' and actions' own `rbac`
declarations: nothing here lists a permission.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from medic.chart.rbac import (
    builtin_rule_actions,
    default_sources,
    grants,
    is_write,
    remediator_rules,
    watcher_rules,
)
from medic.testing import upstream
from medic.testing.chart import CHART, DISTRIBUTED, find, helm, render, role_rules, template
from medic.testing.controlplane import ControlPlane

pytestmark = [pytest.mark.realcluster, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parents[2]
KUBECTL = str(Path(sys.executable).with_name("kubectl"))
SHAPES = {"single": {}, "distributed": DISTRIBUTED}


@pytest.fixture(autouse=True, scope="module")
def helm_cli() -> None:
    try:
        upstream.binary_path("helm")
    except upstream.UpstreamUnavailableError as error:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"Helm unavailable in CI: {error}", pytrace=False)
        pytest.skip(f"Helm is not available: {error}")


def deployments(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == "Deployment"]


def env_of(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


@pytest.mark.parametrize("shape", SHAPES)
def test_helm_lint_strict_is_clean(shape: str, tmp_path: Path) -> None:
    values = tmp_path / "values.json"
    values.write_text(json.dumps(SHAPES[shape]))
    out = helm("lint", "--strict", str(CHART), f"--values={values}")
    assert "0 chart(s) failed" in out.stdout
    assert "[WARNING]" not in out.stdout
    assert "[ERROR]" not in out.stdout


@pytest.mark.parametrize("dry_run", [True, False])
def test_roles_grant_exactly_what_the_enabled_sources_and_actions_declare(dry_run: bool) -> None:
    docs = render({**DISTRIBUTED, "dryRun": dry_run})
    watcher = grants(role_rules(docs, "medic-watcher"))
    remediator = grants(role_rules(docs, "medic-remediator"))
    assert watcher == grants(watcher_rules(default_sources()))
    assert remediator == grants(remediator_rules(builtin_rule_actions(), dry_run=dry_run))
    assert not any("*" in grant for grant in watcher | remediator)
    # the normalised shape: one rule per (apiGroup, resource), as medic.chart.rbac gives it
    assert role_rules(docs, "medic-watcher") == watcher_rules(default_sources())


def test_roles_follow_the_values_sources_selector_and_actions() -> None:
    sources = default_sources()[:2]
    docs = render(
        {
            **DISTRIBUTED,
            "dryRun": False,
            "watcher": {"sources": sources, "config": {sources[0]: {"filter": {
                "namespace_selector": "medic.dev/watch=true"}}}},
            "remediator": {"builtinRules": False, "actions": ["notify-only", "annotate"]},
        }
    )  # fmt: skip
    assert grants(role_rules(docs, "medic-watcher")) == grants(
        watcher_rules(sources, namespace_selector=True)
    )
    assert grants(role_rules(docs, "medic-remediator")) == grants(
        remediator_rules(["notify-only", "annotate"], dry_run=False)
    )


def test_an_unknown_source_or_action_is_refused_at_render_time() -> None:
    for values in ({"watcher": {"sources": ["nope"]}}, {"remediator": {"actions": ["nope"]}}):
        with pytest.raises(subprocess.CalledProcessError) as failed:
            template(values)
        assert "unknown" in failed.value.stderr
        assert "nope" in failed.value.stderr


@pytest.mark.parametrize("shape", SHAPES)
def test_default_install_is_dry_run_and_may_not_write(shape: str) -> None:
    docs = render(SHAPES[shape])
    for deployment in deployments(docs):
        env = env_of(deployment)
        if "MEDIC_REMEDIATOR_DRY_RUN" in env or deployment["metadata"]["name"].endswith(
            ("-single", "-remediator")
        ):
            assert env["MEDIC_REMEDIATOR_DRY_RUN"]["value"] == "true"
    for name in ("medic-watcher", "medic-remediator"):
        assert not [g for g in grants(role_rules(docs, name)) if is_write(g)], name
    # NOTES.txt says so: test_helm_install_into_the_real_control_plane reads it.


@pytest.mark.parametrize("shape", SHAPES)
def test_every_deployment_is_probed_limited_non_root_read_only_and_has_a_pdb(shape: str) -> None:
    docs = render(SHAPES[shape])
    expected = {"single": {"single"}, "distributed": {"watcher", "remediator", "notifier"}}[shape]
    found = {d["metadata"]["name"].removeprefix("medic-") for d in deployments(docs)}
    assert found == expected
    pdbs = {d["metadata"]["name"] for d in docs if d["kind"] == "PodDisruptionBudget"}
    for deployment in deployments(docs):
        spec = deployment["spec"]["template"]["spec"]
        [container] = spec["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["resources"]["requests"]
        assert container["resources"]["limits"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        component = deployment["metadata"]["name"].removeprefix("medic-")
        assert container["args"][0] == ("run" if component == "single" else component)
        assert deployment["metadata"]["name"] in pdbs


def test_notifier_has_no_kubernetes_access() -> None:
    docs = render(DISTRIBUTED)
    deployment = find(docs, "Deployment", "medic-notifier")
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    bound = {
        s["name"]
        for d in docs
        if d["kind"] in {"ClusterRoleBinding", "RoleBinding"}
        for s in d["subjects"]
    }
    assert "medic-notifier" not in bound
    assert "MEDIC_KUBE__IN_CLUSTER" not in env_of(deployment)


def test_secrets_come_from_existing_secrets_never_from_values() -> None:
    docs = render(
        {
            **DISTRIBUTED,
            "nats": {**DISTRIBUTED["nats"], "existingSecret": "medic-nats"},
            "notifier": {
                "channels": [{"name": "ops", "type": "slack",
                              "options": {"token_env": "SLACK_TOKEN", "channel": "#ops"}}],
                "secretEnv": [{"name": "SLACK_TOKEN", "secretName": "medic-slack", "key": "token"}],
            },
        }
    )  # fmt: skip
    assert not [d for d in docs if d["kind"] == "Secret"]
    for deployment in deployments(docs):
        env = env_of(deployment)
        assert env["MEDIC_NATS__PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "medic-nats"
    notifier = env_of(find(docs, "Deployment", "medic-notifier") or {})
    assert notifier["SLACK_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "medic-slack",
        "key": "token",
    }
    with pytest.raises(subprocess.CalledProcessError) as refused:
        template({"notifier": {"channels": [{"name": "ops", "type": "slack",
                                             "options": {"token": "xoxb-inline"}}]}})  # fmt: skip
    assert "values don't meet the specifications of the schema" in refused.value.stderr


def test_distributed_mode_needs_nats_urls() -> None:
    with pytest.raises(subprocess.CalledProcessError) as refused:
        template({"mode": "distributed"})
    assert "/nats/urls" in refused.value.stderr


def test_rules_configmap_dashboard_and_servicemonitor_when_asked() -> None:
    rule = (ROOT / "services/remediator/rules/builtin/s5-gardener-operation-stuck.yaml").read_text()
    docs = render(
        {
            "remediator": {"rules": {"own.yaml": rule}},
            "grafanaDashboard": {"enabled": True},
            "serviceMonitor": {"enabled": True},
        }
    )
    rules = find(docs, "ConfigMap", "medic-rules")
    assert rules is not None
    assert yaml.safe_load(rules["data"]["own.yaml"]) == yaml.safe_load(rule)
    env = env_of(find(docs, "Deployment", "medic-single") or {})
    # the files: the mounted folder also holds each one under a hidden ..<timestamp> folder
    assert env["MEDIC_REMEDIATOR_RULES"]["value"] == "/etc/medic/rules/own.yaml"
    dashboard = find(docs, "ConfigMap", "medic-dashboard")
    assert dashboard is not None
    shipped = json.loads((ROOT / "deploy/grafana/medic-dashboard.json").read_text())
    assert json.loads(dashboard["data"]["medic-dashboard.json"]) == shipped
    assert find(docs, "ServiceMonitor", "medic") is not None


def kubectl(kubeconfig: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_template_is_accepted_by_the_real_api_server(
    shape: str, control_plane: ControlPlane, real_namespace: str
) -> None:
    release = f"dry-{uuid.uuid4().hex[:6]}"
    rendered = template(SHAPES[shape], release=release, namespace=real_namespace)
    applied = kubectl(control_plane.kubeconfig, "apply", "--dry-run=server", "-n",
                      real_namespace, "-f", "-", stdin=rendered)  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    kinds = {line.split("/")[0] for line in applied.stdout.splitlines()}
    assert {"deployment.apps", "clusterrole.rbac.authorization.k8s.io"} <= kinds


@pytest.mark.parametrize("shape", SHAPES)
def test_helm_install_into_the_real_control_plane(
    shape: str, control_plane: ControlPlane, real_namespace: str, tmp_path: Path
) -> None:
    release = f"medic-{uuid.uuid4().hex[:6]}"
    values = tmp_path / "values.json"
    values.write_text(json.dumps(SHAPES[shape]))
    out = helm("install", release, str(CHART), "-n", real_namespace, f"--values={values}",
               "--kubeconfig", str(control_plane.kubeconfig))  # fmt: skip
    assert "STATUS: deployed" in out.stdout
    assert "DRY-RUN IS ON" in out.stdout
    listed = kubectl(control_plane.kubeconfig, "get", "deployments,serviceaccounts,pdb",
                     "-n", real_namespace, "-l", f"app.kubernetes.io/instance={release}",
                     "-o", "name")  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    components = ["single"] if shape == "single" else ["watcher", "remediator", "notifier"]
    for component in components:
        assert f"deployment.apps/{release}-{component}" in listed.stdout
    role = control_plane.request(
        "GET", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{release}-remediator"
    )
    assert role.ok
    assert grants(role.body["rules"]) == grants(
        remediator_rules(builtin_rule_actions(), dry_run=True)
    )
