"""`medic backup list/restore` when NATS is not where the settings say: one line naming the
setting to give (and where `medic run` prints its embedded NATS URL), exit 2, no traceback."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from medic.runtime.embedded_nats import free_port


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
