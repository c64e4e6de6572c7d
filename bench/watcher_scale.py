"""Benchmark 3: watcher scale with N HelmReleases and N Helm release Secrets in the sandbox.

The watcher runs in its own subprocess so its RSS (VmHWM/VmRSS from /proc/<pid>/status) and CPU
(utime+stime from /proc/<pid>/stat) are its own. Figures: initial list (time until the watcher
reports synced), RSS after sync (target under 200 MB), steady-state CPU with 50 changes/s.
Baseline for the list time: a plain paged list (limit 500) of the same objects from the same
sandbox with kubernetes_asyncio.
"""

from __future__ import annotations

from pathlib import Path

from bench.common import Row, not_measured

NAMES = (
    "3 watcher initial list (s)",
    "3 watcher RSS after sync (MB)",
    "3 watcher CPU at 50 changes/s (%)",
)
TARGETS = ("(ratio reported)", "< 200 MB", "(reported)")


def proc_status_kib(pid: int, field: str) -> int:
    """A `VmRSS`/`VmHWM` line of /proc/<pid>/status, in KiB."""
    with Path(f"/proc/{pid}/status").open(encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    import os

    with Path(f"/proc/{pid}/stat").open(encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


async def run(objects: int = 10_000, changes_per_second: int = 50, steady_seconds: float = 10.0):
    from bench import watcher_adapter

    why = watcher_adapter.unavailable()
    if why is not None:
        return [
            not_measured(name, why, target) for name, target in zip(NAMES, TARGETS, strict=True)
        ]
    rows: list[Row] = await watcher_adapter.measure(objects, changes_per_second, steady_seconds)
    return rows
