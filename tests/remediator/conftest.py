"""Fixtures shared by the remediator's sandbox tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from medic.runtime.kube import KubeClient
from medic.runtime.settings import KubeSettings
from medic.sandbox import KubeSandbox


@pytest.fixture
async def kube() -> AsyncIterator[tuple[KubeSandbox, KubeClient]]:
    """A sandbox and Medic's Kubernetes client connected to it."""
    async with KubeSandbox.start() as sandbox:
        client = await KubeClient.connect(KubeSettings(kubeconfig=sandbox.kubeconfig_path))
        try:
            yield sandbox, client
        finally:
            await client.close()
