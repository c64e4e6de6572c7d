"""The Helm chart (charts/medic) for tests: render it with the real Helm CLI, read its roles.

Helm runs with its config, cache and data folders under a temporary directory, so tests never
read or write the user's Helm setup.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from medic.testing import upstream

CHART = Path(__file__).resolve().parents[2] / "charts" / "medic"
# The Kubernetes version `helm template` assumes (the real control plane's, medic.testing.upstream).
KUBE_VERSION = "1.34.4"
DISTRIBUTED: dict[str, Any] = {"mode": "distributed", "nats": {"urls": ["nats://nats.nats:4222"]}}


def helm(
    *args: str, chart: Path = CHART, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """The real Helm CLI; raises CalledProcessError with Helm's own message on failure."""
    home = Path(tempfile.gettempdir()) / "medic-helm-home"
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return subprocess.run(  # noqa: S603 - our own Helm build, arguments from tests
        [str(upstream.binary_path("helm")), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
        env=env,
        cwd=chart.parent,
    )


def value_args(values: Mapping[str, Any] | None) -> list[str]:
    return [f"--values={_values_file(values)}"] if values else []


def _values_file(values: Mapping[str, Any]) -> Path:
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept until the process exits
        "w", suffix=".json", prefix="medic-values-", delete=False
    )
    with handle:
        json.dump(values, handle)
    return Path(handle.name)


def template(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "medic",
    namespace: str = "medic",
    extra: Sequence[str] = (),
) -> str:
    out = helm(
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
        *value_args(values),
        *extra,
    )
    return out.stdout


def render(values: Mapping[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(template(values, **kwargs)) if doc]


def find(docs: Sequence[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    return next(
        (d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name),
        None,
    )


def role_rules(docs: Sequence[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    role = find(docs, "ClusterRole", name)
    return list(role["rules"] or []) if role else []
