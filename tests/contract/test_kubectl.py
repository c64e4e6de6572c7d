"""The everyday kubectl verbs (the kubectl of the test extra) on both servers: apply, get,
patch, label, annotate, delete, get --watch, and `create secret generic`, which kubectl's typed
client sends as protobuf whatever the server (client-go rest/request.go `UseProtobufAsDefault`)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from medic.runtime.kube import SECRETS
from medic.testing.contract import HR, KUBECTL, KubeApi, helmrelease

pytestmark = pytest.mark.skipif(not KUBECTL.exists(), reason="kubectl wheel not installed")


async def test_apply_get_patch_label_annotate_delete(kube_api: KubeApi, tmp_path: Path) -> None:
    ns = kube_api.namespace
    manifest = tmp_path / "hr.json"
    manifest.write_text(json.dumps(helmrelease("podinfo", ns)))
    rc, out, err = await kube_api.kubectl("apply", "-f", str(manifest))
    assert (rc, out.strip()) == (0, "helmrelease.helm.toolkit.fluxcd.io/podinfo created"), err
    rc, out, err = await kube_api.kubectl("apply", "-f", str(manifest))
    assert (rc, out.strip()) == (0, "helmrelease.helm.toolkit.fluxcd.io/podinfo unchanged"), err
    rc, out, err = await kube_api.kubectl(
        "-n", ns, "patch", "hr", "podinfo", "--type=merge", "-p", '{"spec":{"suspend":true}}'
    )
    assert (rc, out.strip()) == (0, "helmrelease.helm.toolkit.fluxcd.io/podinfo patched"), err
    rc, _, err = await kube_api.kubectl("-n", ns, "label", "hr", "podinfo", "team=a")
    assert rc == 0, err
    rc, _, err = await kube_api.kubectl(
        "-n", ns, "annotate", "hr", "podinfo", "reconcile.fluxcd.io/requestedAt=now"
    )
    assert rc == 0, err
    rc, out, err = await kube_api.kubectl(
        "-n", ns, "get", "hr", "podinfo", "-o", "json", "--show-managed-fields"
    )
    assert rc == 0, err
    obj = json.loads(out)
    assert obj["spec"]["suspend"] is True
    assert obj["metadata"]["labels"] == {"team": "a"}
    assert obj["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"] == "now"
    managers = {m["manager"] for m in obj["metadata"]["managedFields"]}
    assert {"kubectl-client-side-apply", "kubectl-patch", "kubectl-label"} <= managers
    rc, out, err = await kube_api.kubectl(
        "-n", ns, "get", "helmreleases.v2beta2.helm.toolkit.fluxcd.io", "podinfo", "-o", "json"
    )
    assert rc == 0, err
    assert json.loads(out)["apiVersion"] == "helm.toolkit.fluxcd.io/v2beta2"
    rc, out, err = await kube_api.kubectl("-n", ns, "get", "hr", "-o", "name")
    assert (rc, out.strip()) == (0, "helmrelease.helm.toolkit.fluxcd.io/podinfo"), err
    rc, out, err = await kube_api.kubectl("-n", ns, "delete", "hr", "podinfo")
    assert rc == 0, err
    assert out.startswith('helmrelease.helm.toolkit.fluxcd.io "podinfo" deleted')
    rc, _, err = await kube_api.kubectl("-n", ns, "get", "hr", "podinfo")
    assert rc == 1
    assert "NotFound" in err


async def test_get_watch_prints_later_changes(kube_api: KubeApi) -> None:
    kube, ns = kube_api.kube, kube_api.namespace
    await kube.create(HR, helmrelease("first", ns))
    process = await asyncio.create_subprocess_exec(
        str(KUBECTL),
        "--kubeconfig",
        str(kube_api.kubeconfig),
        *("-n", ns, "get", "hr", "--watch", "-o", "name", "--request-timeout=4s", "-v=6"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    async with asyncio.timeout(20):
        async for line in process.stderr:  # -v=6 logs the watch request once it is answered
            if b"watch=true" in line:
                break
        await kube.create(HR, helmrelease("second", ns))
        out = (await process.stdout.read()).decode()
        assert await process.wait() == 0
    assert out.split() == [
        "helmrelease.helm.toolkit.fluxcd.io/first",
        "helmrelease.helm.toolkit.fluxcd.io/second",
    ]


async def test_create_secret_generic_sends_protobuf_and_is_stored(kube_api: KubeApi) -> None:
    kube, ns = kube_api.kube, kube_api.namespace
    rc, out, err = await kube_api.kubectl(
        "-n",
        ns,
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=user=admin",
        "--type=helm.sh/release.v1",
        "-v=8",
    )
    assert rc == 0, err
    assert "Content-Type: application/vnd.kubernetes.protobuf" in err
    assert "secret/creds created" in out
    secret = await kube.get(SECRETS, "creds", ns)
    assert secret["type"] == "helm.sh/release.v1"
    assert secret["data"] == {"user": "YWRtaW4="}
    assert secret["metadata"]["namespace"] == ns
    rc, out, err = await kube_api.kubectl("-n", ns, "auth", "can-i", "get", "secrets")
    assert (rc, out.strip()) == (0, "yes"), err


async def test_get_prints_the_crd_printer_columns(kube_api: KubeApi) -> None:
    """kubectl asks for a Table; both servers answer with the CRD's additionalPrinterColumns
    (Flux 2.7: Age, Ready, Status)."""
    kube, ns = kube_api.kube, kube_api.namespace
    await kube.create(HR, helmrelease("podinfo", ns))
    rc, out, err = await kube_api.kubectl("-n", ns, "get", "hr")
    assert rc == 0, err
    header = out.splitlines()[0].split()
    assert header == ["NAME", "AGE", "READY", "STATUS"]
    assert out.splitlines()[1].split()[0] == "podinfo"
