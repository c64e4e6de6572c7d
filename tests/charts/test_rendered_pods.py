"""The chart's pods, run as processes: each rendered container's args and MEDIC_* environment
start the real service, as the chart's own ServiceAccount, and it becomes ready.

No kubelet runs on the test control plane, so a pod is played by a process: the Deployment's
`args` and `env` exactly as `helm install` stored them, with only what a pod gets from its node
substituted: the ServiceAccount token (a TokenRequest kubeconfig for the pod's
`serviceAccountName` instead of MEDIC_KUBE__IN_CLUSTER), the /data volume (a temporary folder),
a free loopback port for the health endpoint, and, in distributed mode, a real nats-server with
one replica for the NATS cluster. Variables from Secrets are read from the Secrets, as the
kubelet does: distributed mode takes its NATS credentials and the notifier's webhook URL from
Secrets created beforehand (a notifier without its URL does not start). This shows the settings
the chart writes are valid and sufficient; what the roles allow is test_least_privilege.py's
subject.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from medic.runtime.embedded_nats import EmbeddedNats, free_port
from medic.runtime.health import wait_ready
from medic.testing.chart import CHART, DISTRIBUTED, helm
from medic.testing.controlplane import ControlPlane

pytestmark = [pytest.mark.realcluster, pytest.mark.timeout(180)]
MEDIC = str(Path(sys.executable).with_name("medic"))
BUILTIN_S5 = (
    Path(__file__).resolve().parents[2]
    / "services/remediator/rules/builtin/s5-gardener-operation-stuck.yaml"
)


def installed_deployments(
    plane: ControlPlane, namespace: str, release: str, values: dict[str, Any], work: Path
) -> list[dict[str, Any]]:
    file = work / "values.json"
    file.write_text(json.dumps(values))
    helm("install", release, str(CHART), "-n", namespace, f"--values={file}",
         "--kubeconfig", str(plane.kubeconfig))  # fmt: skip
    reply = plane.request(
        "GET",
        f"/apis/apps/v1/namespaces/{namespace}/deployments"
        f"?labelSelector=app.kubernetes.io/instance={release}",
    )
    assert reply.ok, reply.body
    return list(reply.body["items"])


def resolve(plane: ControlPlane, namespace: str, var: dict[str, Any]) -> str:
    """A variable's value as the kubelet gives it: plain, or read from the Secret it names."""
    if "value" in var:
        return str(var["value"])
    ref = var["valueFrom"]["secretKeyRef"]
    secret = plane.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{ref['name']}")
    assert secret.ok, secret.body
    return base64.b64decode(secret.body["data"][ref["key"]]).decode()


def secrets_by_reference(plane: ControlPlane, namespace: str) -> dict[str, Any]:
    """Values that take NATS credentials and a webhook URL from Secrets created beforehand."""
    for name, data in (("medic-nats", {"user": "medic", "password": "s3cret"}),
                       ("medic-hooks", {"url": "http://127.0.0.1:9/hook"})):  # fmt: skip
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                  "stringData": data}  # fmt: skip
        created = plane.request("POST", f"/api/v1/namespaces/{namespace}/secrets", secret)
        assert created.ok, created.body
    return {
        **DISTRIBUTED,
        "nats": {**DISTRIBUTED["nats"], "existingSecret": "medic-nats"},
        "notifier": {
            "channels": [{"name": "ops", "type": "webhook", "options": {"url_env": "HOOK_URL"}}],
            "secretEnv": [{"name": "HOOK_URL", "secretName": "medic-hooks", "key": "url"}],
        },
    }


def project_rules(plane: ControlPlane, namespace: str, pod: dict[str, Any], work: Path) -> str:
    """The rules ConfigMap's files written where the process reads them (the pod's volume)."""
    [container] = pod["containers"]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "rules"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "rules"]
    name = volume["configMap"]["name"]
    reply = plane.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}")
    assert reply.ok, reply.body
    folder = work / "rules"
    folder.mkdir(exist_ok=True)
    for file, text in reply.body["data"].items():
        (folder / file).write_text(text)
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    files = env["MEDIC_REMEDIATOR_RULES"].split(",")
    return ",".join(str(folder / Path(f).relative_to(mount["mountPath"])) for f in files)


