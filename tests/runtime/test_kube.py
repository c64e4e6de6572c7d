"""The Kubernetes client over real HTTP: a small aiohttp server answering like the API server.

Covers paging, error mapping, which failures are retried (reads vs writes, Helm-like etcd
retries), 429 Retry-After, watch streaming with 410 and inactivity, patch content types, and
kubeconfig loading (bearer token sent).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from medic.runtime.backoff import Backoff
from medic.runtime.kube import (
    SECRETS,
    ConflictError,
    GoneError,
    KubeClient,
    NotFoundError,
    ResourceType,
    ServerError,
    TokenBucket,
    TooManyRequestsError,
    UnreachableError,
)
from medic.runtime.settings import KubeSettings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HR = ResourceType("helm.toolkit.fluxcd.io", "v2", "helmreleases", "HelmRelease")


def status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "code": code, "reason": reason, "message": message}
    return web.json_response(body, status=code)


class Api:
    """Routes by (method, path) to a queue of handlers; records every request."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Handler]] = {}
        self.requests: list[tuple[str, str, dict[str, str], dict[str, str], bytes]] = []

    def on(self, method: str, path: str, *handlers: Handler) -> None:
        self.routes.setdefault((method, path), []).extend(handlers)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            (request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        queue = self.routes.get((request.method, request.path)) or []
        if not queue:
            return status(404, "NotFound", f"{request.path} not found")
        handler = queue.pop(0) if len(queue) > 1 else queue[0]
        return await handler(request)

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r[0] == method and r[1] == path)


def reply(value: Any, code: int = 200) -> Handler:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.json_response(value, status=code)

    return handler


def fail(code: int, reason: str, message: str, headers: dict[str, str] | None = None) -> Handler:
    async def handler(_: web.Request) -> web.StreamResponse:
        response = status(code, reason, message)
        response.headers.update(headers or {})
        return response

    return handler


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[Api, KubeClient]]:
    routes = Api()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", routes.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "secret-token"}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    settings = KubeSettings(kubeconfig=kubeconfig, context="ctx", request_timeout=5)
    client = await KubeClient.connect(settings)
    client.backoff = Backoff(base=0.01, cap=0.05)
    try:
        yield routes, client
    finally:
        await client.close()
        await runner.cleanup()


async def test_list_pages_with_continue_and_sends_token(api: tuple[Api, KubeClient]) -> None:
    routes, kube = api
    path = "/apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/helmreleases"

    async def page(request: web.Request) -> web.StreamResponse:
        if request.query.get("continue") == "next":
            return web.json_response(
                {"items": [{"metadata": {"name": "b"}}], "metadata": {"resourceVersion": "42"}}
            )
        return web.json_response(
            {"items": [{"metadata": {"name": "a"}}], "metadata": {"continue": "next"}}
        )

    routes.on("GET", path, page)
    items, version = await kube.list(HR, "apps", label_selector="x=y", limit=1)
    assert [i["metadata"]["name"] for i in items] == ["a", "b"]
    assert version == "42"
    first = routes.requests[0]
    assert first[2] == {"limit": "1", "labelSelector": "x=y"}
    assert first[3]["Authorization"] == "Bearer secret-token"


async def test_errors_carry_status_reason_message(api: tuple[Api, KubeClient]) -> None:
    routes, kube = api
    with pytest.raises(NotFoundError) as caught:
        await kube.get(SECRETS, "missing", "apps")
    assert caught.value.status == 404
    assert caught.value.reason == "NotFound"
    assert "not found" in caught.value.message
    routes.on("PUT", "/api/v1/namespaces/apps/secrets/s", fail(409, "Conflict", "modified"))
    with pytest.raises(ConflictError):
        await kube.replace(SECRETS, {"metadata": {"name": "s", "namespace": "apps"}})
    assert routes.count("PUT", "/api/v1/namespaces/apps/secrets/s") == 1


