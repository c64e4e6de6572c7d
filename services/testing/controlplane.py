"""A real Kubernetes control plane on loopback: etcd 3.6 and kube-apiserver, as envtest runs them.

controller-runtime's envtest (`pkg/internal/testing/controlplane`) is the model: start the real
binaries (built by `medic.testing.upstream`), hand back a kubeconfig, stop them. On top of envtest:
its own PKI (`medic.testing.kubepki`), RBAC on (so "forbidden" is the real authorizer's answer),
kubeconfigs for any ServiceAccount via TokenRequest, CRDs from the upstream modules, one or three
etcd members (three where a test needs leader changes), and no orphans: every child gets SIGKILL
when the process that started it dies (`die_with_parent`), whatever killed it.

There is no kubelet, scheduler or controller-manager: pods never run, namespaces are never
finalised, garbage collection does not happen, and no ServiceAccount is created by itself.

The same as a command: `python -m medic.testing.controlplane --kubeconfig FILE [--etcd-members 3]
[--crds flux,fleet,gardener]` prints one line when ready and runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medic.testing import upstream
from medic.testing.etcd import EtcdCluster
from medic.testing.kubepki import KubePKI, make_kube_pki
from medic.testing.processes import die_with_parent

READY_TIMEOUT = 120.0
REQUEST_TIMEOUT = 30.0


class ControlPlaneError(RuntimeError):
    """The control plane did not start, or a request to it failed."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@dataclass
