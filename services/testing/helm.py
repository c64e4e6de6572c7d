"""Helm release Secrets exactly as Helm's `secret` storage driver writes them.

helm.sh/helm/v3 pkg/storage/driver/secrets.go `newSecretsObject`: name
`sh.helm.release.v1.<release>.v<revision>`, type `helm.sh/release.v1`, labels name/owner/status/
version/modifiedAt, data.release = base64(gzip(JSON)) (and base64 once more through the API).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from medic.upstream import helm


def release_record(
    name: str,
    namespace: str,
    *,
    revision: int = 1,
    status: str = "deployed",
    chart: str = "podinfo",
    chart_version: str = "6.5.4",
    deployed_ago: float = 0.0,
    manifest: str = "---\n# Source: podinfo/templates/deployment.yaml\nkind: Deployment\n",
) -> dict[str, Any]:
    when = (datetime.now(UTC) - timedelta(seconds=deployed_ago)).isoformat()
    return {
        "name": name,
        "namespace": namespace,
        "version": revision,
        "info": {
            "first_deployed": when,
            "last_deployed": when,
            "deleted": "",
            "description": "Install complete"
            if status == "deployed"
            else "Initial install underway",
            "status": status,
            "notes": "podinfo installed",
        },
        "chart": {
            "metadata": {
                "name": chart,
                "version": chart_version,
                "apiVersion": "v2",
                "appVersion": "6.5.4",
            },
            "templates": [
                {"name": "templates/deployment.yaml", "data": "a2luZDogRGVwbG95bWVudA=="}
            ],
            "values": {"replicaCount": 1},
        },
        "config": {"replicaCount": 2, "auth": {"password": "s3cr3t-in-values"}},
        "manifest": manifest,
        "hooks": [],
    }


def release_secret(
    name: str,
    namespace: str = "apps",
    *,
    revision: int = 1,
    status: str = "deployed",
    chart: str = "podinfo",
    chart_version: str = "6.5.4",
    modified_ago: float = 0.0,
    manifest: str | None = None,
) -> dict[str, Any]:
    """A Secret object (as read through the API: data values base64 once more)."""
    record = release_record(
        name,
        namespace,
        revision=revision,
        status=status,
        chart=chart,
        chart_version=chart_version,
        deployed_ago=modified_ago,
        **({"manifest": manifest} if manifest is not None else {}),
    )
    modified = int((datetime.now(UTC) - timedelta(seconds=modified_ago)).timestamp())
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": helm.secret_name(name, revision),
            "namespace": namespace,
            "labels": {
                helm.LABEL_NAME: name,
                helm.LABEL_OWNER: helm.OWNER,
                helm.LABEL_STATUS: status,
                helm.LABEL_VERSION: str(revision),
                helm.LABEL_MODIFIED_AT: str(modified),
            },
        },
        "type": helm.SECRET_TYPE,
        "data": {helm.DATA_KEY: helm.encode_secret_data(record)},
    }


def corrupt_release_secret(name: str, namespace: str = "apps", revision: int = 1) -> dict[str, Any]:
    """A release Secret whose record is gzip-magic followed by garbage."""
    secret = release_secret(name, namespace, revision=revision)
    garbage = base64.b64encode(helm.GZIP_MAGIC + b"not really gzip").decode()
    secret["data"][helm.DATA_KEY] = base64.b64encode(garbage.encode()).decode()
    return secret
