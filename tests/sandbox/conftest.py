"""A started Kubernetes API sandbox and a real kubernetes_asyncio client configured for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import kubernetes_asyncio
import pytest

from medic.sandbox import KubeSandbox


@pytest.fixture
async def kube_sandbox(tmp_path: Path) -> AsyncIterator[KubeSandbox]:
    async with KubeSandbox.start(kubeconfig_dir=tmp_path, bookmark_interval=0.2) as sandbox:
        yield sandbox


@pytest.fixture
async def api(kube_sandbox: KubeSandbox) -> AsyncIterator[kubernetes_asyncio.client.ApiClient]:
    cfg = kubernetes_asyncio.client.Configuration()
    await kubernetes_asyncio.config.load_kube_config(
        config_file=str(kube_sandbox.kubeconfig_path), client_configuration=cfg
    )
    async with kubernetes_asyncio.client.ApiClient(cfg) as client:
        yield client
