# ruff: noqa: C901, PLR0911, PLR0912, PLR0915, TRY301
"""aiohttp routes speaking the Kubernetes API protocol over the in-memory store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import yaml
from aiohttp import web

from medic.sandbox import access, protobuf, tables
from medic.sandbox.catalog import BY_PLURAL, CATALOG, REASONS, ApiError, ResourceType, not_found
from medic.sandbox.memstore import (
    Fault,
    RequestRecord,
    SandboxStore,
    decode_continue,
    encode_continue,
    object_matcher,
)
from medic.sandbox.protobuf import ProtobufError

GIT_VERSION = "v1.31.0"
STORE_KEY: web.AppKey[SandboxStore] = web.AppKey("store", SandboxStore)
OPTIONS_KEY: web.AppKey[dict[str, Any]] = web.AppKey("options", dict)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _error(exc: ApiError) -> web.Response:
    return _json(exc.status(), exc.code, exc.headers)


# ------------------------------------------------------------------ discovery
def _groups() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for rt in CATALOG:
        versions = out.setdefault(rt.group, [])
        versions.extend(v for v in rt.versions if v not in versions)
    return out


def _preferred(group: str, versions: list[str]) -> str:
    for rt in CATALOG:
        if rt.group == group:
            return rt.storage_version
    return versions[-1]


def api_group_list() -> dict[str, Any]:
    groups = []
    for group, versions in _groups().items():
        if not group:
            continue
        pref = _preferred(group, versions)
        gvs = [
            {"groupVersion": f"{group}/{v}", "version": v}
            for v in [pref, *(v for v in versions if v != pref)]
        ]
        groups.append({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    resources: list[dict[str, Any]] = []
    for rt in CATALOG:
        if rt.group != group or version not in rt.versions:
            continue
        entry: dict[str, Any] = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        if rt.crd or rt.kind == "Namespace":
            entry["storageVersionHash"] = f"{rt.kind}{version}"[:12]
        resources.append(entry)
        if rt.status_subresource or rt.kind == "Namespace":
            resources.append(
                {
                    "name": f"{rt.plural}/status",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    if not resources:
        return None
    gv = f"{group}/{version}" if group else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }


# ------------------------------------------------------------------ path parsing
class Target:
    def __init__(
        self,
        rt: ResourceType,
        version: str,
        namespace: str | None,
        name: str | None,
        subresource: str | None,
    ) -> None:
        self.rt, self.version, self.namespace, self.name, self.subresource = (
            rt,
            version,
            namespace,
            name,
            subresource,
        )


def parse_target(path: str) -> Target | None:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and (group, rest[2]) in BY_PLURAL:
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return None
    rt = BY_PLURAL.get((group, rest[0]))
    if rt is None or version not in rt.versions:
        raise ApiError(
            404,
            "NotFound",
            "the server could not find the requested resource",
            {"group": group, "kind": rest[0]},
        )
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and (
        sub != "status" or not (rt.status_subresource or rt.kind == "Namespace")
    ):
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return Target(rt, version, namespace if rt.namespaced else None, name, sub)


def _verb(method: str, target: Target, query: Any) -> str:
    if method == "GET":
        if target.name is None:
            return "watch" if query.get("watch") in ("1", "true", "True") else "list"
        return "get"
    if method == "DELETE" and target.name is None:
        return "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, method.lower()
    )


def _manager(request: web.Request) -> str:
    manager = request.query.get("fieldManager")
    if manager:
        return manager
    agent = request.headers.get("User-Agent", "unknown")
    return agent.split("/")[0].split(" ")[0] or "unknown"


async def _read_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return None
    if "protobuf" in request.content_type:
        try:
            return protobuf.decode(raw)
        except ProtobufError as exc:
            raise ApiError(415, "UnsupportedMediaType", str(exc)) from exc
    if "cbor" in request.content_type:
        raise ApiError(
            415, "UnsupportedMediaType", f"the body type {request.content_type} is not supported"
        )
    try:
        if "yaml" in request.content_type:
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise ApiError(400, "BadRequest", f"the request body is not valid JSON: {exc}") from exc


# ------------------------------------------------------------------ the resource handler
async def handle_resource(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE_KEY]
    started = time.time()
    body: Any = None
    record = RequestRecord(
        request.method.lower(),
        request.path_qs,
        "",
        None,
        None,
        request.headers.get("User-Agent", ""),
        request.headers.get("Content-Type", ""),
        None,
        0,
        started,
    )
    try:
        target = parse_target(request.path)
        if target is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        verb = _verb(request.method, target, request.query)
        record.verb, record.resource = verb, target.rt.plural
        record.namespace, record.name = target.namespace, target.name
        if request.method in ("POST", "PUT", "PATCH", "DELETE"):
            body = await _read_body(request)
            record.body = body
        if verb not in target.rt.verbs and not (
            target.rt.kind == "CustomResourceDefinition" and verb in ("get", "list", "watch")
        ):
            raise ApiError(
                405, "MethodNotAllowed", f"{verb} is not supported on {target.rt.plural}"
            )
        _authorize(request, store, target, verb)
        drop = False
        fault = store.take_fault(verb, target.rt.plural, target.namespace, target.name)
        if fault is not None:
            if fault.latency > 0:
                await asyncio.sleep(fault.latency)
            drop = fault.drop_watch
            if fault.fails:
                headers = {}
                details: dict[str, Any] = {
                    "name": target.name or "",
                    "group": target.rt.group,
                    "kind": target.rt.plural,
                }
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(fault.retry_after)
                    details["retryAfterSeconds"] = fault.retry_after
                raise ApiError(
                    fault.status,
                    REASONS.get(fault.status, "InternalError"),
                    fault.message,
                    details,
                    headers,
                )
        if verb == "watch":
            record.status = 200
            store.requests.append(record)
            return await stream_watch(request, store, target, drop)
        response = _dispatch(request, store, target, verb, body)
    except ApiError as exc:
        response = _error(exc)
    record.status = response.status
    if record.resource:
        store.requests.append(record)
    return response


def _authorize(request: web.Request, store: SandboxStore, t: Target, verb: str) -> None:
    """Requests with an issued token are checked against the stored RBAC; others act as the
    sandbox user, who may do everything."""
    token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    identity = store.tokens.get(token)
    if identity is None:
        return
    user, groups = identity
    attrs: dict[str, Any] = {
        "verb": verb,
        "group": t.rt.group,
        "resource": t.rt.plural,
        "subresource": t.subresource or "",
        "namespace": t.namespace or "",
        "name": t.name or "",
    }
    allowed, _ = access.review(store.lookup, user, groups, attrs, None)
    if not allowed:
        details: dict[str, Any] = {"name": t.name} if t.name else {}
        if t.rt.group:
            details["group"] = t.rt.group
        details["kind"] = t.rt.plural
        raise ApiError(403, "Forbidden", access.forbidden_message(user, attrs), details)


def _dispatch(
    request: web.Request, store: SandboxStore, t: Target, verb: str, body: Any
) -> web.Response:
    rt, version = t.rt, t.version
    dry_run = request.query.get("dryRun") == "All"
    manager = _manager(request)
    if rt.kind == "CustomResourceDefinition":
        crds = store.crds()
        if t.name is None:
            return _json(
                {
                    "kind": "CustomResourceDefinitionList",
                    "apiVersion": "apiextensions.k8s.io/v1",
                    "metadata": {"resourceVersion": str(store.rv)},
                    "items": crds,
                }
            )
        for crd in crds:
            if crd["metadata"]["name"] == t.name:
                return _json(crd)
        raise not_found(rt, t.name)
    if verb == "list":
        listed = _list(request, store, t)
        return _json(_as_table(request, rt, listed["items"], listed["metadata"]) or listed)
    if verb == "create":
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the request body must be an object")
        obj = store.create(rt, t.namespace, body, version, manager, dry_run=dry_run)
        if rt.kind.endswith("AccessReview"):
            return _json(obj, 201)
        return _json(store.convert(obj, rt, version, deep=False), 201)
    if t.name is None:
        if verb != "deletecollection":
            raise ApiError(405, "MethodNotAllowed", f"{verb} needs a name")
        matches = object_matcher(
            request.query.get("labelSelector"), request.query.get("fieldSelector")
        )
        removed = [
            store.remove(rt, o["metadata"].get("namespace"), o["metadata"]["name"], dry_run=dry_run)
            for o in store.select(rt, t.namespace, matches)
        ]
        return _json(
            {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version(version),
                "metadata": {"resourceVersion": str(store.rv)},
                "items": [store.convert(o, rt, version, deep=False) for o in removed],
            }
        )
    if verb == "get":
        obj = store.convert(store.read(rt, t.namespace, t.name), rt, version, deep=False)
        meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
        return _json(_as_table(request, rt, [obj], meta) or obj)
    if verb == "update":
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the request body must be an object")
        existed = (t.namespace or "", t.name) in store.objects[rt.key]
        obj = store.update(
            rt, t.namespace, t.name, body, version, manager, t.subresource, dry_run=dry_run
        )
        return _json(store.convert(obj, rt, version, deep=False), 200 if existed else 201)
    if verb == "patch":
        obj = store.patch(
            rt,
            t.namespace,
            t.name,
            request.content_type,
            body,
            version,
            manager,
            t.subresource,
            dry_run=dry_run,
        )
        return _json(store.convert(obj, rt, version, deep=False))
    if verb == "delete":
        pre = (body or {}).get("preconditions") or {} if isinstance(body, dict) else {}
        gone = store.remove(
            rt, t.namespace, t.name, pre.get("resourceVersion"), pre.get("uid"), dry_run=dry_run
        )
        return _json(store.convert(gone, rt, version, deep=False))
    raise ApiError(405, "MethodNotAllowed", f"{verb} is not supported")


def _as_table(
    request: web.Request, rt: ResourceType, objs: list[dict[str, Any]], meta: dict[str, Any]
) -> dict[str, Any] | None:
    """The Table kubectl asked for, when the type declares printer columns (tables.py)."""
    if not tables.wanted(request.headers.get("Accept", ""), rt):
        return None
    return tables.table(rt, objs, meta, request.query.get("includeObject"))


def _list(request: web.Request, store: SandboxStore, t: Target) -> dict[str, Any]:
    q = request.query
    matches = object_matcher(q.get("labelSelector"), q.get("fieldSelector"))
    items = store.select(t.rt, t.namespace, matches)
    rv = store.rv
    page = items
    if q.get("continue"):
        after, rv = decode_continue(q["continue"])
        if rv < store.history_floor:  # what the API server answers once etcd compacted it
            raise ApiError(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list "
                "result. You can start a new list without the continue parameter.",
            )
        page = [o for o in items if _list_key(o) > after]
    limit = int(q.get("limit") or 0)
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if limit > 0 and len(page) > limit:
        meta["continue"] = encode_continue(_list_key(page[limit - 1]), rv)
        meta["remainingItemCount"] = len(page) - limit
        page = page[:limit]
    return {
        "kind": f"{t.rt.kind}List",
        "apiVersion": t.rt.api_version(t.version),
        "metadata": meta,
        "items": [store.convert(o, t.rt, t.version, deep=False) for o in page],
    }


def _list_key(obj: dict[str, Any]) -> tuple[str, str]:
    """Where an object sorts in a list (store.select's (namespace, name) order)."""
    metadata = obj.get("metadata") or {}
    return (str(metadata.get("namespace") or ""), str(metadata.get("name", "")))


# ------------------------------------------------------------------ watch
async def stream_watch(
    request: web.Request, store: SandboxStore, t: Target, drop: bool
) -> web.StreamResponse:
    q = request.query
    options = request.app[OPTIONS_KEY]
    matches = object_matcher(q.get("labelSelector"), q.get("fieldSelector"))
    rv_param = q.get("resourceVersion")
    since = int(rv_param) if rv_param not in (None, "", "0") else None
    bookmarks = q.get("allowWatchBookmarks") in ("1", "true", "True")
    timeout = float(q.get("timeoutSeconds") or 0) or None
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)

    async def send(etype: str, obj: dict[str, Any]) -> None:
        if etype in ("ADDED", "MODIFIED", "DELETED"):  # `kubectl get -w` asks for rows too
            meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
            obj = _as_table(request, t.rt, [obj], meta) or obj
        line = json.dumps({"type": etype, "object": obj}) + "\n"
        await response.write(line.encode())

    try:
        watcher, backlog = store.open_watch(t.rt, t.namespace, matches, since)
    except ApiError as exc:
        await send("ERROR", exc.status())
        await response.write_eof()
        return response
    deadline = time.monotonic() + timeout if timeout else None
    interval = float(options.get("bookmark_interval", 1.0))
    next_bookmark = time.monotonic() + interval
    try:
        for event in backlog:
            await send(event.type, store.convert(event.obj, t.rt, t.version, deep=False))
        while True:
            if drop or watcher.dropped:
                _abort(request)
                return response
            if watcher.queue.empty():
                fault = (
                    store.take_fault("watch", t.rt.plural, t.namespace, None, drop_only=True)
                    if store.faults
                    else None
                )
                if fault is not None and fault.drop_watch:
                    _abort(request)
                    return response
            now = time.monotonic()
            wait = min(1.0, next_bookmark - now) if bookmarks else 1.0
            if deadline is not None:
                wait = min(wait, deadline - now)
                if wait <= 0:
                    break
            try:
                item = await asyncio.wait_for(watcher.queue.get(), max(wait, 0.001))
            except TimeoutError:
                if request.transport is None or request.transport.is_closing():
                    break  # the client went away
                if bookmarks and time.monotonic() >= next_bookmark:
                    next_bookmark = time.monotonic() + interval
                    await send(
                        "BOOKMARK",
                        {
                            "kind": t.rt.kind,
                            "apiVersion": t.rt.api_version(t.version),
                            "metadata": {"resourceVersion": str(store.rv)},
                        },
                    )
                continue
            if item is None:
                if options.get("closing"):
                    break
                # Woken by an injected drop: drop now. Events queued after the wake-up were
                # written after the drop and must not be delivered on this stream.
                fault = (
                    store.take_fault("watch", t.rt.plural, t.namespace, None, drop_only=True)
                    if store.faults
                    else None
                )
                if fault is not None and fault.drop_watch:
                    _abort(request)
                    return response
                continue
            await send(item.type, store.convert(item.obj, t.rt, t.version, deep=False))
    except (ConnectionResetError, asyncio.CancelledError):
        store.close_watch(watcher)
        raise
    finally:
        store.close_watch(watcher)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


