"""`medic rules push FILE` against a real nats-server: a valid file lands in the rules KV bucket
(which every replica watches); an invalid one is refused with file:line and nothing is written."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from medic.remediator.settings import RemediatorSettings
from medic.runtime.bus import Bus
from medic.runtime.embedded_nats import EmbeddedNats

GOOD = """apiVersion: medic.dev/v1alpha1
kind: RemediationRule
metadata: {name: team-notify}
spec:
  match: {kinds: [HelmRelease]}
  action: {name: notify-only}
"""
BAD = GOOD.replace("notify-only}", "notify-only}\n  limits: {maxAttempts: 0}")


async def push(nats_server: EmbeddedNats, path: Path) -> tuple[int, str]:
    env = {**os.environ, "MEDIC_NATS__URLS": nats_server.url, "MEDIC_LOG_FORMAT": "json"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "medic.cli",
        "rules",
        "push",
        str(path),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_push_publishes_valid_rules_and_refuses_invalid_ones(
    nats_server: EmbeddedNats, bus: Bus, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    code, out = await push(nats_server, bad)
    assert code == 1
    assert f"{bad}:7:" in out
    assert "spec.limits.maxAttempts" in out

    good = tmp_path / "team-a.yaml"
    good.write_text(GOOD)
    code, out = await push(nats_server, good)
    assert code == 0, out
    kv = await bus.kv(RemediatorSettings().rules_bucket, history=5)
    entry = await kv.get("rules.team-a_yaml")
    assert entry.value == GOOD.encode()
    assert await kv.keys() == ["rules.team-a_yaml"]
