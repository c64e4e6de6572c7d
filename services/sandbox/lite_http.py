"""HTTP for the compact sandbox (`medic.sandbox.lite`): routes, watches, faults, kubeconfig."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch
import yaml
from aiohttp import web

from medic.sandbox.lite import (
    BY_PLURAL,
    KINDS,
    ApiError,
    Fault,
    Kind,
    SandboxStore,
    merge_patch,
    select,
)

VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-medic-sandbox",
    "platform": "linux/amd64",
}


def _resource_list(group: str, version: str) -> dict[str, Any]:
    resources = []
    for kind in KINDS:
        if kind.group == group and version in kind.versions:
            verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
            resources.append(
                {
                    "name": kind.plural,
                    "singularName": kind.kind.lower(),
                    "namespaced": kind.namespaced,
                    "kind": kind.kind,
                    "verbs": verbs,
                }
            )
            if kind.status:
                resources.append(
                    {
                        "name": f"{kind.plural}/status",
                        "singularName": "",
                        "namespaced": kind.namespaced,
                        "kind": kind.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
    if (group, version) == ("authorization.k8s.io", "v1"):
        resources.append(
            {
                "name": "subjectaccessreviews",
                "singularName": "subjectaccessreview",
                "namespaced": False,
                "kind": "SubjectAccessReview",
                "verbs": ["create"],
            }
        )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _groups() -> dict[str, Any]:
    groups: dict[str, list[str]] = {"authorization.k8s.io": ["v1"]}
    for kind in KINDS:
        if kind.group:
            groups.setdefault(kind.group, [])
            for v in kind.versions:
                if v not in groups[kind.group]:
                    groups[kind.group].append(v)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": g,
                "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
            }
            for g, vs in groups.items()
        ],
    }


@dataclass
class Target:
    kind: Kind
    version: str
    namespace: str | None
    name: str | None
    subresource: str

    @property
    def api_version(self) -> str:
        return f"{self.kind.group}/{self.version}" if self.kind.group else self.version


def _parse(parts: list[str]) -> Target:
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    else:
        group, version, rest = parts[1], parts[2], parts[3:]
    namespace = None
    if len(rest) >= 2 and rest[0] == "namespaces" and not (len(rest) == 2 and group == ""):
        namespace, rest = rest[1], rest[2:]
    elif len(rest) == 2 and rest[0] == "namespaces":
        rest = ["namespaces", rest[1]]
    if not rest:
        raise ApiError(404, "NotFound", "no resource in path")
    kind = BY_PLURAL.get((group, rest[0]))
    if kind is None or version not in kind.versions:
        raise ApiError(
            404, "NotFound", f"the server could not find the requested resource ({rest[0]})"
        )
    return Target(
        kind,
        version,
        namespace,
        rest[1] if len(rest) > 1 else None,
        rest[2] if len(rest) > 2 else "",
    )


class SandboxServer:
    def __init__(self, store: SandboxStore, bookmark_interval: float = 1.0) -> None:
        self.store = store
        self.bookmark_interval = bookmark_interval
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.dispatch)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        try:
            return await self._route(request, parts)
        except ApiError as error:
            headers = (
                {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
            )
            return web.json_response(error.status(), status=error.code, headers=headers)

    async def _route(  # noqa: C901, PLR0911 - the URL space of the API
        self, request: web.Request, parts: list[str]
    ) -> web.StreamResponse:
        if not parts or parts == ["version"]:
            return web.json_response(VERSION)
        if parts == ["api"]:
            return web.json_response(
                {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
            )
        if parts == ["apis"]:
            return web.json_response(_groups())
        if parts[0] == "sandbox":
            return await self._control(request, parts[1:])
        if parts[0] == "api" and len(parts) == 2:
            return web.json_response(_resource_list("", parts[1]))
        if parts[0] == "apis" and len(parts) == 2:
            group = next((g for g in _groups()["groups"] if g["name"] == parts[1]), None)
            if group is None:
                raise ApiError(404, "NotFound", f"group {parts[1]} not found")
            return web.json_response({"kind": "APIGroup", "apiVersion": "v1", **group})
        if parts[0] == "apis" and len(parts) == 3:
            return web.json_response(_resource_list(parts[1], parts[2]))
        if parts[:3] == ["apis", "authorization.k8s.io", "v1"]:
            return await self._access_review(request, parts[3])
        if parts[0] not in {"api", "apis"}:
            raise ApiError(404, "NotFound", "not found")
        return await self._resource(request, _parse(parts))

    async def _resource(  # noqa: C901, PLR0911, PLR0912 - one branch per verb
        self, request: web.Request, target: Target
    ) -> web.StreamResponse:
        verb = self._verb(request, target)
        self.store.requests.append(
            {
                "verb": verb,
                "path": request.path,
                "resource": target.kind.plural,
                "namespace": target.namespace,
                "name": target.name,
                "user_agent": request.headers.get("User-Agent", ""),
                "content_type": request.content_type,
                "body": await request.text(),
            }
        )
        fault = self.store.take_fault(verb, target.kind.plural, target.namespace, target.name)
        if fault is not None:
            await asyncio.sleep(fault.latency)
            if (
                fault.status
                and not fault.drop_watch
                and not (fault.latency and fault.status == 200)
            ):
                reason = {
                    429: "TooManyRequests",
                    500: "InternalError",
                    503: "ServiceUnavailable",
                }.get(fault.status, "Error")
                raise ApiError(fault.status, reason, fault.message, fault.retry_after)
        manager = (
            request.query.get("fieldManager")
            or request.headers.get("User-Agent", "unknown").split("/")[0]
        )
        store = self.store
        if verb == "watch":
            return await self._watch(request, target, drop=fault is not None and fault.drop_watch)
        if verb == "list":
            return web.json_response(self._list(request, target))
        if verb == "get":
            obj = store.read(target.kind, target.namespace, target.name or "")
            return web.json_response(store.as_version(obj, target.api_version))
        body = await request.text()
        if verb == "create":
            obj = json.loads(body)
            obj.setdefault("metadata", {})
            if target.namespace:
                obj["metadata"]["namespace"] = target.namespace
            return web.json_response(
                store.write(target.kind, obj, "create", manager, target.api_version), status=201
            )
        if verb == "update":
            obj = json.loads(body)
            return web.json_response(
                store.write(
                    target.kind, obj, "update", manager, target.api_version, target.subresource
                )
            )
        if verb == "patch":
            current = store.read(target.kind, target.namespace, target.name or "")
            patch = json.loads(body)
            if "json-patch" in request.content_type:
                try:
                    merged = jsonpatch.apply_patch(copy.deepcopy(current), patch)
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                    raise ApiError(422, "Invalid", f"json patch: {exc}") from exc
                merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            else:
                merged = merge_patch(copy.deepcopy(current), patch)
                if "resourceVersion" not in (patch.get("metadata") or {}):
                    merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            return web.json_response(
                store.write(
                    target.kind, merged, "update", manager, target.api_version, target.subresource
                )
            )
        options = json.loads(await request.text() or "{}")
        precondition = (options.get("preconditions") or {}).get("resourceVersion")
        return web.json_response(
            store.remove(target.kind, target.namespace, target.name or "", precondition)
        )

    def _verb(self, request: web.Request, target: Target) -> str:
        method = request.method
        if method == "GET":
            if target.name is None:
                return "watch" if request.query.get("watch") in {"1", "true"} else "list"
            return "get"
        return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]

    def _list(self, request: web.Request, target: Target) -> dict[str, Any]:
        items = [
            self.store.as_version(o, target.api_version)
            for (g, p, ns, _), o in sorted(self.store.objects.items())
            if (g, p) == (target.kind.group, target.kind.plural)
            and target.namespace in (None, ns)
            and select(o, request.query.get("labelSelector"), request.query.get("fieldSelector"))
        ]
        start = int(request.query.get("continue") or 0)
        limit = int(request.query.get("limit") or 0) or len(items) or 1
        page = items[start : start + limit]
        meta: dict[str, Any] = {"resourceVersion": str(self.store.revision)}
        if start + limit < len(items):
            meta["continue"] = str(start + limit)
        return {
            "kind": f"{target.kind.kind}List",
            "apiVersion": target.api_version,
            "metadata": meta,
            "items": page,
        }

    async def _watch(  # noqa: C901, PLR0912 - replay, stream, bookmarks, expiry
        self, request: web.Request, target: Target, drop: bool
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        since = int(request.query.get("resourceVersion") or 0)
        labels, fields = request.query.get("labelSelector"), request.query.get("fieldSelector")
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        bookmarks = request.query.get("allowWatchBookmarks") == "true"
        queue: asyncio.Queue[tuple[int, str, dict[str, Any]]] = asyncio.Queue()
        entry = (target.kind, target.namespace, queue)
        self.store.watchers.append(entry)

        async def send(kind: str, obj: dict[str, Any]) -> None:
            line = json.dumps({"type": kind, "object": obj}) + "\n"
            await response.write(line.encode())

        try:
            if since and since < self.store.compacted:
                await send(
                    "ERROR",
                    ApiError(
                        410,
                        "Expired",
                        f"too old resource version: {since} ({self.store.compacted})",
                    ).status(),
                )
                return response
            if since == 0:
                for (g, p, ns, _), obj in list(self.store.objects.items()):
                    if (
                        (g, p) == (target.kind.group, target.kind.plural)
                        and target.namespace in (None, ns)
                        and select(obj, labels, fields)
                    ):
                        await send("ADDED", self.store.as_version(obj, target.api_version))
            else:
                for revision, kind, watched, obj in list(self.store.history):
                    if (
                        revision > since
                        and watched == target.kind
                        and target.namespace in (None, obj["metadata"].get("namespace"))
                        and select(obj, labels, fields)
                    ):
                        await send(kind, self.store.as_version(obj, target.api_version))
            if drop:
                return response
            deadline = asyncio.get_running_loop().time() + timeout
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                try:
                    revision, kind, obj = await asyncio.wait_for(
                        queue.get(), min(left, self.bookmark_interval)
                    )
                except TimeoutError:
                    if bookmarks:
                        await send(
                            "BOOKMARK",
                            {
                                "kind": target.kind.kind,
                                "apiVersion": target.api_version,
                                "metadata": {"resourceVersion": str(self.store.revision)},
                            },
                        )
                    continue
                if revision > since and select(obj, labels, fields):
                    await send(kind, self.store.as_version(obj, target.api_version))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(ValueError):
                self.store.watchers.remove(entry)
        return response

    async def _access_review(self, request: web.Request, resource: str) -> web.StreamResponse:
        review = json.loads(await request.text() or "{}")
        spec = review.get("spec") or {}
        attributes = spec.get("resourceAttributes") or {}
        user = spec.get("user") or "sandbox-admin"
        allowed = resource == "selfsubjectaccessreviews" or self.store.allowed(
            user,
            attributes.get("namespace"),
            attributes.get("verb", ""),
            attributes.get("group", ""),
            attributes.get("resource", ""),
        )
        review["status"] = {
            "allowed": allowed,
            "reason": "RBAC: allowed" if allowed else "RBAC: no rule grants it",
        }
        return web.json_response(review, status=201)

    async def _control(self, request: web.Request, parts: list[str]) -> web.StreamResponse:
        if parts == ["faults"] and request.method == "POST":
            self.store.inject(Fault(**json.loads(await request.text())))
        elif parts == ["compact"]:
            self.store.compact()
        elif parts == ["objects"] and request.method == "POST":
            self.store.load_yaml(await request.text())
        elif parts == ["requests"]:
            return web.json_response(self.store.requests)
        return web.json_response({"ok": True})


def write_kubeconfig(path: Path, url: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "sandbox",
        "clusters": [{"name": "sandbox", "cluster": {"server": url}}],
        "users": [{"name": "sandbox", "user": {"token": "sandbox"}}],
        "contexts": [
            {
                "name": "sandbox",
                "context": {"cluster": "sandbox", "user": "sandbox", "namespace": "default"},
            }
        ],
    }
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class LiteSandbox:
    store: SandboxStore
    url: str
    kubeconfig_path: Path

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls, port: int = 0, kubeconfig_dir: Path | None = None, bookmark_interval: float = 1.0
    ) -> AsyncIterator[LiteSandbox]:
        store = SandboxStore()
        for ns in ("default", "kube-system"):
            store.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        server = SandboxServer(store, bookmark_interval)
        runner = web.AppRunner(server.app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        if port == 0:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        url = f"http://127.0.0.1:{port}"
        with contextlib.ExitStack() as stack:
            directory = kubeconfig_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
            try:
                yield cls(store, url, write_kubeconfig(directory / "kubeconfig", url))
            finally:
                await runner.cleanup()


@contextlib.asynccontextmanager
async def serve_embedded(data_dir: Path) -> AsyncIterator[Path]:
    """For `medic run` with no kubeconfig: a sandbox on a free port; yields its kubeconfig."""
    async with LiteSandbox.start(kubeconfig_dir=data_dir) as sandbox:
        yield sandbox.kubeconfig_path
