"""A KubeClient that records every request it makes, and what the API server answered.

For the least-privilege tests: the services run with this client (subclassing the real one, so
every call goes over HTTP to the real kube-apiserver), and each recorded request is mapped to
the RBAC attributes the authorizer checks (verb, apiGroup, resource, namespace), as
kube-apiserver derives them (k8s.io/apiserver pkg/endpoints/request/requestinfo.go).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

from medic.runtime.kube import KubeClient, KubeError, ResourceType, load_configuration
from medic.runtime.settings import KubeSettings


@dataclass(frozen=True)
class Attributes:
    """What RBAC is asked about one resource request."""

    verb: str
    group: str
    resource: str
    namespace: str
    name: str

    @property
    def grant(self) -> tuple[str, str, str]:
        return (self.group, self.resource, self.verb)


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    status: int  # the API server's answer; 0 when it was unreachable

    @property
    def attributes(self) -> Attributes | None:
        """None for a non-resource path (/version, discovery)."""
        return attributes(self.method, self.path, dict(self.query))


def attributes(method: str, path: str, query: Mapping[str, str]) -> Attributes | None:
    parts = [p for p in path.split("?", maxsplit=1)[0].split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource, name = rest[0], rest[1] if len(rest) > 1 else ""
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    return Attributes(_verb(method, bool(name), query), group, resource, namespace, name)


def _verb(method: str, item: bool, query: Mapping[str, str]) -> str:
    if method == "GET":
        if query.get("watch") in {"true", "1"}:
            return "watch"
        return "get" if item else "list"
    return {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if item else "deletecollection",
    }[method]


class RecordingKubeClient(KubeClient):
    """The real client, recording each request and its status in `calls`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[Call] = []

    @classmethod
    async def connect(cls, settings: KubeSettings) -> RecordingKubeClient:
        return cls(await load_configuration(settings), settings)

    def _record(self, method: str, path: str, query: Mapping[str, str] | None, status: int) -> None:
        self.calls.append(Call(method, path, tuple(sorted((query or {}).items())), status))

    async def _once(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        body: Any,
        content_type: str,
    ) -> Any:
        try:
            answer = await super()._once(method, path, query, body, content_type)
        except KubeError as error:
            self._record(method, path, query, error.status)
            raise
        self._record(method, path, query, 200)
        return answer

    async def watch(
        self, rt: ResourceType, namespace: str | None = None, *args: Any, **kwargs: Any
    ) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        path, query = rt.path(namespace), {"watch": "true"}
        recorded = False
        try:
            # aclosing: closing this generator closes the inner watch (and its connection) now,
            # not when the garbage collector finds it, perhaps after its event loop closed.
            async with contextlib.aclosing(super().watch(rt, namespace, *args, **kwargs)) as inner:
                async for item in inner:
                    if not recorded:
                        self._record("GET", path, query, 200)
                        recorded = True
                    yield item
        except KubeError as error:
            if not recorded:
                self._record("GET", path, query, error.status)
            raise
        except (GeneratorExit, asyncio.CancelledError):
            # Closed while open and quiet (a watch from a fresh list gets no event until
            # something changes): the API server had accepted it, or it would have raised.
            if not recorded:
                self._record("GET", path, query, 200)
            raise
        if not recorded:
            self._record("GET", path, query, 200)
