"""Shared parts of the benchmarks on the real API server (issue 12 item 6).

A `ControlPlane` (real etcd 3.6 + kube-apiserver 1.34 with the Flux CRDs, medic.testing) with an
audit log: the API server's own arrival time (`requestReceivedTimestamp`, microseconds) of every
list and watch of HelmReleases and Secrets and every patch of a HelmRelease (not of its status),
which is how the benchmarks see when the watcher started watching and when the remediator's PATCH
arrived. Creates, status writes and everything else are not audited, so staging 20,000 objects
writes no audit lines.

Also: an aiohttp session as the admin (client certificate) and bounded concurrent staging.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    verbs: ["list", "watch"]
    resources:
      - group: helm.toolkit.fluxcd.io
        resources: ["helmreleases"]
      - group: ""
        resources: ["secrets"]
  - level: Metadata
    verbs: ["patch"]
    resources:
      - group: helm.toolkit.fluxcd.io
        resources: ["helmreleases"]
  - level: None
"""
IN_FLIGHT = 64  # concurrent writes while staging
ALL_HELMRELEASES = "/apis/helm.toolkit.fluxcd.io/v2/helmreleases"  # in every namespace


def unavailable() -> str | None:
    """Why the real control plane cannot run here (None when it can)."""
    try:
        from medic.testing import upstream
        from medic.testing.controlplane import ControlPlane  # noqa: F401
    except ImportError as exc:
        return f"not landed yet: {exc.name}"
    return upstream.missing_reason()


def _micros(stamp: str) -> float:
    """An audit timestamp (RFC 3339 with microseconds, 'Z') as a POSIX time."""
    return datetime.fromisoformat(stamp).timestamp()  # 3.11 reads the Z


@dataclass
class AuditEntry:
    verb: str
    resource: str
    subresource: str
    name: str
    namespace: str
    uri: str
    user_agent: str
    received: float  # POSIX seconds, as the API server's clock saw the request arrive
    code: int
    answered: float = 0.0  # when the API server finished its response (last stage's time)


