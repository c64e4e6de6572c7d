"""The real Helm CLI (built by `medic.testing.upstream`) for tests on the real control plane.

Each `HelmCli` has its own HOME-like folders (cache, config, data), so a test never reads or
writes the user's Helm settings, and talks to the API server through the kubeconfig it is given
(a ServiceAccount's, to run Helm as the CI pipeline of the S3 incident does). `small_chart`
writes a local chart of ConfigMaps only: no pod has to run, and Helm must not `--wait`.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from medic.testing import upstream

_CHART = """apiVersion: v2
name: {name}
version: {version}
"""
_CONFIGMAP = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-settings
data:
  revision: "{{ .Release.Revision }}"
  greeting: {{ .Values.greeting | default "hello" | quote }}
"""


def small_chart(directory: Path, name: str = "settings", version: str = "0.1.0") -> Path:
    (directory / "templates").mkdir(parents=True, exist_ok=True)
    (directory / "Chart.yaml").write_text(_CHART.format(name=name, version=version))
    (directory / "templates" / "configmap.yaml").write_text(_CONFIGMAP)
    return directory


@dataclass(frozen=True)
class HelmCli:
    kubeconfig: Path
    home: Path

    def run(
        self, *args: str, namespace: str, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """`helm ARGS -n NAMESPACE` as the kubeconfig's identity; never raises on exit codes."""
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
            "KUBECONFIG": str(self.kubeconfig),
        }
        argv = [str(upstream.binary_path("helm")), *args, "--namespace", namespace]
        return subprocess.run(  # noqa: S603 - the Helm binary we built
            argv, env=env, capture_output=True, text=True, check=False, timeout=timeout
        )
