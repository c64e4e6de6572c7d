"""Objects for the scale benchmarks: HelmReleases and Helm release Secrets as their writers make
them (medic.testing.objects for Flux; Helm's secret driver for storage), N of each."""

from __future__ import annotations

from typing import Any

from medic.testing import objects
from medic.upstream import helm

MANIFEST = (
    "---\n# Source: podinfo/templates/deployment.yaml\napiVersion: apps/v1\nkind: Deployment\n"
)


def release_record(name: str, namespace: str, revision: int = 1) -> dict[str, Any]:
    """A Helm release record as helm's pkg/release.Release serialises it (trimmed manifest)."""
    return {
        "name": name,
        "namespace": namespace,
        "version": revision,
        "info": {
            "first_deployed": "2026-11-01T10:00:00Z",
            "last_deployed": "2026-11-01T10:00:00Z",
            "deleted": "",
            "description": "Install complete",
            "status": helm.ReleaseStatus.DEPLOYED.value,
        },
        "chart": {"metadata": {"name": "podinfo", "version": "6.5.4", "apiVersion": "v2"}},
        "config": {"replicaCount": 2},
        "manifest": MANIFEST * 20,
    }


def release_secret(name: str, namespace: str, revision: int = 1) -> dict[str, Any]:
    """A Secret written by Helm's secret storage driver (pkg/storage/driver/secrets.go)."""
    record = release_record(name, namespace, revision)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": helm.SECRET_TYPE,
        "metadata": {
            "name": helm.secret_name(name, revision),
            "namespace": namespace,
            "labels": {
                helm.LABEL_NAME: name,
                helm.LABEL_OWNER: helm.OWNER,
                helm.LABEL_STATUS: helm.ReleaseStatus.DEPLOYED.value,
                helm.LABEL_VERSION: str(revision),
            },
        },
        "data": {helm.DATA_KEY: helm.encode_secret_data(record)},
    }


def helmrelease(i: int, namespaces: int = 50) -> dict[str, Any]:
    name, namespace = f"app-{i}", f"ns-{i % namespaces}"
    return objects.helmrelease(name, namespace, status=objects.ready_status(name, namespace))


def scale_objects(count: int, namespaces: int = 50) -> list[dict[str, Any]]:
    """`count` ready HelmReleases and their `count` deployed Helm release Secrets."""
    out: list[dict[str, Any]] = []
    for i in range(count):
        out.append(helmrelease(i, namespaces))
        out.append(release_secret(f"app-{i}", f"ns-{i % namespaces}"))
    return out
