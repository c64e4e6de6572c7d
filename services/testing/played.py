"""The scenarios' world on a real kube-apiserver, and the played controllers as watch loops.

`ApiWorld` is a `medic.demo.world.World` over a `ControlPlane`: it stages objects the way a real
cluster gets them (create, then the status through the status subresource, each as its field
manager), reads them back, and says at which version etcd stores one (the key itself, read from
etcd, not managedFields). `on_write` registers the controllers of `medic.demo.cluster`; while
`playing()` runs, one list-then-watch loop per hooked kind hands each write to them, so the
decisions stay in `cluster.py`, one logic for the sandbox and the real server.

A difference from the sandbox: its hooks run inside the write, before Medic's request returns;
here the controller answers after the watch delivered the write, as a real controller does.
Test support only: admin credentials, synchronous requests for staging and checks.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from medic.demo.world import World
from medic.runtime.backoff import Backoff
from medic.testing.controlplane import ApiResponse, ControlPlane, ControlPlaneError

log = structlog.get_logger(__name__)

Obj = dict[str, Any]
Hook = Callable[[World, str, Obj], None]
WATCH_SECONDS = 60
ETCD_TIMEOUT = 5.0


class WorldError(RuntimeError):
    """The real API server refused a staging write or read (status code and its Status body)."""

    def __init__(self, what: str, reply: ApiResponse) -> None:
        super().__init__(f"{what}: {reply.status} {reply.body}")
        self.status = reply.status
        self.body = reply.body


@dataclass(frozen=True)
class Resource:
    """One served resource, from discovery."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    has_status: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str = "", sub: str = "") -> str:
        root = f"/apis/{self.api_version}" if self.group else f"/api/{self.version}"
        scope = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        tail = "/".join(part for part in (name, sub) if part)
        return f"{root}{scope}/{self.plural}" + (f"/{tail}" if tail else "")