async def test_reads_retry_5xx_and_honour_retry_after(api: tuple[Api, KubeClient]) -> None:
    routes, kube = api
    path = "/api/v1/namespaces/apps/secrets/s"
    routes.on(
        "GET",
        path,
        fail(500, "InternalError", "boom"),
        fail(429, "TooManyRequests", "slow down", {"Retry-After": "1"}),
        reply({"metadata": {"name": "s"}}),
    )
    started = time.monotonic()
    assert (await kube.get(SECRETS, "s", "apps"))["metadata"]["name"] == "s"
    assert time.monotonic() - started >= 0.95
    assert routes.count("GET", path) == 3


async def test_reads_give_up_after_attempts(api: tuple[Api, KubeClient]) -> None:
    routes, kube = api
    path = "/api/v1/namespaces/apps/secrets/s"
    routes.on("GET", path, fail(503, "ServiceUnavailable", "etcdserver: request timed out"))
    kube.attempts = 3
    with pytest.raises(ServerError) as caught:
        await kube.get(SECRETS, "s", "apps")
    assert "etcdserver" in caught.value.message
    assert routes.count("GET", path) == 3


async def test_writes_retry_only_what_did_not_happen(api: tuple[Api, KubeClient]) -> None:
    routes, kube = api
    path = "/apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/helmreleases/r"
    routes.on("PATCH", path, fail(500, "InternalError", "something else broke"))
    with pytest.raises(ServerError):
        await kube.patch(HR, "r", "apps", {"metadata": {"annotations": {"a": "b"}}})
    assert routes.count("PATCH", path) == 1

    routes.routes.clear()
    routes.requests.clear()
    routes.on(
        "PATCH",
        path,
        fail(500, "InternalError", "etcdserver: leader changed"),
        fail(429, "TooManyRequests", "throttled", {"Retry-After": "0"}),
        reply({"metadata": {"name": "r"}}),
    )
    assert (await kube.patch(HR, "r", "apps", {"spec": {}}))["metadata"]["name"] == "r"
    assert routes.count("PATCH", path) == 3


@pytest.mark.parametrize(
    ("patch_type", "content_type"),
    [
        ("merge", "application/merge-patch+json"),
        ("json", "application/json-patch+json"),
        ("strategic", "application/strategic-merge-patch+json"),
    ],
)
async def test_patch_content_types_and_preconditions(
    api: tuple[Api, KubeClient], patch_type: Any, content_type: str
) -> None:
    routes, kube = api
    path = "/api/v1/namespaces/apps/secrets/s"
    routes.on("PATCH", path, reply({}))
    body: Any = (
        [{"op": "add", "path": "/metadata/labels", "value": {}}]
        if patch_type == "json"
        else {"metadata": {"labels": {"a": "b"}}}
    )
    await kube.patch(SECRETS, "s", "apps", body, patch_type, resource_version="7")
    _, _, query, headers, raw = routes.requests[-1]
    assert headers["Content-Type"] == content_type
    sent = json.loads(raw)
    if patch_type == "json":
        assert sent[0] == {"op": "replace", "path": "/metadata/resourceVersion", "value": "7"}
    else:
        assert sent["metadata"]["resourceVersion"] == "7"
    assert query["fieldManager"] == "medic"


async def test_delete_with_precondition_and_status(api: tuple[Api, KubeClient]) -> None:
    routes, kube = api
    routes.on("DELETE", "/api/v1/namespaces/apps/secrets/s", reply({"kind": "Status"}))
    await kube.delete(SECRETS, "s", "apps", resource_version="9")
    sent = json.loads(routes.requests[-1][4])
    assert sent["preconditions"] == {"resourceVersion": "9"}
    routes.on(
        "PATCH", "/apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/helmreleases/r/status", reply({})
    )
    await kube.patch_status(HR, "r", "apps", {"status": {"observedGeneration": 2}})
    assert routes.requests[-1][3]["Content-Type"] == "application/merge-patch+json"