class ApiResponse:
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class ControlPlane:
    """etcd + kube-apiserver; `with ControlPlane(base_dir=...) as plane: plane.kubeconfig`."""

    base_dir: Path | None = None
    etcd_members: int = 1
    crds: tuple[str, ...] = ()
    apiserver_args: tuple[str, ...] = ()
    etcd: EtcdCluster = field(init=False)
    pki: KubePKI = field(init=False)
    port: int = 0
    kubeconfig: Path = field(init=False)
    process: subprocess.Popen[bytes] | None = None
    _own_dir: bool = False

    def __enter__(self) -> ControlPlane:  # noqa: PYI034 - a dataclass, not subclassed
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "kube-apiserver.log"

    # --- start and stop -------------------------------------------------------------------------

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        """Build what is missing, start etcd and kube-apiserver, wait for /readyz, install CRDs."""
        if self.base_dir is None:
            self.base_dir = Path(tempfile.mkdtemp(prefix="medic-controlplane-"))
            self._own_dir = True
        self.base_dir.mkdir(parents=True, exist_ok=True)
        binaries = {name: upstream.binary_path(name) for name in ("etcd", "kube-apiserver")}
        self.pki = make_kube_pki(self.base_dir / "pki")
        self.etcd = EtcdCluster(
            size=self.etcd_members,
            base_dir=self.base_dir / "etcd",
            binary=binaries["etcd"],
            extra_args=("--unsafe-no-fsync=true",),
        )
        try:
            self.etcd.spawn_all()
            self._wait_etcd(timeout)
            self.port = _free_port()
            self.kubeconfig = self.write_kubeconfig(self.base_dir / "admin.kubeconfig")
            self.start_apiserver(binaries["kube-apiserver"], timeout)
            self.install_crds(
                file for group in self.crds for file in upstream.crd_group_files(group)
            )
        except BaseException:
            self.stop()
            raise

    def _wait_etcd(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for member in self.etcd.members:
            while True:
                if member.process is not None and member.process.poll() is not None:
                    log = (member.data_dir / "etcd.log").read_text(errors="replace")[-800:]
                    raise ControlPlaneError(f"etcd {member.name} exited: {log}")
                if _etcd_healthy(member.client_url):
                    break
                if time.monotonic() > deadline:
                    raise ControlPlaneError(f"etcd {member.name} not healthy within {timeout}s")
                time.sleep(0.1)

    def apiserver_argv(self, binary: Path) -> list[str]:
        assert self.base_dir is not None
        pki = self.pki
        return [
            str(binary),
            f"--etcd-servers={','.join(self.etcd.client_urls)}",
            f"--cert-dir={self.base_dir / 'certs'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--secure-port={self.port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--service-cluster-ip-range=10.0.0.0/24",
            f"--service-account-issuer=https://127.0.0.1:{self.port}/",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--authorization-mode=RBAC",
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            # No controller-manager runs: nothing would reconcile the kubernetes Service endpoints.
            "--endpoint-reconciler-type=none",
            *self.apiserver_args,
        ]

    def start_apiserver(self, binary: Path | None = None, timeout: float = READY_TIMEOUT) -> None:
        binary = binary or upstream.binary_path("kube-apiserver")
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(  # noqa: S603 - the binary we built
                self.apiserver_argv(binary),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl, async-signal-safe
            )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-1500:]
                raise ControlPlaneError(f"kube-apiserver exited: {tail}")
            try:
                reply = self.request("GET", "/readyz", timeout=5)
            except ControlPlaneError as error:
                last = str(error)
            else:
                if reply.status == 200:
                    return
                last = f"/readyz {reply.status}: {str(reply.body)[-300:]}"
            time.sleep(0.2)
        raise ControlPlaneError(f"kube-apiserver not ready within {timeout}s: {last}")

    def stop_apiserver(self, timeout: float = 20.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart_apiserver(self, timeout: float = READY_TIMEOUT) -> None:
        """Stop and start kube-apiserver on the same port and etcd (clients see it go, return)."""
        self.stop_apiserver()
        self.start_apiserver(timeout=timeout)

    def stop(self) -> None:
        self.stop_apiserver()
        if hasattr(self, "etcd"):
            for member in self.etcd.members:
                with contextlib.suppress(OSError):
                    self.etcd.kill(member)
        if self._own_dir and self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # --- talking to it --------------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return context

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        timeout: float = REQUEST_TIMEOUT,
    ) -> ApiResponse:
        """One request as the admin (system:masters); the body is decoded as JSON when it is."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - https to our own loopback server
            f"{self.server}{path}", data=data, method=method
        )
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, context=self._context(), timeout=timeout) as reply:  # noqa: S310
                return ApiResponse(reply.status, _decode(reply.read()))
        except urllib.error.HTTPError as error:
            return ApiResponse(error.code, _decode(error.read()))
        except (OSError, urllib.error.URLError) as error:
            raise ControlPlaneError(f"{method} {path}: {error}") from error

    def ensure(self, obj: dict[str, Any], path: str) -> ApiResponse:
        """Create `obj` at the collection `path`; on 409 replace it (at its resourceVersion)."""
        created = self.request("POST", path, obj)
        if created.status != 409:
            return created
        item = f"{path}/{obj['metadata']['name']}"
        current = self.request("GET", item)
        replacement = {**obj, "metadata": {**obj["metadata"]}}
        replacement["metadata"]["resourceVersion"] = current.body["metadata"]["resourceVersion"]
        return self.request("PUT", item, replacement)

    def install_crds(self, files: Iterable[Path], timeout: float = 60.0) -> list[str]:
        """Apply CRD manifests and wait until every one is Established and served."""
        names: list[str] = []
        for crd in _documents(files):
            reply = self.ensure(crd, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
            if not reply.ok:
                raise ControlPlaneError(
                    f"CRD {crd['metadata']['name']}: {reply.status} {reply.body}"
                )
            names.append(crd["metadata"]["name"])
            self._wait_served(crd, timeout)
        return names

    def _wait_served(self, crd: dict[str, Any], timeout: float) -> None:
        spec = crd["spec"]
        deadline = time.monotonic() + timeout
        path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
        served = [v["name"] for v in spec["versions"] if v.get("served", True)]
        while True:
            current = self.request("GET", path).body
            conditions = {
                c["type"]: c["status"]
                for c in (current.get("status") or {}).get("conditions") or []
            }
            if conditions.get("Established") == "True" and all(
                self.request(
                    "GET", f"/apis/{spec['group']}/{version}/{spec['names']['plural']}?limit=1"
                ).ok
                for version in served
            ):
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"CRD {crd['metadata']['name']} not served within {timeout}s"
                )
            time.sleep(0.1)

    def write_kubeconfig(self, path: Path, user: dict[str, str] | None = None) -> Path:
        """A kubeconfig for this server; the admin's client certificate unless `user` is given."""
        credentials = user or {
            "client-certificate-data": _b64(self.pki.admin_cert),
            "client-key-data": _b64(self.pki.admin_key),
        }
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "medic-test",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": _b64(self.pki.ca_cert),
                    },
                }
            ],
            "users": [{"name": "medic-test-user", "user": credentials}],
            "contexts": [
                {
                    "name": "medic-test",
                    "context": {"cluster": "medic-test", "user": "medic-test-user"},
                }
            ],
            "current-context": "medic-test",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def serviceaccount_token(self, namespace: str, name: str, *, create: bool = True) -> str:
        """A token for the ServiceAccount from TokenRequest (served by kube-apiserver itself)."""
        if create:
            self.ensure_namespace(namespace)
            self.request(
                "POST",
                f"/api/v1/namespaces/{namespace}/serviceaccounts",
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
            )
        reply = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 86400},
            },
        )
        if not reply.ok:
            raise ControlPlaneError(f"TokenRequest {namespace}/{name}: {reply.status} {reply.body}")
        return str(reply.body["status"]["token"])

    def serviceaccount_kubeconfig(
        self, namespace: str, name: str, path: Path | None = None, *, create: bool = True
    ) -> Path:
        """A kubeconfig that authenticates as system:serviceaccount:<namespace>:<name>."""
        assert self.base_dir is not None
        token = self.serviceaccount_token(namespace, name, create=create)
        target = path or self.base_dir / f"sa-{namespace}-{name}.kubeconfig"
        return self.write_kubeconfig(target, user={"token": token})

    def ensure_namespace(self, name: str) -> None:
        self.request(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )


