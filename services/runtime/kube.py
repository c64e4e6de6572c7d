"""The Kubernetes client every Medic service uses: plain JSON over HTTP, retrying like Helm's.

Authentication and TLS come from a kubeconfig or the pod's ServiceAccount, read by
kubernetes_asyncio's config loaders; requests go over one aiohttp session so that watches stream
and any resource (CRDs included) is one `ResourceType` away. Objects are plain dicts: Medic keeps
projections of them, never typed models of whole objects.

Errors (each carries `status`, `reason`, `message`, and the Status body):

    KubeError
    ├── NotFoundError          404
    ├── ConflictError          409 (stale resourceVersion, AlreadyExists)
    ├── ForbiddenError         403
    ├── GoneError              410 (watch from a resourceVersion older than the history)
    ├── InvalidError           422
    ├── TooManyRequestsError   429 (retry_after seconds)
    ├── ServerError            5xx (message may carry an etcd error)
    └── UnreachableError       no answer: connection refused, reset, timed out

Retries: reads retry 429 (honouring Retry-After), 5xx and unreachable servers with full-jitter
backoff; writes retry only what did not happen: 429 (the API server's priority and fairness
rejected it before doing anything) and 5xx whose message carries a transient etcd error, as
Helm's client does (helm pkg/kube/client.go `retryingRoundTripper` retries responses containing
"etcdserver: leader changed"). A token bucket keeps the client under `qps`/`burst`.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiohttp
import structlog
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio import config as kconfig

from medic.runtime.backoff import Backoff
from medic.runtime.settings import KubeSettings
from medic.upstream import etcd

log = structlog.get_logger(__name__)
Items = list[dict[str, Any]]  # (KubeClient.list shadows the builtin inside the class)

PatchType = Literal["merge", "json", "strategic", "apply"]
PATCH_CONTENT_TYPES: Final = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}
USER_AGENT: Final = "medic/0.1"


@dataclass(frozen=True, slots=True)
class ResourceType:
    """Where a kind lives in the API: enough to build every path for it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str = ""
    ) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base

    def at(self, version: str) -> ResourceType:
        return ResourceType(self.group, version, self.plural, self.kind, self.namespaced)


SECRETS: Final = ResourceType("", "v1", "secrets", "Secret")
EVENTS: Final = ResourceType("", "v1", "events", "Event")
NAMESPACES: Final = ResourceType("", "v1", "namespaces", "Namespace", namespaced=False)
SUBJECT_ACCESS_REVIEWS: Final = ResourceType(
    "authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", namespaced=False
)