def _split(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


class ApiWorld:
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.hooks: dict[str, list[Hook]] = {}
        self.hook_errors: list[Exception] = []
        self._resources: dict[tuple[str, str, str], Resource] = {}
        self._preferred: dict[str, Resource] = {}  # kind -> at its group's preferred version

    # --- discovery --------------------------------------------------------------------------
    def _discover(self) -> None:
        groups = self._ok("discovery", self.plane.request("GET", "/apis")).body["groups"]
        versions = [("", "v1", True)] + [
            (g["name"], v["version"], v["groupVersion"] == g["preferredVersion"]["groupVersion"])
            for g in groups
            for v in g["versions"]
        ]
        for group, version, preferred in versions:
            path = f"/apis/{group}/{version}" if group else f"/api/{version}"
            listed = self._ok(path, self.plane.request("GET", path)).body["resources"]
            names = {r["name"] for r in listed}
            for entry in listed:
                if "/" in entry["name"]:
                    continue
                resource = Resource(
                    group,
                    version,
                    entry["kind"],
                    entry["name"],
                    bool(entry["namespaced"]),
                    f"{entry['name']}/status" in names,
                )
                self._resources[(group, version, entry["kind"])] = resource
                if preferred:
                    self._preferred.setdefault(entry["kind"], resource)

    def resource(self, api_version: str, kind: str) -> Resource:
        group, version = _split(api_version)
        if (group, version, kind) not in self._resources:
            self._discover()
        found = self._resources.get((group, version, kind))
        if found is None:
            raise LookupError(f"{kind} is not served at {api_version}")
        return found

    def by_kind(self, kind: str) -> Resource:
        if kind not in self._preferred:
            self._discover()
        return self._preferred[kind]

    @staticmethod
    def _ok(what: str, reply: ApiResponse) -> ApiResponse:
        if not reply.ok:
            raise WorldError(what, reply)
        return reply

    # --- World ------------------------------------------------------------------------------
    def put(self, obj: Obj, manager: str = "kubectl") -> Obj:
        """Create (or replace) as `manager`, then write its status through the subresource."""
        resource = self.resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        namespace = meta.get("namespace") if resource.namespaced else None
        if namespace:
            self.plane.ensure_namespace(namespace)
        query = "?" + urllib.parse.urlencode({"fieldManager": manager})
        reply = self.plane.request("POST", resource.path(namespace) + query, obj)
        if reply.status == 409:
            current = self._ok(
                "get", self.plane.request("GET", resource.path(namespace, meta["name"]))
            )
            replacement = {**obj, "metadata": {**meta, **_kept(current.body["metadata"])}}
            reply = self.plane.request(
                "PUT", resource.path(namespace, meta["name"]) + query, replacement
            )
        stored = self._ok(f"stage {obj['kind']} {namespace}/{meta['name']}", reply).body
        if resource.has_status and obj.get("status") is not None:
            with_status = {**stored, "status": obj["status"]}
            path = resource.path(namespace, meta["name"], "status") + query
            stored = self._ok("stage status", self.plane.request("PUT", path, with_status)).body
        return dict(stored)

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        resource = self.resource(api_version, kind)
        reply = self.plane.request("GET", resource.path(namespace, name))
        if reply.status == 404:
            return None
        return dict(self._ok(f"get {kind} {namespace}/{name}", reply).body)

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]:
        resource = self.resource(api_version, kind)
        items = self._ok("list", self.plane.request("GET", resource.path(namespace))).body["items"]
        # A list's items of built-in kinds carry no apiVersion/kind; the sandbox's do.
        return [{"apiVersion": api_version, "kind": kind, **item} for item in items]

    def patch_merge(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        patch: Obj,
        *,
        status: bool = False,
        manager: str = "kubectl",
    ) -> Obj:
        resource = self.resource(api_version, kind)
        query = "?" + urllib.parse.urlencode({"fieldManager": manager})
        path = resource.path(namespace, name, "status" if status else "") + query
        reply = self.plane.request(
            "PATCH", path, patch, content_type="application/merge-patch+json"
        )
        return dict(self._ok(f"patch {kind} {namespace}/{name}", reply).body)

    def stored_version(
        self, api_version_or_group: str, kind: str, name: str, namespace: str | None = None
    ) -> str:
        """The apiVersion etcd holds for a custom resource (its JSON under /registry/...)."""
        group = api_version_or_group.partition("/")[0]
        resource = self.by_kind(kind)
        if resource.group != group:
            raise LookupError(f"{kind} is not in group {group}")
        key = "/".join(p for p in ("/registry", group, resource.plural, namespace or "", name) if p)
        value = etcd_value(self.plane.etcd.client_urls, key)
        return _split(json.loads(value)["apiVersion"])[1]

    def on_write(self, kind: str, callback: Hook) -> None:
        self.hooks.setdefault(kind, []).append(callback)

    # --- the played controllers -------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def playing(self) -> AsyncIterator[None]:
        """Watch every hooked kind and hand each write to its controllers until the block ends.

        Returns once every watch has listed, so a write made in the block is never missed."""
        stop = asyncio.Event()
        context = self._ssl()
        async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as tasks:
            listed = []
            for kind in self.hooks:
                ready = asyncio.Event()
                listed.append(ready)
                tasks.create_task(self._play(session, context, self.by_kind(kind), ready, stop))
            try:
                async with asyncio.timeout(30):
                    for ready in listed:
                        await ready.wait()
                yield
            finally:
                stop.set()

    def _ssl(self) -> ssl.SSLContext:
        pki = self.plane.pki
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        return context

    async def _play(
        self,
        session: aiohttp.ClientSession,
        context: ssl.SSLContext,
        resource: Resource,
        ready: asyncio.Event,
        stop: asyncio.Event,
    ) -> None:
        version, failures, backoff = "", 0, Backoff(base=0.1, cap=2.0)
        stopping = asyncio.ensure_future(stop.wait())
        while not stop.is_set():
            try:
                if not version:
                    reply = await asyncio.to_thread(self.plane.request, "GET", resource.path())
                    version = self._ok("list", reply).body["metadata"]["resourceVersion"]
                    ready.set()
                watching = asyncio.ensure_future(self._watch(session, context, resource, version))
                done, _ = await asyncio.wait(
                    {watching, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                if watching not in done:
                    watching.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watching
                    return
                version, failures = watching.result(), 0
            except (aiohttp.ClientError, ControlPlaneError, WorldError, TimeoutError) as error:
                failures += 1
                log.info("played_watch_failed", kind=resource.kind, error=str(error)[:200])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stopping), backoff.delay(failures))

    async def _watch(
        self,
        session: aiohttp.ClientSession,
        context: ssl.SSLContext,
        resource: Resource,
        version: str,
    ) -> str:
        """One watch from `version`; returns where to resume ("" after 410: list again)."""
        query = {
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        url = self.plane.server + resource.path()
        async with session.get(url, params=query, ssl=context) as response:
            if response.status >= 400:
                return "" if response.status == 410 else version
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                change, obj = event["type"], event["object"]
                if change == "ERROR":
                    return "" if obj.get("code") == 410 else version
                version = obj["metadata"]["resourceVersion"]
                if change != "BOOKMARK":
                    await asyncio.to_thread(self._dispatch, resource.kind, change, obj)
        return version

    def _dispatch(self, kind: str, change: str, obj: Obj) -> None:
        for hook in list(self.hooks.get(kind, ())):
            try:
                hook(self, change, obj)
            except Exception as error:  # noqa: BLE001 - recorded: the test asserts there are none
                log.warning("played_controller_failed", kind=kind, error=str(error)[:300])
                self.hook_errors.append(error)


def _kept(meta: Obj) -> Obj:
    """What a replacing PUT must carry over from the object it replaces."""
    return {"resourceVersion": meta["resourceVersion"]}


def etcd_value(client_urls: list[str], key: str) -> str:
    """The value at `key`, through etcd's JSON gateway (`/v3/kv/range`), from any member up."""
    body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
    last: Exception | None = None
    for url in client_urls:
        request = urllib.request.Request(  # noqa: S310 - our own loopback etcd
            f"{url}/v3/kv/range", data=body, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=ETCD_TIMEOUT) as reply:  # noqa: S310
                found = json.loads(reply.read()).get("kvs") or []
        except (OSError, urllib.error.URLError) as error:
            last = error
            continue
        if not found:
            raise LookupError(f"no etcd key {key}")
        return base64.b64decode(found[0]["value"]).decode()
    raise ControlPlaneError(f"no etcd member answered for {key}: {last}")
