# ruff: noqa: C901, PLR0912, PLR0917
"""The sandbox's state: objects, the resourceVersion counter, history, watchers, faults, hooks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import secrets
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml

from medic.sandbox import access
from medic.sandbox.catalog import (
    BY_KIND,
    BY_PLURAL,
    CATALOG,
    ApiError,
    ResourceType,
    crd_object,
    not_found,
    resolve,
    split_api_version,
)
from medic.sandbox.patches import apply_patch, merge_patch

Obj = dict[str, Any]
_T = TypeVar("_T")
ObjList = list[Obj]
Key = tuple[str, str]  # (namespace or "", name)
Identity = tuple[str, list[str]]  # (user, groups) of an issued token
Hook = Callable[["SandboxStore", str, Obj], None]
RBAC_KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


@dataclass
class Fault:
    """An injected failure: matches requests by verb/resource/namespace/name (None = any)."""

    verb: str | None = None
    resource: str | None = None
    namespace: str | None = None
    name: str | None = None
    times: int = 1
    status: int = 500
    message: str = "etcdserver: leader changed"
    retry_after: int | None = None
    latency: float = 0.0
    drop_watch: bool = False

    def matches(self, verb: str, resource: str, namespace: str | None, name: str | None) -> bool:
        return (
            self.times > 0
            and self.verb in (None, verb)
            and self.resource in (None, resource)
            and self.namespace in (None, namespace)
            and self.name in (None, name)
        )

    @property
    def fails(self) -> bool:
        """Latency and drop_watch faults only delay or drop; the request itself succeeds."""
        return self.latency <= 0 and not self.drop_watch


@dataclass
class RequestRecord:
    verb: str
    path: str
    resource: str
    namespace: str | None
    name: str | None
    user_agent: str
    content_type: str
    body: Any
    status: int
    time: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __getitem__(self, key: str) -> Any:
        """record["verb"] works as well as record.verb."""
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


@dataclass
class HistoryEvent:
    rv: int
    rt_key: tuple[str, str]
    type: str
    obj: Obj


@dataclass(eq=False)
class Watcher:
    rt: ResourceType
    namespace: str | None
    matches: Callable[[Obj], bool]
    queue: asyncio.Queue[HistoryEvent | None] = field(default_factory=asyncio.Queue)
    dropped: bool = False


def clone(value: _T) -> _T:
    """A deep copy of JSON-shaped data (dicts, lists, scalars); much faster than copy.deepcopy."""
    if isinstance(value, dict):
        return cast("_T", {k: clone(v) for k, v in value.items()})
    if isinstance(value, list):
        return cast("_T", [clone(v) for v in value])
    return value


def _qualified(rt: ResourceType) -> str:
    return f"{rt.plural}.{rt.group}" if rt.group else rt.plural


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _manager_id(entry: Obj) -> tuple[str, str, str, str]:
    """Apply entries are one per manager whatever the version; Update entries per version."""
    version = "" if entry.get("operation") == "Apply" else str(entry.get("apiVersion", ""))
    return (
        str(entry.get("manager", "")),
        str(entry.get("operation", "")),
        version,
        str(entry.get("subresource", "")),
    )


def _body(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


# ---------------------------------------------------------------- selectors
_REQ = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9_./-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<val>[A-Za-z0-9_./-]*)|\s+(?P<setop>in|notin)\s*\((?P<set>[^)]*)\))?\s*$"
)


def _split_selector(selector: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def _requirement(part: str) -> Callable[[dict[str, str]], bool]:
    m = _REQ.match(part)
    if m is None:
        raise ApiError(400, "BadRequest", f"unable to parse requirement: {part!r}")
    key, op, val, setop = m["key"], m["op"], m["val"], m["setop"]
    values = {v.strip() for v in (m["set"] or "").split(",")}

    def check(labels: dict[str, str]) -> bool:
        if m["neg"]:
            return key not in labels
        if op in ("=", "=="):
            return labels.get(key) == val
        if op == "!=":
            return labels.get(key) != val
        if setop == "in":
            return labels.get(key) in values
        if setop == "notin":
            return labels.get(key) not in values
        return key in labels

    return check


def label_matcher(selector: str | None) -> Callable[[dict[str, str]], bool]:
    checks = [_requirement(p) for p in _split_selector(selector or "")]
    return lambda labels: all(c(labels) for c in checks)


def _field_value(obj: Obj, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return "" if cur is None else str(cur)


def _field_requirement(part: str) -> Callable[[Obj], bool] | None:
    m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
    if m is None:
        raise ApiError(400, "BadRequest", f"invalid field selector: {part!r}")
    path, op, val = m.groups()
    if path.startswith(("involvedObject", "regarding")):
        return None  # not indexed: ignored (see LIMITS)

    def check(obj: Obj) -> bool:
        return (_field_value(obj, path) == val) != (op == "!=")

    return check


def field_matcher(selector: str | None) -> Callable[[Obj], bool]:
    checks = [c for p in _split_selector(selector or "") if (c := _field_requirement(p))]
    return lambda obj: all(c(obj) for c in checks)


def object_matcher(labels: str | None, fields: str | None) -> Callable[[Obj], bool]:
    lm, fm = label_matcher(labels), field_matcher(fields)
    return lambda o: lm(o.get("metadata", {}).get("labels") or {}) and fm(o)


# ---------------------------------------------------------------- the store
_Events = list[HistoryEvent]


class SandboxStore:
    def __init__(self, history: int = 10_000) -> None:
        self.objects: dict[tuple[str, str], dict[Key, Obj]] = {rt.key: {} for rt in CATALOG}
        self.rv = 1
        self.history: deque[HistoryEvent] = deque(maxlen=history)
        self.history_floor = 0  # a watch may resume from any rv >= this
        self.watchers: set[Watcher] = set()
        self.faults: list[Fault] = []
        self.hooks: dict[str, list[Hook]] = {}
        self.requests: list[RequestRecord] = []
        self.storage_override: dict[tuple[str, str], str] = {}
        self.stored_versions: dict[tuple[str, str], set[str]] = {
            rt.key: {rt.storage_version} for rt in CATALOG if rt.crd
        }
        self._waiters: list[asyncio.Event] = []
        self.hook_errors: list[Exception] = []  # exceptions raised by on_write callbacks
        self.tokens: dict[str, Identity] = {}
        self._sorted: dict[tuple[str, str], list[Key] | None] = {}
        for namespace in ("default", "kube-system", "kube-public"):
            self._ensure_namespace(namespace)

    # ---------------------------------------------------------- helpers
    def storage_version(self, rt: ResourceType) -> str:
        return self.storage_override.get(rt.key, rt.storage_version)

    @staticmethod
    def convert(obj: Obj, rt: ResourceType, version: str, *, deep: bool = True) -> Obj:
        """The object as seen at `version`; deep=False gives a read-only view (for encoding)."""
        out = clone(obj) if deep else dict(obj)
        out["apiVersion"] = rt.api_version(version)
        out["kind"] = rt.kind
        return out

    def _bucket(self, rt: ResourceType) -> dict[Key, Obj]:
        return self.objects[rt.key]

    @staticmethod
    def _key(rt: ResourceType, namespace: str | None, name: str) -> Key:
        return (namespace or "" if rt.namespaced else "", name)

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def _record(self, rt: ResourceType, etype: str, obj: Obj) -> None:
        if len(self.history) == self.history.maxlen and self.history:
            self.history_floor = self.history[0].rv
        event = HistoryEvent(int(obj["metadata"]["resourceVersion"]), rt.key, etype, obj)
        self.history.append(event)
        for watcher in list(self.watchers):
            in_namespace = watcher.namespace in (None, obj["metadata"].get("namespace"))
            if watcher.rt.key == rt.key and in_namespace and watcher.matches(obj):
                watcher.queue.put_nowait(event)
        for waiter in self._waiters:
            waiter.set()
        for hook in list(self.hooks.get(rt.kind, ())):
            try:
                hook(self, etype, clone(obj))
            except Exception as exc:  # noqa: BLE001 - a broken test hook must not break the server
                self.hook_errors.append(exc)

    def _managed(
        self, meta: Obj, manager: str, operation: str, api_version: str, subresource: str = ""
    ) -> None:
        """One entry per manager, operation, subresource and (for Update) API version, ordered
        by operation, time, manager, API version and subresource, as the API server keeps them
        (apimachinery managedfields `BuildManagerIdentifier`, `sortEncodedManagedFields`)."""
        entry: Obj = {
            "manager": manager,
            "operation": operation,
            "apiVersion": api_version,
            "time": now_iso(),
            "fieldsType": "FieldsV1",
            "fieldsV1": {},
        }
        if subresource:
            entry["subresource"] = subresource
        entries = [
            e for e in meta.get("managedFields") or [] if _manager_id(e) != _manager_id(entry)
        ]
        entries.append(entry)
        entries.sort(
            key=lambda e: (
                e.get("operation", ""),
                e.get("time", ""),
                e.get("manager", ""),
                e.get("apiVersion", ""),
                e.get("subresource", ""),
            )
        )
        meta["managedFields"] = entries

    def _ensure_namespace(self, namespace: str) -> None:
        rt = BY_KIND[("", "Namespace")]
        if (("", namespace)) not in self._bucket(rt):
            self._create(rt, {"metadata": {"name": namespace}}, None, "sandbox", "v1")

    # ---------------------------------------------------------- core writes
    def _create(
        self,
        rt: ResourceType,
        body: Obj,
        namespace: str | None,
        manager: str,
        version: str,
        *,
        keep_status: bool = True,
        dry_run: bool = False,
    ) -> Obj:
        obj = clone(body)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        ns = (namespace or meta.get("namespace") or "default") if rt.namespaced else None
        if rt.namespaced and meta.get("namespace") not in (None, "", ns):
            raise ApiError(
                400, "BadRequest", "the namespace of the object does not match the request"
            )
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
            else:
                required = "Required value: name or generateName is required"
                details: Obj = {"kind": rt.kind}
                if rt.group:
                    details["group"] = rt.group
                details["causes"] = [
                    {"reason": "FieldValueRequired", "message": required, "field": "metadata.name"}
                ]
                raise ApiError(
                    422, "Invalid", f'{rt.kind} "" is invalid: metadata.name: {required}', details
                )
        name = meta["name"]
        key = self._key(rt, ns, name)
        if key in self._bucket(rt):
            raise ApiError(
                409,
                "AlreadyExists",
                f'{rt.plural}{"." + rt.group if rt.group else ""} "{name}" already exists',
                {"name": name, "group": rt.group, "kind": rt.plural},
            )
        if dry_run:
            return obj
        if ns is not None:
            meta["namespace"] = ns
            if rt.kind != "Namespace":
                self._ensure_namespace(ns)
        if rt.crd and rt.status_subresource and not keep_status:
            obj.pop("status", None)
        if rt.kind == "Namespace":
            obj.setdefault("status", {"phase": "Active"})
        stored = self.storage_version(rt) if rt.crd else version
        if rt.crd:
            self.stored_versions[rt.key].add(stored)
        obj["apiVersion"], obj["kind"] = rt.api_version(stored), rt.kind
        meta.update(
            uid=str(uuid.uuid4()),
            resourceVersion=str(self._next_rv()),
            generation=1,
            creationTimestamp=now_iso(),
        )
        meta.pop("managedFields", None)
        self._managed(meta, manager, "Update", rt.api_version(version))
        self._bucket(rt)[key] = obj
        self._sorted[rt.key] = None
        self._record(rt, "ADDED", obj)
        return obj

    def _replace(
        self,
        rt: ResourceType,
        new: Obj,
        old: Obj,
        manager: str,
        version: str,
        *,
        subresource: str | None = None,
        keep_status: bool = True,
        operation: str = "Update",
        dry_run: bool = False,
    ) -> Obj:
        meta_in = new.get("metadata") or {}
        given = meta_in.get("resourceVersion")
        name = old["metadata"]["name"]
        if given and str(given) != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {_qualified(rt)} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
                {"name": name, "group": rt.group, "kind": rt.plural},
            )
        if subresource == "status":
            obj = clone(old)
            if "status" in new:
                obj["status"] = clone(new["status"])
            else:
                obj.pop("status", None)
        else:
            obj = clone(new)
            obj.setdefault("metadata", {})
            if rt.status_subresource and rt.crd and not keep_status:
                if "status" in old:
                    obj["status"] = clone(old["status"])
                else:
                    obj.pop("status", None)
        meta = obj["metadata"]
        for fixed in ("uid", "creationTimestamp", "name", "namespace"):
            if fixed in old["metadata"]:
                meta[fixed] = old["metadata"][fixed]
            else:
                meta.pop(fixed, None)
        meta["managedFields"] = clone(old["metadata"].get("managedFields") or [])
        generation = int(old["metadata"].get("generation", 1))
        if _body(obj) != _body(old):
            generation += 1
        meta["generation"] = generation
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        probe = dict(obj, apiVersion=old.get("apiVersion"), kind=old.get("kind"))
        if probe == old:
            return old  # a no-op write does not bump the resourceVersion (like the API server)
        if dry_run:
            return obj
        stored = self.storage_version(rt) if rt.crd else version
        if rt.crd:
            self.stored_versions[rt.key].add(stored)
        obj["apiVersion"], obj["kind"] = rt.api_version(stored), rt.kind
        meta["resourceVersion"] = str(self._next_rv())
        self._managed(meta, manager, operation, rt.api_version(version), subresource or "")
        self._bucket(rt)[self._key(rt, meta.get("namespace"), name)] = obj
        self._record(rt, "MODIFIED", obj)
        return obj

    # ---------------------------------------------------------- request-level operations
    def read(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self._bucket(rt).get(self._key(rt, namespace, name))
        if obj is None:
            raise not_found(rt, name)
        return obj

    def create(
        self,
        rt: ResourceType,
        namespace: str | None,
        body: Obj,
        version: str,
        manager: str,
        *,
        dry_run: bool = False,
    ) -> Obj:
        if rt.kind in ("SubjectAccessReview", "SelfSubjectAccessReview"):
            return self.access_review(rt, body)
        return self._create(
            rt, body, namespace, manager, version, keep_status=False, dry_run=dry_run
        )

    def update(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: Obj,
        version: str,
        manager: str,
        subresource: str | None = None,
        *,
        dry_run: bool = False,
    ) -> Obj:
        body_name = (body.get("metadata") or {}).get("name")
        if body_name and body_name != name:
            raise ApiError(
                400, "BadRequest", "the name of the object does not match the name on the URL"
            )
        key = self._key(rt, namespace, name)
        old = self._bucket(rt).get(key)
        if old is None:
            if subresource:
                raise not_found(rt, name)
            return self._create(
                rt, body, namespace, manager, version, keep_status=False, dry_run=dry_run
            )
        return self._replace(
            rt,
            body,
            old,
            manager,
            version,
            subresource=subresource,
            keep_status=False,
            dry_run=dry_run,
        )

    def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        content_type: str,
        patch: Any,
        version: str,
        manager: str,
        subresource: str | None = None,
        *,
        dry_run: bool = False,
    ) -> Obj:
        old = self._bucket(rt).get(self._key(rt, namespace, name))
        if old is None:
            if (
                content_type.startswith("application/apply-patch")
                and isinstance(patch, dict)
                and not subresource
            ):
                return self._create(
                    rt, patch, namespace, manager, version, keep_status=False, dry_run=dry_run
                )
            raise not_found(rt, name)
        current = self.convert(old, rt, version)
        new = apply_patch(content_type, current, patch)
        operation = "Apply" if content_type.startswith("application/apply-patch") else "Update"
        return self._replace(
            rt,
            new,
            old,
            manager,
            version,
            subresource=subresource,
            keep_status=False,
            operation=operation,
            dry_run=dry_run,
        )

    def remove(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        precondition_rv: str | None = None,
        precondition_uid: str | None = None,
        *,
        dry_run: bool = False,
    ) -> Obj:
        key = self._key(rt, namespace, name)
        old = self._bucket(rt).get(key)
        if old is None:
            raise not_found(rt, name)
        if (precondition_rv and precondition_rv != old["metadata"]["resourceVersion"]) or (
            precondition_uid and precondition_uid != old["metadata"].get("uid")
        ):
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {rt.plural} "{name}": the precondition failed',
                {"name": name, "group": rt.group, "kind": rt.plural},
            )
        if dry_run:
            return old
        del self._bucket(rt)[key]
        self._sorted[rt.key] = None
        if rt.kind == "Namespace":
            for other in CATALOG:
                if other.namespaced:
                    for okey in [k for k in self._bucket(other) if k[0] == name]:
                        self.remove(other, name, okey[1])
        gone = clone(old)
        gone["metadata"]["resourceVersion"] = str(self._next_rv())
        self._record(rt, "DELETED", gone)
        return gone

    def select(
        self, rt: ResourceType, namespace: str | None, matches: Callable[[Obj], bool]
    ) -> ObjList:
        """Objects in (namespace, name) order; the sorted keys are cached until a create/delete."""
        bucket = self._bucket(rt)
        keys = self._sorted.get(rt.key)
        if keys is None:
            keys = self._sorted[rt.key] = sorted(bucket)
        return [
            obj
            for k in keys
            if (namespace is None or k[0] == namespace) and matches(obj := bucket[k])
        ]

    def lookup(self, kind: str, namespace: str | None) -> ObjList:
        rt = BY_KIND[("rbac.authorization.k8s.io", kind)]
        return self.select(rt, namespace, lambda _o: True)

    def access_review(self, rt: ResourceType, body: Obj) -> Obj:
        spec = body.get("spec") or {}
        if rt.kind == "SelfSubjectAccessReview":
            user, groups = access.SANDBOX_USER, ["system:authenticated"]
        else:
            user, groups = spec.get("user", ""), list(spec.get("groups") or [])
            if not user and not groups:
                raise ApiError(
                    422,
                    "Invalid",
                    "spec.user or spec.groups is required",
                    {"kind": rt.kind, "group": rt.group},
                )
        allowed, reason = access.review(
            self.lookup,
            user,
            groups,
            spec.get("resourceAttributes"),
            spec.get("nonResourceAttributes"),
        )
        out = clone(body)
        out["apiVersion"], out["kind"] = rt.api_version("v1"), rt.kind
        out.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        out["status"] = (
            {"allowed": allowed, "reason": reason}
            if allowed
            else {"allowed": False, "reason": reason}
        )
        return out

    def crds(self) -> ObjList:
        return [crd_object(rt, sorted(self.stored_versions[rt.key])) for rt in CATALOG if rt.crd]

    def take_fault(
        self,
        verb: str,
        resource: str,
        namespace: str | None,
        name: str | None,
        *,
        drop_only: bool = False,
    ) -> Fault | None:
        for fault in self.faults:
            if drop_only and not fault.drop_watch:
                continue
            if fault.matches(verb, resource, namespace, name):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    # ---------------------------------------------------------- the public Python API
    def put(self, obj: Obj, manager: str = "sandbox") -> Obj:
        """Create or replace by apiVersion/kind/namespace/name (status kept: this is the world)."""
        rt, version = resolve(obj.get("apiVersion", ""), obj.get("kind", ""))
        meta = obj.get("metadata") or {}
        ns = (meta.get("namespace") or "default") if rt.namespaced else None
        old = self._bucket(rt).get(self._key(rt, ns, meta.get("name", "")))
        if old is None:
            out = self._create(rt, obj, ns, manager, version)
        else:
            new = clone(obj)
            new["metadata"].pop("resourceVersion", None)
            out = self._replace(rt, new, old, manager, version)
        return self.convert(out, rt, version)

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        rt, version = resolve(api_version, kind)
        obj = self._bucket(rt).get(self._key(rt, namespace, name))
        return None if obj is None else self.convert(obj, rt, version)

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> ObjList:
        rt, version = resolve(api_version, kind)
        return [self.convert(o, rt, version) for o in self.select(rt, namespace, lambda _o: True)]

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        rt, _ = resolve(api_version, kind)
        try:
            self.remove(rt, namespace, name)
        except ApiError:
            return False
        return True

    def patch_merge(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        patch: Obj,
        *,
        status: bool = False,
        manager: str = "sandbox",
    ) -> Obj:
        """A JSON merge patch of the whole object, status included (status=True: only status)."""
        rt, version = resolve(api_version, kind)
        old = self.read(rt, namespace, name)
        new = merge_patch(self.convert(old, rt, version), patch)
        new["metadata"].pop("resourceVersion", None)
        sub = "status" if status else None
        return self.convert(
            self._replace(rt, new, old, manager, version, subresource=sub), rt, version
        )

    def list_objects(self, api_version: str, kind: str, namespace: str | None = None) -> ObjList:
        """Alias of `list`."""
        return self.list(api_version, kind, namespace)

    def stored_version(
        self, api_version_or_group: str, kind: str, name: str, namespace: str | None = None
    ) -> str:
        """The version (e.g. "v2beta1") the object is stored at."""
        group, _ = split_api_version(api_version_or_group)
        rt = BY_KIND.get((group, kind))
        if rt is None:
            raise not_found(BY_PLURAL[("apiextensions.k8s.io", "customresourcedefinitions")], kind)
        return split_api_version(self.read(rt, namespace, name)["apiVersion"])[1]

    def set_storage_version(self, group: str, kind: str, version: str) -> None:
        rt = BY_KIND[(group, kind)]
        if version not in rt.versions:
            raise ValueError(f"{kind} has no version {version}")
        self.storage_override[rt.key] = version

    def load_yaml(self, path_or_text: str | Path) -> ObjList:
        text = path_or_text.read_text() if isinstance(path_or_text, Path) else path_or_text
        if isinstance(path_or_text, str) and "\n" not in text and Path(text).is_file():
            text = Path(text).read_text()
        out: ObjList = []
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            items = doc.get("items", []) if str(doc.get("kind", "")).endswith("List") else [doc]
            out.extend(self.put(item) for item in items)
        return out

    def add_rbac(self, obj: Obj) -> Obj:
        if obj.get("kind") not in RBAC_KINDS:
            raise ValueError(f"not an RBAC object: {obj.get('kind')}")
        return self.put(obj)

    def issue_token(self, user: str, groups: Iterable[str] = ()) -> str:
        """A bearer token whose requests act as `user`, authorized from the stored RBAC."""
        token = secrets.token_urlsafe(24)
        self.tokens[token] = (user, [*groups])
        return token

    def inject(self, fault: Fault) -> None:
        if fault.verb is not None and fault.verb not in VERBS:
            raise ValueError(f"unknown verb {fault.verb!r}")
        self.faults.append(fault)
        if fault.drop_watch:
            for watcher in list(self.watchers):
                watcher.queue.put_nowait(None)  # wakes the stream, which then takes the fault

    def compact(self) -> None:
        self.history.clear()
        self.history_floor = self.rv

    def on_write(self, kind: str, callback: Hook) -> None:
        self.hooks.setdefault(kind, []).append(callback)

    async def wait_for(
        self, predicate: Callable[[SandboxStore], bool], timeout: float = 10
    ) -> None:
        event = asyncio.Event()
        self._waiters.append(event)
        try:
            async with asyncio.timeout(timeout):
                while not predicate(self):
                    event.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(event.wait(), 0.1)
        finally:
            self._waiters.remove(event)

    # ---------------------------------------------------------- watch support
    def open_watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        matches: Callable[[Obj], bool],
        since: int | None,
    ) -> tuple[Watcher, _Events]:
        """Register a watcher and return the backlog (existing objects or history after `since`)."""
        if since is not None and since < self.history_floor:
            raise ApiError(
                410, "Expired", f"too old resource version: {since} ({self.history_floor})"
            )
        watcher = Watcher(rt, namespace, matches)
        if since is None:
            backlog = [
                HistoryEvent(int(o["metadata"]["resourceVersion"]), rt.key, "ADDED", o)
                for o in self.select(rt, namespace, matches)
            ]
        else:
            backlog = [
                e
                for e in self.history
                if e.rv > since
                and e.rt_key == rt.key
                and matches(e.obj)
                and (namespace is None or e.obj["metadata"].get("namespace") == namespace)
            ]
        self.watchers.add(watcher)
        return watcher, backlog

    def close_watch(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)

    def close_all_watches(self) -> None:
        for watcher in list(self.watchers):
            watcher.queue.put_nowait(None)


def encode_continue(after: tuple[str, str], rv: int) -> str:
    """The API server's continue token names the last key returned (not an offset), so objects
    created or deleted on earlier pages never shift the next page; rv is the list's version."""
    return base64.urlsafe_b64encode(json.dumps({"k": list(after), "rv": rv}).encode()).decode()


def decode_continue(token: str) -> tuple[tuple[str, str], int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        namespace, name = data["k"]
        return (str(namespace), str(name)), int(data["rv"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError(400, "BadRequest", "invalid continue token") from exc
