"""Shared parts of the benchmarks: result rows, the table, JSON output, a throw-away nats-server.

Every Medic figure is measured next to its baseline in the same run on the same machine and
reported as a ratio, so machine speed and noise cancel (issue 8).
"""

from __future__ import annotations

import contextlib
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medic.runtime.bus import Bus
from medic.runtime.embedded_nats import EmbeddedNats
from medic.runtime.settings import NatsSettings

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"


@dataclass
class Row:
    """One line of the table. `medic`/`baseline` are None when not measured (`note` says why).

    `higher_is_better` decides how the ratio reads: throughput ratios are medic/baseline,
    latency ratios are medic/baseline too (so below 1 is faster than the baseline).
    """

    name: str
    medic: float | None
    baseline: float | None
    unit: str
    target: str = ""
    met: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.medic is None or self.baseline in (None, 0):
            return None
        assert self.baseline is not None
        return self.medic / self.baseline


def not_measured(name: str, why: str, target: str = "") -> Row:
    return Row(name=name, medic=None, baseline=None, unit="", target=target, note=why)


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".strip()


def table(rows: list[Row]) -> str:
    header = ("benchmark", "medic", "baseline", "ratio", "target", "met?")
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        if row.medic is None:
            baseline = _fmt(row.baseline, row.unit) if row.baseline is not None else ""
            lines.append((row.name, f"not measured: {row.note}", baseline, "", row.target, "-"))
            continue
        ratio = row.ratio
        met = {True: "yes", False: "NO", None: "-"}[row.met]
        lines.append(
            (
                row.name,
                _fmt(row.medic, row.unit),
                _fmt(row.baseline, row.unit),
                "-" if ratio is None else f"{ratio:.2f}",
                row.target,
                met,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for index, line in enumerate(lines):
        out.append(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if index == 0:
            out.append("-+-".join("-" * w for w in widths))
    return "\n".join(out)


def write_json(rows: list[Row], args: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = RESULTS_DIR / f"bench-{stamp}.json"
    document = {
        "time": stamp,
        "command": " ".join(sys.argv),
        "args": args,
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": _cpu_count(),
            "loadavg": Path("/proc/loadavg").read_text().split()[:3]
            if Path("/proc/loadavg").exists()
            else None,
        },
        "rows": [{**asdict(row), "ratio": row.ratio} for row in rows],
    }
    path.write_text(json.dumps(document, indent=2, default=str))
    (RESULTS_DIR / "latest.json").write_text(path.read_text())
    return path


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: list[float]) -> float:
    return statistics.median(values)


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"medic-bench-{prefix}-") as name:
        yield Path(name)


@contextlib.asynccontextmanager
async def nats_bus(base: Path, name: str = "bench") -> AsyncIterator[tuple[EmbeddedNats, Bus]]:
    """A fresh nats-server on loopback with Medic's streams, and one Bus connected to it."""
    server = EmbeddedNats(data_dir=base / "nats")
    await server.start()
    try:
        settings = NatsSettings(urls=[server.url], reconnect_wait=0.1, duplicate_window=120.0)
        bus = await Bus.connect(settings, name=name)
        try:
            await bus.ensure_streams()
            yield server, bus
        finally:
            await bus.close()
    finally:
        await server.stop()


def silence_logs() -> None:
    """Services log at warning level, so per-message info logging does not skew figures."""
    from medic.runtime.logging import configure

    configure(log_format="json", level="warning")
