"""A forwarding proxy in front of a real kube-apiserver, so a test can act between two requests.

Every answer is the real server's: the proxy forwards each request as the admin (client
certificate) and streams the reply back, watches included. Before forwarding it awaits
`before(method, path)`, where a test can make a concurrent write at the exact moment a client
sends its own, e.g. one that makes the client's judged resourceVersion stale. What went through
is recorded in `passed` (method, path, the real status). Not a fault injector: it never
invents an answer. Test support only.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import aiohttp
import yaml
from aiohttp import web

from medic.runtime.embedded_nats import free_port
from medic.testing.controlplane import ControlPlane

Before = Callable[[str, str], Awaitable[None]]
FORWARDED = ("Content-Type", "Accept")


@dataclass(frozen=True)
class Passed:
    method: str
    path: str
    status: int


@dataclass
class ApiProxy:
    plane: ControlPlane
    before: Before | None = None
    passed: list[Passed] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        pki = self.plane.pki
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig for clients of the proxy (plain HTTP on loopback; any token)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "proxy", "user": {"token": "proxy"}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
            "current-context": "proxy",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        if self.before is not None:
            await self.before(request.method, request.path)
        headers = {name: request.headers[name] for name in FORWARDED if name in request.headers}
        async with self._session.request(
            request.method,
            self.plane.server + request.path_qs,
            data=body or None,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        ) as upstream:
            self.passed.append(Passed(request.method, request.path, upstream.status))
            reply = web.StreamResponse(status=upstream.status)
            reply.content_type = upstream.content_type
            await reply.prepare(request)
            async for chunk in upstream.content.iter_any():
                await reply.write(chunk)
            await reply.write_eof()
            return reply
