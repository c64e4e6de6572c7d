"""Medic services as separate OS processes, for end-to-end and kill -9 tests.

Each runs `python -m medic.cli <service>` with its own environment, logs to a file (JSON lines),
and can be stopped gracefully (SIGTERM, expecting exit 0) or killed (SIGKILL).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """`preexec_fn`: the child gets SIGKILL when the thread that started it dies (Linux).

    So a test run that is itself SIGKILLed leaves no kube-apiserver or etcd behind. The signal is
    tied to the starting *thread*: start long-lived children from the main thread.
    """
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


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