def own_rule() -> str:
    """A user rule: the shipped S5 rule under another name (so it adds, not overrides)."""
    rule = yaml.safe_load(BUILTIN_S5.read_text())
    rule["metadata"]["name"] = "team-gardener-reapply"
    return yaml.safe_dump(rule)


def process_env(
    plane: ControlPlane, namespace: str, pod: dict[str, Any], nats_url: str, work: Path
) -> tuple[list[str], dict[str, str], int]:
    [container] = pod["containers"]
    env = {e["name"]: resolve(plane, namespace, e) for e in container["env"]}
    port = free_port()
    env |= {"MEDIC_HEALTH__HOST": "127.0.0.1", "MEDIC_HEALTH__PORT": str(port)}
    if env.pop("MEDIC_KUBE__IN_CLUSTER", None) == "true":
        kubeconfig = plane.serviceaccount_kubeconfig(
            namespace, pod["serviceAccountName"], work / f"{container['name']}.kubeconfig",
            create=False,
        )  # fmt: skip
        env["MEDIC_KUBE__KUBECONFIG"] = str(kubeconfig)
    if "MEDIC_REMEDIATOR_RULES" in env:
        env["MEDIC_REMEDIATOR_RULES"] = project_rules(plane, namespace, pod, work)
    if "MEDIC_NATS__URLS" in env:
        env |= {"MEDIC_NATS__URLS": nats_url, "MEDIC_NATS__STREAM_REPLICAS": "1"}
    args = [str(work / "data") if arg == "/data" else arg for arg in container["args"]]
    return args, env, port


@pytest.mark.parametrize("shape", ["single", "distributed"])
async def test_rendered_containers_start_and_become_ready(
    shape: str, control_plane: ControlPlane, real_namespace: str, tmp_path: Path
) -> None:
    release = f"medic-{uuid.uuid4().hex[:6]}"
    values = (
        {"remediator": {"rules": {"team.yaml": own_rule()}}}
        if shape == "single"
        else secrets_by_reference(control_plane, real_namespace)
    )
    deployments = installed_deployments(control_plane, real_namespace, release, values, tmp_path)
    assert len(deployments) == (1 if shape == "single" else 3)
    nats = EmbeddedNats(data_dir=tmp_path / "nats")
    await nats.start()
    processes: list[tuple[str, asyncio.subprocess.Process, Path]] = []
    try:
        base = {k: v for k, v in os.environ.items() if not k.startswith("MEDIC_")}
        for deployment in deployments:
            pod = deployment["spec"]["template"]["spec"]
            args, env, port = process_env(control_plane, real_namespace, pod, nats.url, tmp_path)
            log = tmp_path / f"{deployment['metadata']['name']}.log"
            with log.open("wb") as sink:
                process = await asyncio.create_subprocess_exec(
                    MEDIC, *args, env=base | env, stdout=sink, stderr=sink
                )
            processes.append((deployment["metadata"]["name"], process, log))

            def alive(process: asyncio.subprocess.Process = process, log: Path = log) -> None:
                if process.returncode is not None:
                    pytest.fail(
                        f"{log.stem} exited {process.returncode}:\n{log.read_text()[-3000:]}"
                    )

            await wait_ready(port, timeout=60, still_starting=alive)
    finally:
        for _name, process, _log in processes:
            if process.returncode is None:
                process.terminate()
        for _name, process, _log in processes:
            await asyncio.wait_for(process.wait(), timeout=30)
        await nats.stop()
    for name, process, log in processes:
        text = log.read_text()
        assert process.returncode == 0, f"{name} exited {process.returncode}:\n{text[-3000:]}"
        assert "forbidden" not in text.lower(), f"{name}:\n{text[-3000:]}"
        # a rule file it could not read or parse would be logged as rule_rejected
        assert "rule_rejected" not in text, f"{name}:\n{text[-3000:]}"
