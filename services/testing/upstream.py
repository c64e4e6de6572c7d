"""The real upstream binaries and CRDs the real-cluster tests run, built from pinned Go modules.

Binaries (kube-apiserver, etcd, helm, helm-controller) are built from the small wrapper modules in
`gomod/<name>/` (go.mod + go.sum committed; the require line there is the one version pin), on first
use, and cached by name and version outside the work tree (`~/.cache/medic/bin/<name>-<version>/`,
or `$MEDIC_CACHE_DIR`). A file lock serialises builds, so two test processes never build the same
binary at once and a half-written binary is never used (it is renamed into place when complete).

CRDs come from the same modules' files (`go mod download -json MODULE@VERSION` names the folder);
their pins are `CRD_SOURCES`. Nothing downloaded is committed.

For scripts and people: `python -m medic.testing.upstream path NAME` prints a binary's path
(building it first if needed); `python -m medic.testing.upstream crds GROUP` prints CRD files.
Not for production: this is test support.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_GOMOD = Path(__file__).resolve().parent / "gomod"
BUILD_TIMEOUT = 3600.0


class UpstreamUnavailableError(RuntimeError):
    """A binary or CRD cannot be had here: no Go toolchain, or a build or download failed."""


@dataclass(frozen=True)
class GoBinary:
    """One upstream program: its wrapper module folder, the package to build and link flags."""

    name: str
    module: str  # the upstream module whose version (in the wrapper's go.mod) is the pin
    package: str
    tags: str = ""
    ldflags_version_var: str = ""  # `-X VAR=<version>` so `--version` tells the truth

    @property
    def wrapper(self) -> Path:
        return _GOMOD / self.name

    @property
    def version(self) -> str:
        return required_version(self.wrapper / "go.mod", self.module)


BINARIES: dict[str, GoBinary] = {
    binary.name: binary
    for binary in (
        GoBinary(
            "kube-apiserver",
            "k8s.io/kubernetes",
            "k8s.io/kubernetes/cmd/kube-apiserver",
            tags="grpcnotrace",
            ldflags_version_var="k8s.io/component-base/version.gitVersion",
        ),
        GoBinary("etcd", "go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/server/v3"),
        GoBinary(
            "helm",
            "helm.sh/helm/v3",
            "helm.sh/helm/v3/cmd/helm",
            ldflags_version_var="helm.sh/helm/v3/internal/version.version",
        ),
        GoBinary(
            "helm-controller",
            "github.com/fluxcd/helm-controller",
            "github.com/fluxcd/helm-controller",
        ),
    )
}


@dataclass(frozen=True)
class CrdSource:
    """CRD manifests inside one upstream module at one version."""

    module: str
    version: str
    paths: tuple[str, ...]


_HC = "github.com/fluxcd/helm-controller"
_HR = "config/crd/bases/helm.toolkit.fluxcd.io_helmreleases.yaml"
_SC_BASES = "config/crd/bases/source.toolkit.fluxcd.io_"
# The CRD pins. helm-controller tags per Flux release (upstream-facts.md): v0.36 = Flux 2.1,
# v0.37 = Flux 2.2, v1.4 = Flux 2.7 (the binary's own version). Flux 2.6 (v1.3.x) is not served by
# this machine's module proxy (403), so the two-version migration is shown with Flux 2.2's CRD.
CRD_SOURCES: dict[str, CrdSource] = {
    "flux-2.1": CrdSource(_HC, "v0.36.0", (_HR,)),
    "flux-2.2": CrdSource(_HC, "v0.37.2", (_HR,)),
    "flux-2.7": CrdSource(_HC, "", (_HR,)),  # "" = the helm-controller binary's version
    # helm-controller v1.4.3's go.mod requires source-controller/api v1.7.2.
    "flux-sources": CrdSource(
        "github.com/fluxcd/source-controller",
        "v1.7.2",
        tuple(
            f"{_SC_BASES}{kind}.yaml"
            for kind in ("helmcharts", "ocirepositories", "externalartifacts")
        ),
    ),
    "fleet": CrdSource(
        "github.com/rancher/fleet", "v0.15.0", ("charts/fleet-crd/templates/crds.yaml",)
    ),
    "gardener": CrdSource(
        "github.com/gardener/etcd-druid/api",
        "v0.31.0",
        ("core/v1alpha1/crds/druid.gardener.cloud_etcds.yaml",),
    ),
}
# What `--crds flux,fleet,gardener` installs.
CRD_GROUPS: dict[str, tuple[str, ...]] = {
    "flux": ("flux-2.7", "flux-sources"),
    "fleet": ("fleet",),
    "gardener": ("gardener",),
}


def required_version(go_mod: Path, module: str) -> str:
    """The version `go_mod` requires of `module` (the wrapper's pin)."""
    pattern = re.compile(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", re.MULTILINE)
    found = pattern.search(go_mod.read_text())
    if found is None:
        raise UpstreamUnavailableError(f"{go_mod}: no require line for {module}")
    return found.group(1)


def cache_dir() -> Path:
    configured = os.environ.get("MEDIC_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "medic"


def go_toolchain() -> Path | None:
    found = shutil.which("go")
    return Path(found) if found else None


def missing_reason() -> str | None:
    """Why real-cluster tests cannot run here (None when they can)."""
    if go_toolchain() is None:
        return "no Go toolchain (`go` not on PATH): the real control plane is built from Go modules"
    return None


def cached_path(name: str) -> Path:
    binary = _binary(name)
    return cache_dir() / "bin" / f"{name}-{binary.version}" / name


def _binary(name: str) -> GoBinary:
    try:
        return BINARIES[name]
    except KeyError:
        known = ", ".join(BINARIES)
        raise UpstreamUnavailableError(
            f"unknown upstream binary {name!r} (known: {known})"
        ) from None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _go_env() -> dict[str, str]:
    # GOTOOLCHAIN=local: never try to download another toolchain; CGO off: static binaries.
    return {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"}


def binary_path(name: str) -> Path:
    """The cached binary, built first if it is not there yet (under a lock)."""
    target = cached_path(name)
    if target.exists():
        return target
    go = go_toolchain()
    if go is None:
        raise UpstreamUnavailableError(missing_reason() or "no Go toolchain")
    with _locked(target.parent.with_suffix(".lock")):
        if target.exists():  # another process built it while we waited
            return target
        _build(go, _binary(name), target)
    return target


def _build(go: Path, binary: GoBinary, target: Path) -> None:
    version = binary.version
    print(  # noqa: T201 - a first build takes minutes; say why the wait
        f"medic: building {binary.name} {version} from Go modules (first use; cached at {target})",
        file=sys.stderr,
        flush=True,
    )
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"medic-build-{binary.name}-") as work:
        # Build in a copy: the installed package may be read-only or a tree of links.
        for file in ("go.mod", "go.sum"):
            shutil.copy(binary.wrapper / file, Path(work) / file)
        partial = target.with_name(f".{target.name}.partial")
        ldflags = "-s -w"
        if binary.ldflags_version_var:
            ldflags += f" -X {binary.ldflags_version_var}={version}"
        argv = [str(go), "build", "-trimpath", "-ldflags", ldflags, "-o", str(partial)]
        if binary.tags:
            argv += ["-tags", binary.tags]
        result = subprocess.run(  # noqa: S603 - the Go toolchain on our own wrapper module
            [*argv, binary.package],
            cwd=work,
            env=_go_env(),
            capture_output=True,
            text=True,
            check=False,
            timeout=BUILD_TIMEOUT,
        )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise UpstreamUnavailableError(f"go build of {binary.name} {version} failed:\n{tail}")
    partial.rename(target)
    print(  # noqa: T201
        f"medic: built {binary.name} {version} in {time.monotonic() - started:.0f}s",
        file=sys.stderr,
        flush=True,
    )


def module_dir(module: str, version: str) -> Path:
    """The module's files in the Go module cache (downloaded first if needed)."""
    go = go_toolchain()
    if go is None:
        raise UpstreamUnavailableError(missing_reason() or "no Go toolchain")
    with tempfile.TemporaryDirectory(prefix="medic-gomod-") as outside_any_module:
        result = subprocess.run(  # noqa: S603 - the Go toolchain, fixed arguments
            [str(go), "mod", "download", "-json", f"{module}@{version}"],
            cwd=outside_any_module,
            env=_go_env(),
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
    try:
        info = json.loads(result.stdout)
    except ValueError:
        info = {}
    if result.returncode != 0 or "Dir" not in info:
        error = info.get("Error") or result.stderr.strip()
        raise UpstreamUnavailableError(f"go mod download {module}@{version}: {error}")
    return Path(info["Dir"])


def crd_files(source_name: str) -> list[Path]:
    """The CRD manifest files of one entry of `CRD_SOURCES`."""
    try:
        source = CRD_SOURCES[source_name]
    except KeyError:
        known = ", ".join(CRD_SOURCES)
        raise UpstreamUnavailableError(
            f"unknown CRD source {source_name!r} (known: {known})"
        ) from None
    version = source.version or BINARIES["helm-controller"].version
    folder = module_dir(source.module, version)
    files = [folder / path for path in source.paths]
    for file in files:
        if not file.exists():
            raise UpstreamUnavailableError(
                f"{source.module}@{version} has no {file.relative_to(folder)}"
            )
    return files


def crd_group_files(group: str) -> list[Path]:
    """CRD files of a `--crds` group (flux, fleet, gardener) or of one `CRD_SOURCES` entry."""
    names = CRD_GROUPS.get(group, (group,))
    return [file for name in names for file in crd_files(name)]


def main(argv: list[str]) -> int:
    usage = "usage: python -m medic.testing.upstream path NAME | crds GROUP | versions"
    try:
        match argv:
            case ["path", name]:
                print(binary_path(name))  # noqa: T201
            case ["crds", group]:
                for file in crd_group_files(group):
                    print(file)  # noqa: T201
            case ["versions"]:
                for name, binary in BINARIES.items():
                    print(f"{name} {binary.module} {binary.version}")  # noqa: T201
            case _:
                print(usage, file=sys.stderr)  # noqa: T201
                return 2
    except UpstreamUnavailableError as error:
        print(f"medic.testing.upstream: {error}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
