"""The real control plane as a command and as a library: kubectl works on it, RBAC is real, and
no process outlives the one that started it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from medic.testing import upstream
from medic.testing.controlplane import ControlPlane

RBAC = "rbac.authorization.k8s.io"
KUBECTL = str(Path(sys.executable).with_name("kubectl"))
HELMRELEASE = {
    "apiVersion": "helm.toolkit.fluxcd.io/v2",
    "kind": "HelmRelease",
    "metadata": {"name": "podinfo", "namespace": "default"},
    "spec": {
        "interval": "5m",
        "chart": {
            "spec": {"chart": "podinfo", "sourceRef": {"kind": "HelmRepository", "name": "podinfo"}}
        },
    },
}


def kubectl(
    kubeconfig: Path, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@contextlib.contextmanager
def start_command(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    kubeconfig, errors = tmp_path / "kubeconfig", tmp_path / "stderr"
    with (
        errors.open("w") as stderr,
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "medic.testing.controlplane",
                "--kubeconfig",
                str(kubeconfig),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        ) as process,
    ):
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("ready:"):
            process.kill()
            pytest.fail(f"control plane did not start: {line}{errors.read_text()}")
        try:
            yield process, kubeconfig
        finally:
            if process.poll() is None:
                process.kill()


@pytest.mark.realcluster
@pytest.mark.timeout(180)
def test_command_serves_a_kubeconfig_kubectl_applies_reads_patches_and_watches(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """The issue's check: apply a Flux HelmRelease, read it at another served version, patch its
    status and watch it, with the real kubectl; SIGTERM stops every process."""
    with start_command(tmp_path, "--crds", "flux") as (process, kubeconfig):
        children = children_of(process.pid)
        assert len(children) == 2  # one etcd member and kube-apiserver
        kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(HELMRELEASE))
        older = json.loads(
            kubectl(
                kubeconfig,
                "get",
                "helmreleases.v2beta2.helm.toolkit.fluxcd.io",
                "podinfo",
                "-o",
                "json",
            ).stdout
        )
        assert older["apiVersion"] == "helm.toolkit.fluxcd.io/v2beta2"
        status = {"status": {"conditions": [{
            "type": "Ready", "status": "False", "reason": "InstallFailed",
            "message": "etcdserver: leader changed", "lastTransitionTime": "2026-12-02T00:00:00Z",
        }]}}  # fmt: skip
        kubectl(
            kubeconfig,
            "patch",
            "hr",
            "podinfo",
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(status),
        )
        table = kubectl(kubeconfig, "get", "hr", "podinfo").stdout
        assert "etcdserver: leader changed" in table  # the CRD's printer column, served as a Table
        watched = kubectl(
            kubeconfig,
            "get",
            "hr",
            "--watch",
            "--output-watch-events",
            "-o",
            "json",
            "--request-timeout=3s",
            check=False,
        ).stdout
        first = json.loads(watched.splitlines()[0])
        assert first["type"] == "ADDED"
        assert first["object"]["status"]["conditions"][0]["reason"] == "InstallFailed"
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    assert not [pid for pid in children if alive(pid)]


@pytest.mark.realcluster
@pytest.mark.timeout(120)
def test_a_sigkilled_command_leaves_no_etcd_or_apiserver_behind(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    with start_command(tmp_path, "--etcd-members", "3") as (process, _):
        children = children_of(process.pid)
        assert len(children) == 4
        process.kill()
        process.wait()
    deadline = time.monotonic() + 10
    while [pid for pid in children if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if alive(pid)]


@pytest.mark.realcluster
def test_serviceaccount_kubeconfig_gets_the_real_authorizers_answers(
    control_plane: ControlPlane, real_namespace: str
) -> None:
    ci = control_plane.serviceaccount_kubeconfig(real_namespace, "ci")
    denied = kubectl(ci, "-n", real_namespace, "get", "secrets", check=False)
    assert denied.returncode != 0
    assert (
        f'User "system:serviceaccount:{real_namespace}:ci" cannot list resource "secrets"'
        in denied.stderr
    )
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "secrets-read", "namespace": real_namespace},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}],
    }  # fmt: skip
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "ci-secrets-read", "namespace": real_namespace},
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "secrets-read"},
        "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": real_namespace}],
    }  # fmt: skip
    kubectl(control_plane.kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all([role, binding]))
    assert kubectl(ci, "-n", real_namespace, "get", "secrets").returncode == 0
    assert (
        kubectl(
            ci, "-n", real_namespace, "auth", "can-i", "update", "secrets", check=False
        ).stdout.strip()
        == "no"
    )


def test_version_pins_are_the_wrapper_modules_requires() -> None:
    """One place for each binary's version: the require line of its wrapper go.mod."""
    for binary in upstream.BINARIES.values():
        assert (binary.wrapper / "go.sum").exists()
        assert binary.version.startswith("v")
    assert upstream.BINARIES["kube-apiserver"].version.startswith("v1.34.")
    assert upstream.BINARIES["etcd"].version.startswith("v3.6.")
    assert upstream.BINARIES["helm"].version.startswith("v3.19.")
    assert upstream.BINARIES["helm-controller"].version.startswith("v1.4.")


@pytest.mark.realcluster
def test_upstream_path_command_prints_the_cached_binary(control_plane: ControlPlane) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "medic.testing.upstream", "path", "helm"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ},
    ).stdout.strip()
    assert printed == str(upstream.cached_path("helm"))
    version = subprocess.run(
        [printed, "version", "--short"], capture_output=True, text=True, check=True
    ).stdout
    assert version.startswith(upstream.BINARIES["helm"].version)