# ------------------------------------------------------------------ discovery and control routes
async def version(_request: web.Request) -> web.Response:
    return _json(
        {
            "major": "1",
            "minor": "31",
            "gitVersion": GIT_VERSION,
            "gitCommit": "sandbox",
            "gitTreeState": "clean",
            "buildDate": "2024-08-13T00:00:00Z",
            "goVersion": "go1.22.5",
            "compiler": "gc",
            "platform": "linux/amd64",
        }
    )


async def core_versions(_request: web.Request) -> web.Response:
    return _json(
        {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}
            ],
        }
    )


async def groups(_request: web.Request) -> web.Response:
    return _json(api_group_list())


async def group(request: web.Request) -> web.Response:
    name = request.match_info["group"]
    for g in api_group_list()["groups"]:
        if g["name"] == name:
            return _json({"kind": "APIGroup", "apiVersion": "v1", **g})
    return _error(ApiError(404, "NotFound", "the server could not find the requested resource"))


async def resources(request: web.Request) -> web.Response:
    info = request.match_info
    listing = resource_list(info.get("group", ""), info["version"])
    if listing is None:
        return _error(ApiError(404, "NotFound", "the server could not find the requested resource"))
    return _json(listing)


async def not_served(_request: web.Request) -> web.Response:
    return _error(ApiError(404, "NotFound", "the server could not find the requested resource"))


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


