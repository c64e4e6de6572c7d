"""S3 on the real control plane with the real Helm CLI: the incident itself, then Medic.

A CI ServiceAccount may create/get/list Secrets and write ConfigMaps but not update Secrets;
`helm upgrade --install` as that ServiceAccount prints `STATUS: deployed` and leaves the release
`pending-install`. Medic's watcher and remediator run as processes against kube-apiserver; the
diagnosis is the real authorizer's (SubjectAccessReview), the unlock is judged by the next real
`helm upgrade`, `helm history` and `helm status`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from medic.demo.stack import Timings, tuned_rules
from medic.remediator.rules.model import Rule
from medic.testing import e2e
from medic.testing.controlplane import ControlPlane
from medic.testing.helmcli import HelmCli, small_chart
from medic.upstream import helm

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
S3_RULE = "helm-clear-stuck-pending-release"
RBAC = "rbac.authorization.k8s.io"
TIMINGS = Timings(pending_after=1.0)


def s3_rules(identity: str) -> list[Rule]:
    """The shipped S3 rule with test-sized waits, naming the CI identity as a user would."""
    params = {"minLockAge": "1s", "identity": identity, "recheck": "1s"}
    rules = []
    for rule in tuned_rules(TIMINGS):
        if rule.name != S3_RULE:
            rules.append(rule)
            continue
        action = rule.spec.action.model_copy(update={"params": params})
        rules.append(
            rule.model_copy(update={"spec": rule.spec.model_copy(update={"action": action})})
        )
    return rules


def apply(plane: ControlPlane, *objects: dict[str, Any]) -> None:
    kubectl = str(Path(sys.executable).with_name("kubectl"))
    subprocess.run(
        [kubectl, "--kubeconfig", str(plane.kubeconfig), "apply", "-f", "-"],
        input=yaml.safe_dump_all(objects),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def ci_rbac(namespace: str, secret_verbs: list[str]) -> list[dict[str, Any]]:
    chart_verbs = ["create", "get", "list", "update", "patch", "delete"]
    rules = [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": secret_verbs},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": chart_verbs},
    ]
    role_meta = {"name": "deployer", "namespace": namespace}
    return [
        {"apiVersion": f"{RBAC}/v1", "kind": "Role", "metadata": role_meta, "rules": rules},
        {
            "apiVersion": f"{RBAC}/v1", "kind": "RoleBinding",
            "metadata": {"name": "ci-deployer", "namespace": namespace},
            "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "deployer"},
            "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": namespace}],
        },
    ]  # fmt: skip


def release_secret(plane: ControlPlane, namespace: str, revision: int = 1) -> dict[str, Any]:
    reply = plane.request(
        "GET", f"/api/v1/namespaces/{namespace}/secrets/{helm.secret_name('web', revision)}"
    )
    assert reply.ok, reply.body
    return dict(reply.body)


def break_release(plane: ControlPlane, namespace: str, tmp_path: Path) -> HelmCli:
    """The incident: deployed on screen, pending-install in storage, upgrades refused."""
    ci = HelmCli(plane.serviceaccount_kubeconfig(namespace, "ci"), tmp_path / "helm")
    apply(plane, *ci_rbac(namespace, ["create", "get", "list"]))
    chart = small_chart(tmp_path / "chart")
    installed = ci.run("upgrade", "--install", "web", str(chart), namespace=namespace)
    assert installed.returncode == 0, installed.stderr
    assert "STATUS: deployed" in installed.stdout
    status = ci.run("status", "web", namespace=namespace)
    assert "STATUS: pending-install" in status.stdout
    again = ci.run("upgrade", "--install", "web", str(chart), namespace=namespace)
    assert again.returncode != 0
    assert helm.ANOTHER_OPERATION in again.stderr
    return ci


@pytest.mark.realcluster
async def test_s3_escalates_while_rbac_is_broken_unlocks_once_fixed_and_helm_works_again(
    control_plane: ControlPlane, real_namespace: str, tmp_path: Path
) -> None:
    ns = real_namespace
    ci = break_release(control_plane, ns, tmp_path)
    chart = tmp_path / "chart"
    stuck = release_secret(control_plane, ns)
    identity = f"system:serviceaccount:{ns}:ci"
    async with e2e.on_cluster(
        tmp_path / "medic",
        control_plane.kubeconfig,
        s3_rules(identity),
        timings=TIMINGS,
        namespaces=[ns],
    ) as rig:
        escalated = await e2e.result_for(rig, helm.secret_name("web", 1), ["escalated"])
        diagnosis = escalated.data.diagnosis
        assert diagnosis["identity"] == identity
        assert diagnosis["allowed"] == {"get": True, "list": True, "create": True, "update": False}
        assert (
            release_secret(control_plane, ns)["metadata"]["resourceVersion"]
            == stuck["metadata"]["resourceVersion"]
        )
        assert not [
            a
            for a in await rig.audit()
            if a.data.outcome == "written" and a.data.object.namespace == ns
        ]

        apply(
            control_plane, *ci_rbac(ns, ["create", "get", "list", "update"])
        )  # someone fixes RBAC
        done = await e2e.result_for(rig, helm.secret_name("web", 1), ["succeeded", "failed"])
        assert done.data.outcome.value == "succeeded", done.data.reason
        [written] = [
            a
            for a in await rig.audit()
            if a.data.outcome == "written" and a.data.object.namespace == ns
        ]
        assert written.data.backup_id
        unlocked = release_secret(control_plane, ns)
        labels = unlocked["metadata"]["labels"]
        record = helm.decode_secret_data(unlocked["data"]["release"])
        assert record["info"]["status"] == "failed"
        assert record["info"]["description"].startswith(
            "Release unlocked from stale 'pending-install' state"
        )
        assert labels["status"] == "failed"
        assert {"name": "web", "owner": "helm", "version": "1"}.items() <= labels.items()
        assert labels["modifiedAt"].isdigit()

        upgraded = ci.run("upgrade", "--install", "web", str(chart), namespace=ns)
        assert upgraded.returncode == 0, upgraded.stderr
        assert "STATUS: deployed" in ci.run("status", "web", namespace=ns).stdout
        history = json.loads(ci.run("history", "web", "-o", "json", namespace=ns).stdout)
        assert [(h["revision"], h["status"]) for h in history] == [
            (1, "superseded"),
            (2, "deployed"),
        ]

        restore = subprocess.run(
            [sys.executable, "-m", "medic.cli", "backup", "restore", written.data.backup_id],
            env={**os.environ, **rig.env()}, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        assert restore.returncode == 0, restore.stdout + restore.stderr
        assert (
            "STATUS: pending-install"
            in ci.run("status", "web", "--revision", "1", namespace=ns).stdout
        )
        assert release_secret(control_plane, ns)["data"] == stuck["data"]
    e2e.assert_services_exited_cleanly(rig)
