"""`/healthz`, `/readyz` and `/metrics` over HTTP for one process (one or several services).

Liveness says the event loop answers; readiness asks every registered check (NATS connected,
Kubernetes reachable), so a Kubernetes Service stops routing to a replica that cannot work.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = structlog.get_logger(__name__)
ReadinessCheck = Callable[[], Awaitable[bool]]
PORT_ENV = "MEDIC_HEALTH__PORT"


class HealthPortInUseError(Exception):
    """The health port is taken (another Medic, or anything else on 8080): a user's setting to
    change, said in one line, not a crash."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(
            f"health port {port} on {host} is already in use: set {PORT_ENV} to a free port"
            " (0 picks one)"
        )
        self.host = host
        self.port = port


class HealthServer:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.checks: dict[str, ReadinessCheck] = {}
        self.app = web.Application()
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self.app.router.add_get("/metrics", self._metrics)
        self._runner: web.AppRunner | None = None

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        self.checks[name] = check

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        results: dict[str, bool] = {}
        for name, check in self.checks.items():
            try:
                results[name] = await check()
            except Exception:  # noqa: BLE001 - a failing check means not ready
                results[name] = False
        ready = all(results.values())
        return web.json_response(
            {"status": "ready" if ready else "not-ready", "checks": results},
            status=200 if ready else 503,
        )

    async def _metrics(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            if exc.errno != errno.EADDRINUSE:
                raise
            raise HealthPortInUseError(self.host, self.port) from None
        if self.port == 0:  # learn the port the OS picked
            server = site._server  # noqa: SLF001 - aiohttp has no public accessor
            sockets = getattr(server, "sockets", None) or []
            if sockets:
                self.port = int(sockets[0].getsockname()[1])
        log.info("health_listening", url=f"http://{self.host}:{self.port}")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def ensure_port_free(host: str, port: int) -> None:
    """Fail before starting anything else (an embedded NATS, the sandbox) when the health port
    is taken; `HealthServer.start` still reports a port taken in between."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise HealthPortInUseError(host, port) from None


def port_in_use(exc: BaseException) -> HealthPortInUseError | None:
    """The busy-port error in `exc`, also when a TaskGroup wrapped it in an ExceptionGroup."""
    if isinstance(exc, HealthPortInUseError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = port_in_use(inner)
            if found is not None:
                return found
    return None


@contextlib.asynccontextmanager
async def serving(server: HealthServer) -> AsyncIterator[HealthServer]:
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def wait_ready(
    port: int,
    timeout: float = 30.0,
    *,
    still_starting: Callable[[], None] | None = None,
    host: str = "127.0.0.1",
) -> None:
    """Poll a process's `/readyz` until it answers 200 (TimeoutError after `timeout`);
    `still_starting` may raise to give up early, e.g. when the process has exited."""
    url = f"http://{host}:{port}/readyz"
    async with asyncio.timeout(timeout), aiohttp.ClientSession() as session:
        while True:
            if still_starting is not None:
                still_starting()
            # A slow answer (a process busy loading 1,000 rules) is not an end: ask again. The
            # request's own 1 s timeout raises TimeoutError; the overall one cancels instead.
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as reply:
                    if reply.status == 200:
                        return
            await asyncio.sleep(0.1)