async def openapi_root(_request: web.Request) -> web.Response:
    """OpenAPI v3 discovery: one document per group-version (paths only, no schemas)."""
    paths = {}
    for group, versions in _groups().items():
        for v in versions:
            path = _gv_path(group, v)
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash=sandbox"}
    return _json({"paths": paths})


async def openapi_group_version(request: web.Request) -> web.Response:
    """Declares a PATCH with the fieldValidation parameter per resource, so kubectl relies on
    (our permissive) server-side validation instead of downloading schemas."""
    parts = request.match_info["path"].split("/")
    group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
    paths: dict[str, Any] = {}
    for rt in CATALOG:
        if rt.group != group or version not in rt.versions:
            continue
        gvk = {"group": rt.group, "version": version, "kind": rt.kind}
        base = "/" + _gv_path(group, version)
        scope = "/namespaces/{namespace}" if rt.namespaced else ""
        params = [
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
        ]
        op = {
            "x-kubernetes-group-version-kind": gvk,
            "parameters": params,
            "responses": {"200": {"description": "OK"}},
        }
        paths[f"{base}{scope}/{rt.plural}/{{name}}"] = {"patch": op, "put": op, "get": op}
        paths[f"{base}{scope}/{rt.plural}"] = {"post": op}
    if not paths:
        return await not_served(request)
    return _json(
        {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": GIT_VERSION},
            "paths": paths,
            "components": {"schemas": {}},
        }
    )


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def control_faults(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    if request.method == "GET":
        return _json([vars(f) for f in store.faults])
    data = await request.json()
    try:
        store.inject(Fault(**data))
    except (TypeError, ValueError) as exc:
        return _error(ApiError(400, "BadRequest", str(exc)))
    return _json({"injected": data}, 201)


async def control_compact(request: web.Request) -> web.Response:
    request.app[STORE_KEY].compact()
    return _json({"compacted": True})


async def control_objects(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    text = await request.text()
    try:
        loaded = store.load_yaml(text if "\n" in text else text + "\n")
    except ApiError as exc:
        return _error(exc)
    except yaml.YAMLError as exc:
        return _error(ApiError(400, "BadRequest", str(exc)))
    return _json({"loaded": len(loaded)}, 201)


async def control_requests(request: web.Request) -> web.Response:
    return _json([r.as_dict() for r in request.app[STORE_KEY].requests])


def build_app(store: SandboxStore, bookmark_interval: float = 1.0) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STORE_KEY] = store
    app[OPTIONS_KEY] = {"bookmark_interval": bookmark_interval, "closing": False}
    r = app.router
    r.add_get("/version", version)
    r.add_get("/version/", version)
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", healthz)
    r.add_get("/livez", healthz)
    r.add_get("/api", core_versions)
    r.add_get("/api/", core_versions)
    r.add_get("/apis", groups)
    r.add_get("/apis/", groups)
    r.add_get("/api/{version}", resources)
    r.add_get("/apis/{group}", group)
    r.add_get("/apis/{group}/{version}", resources)
    r.add_get("/openapi/v3", openapi_root)
    r.add_get("/openapi/v3/{path:.+}", openapi_group_version)
    r.add_route("*", "/openapi/{tail:.*}", not_served)
    r.add_route("*", "/sandbox/faults", control_faults)
    r.add_post("/sandbox/compact", control_compact)
    r.add_post("/sandbox/objects", control_objects)
    r.add_get("/sandbox/requests", control_requests)
    r.add_route("*", "/api/v1/{tail:.+}", handle_resource)
    r.add_route("*", "/apis/{group}/{version}/{tail:.+}", handle_resource)
    r.add_route("*", "/{tail:.*}", not_served)
    return app
