"""Flux's real helm-controller on the real control plane, without source-controller.

helm-controller fetches a chart from its source's `status.artifact` (a plain HTTP GET of `url`,
the bytes checked against `digest`; helm-controller internal/loader/artifact_url.go), and a source
is ready when its observedGeneration equals its generation and it has an artifact. So a test
serves a chart tarball from a loopback HTTP server (`ChartServer`), creates a HelmChart and writes
its status as source-controller would (`publish_chart`), and points a HelmRelease's
`spec.chartRef` at it (real-control-plane.md).

`FaultProxy` sits between helm-controller and kube-apiserver and answers chosen requests the way
kube-apiserver does when etcd falters (a `Status` 500 with `etcdserver: leader changed`), so the
real helm-controller meets a real etcd-family error when the test wants it, not by luck.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import ssl
import subprocess
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from medic.runtime.embedded_nats import free_port
from medic.testing import upstream
from medic.testing.controlplane import ControlPlane
from medic.testing.processes import spawn
from medic.upstream import etcd

SOURCE_API = "source.toolkit.fluxcd.io/v1"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class ChartServer:
    """Chart tarballs from a directory over plain HTTP on loopback, as source-controller's
    artifact server serves them."""

    directory: Path
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_static("/", self.directory)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def package_chart(chart_dir: Path, destination: Path) -> Path:
    """`helm package` with the real Helm CLI; returns the tarball."""
    destination.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(  # noqa: S603 - the Helm binary we built
        [str(upstream.binary_path("helm")), "package", str(chart_dir), "-d", str(destination)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return Path(done.stdout.strip().rsplit(" ", 1)[-1])


def publish_chart(
    plane: ControlPlane, namespace: str, name: str, tarball: Path, server: ChartServer
) -> dict[str, Any]:
    """A HelmChart whose status carries the artifact, written as source-controller writes it."""
    with tarfile.open(tarball) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("/Chart.yaml"))
        chart = yaml.safe_load(archive.extractfile(member).read())  # type: ignore[union-attr]
    path = f"/apis/{SOURCE_API}/namespaces/{namespace}/helmcharts"
    created = plane.ensure(
        {
            "apiVersion": SOURCE_API,
            "kind": "HelmChart",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "chart": chart["name"],
                "version": chart["version"],
                "sourceRef": {"kind": "HelmRepository", "name": "played"},
                "interval": "10m",
            },
        },
        path,
    )
    assert created.ok, created.body
    generation = created.body["metadata"]["generation"]
    data = tarball.read_bytes()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {
        "observedGeneration": generation,
        "observedChartName": chart["name"],
        "artifact": {
            "path": f"helmchart/{namespace}/{name}/{tarball.name}",
            "url": f"{server.url}/{tarball.name}",
            "revision": chart["version"],
            "digest": f"sha256:{hashlib.sha256(data).hexdigest()}",
            "lastUpdateTime": now,
            "size": len(data),
        },
        "conditions": [
            {
                "type": "Ready", "status": "True", "reason": "ChartPullSucceeded",
                "message": f"pulled '{chart['name']}' chart with version '{chart['version']}'",
                "lastTransitionTime": now, "observedGeneration": generation,
            }
        ],
    }  # fmt: skip
    patched = plane.request(
        "PATCH",
        f"{path}/{name}/status",
        {"status": status},
        content_type="application/merge-patch+json",
    )
    assert patched.ok, patched.body
    return dict(patched.body)


@dataclass
class Fault:
    """Answer `times` requests whose method and path match with kube-apiserver's Status 500."""

    method: str
    path: str  # a regular expression, matched against the path (query excluded)
    times: int
    message: str = etcd.LEADER_CHANGED
    answered: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.answered < self.times
            and method == self.method
            and bool(re.search(self.path, path))
        )


@dataclass
class FaultProxy:
    """Plain HTTP on loopback -> kube-apiserver over TLS as the admin; streams watches through."""

    plane: ControlPlane
    faults: list[Fault] = field(default_factory=list)
    port: int = 0
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": self.url}}],
            "users": [{"name": "proxy", "user": {}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
            "current-context": "proxy",
        }  # fmt: skip
        path.write_text(yaml.safe_dump(config))
        return path

    async def start(self) -> None:
        context = ssl.create_default_context(cafile=str(self.plane.pki.ca_cert))
        context.load_cert_chain(str(self.plane.pki.admin_cert), str(self.plane.pki.admin_key))
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        # Proxied watches stream until kube-apiserver ends them: stopping waits for none of them
        # (aiohttp's default waits up to 60 s for open handlers).
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()  # ends the proxied streams, so their handlers return
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        fault = next((f for f in self.faults if f.matches(request.method, request.path)), None)
        if fault is not None:
            fault.answered += 1
            self.requests.append((request.method, request.path, 500))
            return web.json_response(
                {
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": fault.message, "code": 500,
                },
                status=500,
            )  # fmt: skip
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        body = await request.read()
        url = f"{self.plane.server}{request.rel_url}"
        try:
            upstream_reply = await self._session.request(
                request.method, url, headers=headers, data=body or None
            )
        except aiohttp.ClientError as error:
            return web.Response(status=502, text=str(error))
        self.requests.append((request.method, request.path, upstream_reply.status))
        async with upstream_reply:
            reply = web.StreamResponse(status=upstream_reply.status)
            for key, value in upstream_reply.headers.items():
                if key.lower() not in _HOP_BY_HOP:
                    reply.headers[key] = value
            await reply.prepare(request)
            with contextlib.suppress(ConnectionResetError, aiohttp.ClientError):
                async for chunk in upstream_reply.content.iter_any():
                    await reply.write(chunk)
            return reply


@dataclass
class HelmControllerProcess:
    """The real helm-controller binary, against whatever kubeconfig it is given."""

    kubeconfig: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            str(upstream.binary_path("helm-controller")),
            "--watch-all-namespaces=true",
            "--enable-leader-election=false",
            f"--metrics-addr=127.0.0.1:{free_port()}",
            f"--health-addr=127.0.0.1:{free_port()}",
            "--concurrent=4",
            # Its default is 10 minutes: a test stops it in seconds.
            "--graceful-shutdown-timeout=5s",
            "--log-level=debug",
            "--log-encoding=json",
        ]
        with self.log_path.open("ab") as log_file:
            self.process = spawn(
                argv,
                env={"KUBECONFIG": str(self.kubeconfig), "HOME": str(self.log_path.parent)},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.asynccontextmanager
async def helm_controller(
    plane: ControlPlane, directory: Path, faults: list[Fault] | None = None
) -> AsyncIterator[tuple[HelmControllerProcess, FaultProxy]]:
    """helm-controller through a fault-injecting proxy; stopped (and the proxy) on the way out."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    proxy = FaultProxy(plane, faults or [])
    await proxy.start()
    controller = HelmControllerProcess(
        proxy.kubeconfig(directory / "proxy.kubeconfig"), directory / "helm-controller.log"
    )
    try:
        controller.start()
        yield controller, proxy
    finally:
        await asyncio.to_thread(controller.stop)
        await proxy.stop()
