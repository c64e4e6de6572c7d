"""Medic services as separate OS processes, for end-to-end and kill -9 tests.

Each runs `python -m medic.cli <service>` with its own environment, logs to a file (JSON lines),
and can be stopped gracefully (SIGTERM, expecting exit 0) or killed (SIGKILL).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medic.runtime.embedded_nats import parent_death_signal

_SPAWNER: list[ThreadPoolExecutor] = []


def spawn(argv: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """`subprocess.Popen` for a child that gets SIGKILL when this process dies (Linux
    parent-death signal: a test run that is itself SIGKILLed leaves no kube-apiserver or etcd
    behind), started from one long-lived thread.

    The parent-death signal follows the thread that started the child, so a child started from
    a short-lived thread (`asyncio.to_thread`, a test's event loop worker) would be killed when
    that thread ends. This thread lives until the interpreter exits.
    """
    if not _SPAWNER:
        _SPAWNER.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="medic-spawner"))

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603 - our callers' own binaries
            argv,
            preexec_fn=parent_death_signal(signal.SIGKILL),  # noqa: PLW1509 - only prctl
            **options,
        )

    return _SPAWNER[0].submit(start).result()


@dataclass
class ServiceProcess:
    service: str
    env: dict[str, str]
    log_path: Path
    args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        environment = {**os.environ, "MEDIC_LOG_FORMAT": "json", **self.env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(  # noqa: S603 - our own CLI
                [sys.executable, "-m", "medic.cli", self.service, *self.args],
                env=environment,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code (0 for a graceful stop)."""
        process = self.process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(asyncio.to_thread(process.wait), timeout)
        except TimeoutError:
            process.kill()
            code = await asyncio.to_thread(process.wait)
        self.process = None
        return code

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""