def _etcd_healthy(client_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{client_url}/health", timeout=2) as reply:  # noqa: S310
            return bool(json.loads(reply.read()).get("health") == "true")
    except (OSError, ValueError):
        return False


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _documents(files: Iterable[Path]) -> Iterator[dict[str, Any]]:
    for file in files:
        for document in yaml.safe_load_all(file.read_text()):
            if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
                yield document


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m medic.testing.controlplane",
        description="Run a real etcd + kube-apiserver on loopback until SIGTERM.",
        epilog=(
            "example: python -m medic.testing.controlplane --kubeconfig /tmp/kc --crds flux\n"
            "then:    kubectl --kubeconfig /tmp/kc get crds"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--kubeconfig", type=Path, required=True, help="where to write the admin kubeconfig"
    )
    parser.add_argument("--etcd-members", type=int, choices=(1, 3), default=1)
    parser.add_argument(
        "--crds", default="", help=f"comma-separated CRD groups: {', '.join(upstream.CRD_GROUPS)}"
    )
    parser.add_argument(
        "--data-dir", type=Path, help="keep etcd data, logs and PKI here (default: a temp dir)"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    options = _parse(argv)
    groups = tuple(group for group in options.crds.split(",") if group)
    unknown = [group for group in groups if group not in upstream.CRD_GROUPS]
    if unknown:
        print(f"unknown CRD group(s): {', '.join(unknown)}", file=sys.stderr)  # noqa: T201
        return 2
    stop_requested: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stop_requested.append(signum))
    plane = ControlPlane(base_dir=options.data_dir, etcd_members=options.etcd_members, crds=groups)
    try:
        plane.start()
    except (ControlPlaneError, upstream.UpstreamUnavailableError) as error:
        print(f"control plane did not start: {error}", file=sys.stderr)  # noqa: T201
        return 1
    try:
        shutil.copy(plane.kubeconfig, options.kubeconfig)
        options.kubeconfig.chmod(0o600)
        etcd = ",".join(plane.etcd.client_urls)
        print(f"ready: {plane.server} kubeconfig={options.kubeconfig} etcd={etcd}", flush=True)  # noqa: T201
        while not stop_requested:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        plane.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
