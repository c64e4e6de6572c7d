"""`medic backup list/restore` when NATS is not where the settings say: one line naming the
setting to give (and where `medic run` prints its embedded NATS URL), exit 2, no traceback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medic.remediator.backup import BackupStore
from medic.remediator.settings import RemediatorSettings
from medic.runtime.bus import Bus
from medic.runtime.embedded_nats import EmbeddedNats, free_port
from medic.runtime.kube import SECRETS
from medic.runtime.settings import NatsSettings
from medic.testing.helm import release_secret


@pytest.mark.parametrize("command", [["list"], ["restore", "3f2a9c01d4e5b6a7"]])
async def test_backup_command_without_nats_says_which_setting_in_one_line(
    command: list[str],
) -> None:
    env = {**os.environ, "MEDIC_NATS__URLS": f"nats://127.0.0.1:{free_port()}"}
    env["MEDIC_NATS__CONNECT_TIMEOUT"] = "0.5"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "medic.cli",
        "backup",
        *command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, (out + err).decode()
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, err.decode()
    assert "MEDIC_NATS__URLS" in lines[0]
    assert "Traceback" not in (out + err).decode()


async def backup_list(data_dir: Path) -> tuple[int, str, str]:
    env = {key: value for key, value in os.environ.items() if key != "MEDIC_NATS__URLS"}
    env["MEDIC_NATS__CONNECT_TIMEOUT"] = "0.5"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "medic.cli",
        "backup",
        "list",
        "--data-dir",
        str(data_dir),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_backup_list_finds_the_embedded_nats_of_a_running_medic_run(tmp_path: Path) -> None:
    """`medic run` picks a free port at each start: `medic backup` finds it in the data dir."""
    server = EmbeddedNats(data_dir=tmp_path / "data" / "nats")
    await server.start()
    try:
        bus = await Bus.connect(NatsSettings(urls=[server.url]), name="test")
        try:
            store = BackupStore(await bus.kv(RemediatorSettings().backups_bucket, history=1))
            secret = release_secret("checkout", "shop", status="pending-install")
            backup_id = await store.save(secret, SECRETS, "clear-pending")
        finally:
            await bus.close()
        code, out, err = await backup_list(tmp_path / "data")
        assert code == 0, out + err
        assert backup_id in out
        assert "Secret shop/sh.helm.release.v1.checkout.v1" in out
    finally:
        await server.stop()
    code, _, err = await backup_list(tmp_path / "data")
    assert code == 2
    assert "MEDIC_NATS__URLS" in err
