"""One contract, two API servers: every test here runs against the sandbox and the real
kube-apiserver (`kube_api` is parametrized), through Medic's own KubeClient.

real = the session's control plane (etcd 3.6 + kube-apiserver 1.34), each test in a fresh
namespace; sandbox = a KubeSandbox per test. A test that must know which server it talks to
asks `kube_api.real`, and only where the sandbox's LIMITS docstring names the difference.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from medic.runtime.kube import NAMESPACES, KubeClient
from medic.runtime.settings import KubeSettings
from medic.sandbox import KubeSandbox
from medic.testing.contract import KubeApi
from medic.testing.controlplane import ControlPlane


def _namespace_for(request: pytest.FixtureRequest) -> str:
    name = re.sub(r"[^a-z0-9-]", "-", request.node.originalname.lower())[:40].strip("-")
    return f"{name}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(params=["sandbox", pytest.param("real", marks=pytest.mark.realcluster)])
async def kube_api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KubeApi]:
    namespace = _namespace_for(request)
    if request.param == "real":
        plane: ControlPlane = request.getfixturevalue("control_plane")
        plane.ensure_namespace(namespace)
        kube = await KubeClient.connect(KubeSettings(kubeconfig=plane.kubeconfig))
        try:
            yield KubeApi("real", plane.kubeconfig, namespace, kube, plane=plane)
        finally:
            await kube.close()
        return
    async with KubeSandbox.start(kubeconfig_dir=tmp_path, bookmark_interval=0.2) as sandbox:
        kube = await KubeClient.connect(KubeSettings(kubeconfig=sandbox.kubeconfig_path))
        try:
            await kube.create(NAMESPACES, {"metadata": {"name": namespace}})
            yield KubeApi("sandbox", sandbox.kubeconfig_path, namespace, kube, sandbox=sandbox)
        finally:
            await kube.close()