class KubeError(Exception):
    def __init__(self, status: int, reason: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body


class NotFoundError(KubeError):
    pass


class ConflictError(KubeError):
    pass


class ForbiddenError(KubeError):
    pass


class GoneError(KubeError):
    pass


class InvalidError(KubeError):
    pass


class TooManyRequestsError(KubeError):
    def __init__(
        self, status: int, reason: str, message: str, body: Any = None, retry_after: float = 1.0
    ) -> None:
        super().__init__(status, reason, message, body)
        self.retry_after = retry_after


class ServerError(KubeError):
    pass


class UnreachableError(KubeError):
    pass


_BY_STATUS: Final[dict[int, type[KubeError]]] = {
    404: NotFoundError,
    409: ConflictError,
    403: ForbiddenError,
    410: GoneError,
    422: InvalidError,
}


def error_from(status: int, body: Any, retry_after: str | None = None) -> KubeError:
    """The KubeError for an HTTP status and a (Status) body."""
    reason = body.get("reason", "") if isinstance(body, dict) else ""
    message = body.get("message", "") if isinstance(body, dict) else str(body)[:500]
    if status == 429:
        delay = float(retry_after) if retry_after and retry_after.isdigit() else 1.0
        return TooManyRequestsError(status, reason or "TooManyRequests", message, body, delay)
    if status >= 500:
        return ServerError(status, reason or "InternalError", message, body)
    return _BY_STATUS.get(status, KubeError)(status, reason, message, body)


def retryable(error: KubeError, write: bool) -> bool:
    """Whether repeating the request is safe and may succeed (see the module docstring)."""
    if isinstance(error, TooManyRequestsError):
        return True
    if isinstance(error, ServerError):
        return not write or etcd.transient_error_in(error.message) is not None
    return isinstance(error, UnreachableError) and not write


class TokenBucket:
    """Client-side rate limit: `rate` tokens per second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        async with self._lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens < 1.0:
                await asyncio.sleep((1.0 - self.tokens) / self.rate)
                self.tokens = 1.0
                self.updated = time.monotonic()
            self.tokens -= 1.0


async def load_configuration(settings: KubeSettings) -> kclient.Configuration:
    configuration = kclient.Configuration()
    if settings.in_cluster:
        kconfig.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        await kconfig.load_kube_config(
            config_file=str(settings.kubeconfig) if settings.kubeconfig else None,
            context=settings.context,
            client_configuration=configuration,
        )
    return configuration


def _ssl_context(configuration: kclient.Configuration) -> ssl.SSLContext | bool:
    if not str(configuration.host or "").startswith("https"):
        return False
    if not configuration.verify_ssl:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


class KubeClient:
    """One API server connection: rate-limited, retrying, JSON in and out."""

    def __init__(
        self,
        configuration: kclient.Configuration,
        settings: KubeSettings,
        backoff: Backoff | None = None,
        attempts: int = 6,
    ) -> None:
        self.configuration = configuration
        self.host = str(configuration.host or "").rstrip("/")
        self.settings = settings
        self.backoff = backoff or Backoff(base=0.1, cap=10.0)
        self.attempts = attempts
        self.bucket = TokenBucket(settings.qps, settings.burst)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                ssl=_ssl_context(configuration), limit=settings.connections
            ),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        )

    @classmethod
    async def connect(cls, settings: KubeSettings) -> KubeClient:
        return cls(await load_configuration(settings), settings)

    async def close(self) -> None:
        await self.session.close()

    async def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers: dict[str, str] = {}
        auth = await self.configuration.auth_settings()
        if "BearerToken" in auth:
            headers["Authorization"] = str(auth["BearerToken"]["value"])
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """One API call with retries; returns the decoded JSON body."""
        write = method not in {"GET", "HEAD"}
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._once(method, path, query, body, content_type)
            except KubeError as error:
                if attempt >= self.attempts or not retryable(error, write):
                    raise
                delay = self.backoff.delay(attempt)
                if isinstance(error, TooManyRequestsError):
                    delay = max(delay, error.retry_after)
                log.warning(
                    "kube_request_retry",
                    method=method,
                    path=path,
                    status=error.status,
                    error=error.message[:200],
                    attempt=attempt,
                    retry_in=round(delay, 3),
                )
                await asyncio.sleep(delay)

    async def _once(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        body: Any,
        content_type: str,
    ) -> Any:
        await self.bucket.take()
        data = json.dumps(body).encode() if body is not None else None
        headers = await self._headers(content_type if data is not None else None)
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout)
        try:
            async with self.session.request(
                method, self.host + path, params=query, data=data, headers=headers, timeout=timeout
            ) as response:
                decoded = _decode(await response.read())  # bytes: no text copy of a big page
                if response.status >= 400:
                    raise error_from(response.status, decoded, response.headers.get("Retry-After"))
                return decoded
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise UnreachableError(0, "Unreachable", repr(exc)) from exc

    async def get(self, rt: ResourceType, name: str, namespace: str | None = None) -> Any:
        return await self.request("GET", rt.path(namespace, name))

    async def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int = 500,
    ) -> tuple[list[dict[str, Any]], str]:
        """All items (paged with limit/continue) and the list's resourceVersion."""
        items: list[dict[str, Any]] = []
        listed = ""
        async for page, version in self.pages(rt, namespace, label_selector, field_selector, limit):
            items.extend(page)
            listed = version or listed
        return items, listed

    async def pages(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int = 500,
    ) -> AsyncIterator[tuple[Items, str]]:
        """One page of items at a time, with the list's resourceVersion (on the last page; ""
        before): a caller that projects each page never holds the whole list."""
        query: dict[str, str] = {"limit": str(limit)}
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        while True:
            page = await self.request("GET", rt.path(namespace), query=query)
            metadata = page.get("metadata") or {}
            token = metadata.get("continue")
            version = "" if token else str(metadata.get("resourceVersion", ""))
            items: Items = page.get("items") or []
            del page  # the caller may consume (and drop) the items; this frame keeps none of them
            yield items, version
            del items  # released before the next page is fetched
            if not token:
                return
            query["continue"] = token

    async def watch(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        resource_version: str = "",
        *,
        label_selector: str | None = None,
        allow_bookmarks: bool = True,
        timeout_seconds: int = 300,
        inactivity_timeout: float = 90.0,
    ) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        """Stream (type, object) pairs; raises GoneError on 410 and UnreachableError when the
        stream stays silent longer than `inactivity_timeout` (a half-dead connection)."""
        query = {"watch": "true", "timeoutSeconds": str(timeout_seconds)}
        if resource_version:
            query["resourceVersion"] = resource_version
        if allow_bookmarks:
            query["allowWatchBookmarks"] = "true"
        if label_selector:
            query["labelSelector"] = label_selector
        await self.bucket.take()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=inactivity_timeout)
        try:
            async with self.session.get(
                self.host + rt.path(namespace),
                params=query,
                headers=await self._headers(),
                timeout=timeout,
            ) as response:
                if response.status >= 400:
                    raise error_from(
                        response.status,
                        _decode(await response.read()),
                        response.headers.get("Retry-After"),
                    )
                async for line in response.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind, obj = str(event.get("type", "")), event.get("object") or {}
                    if kind == "ERROR":
                        raise error_from(int(obj.get("code", 500)), obj)
                    yield kind, obj
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise UnreachableError(0, "Unreachable", repr(exc)) from exc

    async def create(self, rt: ResourceType, obj: dict[str, Any]) -> Any:
        namespace = (obj.get("metadata") or {}).get("namespace")
        return await self.request("POST", rt.path(namespace), body=obj)

    async def replace(self, rt: ResourceType, obj: dict[str, Any], subresource: str = "") -> Any:
        """PUT with the object's resourceVersion: ConflictError when it is stale."""
        metadata = obj.get("metadata") or {}
        path = rt.path(metadata.get("namespace"), metadata["name"], subresource)
        return await self.request("PUT", path, body=obj)

    async def patch(
        self,
        rt: ResourceType,
        name: str,
        namespace: str | None,
        body: Any,
        patch_type: PatchType = "merge",
        *,
        resource_version: str | None = None,
        subresource: str = "",
        field_manager: str = "medic",
    ) -> Any:
        """Patch; with `resource_version` the write only happens if nobody wrote since."""
        if resource_version and patch_type in {"merge", "strategic"} and isinstance(body, dict):
            metadata = dict(body.get("metadata") or {})
            metadata["resourceVersion"] = resource_version
            body = {**body, "metadata": metadata}
        elif resource_version and patch_type == "json":
            # Not a `test` op: kube-apiserver answers a failed test with 422 Invalid (no details),
            # so a race would read as a bad patch. A resourceVersion in the patched object is the
            # update's precondition, answered with 409 Conflict, as for a merge patch.
            pin = {"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version}
            body = [pin, *body]
        return await self.request(
            "PATCH",
            rt.path(namespace, name, subresource),
            query={"fieldManager": field_manager},
            body=body,
            content_type=PATCH_CONTENT_TYPES[patch_type],
        )

    async def patch_status(
        self, rt: ResourceType, name: str, namespace: str | None, body: Any
    ) -> Any:
        return await self.patch(rt, name, namespace, body, "merge", subresource="status")

    async def delete(
        self,
        rt: ResourceType,
        name: str,
        namespace: str | None = None,
        resource_version: str | None = None,
    ) -> Any:
        body = None
        if resource_version:
            body = {
                "kind": "DeleteOptions",
                "apiVersion": "v1",
                "preconditions": {"resourceVersion": resource_version},
            }
        return await self.request("DELETE", rt.path(namespace, name), body=body)

    async def create_subject_access_review(
        self,
        user: str,
        namespace: str | None,
        verb: str,
        resource: str,
        group: str = "",
        *,
        groups: Sequence[str] = (),
    ) -> bool:
        """Whether `user` (member of `groups`) may `verb` `resource` in `namespace`
        (authorization.k8s.io/v1)."""
        attributes: dict[str, str] = {"verb": verb, "resource": resource, "group": group}
        if namespace:
            attributes["namespace"] = namespace
        spec: dict[str, Any] = {"user": user, "resourceAttributes": attributes}
        if groups:
            spec["groups"] = list(groups)
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": spec,
        }
        answer = await self.request("POST", SUBJECT_ACCESS_REVIEWS.path(), body=review)
        return bool((answer.get("status") or {}).get("allowed", False))

    async def reachable(self) -> bool:
        try:
            await self._once("GET", "/version", None, None, "application/json")
        except KubeError:
            return False
        return True


def _decode(body: bytes) -> Any:
    if not body:
        return {}
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"message": body[:500].decode("utf-8", "replace")}