@dataclass
class AuditLog:
    """Reads the audit log as it grows; `entries` holds one per request (its last stage)."""

    path: Path
    offset: int = 0
    entries: dict[str, AuditEntry] = field(default_factory=dict)
    _partial: bytes = b""

    def read(self) -> list[AuditEntry]:
        """New entries since the last read."""
        if not self.path.exists():
            return []
        with self.path.open("rb") as file:
            file.seek(self.offset)
            chunk = file.read()
        self.offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        fresh = []
        for line in lines:
            if not line.strip():
                continue
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            entry = AuditEntry(
                verb=event.get("verb", ""),
                resource=ref.get("resource", ""),
                subresource=ref.get("subresource", ""),
                name=ref.get("name", ""),
                namespace=ref.get("namespace", ""),
                uri=event.get("requestURI", ""),
                user_agent=event.get("userAgent", ""),
                received=_micros(event["requestReceivedTimestamp"]),
                code=int((event.get("responseStatus") or {}).get("code") or 0),
                answered=_micros(event.get("stageTimestamp") or event["requestReceivedTimestamp"]),
            )
            if event["auditID"] not in self.entries:
                fresh.append(entry)
            self.entries[event["auditID"]] = entry
        return fresh

    async def wait_for(
        self, found: Callable[[list[AuditEntry]], bool], timeout: float, alive: Callable[[], bool]
    ) -> bool:
        """Poll until `found(all entries so far)`; False when `alive()` turns False or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read()
            if found(list(self.entries.values())):
                return True
            if not alive():
                return False
            await asyncio.sleep(0.02)
        return False


def ssl_context(plane: Any) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(plane.pki.ca_cert))
    context.load_cert_chain(str(plane.pki.admin_cert), str(plane.pki.admin_key))
    return context


@contextlib.asynccontextmanager
async def admin_session(plane: Any) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(ssl=ssl_context(plane), limit=IN_FLIGHT)
    async with aiohttp.ClientSession(
        base_url=plane.server,
        connector=connector,
        headers={"Accept": "application/json"},
        timeout=aiohttp.ClientTimeout(total=60),
    ) as session:
        yield session


class StagingError(RuntimeError):
    pass


async def call(
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any,
    *,
    content_type: str = "application/json",
    params: dict[str, str] | None = None,
) -> Any:
    """One request; 409 on a create counts as done (a re-run on the same plane); others raise."""
    data = json.dumps(body).encode()
    for attempt in range(5):
        async with session.request(
            method, path, data=data, params=params, headers={"Content-Type": content_type}
        ) as reply:
            if reply.status < 300 or (reply.status == 409 and method == "POST"):
                return await reply.json()
            text = await reply.text()
            if reply.status == 429 or reply.status >= 500:  # priority and fairness, or overload
                await asyncio.sleep(float(reply.headers.get("Retry-After", 1)) * (attempt + 1))
                continue
            raise StagingError(f"{method} {path}: {reply.status} {text[:400]}")
    raise StagingError(f"{method} {path}: still refused after 5 attempts")


async def bounded(calls: Iterable[Any], in_flight: int = IN_FLIGHT) -> int:
    """Await the coroutines from `calls` with at most `in_flight` running; returns how many."""
    iterator = iter(calls)
    done = 0

    async def worker() -> None:
        nonlocal done
        for coroutine in iterator:
            await coroutine
            done += 1

    async with asyncio.TaskGroup() as group:
        for _ in range(in_flight):
            group.create_task(worker())
    return done


async def ensure_namespaces(session: aiohttp.ClientSession, names: Iterable[str]) -> None:
    await bounded(
        call(
            session,
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )
        for name in names
    )


def hr_path(namespace: str, name: str = "", version: str = "v2") -> str:
    from medic.upstream import flux

    base = f"/apis/{flux.GROUP}/{version}/namespaces/{namespace}/{flux.PLURAL}"
    return f"{base}/{name}" if name else base


async def create_helmrelease(
    session: aiohttp.ClientSession, obj: dict[str, Any], status: dict[str, Any] | None
) -> None:
    """Create a HelmRelease, then write its status as helm-controller does (the status
    subresource drops `status` on create)."""
    meta = obj["metadata"]
    spec_only = {key: value for key, value in obj.items() if key != "status"}
    await call(session, "POST", hr_path(meta["namespace"]), spec_only)
    if status is not None:
        await patch_status(session, meta["namespace"], meta["name"], status)


async def stage_ready(session: aiohttp.ClientSession, names: Iterable[tuple[str, str]]) -> None:
    """Ready HelmReleases (name, namespace), their namespaces created first."""
    from medic.testing import objects

    chosen = list(names)
    await ensure_namespaces(session, {namespace for _, namespace in chosen})
    await bounded(
        create_helmrelease(session, objects.helmrelease(*n), objects.ready_status(*n))
        for n in chosen
    )


def services_env(nats_url: str, kubeconfig: Path) -> dict[str, str]:
    """What `medic watcher` and `medic remediator` get in the real-server benchmarks: the
    helmrelease source only, and a client limit that does not pace the benchmark (20 qps by
    default). A bootstrap burst also needs more fixes in flight than the defaults allow (64
    handlers, 100 connections): each holds a handler and a connection while its write waits
    on an API server that answers in about a second under the burst (README, Configuration)."""
    return {
        "MEDIC_NATS__URLS": nats_url,
        "MEDIC_KUBE__KUBECONFIG": str(kubeconfig),
        "MEDIC_KUBE__QPS": "1000",
        "MEDIC_KUBE__BURST": "1000",
        "MEDIC_KUBE__CONNECTIONS": "400",
        "MEDIC_REMEDIATOR_CONCURRENCY": "256",
        "MEDIC_CLUSTER": "bench",
        "MEDIC_LOG_LEVEL": "warning",
        "MEDIC_WATCHER_SOURCES": "helmrelease",
    }


async def patch_status(
    session: aiohttp.ClientSession, namespace: str, name: str, status: dict[str, Any]
) -> None:
    await call(
        session,
        "PATCH",
        hr_path(namespace, name) + "/status",
        {"status": status},
        content_type="application/merge-patch+json",
        params={"fieldManager": "helm-controller"},
    )


async def create_secret(session: aiohttp.ClientSession, obj: dict[str, Any]) -> None:
    await call(session, "POST", f"/api/v1/namespaces/{obj['metadata']['namespace']}/secrets", obj)


@dataclass
class AuditedPlane:
    plane: Any  # medic.testing.controlplane.ControlPlane
    audit: AuditLog


@contextlib.contextmanager
def audited_plane(base: Path, policy: str = AUDIT_POLICY) -> Iterator[AuditedPlane]:
    """A fresh control plane with the Flux CRDs and an audit log (by default the policy above)."""
    from medic.testing.controlplane import ControlPlane

    base.mkdir(parents=True, exist_ok=True)
    policy_path = base / "audit-policy.yaml"
    policy_path.write_text(policy)
    audit_path = base / "audit.log"
    plane = ControlPlane(
        base_dir=base / "plane",
        crds=("flux",),
        apiserver_args=(
            f"--audit-policy-file={policy_path}",
            f"--audit-log-path={audit_path}",
            "--audit-log-format=json",
            "--audit-log-maxsize=0",
        ),
    )
    with plane:
        yield AuditedPlane(plane, AuditLog(audit_path))
