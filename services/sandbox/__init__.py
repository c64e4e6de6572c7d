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

LIMITS (what the sandbox does not do like a real API server):
- Authentication: any bearer token (or none) is accepted and every request acts as the user
  `sandbox`, who may do everything; RBAC objects are only evaluated for (Self)SubjectAccessReview.
- No admission, no schema validation, no defaulting; objects are stored as given. There are no
  finalizers, garbage collection or deletion grace periods: DELETE removes at once (deleting a
  Namespace removes its objects at once).
- Creating a namespaced object in a missing namespace creates the Namespace implicitly.
- Conversion between HelmRelease versions only rewrites apiVersion (the spec is not converted).
  Objects keep the version they were stored at until written again (`set_storage_version`).
- Strategic merge patch = JSON merge patch in which lists of maps merge by `name`, else by `type`
  (containers, env, conditions); `$patch: delete|replace` honoured, other directives dropped.
  Server-side apply (application/apply-patch+yaml) is a merge patch recorded as operation Apply;
  no field ownership or conflicts; managedFields carry `fieldsV1: {}`.
- fieldSelector: any dotted path with =, ==, != (metadata.name, metadata.namespace, type, ...);
  involvedObject.* / regarding.* are ignored. List resourceVersion/resourceVersionMatch
  parameters are ignored (lists are always current); continue tokens never expire.
- JSON only (YAML accepted for apply-patch and the control API): protobuf and CBOR request
  bodies get 415. kubectl commands built on typed clients that send protobuf fail
  (`kubectl create secret generic ...`, `kubectl auth can-i`); `kubectl apply/create -f`,
  `get`, `patch`, `label`, `annotate`, `delete`, `--watch` all send JSON and work.
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
  APIGroupList as application/json, and clients fall back to legacy discovery.
- Watch history is a bounded deque (default 10,000 events); a resume from an older
  resourceVersion gets a 410 Expired ERROR event; `compact()` forgets all history.
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
