"""A compact Kubernetes API sandbox: real HTTP, the wire protocol real clients speak.

Implements: discovery (`/version`, `/api`, `/api/v1`, `/apis`, `/apis/<group>[/<version>]`);
core v1 namespaces, secrets, configmaps, events, serviceaccounts; Flux HelmRelease at v2beta1,
v2beta2 and v2 (one store, apiVersion converted on read, the version each object was last
written through recorded as its stored version); Fleet BundleDeployment; Gardener Etcd;
rbac.authorization.k8s.io Roles/RoleBindings (ClusterRoles/-Bindings too) evaluated by
SubjectAccessReview; verbs get, list (label selectors `k=v,k!=v,k`, field selectors
`metadata.name`, `metadata.namespace`, `type`; limit/continue), watch (chunked JSON lines,
resourceVersion, bookmarks, timeoutSeconds, 410 Expired after `compact()`), create (409
AlreadyExists), update (409 Conflict on a stale resourceVersion), patch (merge; JSON patch;
strategic merge treated as merge), delete (precondition resourceVersion), and the `status`
subresource. resourceVersion is one global counter; generation bumps on spec changes only;
managedFields record manager, apiVersion and time of each write. Errors are `Status` objects.

Not implemented: authentication (any bearer token is accepted), admission, defaulting and
schema validation, server-side apply, aggregated discovery, OpenAPI (so `kubectl apply` needs
`--validate=false`), finalizers and garbage collection, strategic merge keys. It is a test and
demo API, not a cluster.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml


@dataclass(frozen=True)
class Kind:
    group: str
    versions: tuple[str, ...]
    plural: str
    kind: str
    namespaced: bool = True
    status: bool = False


KINDS = (
    Kind("", ("v1",), "namespaces", "Namespace", namespaced=False),
    Kind("", ("v1",), "secrets", "Secret"),
    Kind("", ("v1",), "configmaps", "ConfigMap"),
    Kind("", ("v1",), "events", "Event"),
    Kind("", ("v1",), "serviceaccounts", "ServiceAccount"),
    Kind(
        "helm.toolkit.fluxcd.io",
        ("v2", "v2beta2", "v2beta1"),
        "helmreleases",
        "HelmRelease",
        status=True,
    ),
    Kind("fleet.cattle.io", ("v1alpha1",), "bundledeployments", "BundleDeployment", status=True),
    Kind("druid.gardener.cloud", ("v1alpha1",), "etcds", "Etcd", status=True),
    Kind("rbac.authorization.k8s.io", ("v1",), "roles", "Role"),
    Kind("rbac.authorization.k8s.io", ("v1",), "rolebindings", "RoleBinding"),
    Kind("rbac.authorization.k8s.io", ("v1",), "clusterroles", "ClusterRole", namespaced=False),
    Kind(
        "rbac.authorization.k8s.io",
        ("v1",),
        "clusterrolebindings",
        "ClusterRoleBinding",
        namespaced=False,
    ),
)
BY_PLURAL = {(k.group, k.plural): k for k in KINDS}
BY_KIND = {(k.group, k.kind): k for k in KINDS}


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    def __init__(
        self, code: int, reason: str, message: str, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.retry_after = code, reason, message, retry_after

    def status(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": details,
            "code": self.code,
        }


@dataclass
class Fault:
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


Hook = Callable[["SandboxStore", str, dict[str, Any]], Any]


@dataclass
class SandboxStore:
    """Objects by (group, plural, namespace, name); a global resourceVersion; watch history."""

    history_size: int = 10_000
    objects: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)
    stored_versions: dict[tuple[str, str, str, str], str] = field(default_factory=dict)
    revision: int = 1
    history: deque[tuple[int, str, Kind, dict[str, Any]]] = field(default_factory=deque)
    compacted: int = 0
    watchers: list[tuple[Kind, str | None, asyncio.Queue[tuple[int, str, dict[str, Any]]]]] = field(
        default_factory=list
    )
    faults: list[Fault] = field(default_factory=list)
    hooks: dict[str, list[Hook]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    # -- Python API for tests -------------------------------------------------------------
    def put(self, obj: dict[str, Any], manager: str = "sandbox") -> dict[str, Any]:
        kind = self._kind_of(obj)
        key = self._key(kind, obj)
        if key in self.objects:
            current = self.objects[key]
            obj = copy.deepcopy(obj)
            obj.setdefault("metadata", {})["resourceVersion"] = current["metadata"][
                "resourceVersion"
            ]
            return self.write(kind, obj, "update", manager, obj["apiVersion"])
        return self.write(kind, copy.deepcopy(obj), "create", manager, obj["apiVersion"])

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        k = BY_KIND[(api_version.rpartition("/")[0], kind)]
        found = self.objects.get((k.group, k.plural, namespace or "", name))
        return self.as_version(found, api_version) if found else None

    def list_objects(
        self, api_version: str, kind: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        k = BY_KIND[(api_version.rpartition("/")[0], kind)]
        return [
            self.as_version(o, api_version)
            for (g, p, ns, _), o in self.objects.items()
            if (g, p) == (k.group, k.plural) and namespace in (None, ns)
        ]

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        k = BY_KIND[(api_version.rpartition("/")[0], kind)]
        try:
            self.remove(k, namespace, name, None)
        except ApiError:
            return False
        return True

    def patch_merge(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        patch: dict[str, Any],
        *,
        status: bool = False,
        manager: str = "sandbox",
    ) -> dict[str, Any]:
        k = BY_KIND[(api_version.rpartition("/")[0], kind)]
        current = self.read(k, namespace, name)
        merged = merge_patch(copy.deepcopy(current), patch)
        merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        return self.write(
            k, merged, "update", manager, api_version, subresource="status" if status else ""
        )

    def stored_version(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> str:
        k = BY_KIND[(api_version.rpartition("/")[0], kind)]
        return self.stored_versions[(k.group, k.plural, namespace or "", name)]

    def inject(self, fault: Fault) -> None:
        self.faults.append(fault)

    def compact(self) -> None:
        self.compacted = self.revision
        self.history.clear()

    def on_write(self, kind: str, hook: Hook) -> None:
        self.hooks.setdefault(kind, []).append(hook)

    def load_yaml(self, text: str) -> list[dict[str, Any]]:
        return [self.put(doc) for doc in yaml.safe_load_all(text) if doc]

    async def wait_for(
        self, predicate: Callable[[SandboxStore], bool], timeout: float = 10.0
    ) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()

    # -- the API server's semantics -------------------------------------------------------
    def _kind_of(self, obj: dict[str, Any]) -> Kind:
        group = str(obj.get("apiVersion", "")).rpartition("/")[0]
        try:
            return BY_KIND[(group, obj["kind"])]
        except KeyError:
            raise ApiError(
                404,
                "NotFound",
                f"the server could not find the requested resource ({obj.get('kind')})",
            ) from None

    def _key(self, kind: Kind, obj: dict[str, Any]) -> tuple[str, str, str, str]:
        meta = obj.get("metadata") or {}
        return (
            kind.group,
            kind.plural,
            str(meta.get("namespace") or "") if kind.namespaced else "",
            str(meta.get("name", "")),
        )

    def as_version(self, obj: dict[str, Any], api_version: str) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        out["apiVersion"] = api_version
        return out

    def read(self, kind: Kind, namespace: str | None, name: str) -> dict[str, Any]:
        found = self.objects.get(
            (kind.group, kind.plural, namespace or "" if kind.namespaced else "", name)
        )
        if found is None:
            raise ApiError(
                404, "NotFound", f'{kind.plural}.{kind.group or "core"} "{name}" not found'
            )
        return found

    def write(  # noqa: C901, PLR0917 - the API server's write semantics in one place
        self,
        kind: Kind,
        obj: dict[str, Any],
        verb: str,
        manager: str,
        api_version: str,
        subresource: str = "",
    ) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        key = self._key(kind, obj)
        current = self.objects.get(key)
        if verb == "create":
            if current is not None:
                raise ApiError(
                    409, "AlreadyExists", f'{kind.plural} "{meta["name"]}" already exists'
                )
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_text(), generation=1)
            if (
                kind.namespaced
                and key[2]
                and ("", "namespaces", "", key[2]) not in self.objects
                and kind.plural != "namespaces"
            ):
                self.write(
                    BY_PLURAL[("", "namespaces")],
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": key[2]}},
                    "create",
                    manager,
                    "v1",
                )
        else:
            if current is None:
                raise ApiError(404, "NotFound", f'{kind.plural} "{meta["name"]}" not found')
            wanted = meta.get("resourceVersion")
            if wanted and wanted != current["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {kind.plural} "{meta["name"]}": '
                    "the object has been modified; please apply your changes to the latest "
                    "version and try again",
                )
            if kind.status and subresource == "status":
                obj = {**copy.deepcopy(current), "status": obj.get("status")}
            elif kind.status:
                obj["status"] = copy.deepcopy(current.get("status"))
            meta = obj["metadata"]
            for immutable in ("uid", "creationTimestamp"):
                meta[immutable] = current["metadata"][immutable]
            spec_changed = {
                k: v for k, v in obj.items() if k not in {"metadata", "status", "apiVersion"}
            } != {k: v for k, v in current.items() if k not in {"metadata", "status", "apiVersion"}}
            meta["generation"] = current["metadata"].get("generation", 1) + (
                1 if spec_changed else 0
            )
        self.revision += 1
        meta["resourceVersion"] = str(self.revision)
        if kind.plural == "namespaces" or not kind.namespaced:
            meta.pop("namespace", None)
        meta["managedFields"] = [
            *[
                m
                for m in (current or {}).get("metadata", {}).get("managedFields", [])
                if m.get("manager") != manager
            ],
            {
                "manager": manager,
                "operation": "Update",
                "apiVersion": api_version,
                "time": now_text(),
                "fieldsType": "FieldsV1",
                "fieldsV1": {},
            },
        ]
        obj["apiVersion"], obj["kind"] = api_version, kind.kind
        self.objects[key] = obj
        self.stored_versions[key] = api_version.rpartition("/")[2]
        self._notify("ADDED" if verb == "create" else "MODIFIED", kind, obj)
        return copy.deepcopy(obj)

    def remove(
        self, kind: Kind, namespace: str | None, name: str, precondition: str | None
    ) -> dict[str, Any]:
        current = self.read(kind, namespace, name)
        if precondition and precondition != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", f"Precondition failed: resourceVersion {precondition}")
        del self.objects[
            (kind.group, kind.plural, namespace or "" if kind.namespaced else "", name)
        ]
        self.revision += 1
        gone = {**copy.deepcopy(current)}
        gone["metadata"]["resourceVersion"] = str(self.revision)
        self._notify("DELETED", kind, gone)
        return gone

    def _notify(self, kind_of_change: str, kind: Kind, obj: dict[str, Any]) -> None:
        revision = int(obj["metadata"]["resourceVersion"])
        self.history.append((revision, kind_of_change, kind, obj))
        while len(self.history) > self.history_size:
            self.compacted = self.history.popleft()[0]
        namespace = obj["metadata"].get("namespace")
        for watched, ns, queue in self.watchers:
            if watched == kind and ns in (None, namespace):
                queue.put_nowait((revision, kind_of_change, obj))
        self.changed.set()
        for hook in self.hooks.get(kind.kind, []):
            hook(self, kind_of_change, copy.deepcopy(obj))

    def take_fault(
        self, verb: str, resource: str, namespace: str | None, name: str | None
    ) -> Fault | None:
        for fault in self.faults:
            if fault.matches(verb, resource, namespace, name):
                fault.times -= 1
                return fault
        return None

    def allowed(
        self, user: str, namespace: str | None, verb: str, group: str, resource: str
    ) -> bool:
        subjects = {user}
        if user.startswith("system:serviceaccount:"):
            _, _, ns, sa = user.split(":", 3)
            subjects.add(f"ServiceAccount:{ns}:{sa}")
        for (g, plural, ns, _), binding in list(self.objects.items()):
            if g != "rbac.authorization.k8s.io" or plural not in {
                "rolebindings",
                "clusterrolebindings",
            }:
                continue
            if plural == "rolebindings" and ns != (namespace or ""):
                continue
            names = set()
            for s in binding.get("subjects") or []:
                if s.get("kind") == "ServiceAccount":
                    names.add(f"ServiceAccount:{s.get('namespace') or ns}:{s.get('name')}")
                else:
                    names.add(str(s.get("name")))
            if not names & subjects:
                continue
            ref = binding.get("roleRef") or {}
            role_plural = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
            role = self.objects.get(
                (
                    "rbac.authorization.k8s.io",
                    role_plural,
                    "" if role_plural == "clusterroles" else ns,
                    str(ref.get("name")),
                )
            )
            for rule in (role or {}).get("rules") or []:
                if (
                    set(rule.get("apiGroups", [])) & {group, "*"}
                    and set(rule.get("resources", [])) & {resource, "*"}
                    and set(rule.get("verbs", [])) & {verb, "*"}
                ):
                    return True
        return False


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def select(  # noqa: C901 - one branch per selector operator
    obj: dict[str, Any], labels: str | None, fields: str | None
) -> bool:
    have = (obj.get("metadata") or {}).get("labels") or {}
    for clause in filter(None, (labels or "").split(",")):
        if "!=" in clause:
            key, value = clause.split("!=", 1)
            if have.get(key.strip()) == value.strip():
                return False
        elif "=" in clause:
            key, value = clause.replace("==", "=").split("=", 1)
            if have.get(key.strip()) != value.strip():
                return False
        elif clause.startswith("!"):
            if clause[1:].strip() in have:
                return False
        elif clause.strip() not in have:
            return False
    for clause in filter(None, (fields or "").split(",")):
        key, _, value = clause.partition("=")
        actual = {
            "metadata.name": obj["metadata"].get("name"),
            "metadata.namespace": obj["metadata"].get("namespace"),
            "type": obj.get("type"),
        }.get(key)
        if actual != value:
            return False
    return True
