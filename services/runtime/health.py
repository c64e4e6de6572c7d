"""`/healthz`, `/readyz` and `/metrics` over HTTP for one process (one or several services).

Liveness says the event loop answers; readiness asks every registered check (NATS connected,
Kubernetes reachable), so a Kubernetes Service stops routing to a replica that cannot work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = structlog.get_logger(__name__)
ReadinessCheck = Callable[[], Awaitable[bool]]


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
        await site.start()
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
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as reply:
                    if reply.status == 200:
                        return
            await asyncio.sleep(0.1)
