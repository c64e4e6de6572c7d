"""medic.sandbox: an in-memory Kubernetes API server for tests, demos and `medic run`.

    async with KubeSandbox.start() as sb:        # sb.url, sb.kubeconfig_path, sb.store
        sb.store.put({...}); sb.store.inject(Fault(verb="patch", resource="helmreleases"))

It speaks enough of the API for kubernetes_asyncio and the real kubectl: discovery, get/list
(label and field selectors, limit/continue), watch (history resume, 410, bookmarks,
timeoutSeconds), create/update/patch (merge, JSON, strategic)/delete, /status subresources,
SubjectAccessReview from the stored RBAC, and HelmRelease at v2beta1/v2beta2/v2.

Like the API server, a write that changes nothing (for example a JSON patch removing and
re-adding the same annotation) is a no-op: same resourceVersion, no watch event, no on_write hook.
Namespaces default, kube-system and kube-public exist from the start.

tests/contract/ runs one suite against this sandbox and the real kube-apiserver 1.34; where
they differ the test names the LIMIT below.

LIMITS (what the sandbox does not do like a real API server):
- Authentication: any bearer token (or none) is accepted and acts as the user `sandbox`, who
  may do everything, except tokens issued by `store.issue_token` (`serviceaccount_kubeconfig`),
  whose requests are authorized from the stored RBAC and get the API server's 403 Forbidden.
  (Self)SubjectAccessReview evaluates the same RBAC; aggregated ClusterRoles are not expanded
  and there are no default roles (system:basic-user, ...): an issued identity may do only what
  the stored RBAC grants, while discovery, /version and /openapi are never checked.
- No admission, no schema validation, no defaulting; objects are stored as given (the real
  Flux CRD defaults e.g. spec.chart.spec.reconcileStrategy and status.observedGeneration: -1;
  Medic reads a missing observedGeneration as -1, so its judgement is the same). There are no
  finalizers, garbage collection or deletion grace periods: DELETE removes at once (deleting a
  Namespace removes its objects at once).
- Creating a namespaced object in a missing namespace creates the Namespace implicitly.
- Conversion between HelmRelease versions only rewrites apiVersion (the spec is not converted).
  Objects keep the version they were stored at until written again (`set_storage_version`).
- Strategic merge patch = JSON merge patch in which lists of maps merge by `name`, else by `type`
  (containers, env, conditions); `$patch: delete|replace` honoured, other directives dropped.
  The real server refuses strategic merge patches on custom resources (415); the sandbox
  applies them. Server-side apply (application/apply-patch+yaml) is a merge patch recorded as
  operation Apply; no field ownership or conflicts; managedFields carry `fieldsV1: {}` (kept
  per manager, operation, subresource and, for Update, API version, in the API server's order;
  an entry whose fields all moved to another manager is not dropped).
- fieldSelector: any dotted path with =, ==, != (metadata.name, metadata.namespace, type, ...);
  involvedObject.* / regarding.* are ignored. List resourceVersion/resourceVersionMatch
  parameters are ignored (lists are always current); continue tokens expire (410) only once
  `compact()` passed their version.
- Answers are JSON. Request bodies: JSON, YAML (apply-patch, control API), and protobuf for the
  kinds kubectl's typed clients create (Secret, ConfigMap, Namespace, ServiceAccount,
  SelfSubjectAccessReview; `medic.sandbox.protobuf`): `kubectl create secret generic`,
  `create configmap`, `create namespace`, `create sa` and `auth can-i` work. Protobuf of other
  kinds and CBOR get 415 (client-go retries in JSON after a 415 only for CBOR).
- Table output (`kubectl get`, also `-w`) only for types whose CRD declares printer columns:
  HelmRelease shows Flux's Age, Ready, Status (tables.py); other kinds get kubectl's default
  columns (NAME, AGE) from the plain objects.
- OpenAPI: /openapi/v2 answers 404; /openapi/v3 lists every group-version with paths only
  (no schemas) declaring the `fieldValidation` parameter, so kubectl leaves validation to the
  server (which accepts anything) and `kubectl apply` needs no --validate=false. Strategic merge
  patches kubectl computes for built-in types come from its compiled-in schemas.
  `kubectl explain hr` therefore fails ("GVK ... not found in OpenAPI schema"): the CRDs carry no
  schemas (x-kubernetes-preserve-unknown-fields); serving them would mean vendoring Flux's,
  Fleet's and Gardener's CRDs. Use the upstream API reference, or explain against a cluster.
- No aggregated discovery: the v2 APIGroupDiscoveryList is answered with the legacy
  APIGroupList as application/json, and clients fall back to legacy discovery. HelmRelease is
  served at v2beta1, v2beta2 and v2 at once, which no Flux CRD does (helm-controller
  config/crd/bases/helm.toolkit.fluxcd.io_helmreleases.yaml: v0.37.2 = Flux 2.2 serves v2beta1
  and v2beta2, v1.4.3 = Flux 2.7 serves v2 and v2beta2), with `categories: [all]` (the Flux
  2.7 CRD has none); /version says v1.31.0.
- Watch history is a bounded deque (default 10,000 events); a resume from an older
  resourceVersion gets a 410 Expired ERROR event; `compact()` forgets all history at once.
  On the real server an etcd compaction alone expires nothing its watch cache still holds:
  watches, exact-version lists and continue tokens from compacted revisions are served from
  the cache until it is rebuilt (a kube-apiserver restart) or its window moves on; only then
  410. `compact()` plays both at once. Bookmarks go out every `bookmark_interval` even when
  nothing was written; kube-apiserver sends them only past the version the watch started at,
  2 s before its timeoutSeconds and about once a minute.
- Secrets/ConfigMaps also get metadata.generation; no Scale, no log/exec/proxy.
- on_write hooks run synchronously inside the write; their exceptions are kept in
  `store.hook_errors` instead of failing the request.
- Faults with latency > 0 or drop_watch=True only delay or drop the request; inject a second
  Fault for a status code. A drop_watch fault aborts an open (or the next) matching watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from medic.sandbox.catalog import CATALOG, ApiError, ResourceType
from medic.sandbox.httpapi import OPTIONS_KEY, build_app
from medic.sandbox.kubeconf import write_kubeconfig
from medic.sandbox.memstore import Fault, RequestRecord, SandboxStore

__all__ = [
    "CATALOG",
    "ApiError",
    "Fault",
    "KubeSandbox",
    "RequestRecord",
    "ResourceType",
    "SandboxStore",
    "serve_embedded",
]


class KubeSandbox:
    def __init__(
        self, store: SandboxStore, runner: web.AppRunner, url: str, kubeconfig_path: Path
    ) -> None:
        self.store = store
        self.url = url
        self.kubeconfig_path = kubeconfig_path
        self._runner = runner

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        port: int = 0,
        kubeconfig_dir: Path | None = None,
        *,
        bookmark_interval: float = 1.0,
        history: int = 10_000,
        host: str = "127.0.0.1",
    ) -> AsyncIterator[KubeSandbox]:
        sandbox = await cls.open(
            port, kubeconfig_dir, bookmark_interval=bookmark_interval, history=history, host=host
        )
        try:
            yield sandbox
        finally:
            await sandbox.stop()

    @classmethod
    async def open(
        cls,
        port: int = 0,
        kubeconfig_dir: Path | None = None,
        *,
        bookmark_interval: float = 1.0,
        history: int = 10_000,
        host: str = "127.0.0.1",
    ) -> KubeSandbox:
        """Start serving (pair with `stop()`); `start()` is the context-manager form."""
        store = SandboxStore(history=history)
        app = build_app(store, bookmark_interval)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        url = f"http://{host}:{bound}"
        owned = kubeconfig_dir is None
        directory = Path(tempfile.mkdtemp(prefix="medic-sandbox-")) if owned else kubeconfig_dir
        assert directory is not None
        sandbox = cls(store, runner, url, write_kubeconfig(directory / "kubeconfig", url))
        sandbox._owned_dir = directory if owned else None
        return sandbox

    _owned_dir: Path | None = None

    def serviceaccount_kubeconfig(
        self, namespace: str, name: str, path: Path | None = None
    ) -> Path:
        """A kubeconfig acting as system:serviceaccount:<namespace>:<name>: its requests are
        authorized from the stored RBAC (403 when no rule allows them), as on a real server."""
        token = self.store.issue_token(f"system:serviceaccount:{namespace}:{name}")
        directory = self.kubeconfig_path.parent
        target = path or directory / f"sa-{namespace}-{name}.kubeconfig"
        return write_kubeconfig(target, self.url, token)

    async def stop(self) -> None:
        self._runner.app[OPTIONS_KEY]["closing"] = True
        self.store.close_all_watches()
        await asyncio.sleep(0)
        await self._runner.cleanup()
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)


@contextlib.asynccontextmanager
async def serve_embedded(data_dir: Path) -> AsyncIterator[Path]:
    """A sandbox on a free port with its kubeconfig at data_dir/kubeconfig (for `medic run`)."""
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    async with KubeSandbox.start(kubeconfig_dir=data_dir) as sandbox:
        yield sandbox.kubeconfig_path
