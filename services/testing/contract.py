"""What the contract suite (tests/contract/) needs to talk to either API server the same way:
the `KubeApi` handle its `kube_api` fixture yields, and objects both servers accept (the real
HelmRelease CRD validates its schema, so these are complete). Not for production code.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from medic.runtime.kube import KubeClient, ResourceType
from medic.sandbox import KubeSandbox
from medic.testing.controlplane import ControlPlane

KUBECTL = Path(sys.executable).with_name("kubectl")
HR = ResourceType("helm.toolkit.fluxcd.io", "v2", "helmreleases", "HelmRelease")
CONFIGMAPS = ResourceType("", "v1", "configmaps", "ConfigMap")


def helmrelease(name: str, namespace: str, **labels: str) -> dict[str, Any]:
    """A HelmRelease the real Flux 2.7 CRD's schema accepts."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:  # an empty map is dropped by the API server, and kubectl apply would see a diff
        metadata["labels"] = labels
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": metadata,
        "spec": {
            "interval": "5m",
            "chart": {
                "spec": {
                    "chart": "podinfo",
                    "sourceRef": {"kind": "HelmRepository", "name": "podinfo"},
                }
            },
        },
    }


def configmap(name: str, namespace: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": {"key": "value"},
    }


@dataclass
class KubeApi:
    """One API server as the contract tests see it."""

    server: str  # "sandbox" or "real"
    kubeconfig: Path
    namespace: str
    kube: KubeClient
    sandbox: KubeSandbox | None = None
    plane: ControlPlane | None = None

    @property
    def real(self) -> bool:
        return self.plane is not None

    async def compact(self) -> None:
        """Compact the history: etcd's, through its v3 JSON gateway, at the current revision
        (real), or the sandbox's watch history (`compact()`)."""
        if self.sandbox is not None:
            self.sandbox.store.compact()
            return
        assert self.plane is not None
        url = self.plane.etcd.client_urls[0]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            async with http.post(f"{url}/v3/kv/range", json={"key": "AA=="}) as reply:
                revision = (await reply.json())["header"]["revision"]
            body = {"revision": revision, "physical": True}
            async with http.post(f"{url}/v3/kv/compaction", json=body) as reply:
                assert reply.status == 200, await reply.text()

    async def kubectl(
        self, *args: str, kubeconfig: Path | None = None, timeout: float = 30
    ) -> tuple[int, str, str]:
        """The real kubectl in a subprocess (async: the sandbox serves on this event loop)."""
        process = await asyncio.create_subprocess_exec(
            str(KUBECTL),
            "--kubeconfig",
            str(kubeconfig or self.kubeconfig),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()
