"""`medic sandbox` as a process, and serve_embedded as `medic run` uses it."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp
import yaml

from medic.sandbox import serve_embedded

MEDIC = Path(sys.executable).parent / "medic"


async def test_medic_sandbox_command_serves_and_loads(tmp_path: Path) -> None:
    objects = tmp_path / "objects.yaml"
    objects.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: apps}\n---\n"
        "apiVersion: helm.toolkit.fluxcd.io/v2beta2\nkind: HelmRelease\n"
        "metadata: {name: podinfo, namespace: apps}\nspec: {interval: 5m}\n"
    )
    kubeconfig = tmp_path / "kc"
    proc = await asyncio.create_subprocess_exec(
        str(MEDIC),
        "sandbox",
        "--port",
        "0",
        "--kubeconfig",
        str(kubeconfig),
        "--load",
        str(objects),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        url = line.split(" at ")[1].split(";")[0]
        assert url.startswith("http://127.0.0.1:")
        config = yaml.safe_load(kubeconfig.read_text())
        assert config["clusters"][0]["cluster"]["server"] == url
        assert config["current-context"] == "sandbox"
        async with (
            aiohttp.ClientSession(url) as http,
            http.get("/apis/helm.toolkit.fluxcd.io/v2/helmreleases") as resp,
        ):
            listed = json.loads(await resp.read())
        assert [i["metadata"]["name"] for i in listed["items"]] == ["podinfo"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_serve_embedded_writes_kubeconfig(tmp_path: Path) -> None:
    async with serve_embedded(tmp_path / "sandbox") as kubeconfig:
        assert kubeconfig == tmp_path / "sandbox" / "kubeconfig"
        server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        async with aiohttp.ClientSession() as http, http.get(f"{server}/api") as resp:
            assert (await resp.json())["versions"] == ["v1"]