async def test_subject_access_review(api: tuple[Api, KubeClient]) -> None:
    routes, kube = api
    routes.on(
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        reply({"status": {"allowed": True}}, 201),
    )
    assert await kube.create_subject_access_review("system:sa", "apps", "delete", "secrets")
    spec = json.loads(routes.requests[-1][4])["spec"]
    assert spec["resourceAttributes"] == {
        "verb": "delete",
        "resource": "secrets",
        "group": "",
        "namespace": "apps",
    }


def stream(*events: dict[str, Any]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for event in events:
            await response.write(json.dumps(event).encode() + b"\n")
        return response

    return handler


async def test_watch_streams_bookmarks_and_raises_gone(api: tuple[Api, KubeClient]) -> None:
    routes, kube = api
    path = "/api/v1/namespaces/apps/secrets"
    routes.on(
        "GET",
        path,
        stream(
            {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "5"}}},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "6"}}},
            {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}},
        ),
    )
    seen: list[tuple[str, str]] = []

    async def drain() -> None:
        async for kind, obj in kube.watch(SECRETS, "apps", resource_version="4"):
            seen.append((kind, obj["metadata"]["resourceVersion"]))

    with pytest.raises(GoneError):
        await drain()
    assert seen == [("ADDED", "5"), ("BOOKMARK", "6")]
    query = routes.requests[-1][2]
    assert query["resourceVersion"] == "4"
    assert query["allowWatchBookmarks"] == "true"
    assert query["watch"] == "true"


async def test_watch_silent_too_long_is_dead(api: tuple[Api, KubeClient]) -> None:
    routes, kube = api
    hang = asyncio.Event()

    async def silent(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"")
        await hang.wait()
        return response

    routes.on("GET", "/api/v1/namespaces/apps/secrets", silent)
    started = time.monotonic()
    with pytest.raises(UnreachableError):
        async for _ in kube.watch(SECRETS, "apps", inactivity_timeout=0.3):
            pass
    assert time.monotonic() - started < 3
    hang.set()


async def test_watch_429_is_an_error_with_retry_after(api: tuple[Api, KubeClient]) -> None:
    routes, kube = api
    routes.on(
        "GET",
        "/api/v1/namespaces/apps/secrets",
        fail(429, "TooManyRequests", "slow", {"Retry-After": "3"}),
    )
    with pytest.raises(TooManyRequestsError) as caught:
        async for _ in kube.watch(SECRETS, "apps"):
            pass
    assert caught.value.retry_after == 3.0


async def test_token_bucket_limits_rate(api: tuple[Api, KubeClient]) -> None:
    routes, kube = api
    kube.bucket = TokenBucket(rate=20.0, burst=2)
    routes.on("GET", "/api/v1/namespaces/apps/secrets/s", reply({}))
    started = time.monotonic()
    for _ in range(6):
        await kube.get(SECRETS, "s", "apps")
    # 2 from the burst, then 4 at 20/s: at least ~0.2 s
    assert time.monotonic() - started >= 0.18


async def test_requests_in_flight_are_bounded_by_connections(
    api: tuple[Api, KubeClient], tmp_path: Path
) -> None:
    """`connections` caps the requests in flight (HTTP/1.1: one per connection); the rest wait
    in the client. A bootstrap burst raises it with the remediator's concurrency."""
    routes, _ = api
    in_flight = peak = 0

    async def slow(_: web.Request) -> web.StreamResponse:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return web.json_response({})

    routes.on("GET", "/api/v1/namespaces/apps/secrets/s", slow)
    settings = KubeSettings(kubeconfig=tmp_path / "kubeconfig", context="ctx", connections=2)
    client = await KubeClient.connect(settings)
    try:
        await asyncio.gather(*(client.get(SECRETS, "s", "apps") for _ in range(8)))
    finally:
        await client.close()
    assert peak == 2
