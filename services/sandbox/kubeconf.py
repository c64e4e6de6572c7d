"""Writes a kubeconfig pointing at the sandbox (bearer token `sandbox`, context `sandbox`)."""

from __future__ import annotations

from pathlib import Path

import yaml

TOKEN = "sandbox"  # noqa: S105 - any token but an issued one acts as the sandbox user
CONTEXT = "sandbox"


def kubeconfig(url: str, namespace: str = "default", token: str = TOKEN) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": url}}],
        "users": [{"name": CONTEXT, "user": {"token": token}}],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace},
            }
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }


def write_kubeconfig(path: Path, url: str, token: str = TOKEN) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(kubeconfig(url, token=token), sort_keys=False))
    path.chmod(0o600)
    return path
